//! Adversarial examples as artefacts: a SafeTensors file a script can load, and a PNG grid
//! a person can look at (clean | perturbation | adversarial, with labels).

use std::collections::HashMap;
use std::path::Path;

use image::{Rgb, RgbImage};
use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::io::write_atomic;

/// A batch of clean inputs with their adversarial versions and the model's verdicts.
#[derive(Clone, Debug, PartialEq)]
pub struct AdversarialExamples {
    /// Channels per image, `C` (1 for grey-scale, 3 for RGB).
    pub channels: usize,
    /// Image height `H` in pixels.
    pub height: usize,
    /// Image width `W` in pixels.
    pub width: usize,
    /// `n × C × H × W` in `[0, 1]`.
    pub clean: Vec<f32>,
    /// The attack's outputs, laid out like `clean` and likewise in `[0, 1]`: example `i`
    /// is the adversarial version of clean example `i`.
    pub adversarial: Vec<f32>,
    /// Per example: the true label; its length `n` is the number of examples.
    pub labels: Vec<u8>,
    /// Per example: the model's prediction on the clean input.
    pub clean_pred: Vec<u8>,
    /// Per example: the model's prediction on the adversarial input.
    pub adv_pred: Vec<u8>,
    /// The model's probability for `adv_pred`.
    pub adv_confidence: Vec<f32>,
    /// The attack's radius ε, in pixel units of `[0, 1]` images and in the attack's norm
    /// (not stored); NaN when read by [`load_examples`] from a file without it.
    pub eps: f32,
}

impl AdversarialExamples {
    /// Number of examples `n` (the length of `labels`).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no examples (the grid then shows only its header row).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Saves examples as SafeTensors: `clean`, `adversarial` (f32, n×C×H×W), `labels`,
/// `clean_pred`, `adv_pred` (u8, n), `adv_confidence` (f32, n); ε in the metadata.
pub fn save_examples(path: &Path, ex: &AdversarialExamples) -> Result<()> {
    let n = ex.len();
    let img_shape = vec![n, ex.channels, ex.height, ex.width];
    let clean = f32_bytes(&ex.clean);
    let adv = f32_bytes(&ex.adversarial);
    let conf = f32_bytes(&ex.adv_confidence);
    let err = |e: safetensors::SafeTensorError| Error::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let views = vec![
        (
            "clean",
            TensorView::new(Dtype::F32, img_shape.clone(), &clean).map_err(err)?,
        ),
        (
            "adversarial",
            TensorView::new(Dtype::F32, img_shape, &adv).map_err(err)?,
        ),
        (
            "labels",
            TensorView::new(Dtype::U8, vec![n], &ex.labels).map_err(err)?,
        ),
        (
            "clean_pred",
            TensorView::new(Dtype::U8, vec![n], &ex.clean_pred).map_err(err)?,
        ),
        (
            "adv_pred",
            TensorView::new(Dtype::U8, vec![n], &ex.adv_pred).map_err(err)?,
        ),
        (
            "adv_confidence",
            TensorView::new(Dtype::F32, vec![n], &conf).map_err(err)?,
        ),
    ];
    let metadata: HashMap<String, String> = [("eps".to_string(), ex.eps.to_string())].into();
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(err)?;
    write_atomic(path, &bytes)
}

/// Loads examples written by [`save_examples`].
pub fn load_examples(path: &Path) -> Result<AdversarialExamples> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |message: String| Error::Record {
        path: path.to_path_buf(),
        message,
    };
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let eps = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("eps"))
        .and_then(|e| e.parse().ok())
        .unwrap_or(f32::NAN);
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let get = |name: &str| st.tensor(name).map_err(|e| bad(format!("{name}: {e}")));
    let floats = |name: &str| -> Result<Vec<f32>> {
        Ok(get(name)?
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let clean_view = get("clean")?;
    let shape = clean_view.shape().to_vec();
    if shape.len() != 4 {
        return Err(bad(format!(
            "clean has shape {shape:?}, expected 4 dimensions"
        )));
    }
    Ok(AdversarialExamples {
        channels: shape[1],
        height: shape[2],
        width: shape[3],
        clean: floats("clean")?,
        adversarial: floats("adversarial")?,
        labels: get("labels")?.data().to_vec(),
        clean_pred: get("clean_pred")?.data().to_vec(),
        adv_pred: get("adv_pred")?.data().to_vec(),
        adv_confidence: floats("adv_confidence")?,
        eps,
    })
}

/// The most examples [`adversarial_grid`] draws: 64 rows of a 28×28 grid are already a
/// 438×8,200-pixel image, and `advtrain attack -n 100000` drew one 1,100,022 pixels high.
/// Every example is still saved by [`save_examples`]; the picture shows the first ones.
pub const GRID_MAX_ROWS: usize = 64;

const SCALE: u32 = 3;
const PAD: u32 = 6;
const TEXT_H: u32 = 10;

/// A grid, one row per example: clean image, perturbation (mid-grey is zero; scaled so ±ε
/// spans black to white), adversarial image; under each row the true label and the
/// predictions with confidence. Rows the attack fooled have a red label line. Only the
/// first [`GRID_MAX_ROWS`] examples are drawn, so the image stays a size a viewer opens.
pub fn adversarial_grid(ex: &AdversarialExamples, class_names: &[String]) -> RgbImage {
    let rows = ex.len().min(GRID_MAX_ROWS);
    let (w, h) = (ex.width as u32 * SCALE, ex.height as u32 * SCALE);
    let name = |c: u8| {
        class_names
            .get(c as usize)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    };
    let col_w = (w + PAD).max(8 * 18);
    let row_h = h + 2 * TEXT_H + PAD;
    let header = TEXT_H + PAD;
    let width = 3 * col_w + PAD;
    let height = header + rows as u32 * row_h + PAD;
    let mut img = RgbImage::from_pixel(width.max(1), height.max(1), Rgb([255, 255, 255]));
    let black = Rgb([0, 0, 0]);
    draw_text(&mut img, PAD, 2, "clean", black);
    draw_text(
        &mut img,
        PAD + col_w,
        2,
        &format!("delta (+-{})", ex.eps),
        black,
    );
    draw_text(&mut img, PAD + 2 * col_w, 2, "adversarial", black);
    let n_px = ex.height * ex.width;
    let eps = if ex.eps > 0.0 { ex.eps } else { 1.0 };
    for i in 0..rows {
        let y0 = header + i as u32 * row_h;
        let off = i * ex.image_len();
        let clean = &ex.clean[off..off + ex.image_len()];
        let adv = &ex.adversarial[off..off + ex.image_len()];
        let delta: Vec<f32> = clean
            .iter()
            .zip(adv)
            .map(|(c, a)| (0.5 + (a - c) / (2.0 * eps)).clamp(0.0, 1.0))
            .collect();
        for (col, pixels) in [clean, &delta[..], adv].into_iter().enumerate() {
            let x0 = PAD + col as u32 * col_w;
            for py in 0..ex.height {
                for px in 0..ex.width {
                    let at = |c: usize| {
                        let ch = c.min(ex.channels - 1);
                        (pixels[ch * n_px + py * ex.width + px].clamp(0.0, 1.0) * 255.0).round()
                            as u8
                    };
                    let rgb = Rgb([at(0), at(1), at(2)]);
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            img.put_pixel(
                                x0 + px as u32 * SCALE + dx,
                                y0 + py as u32 * SCALE + dy,
                                rgb,
                            );
                        }
                    }
                }
            }
        }
        let clean_ok = ex.clean_pred[i] == ex.labels[i];
        let fooled = clean_ok && ex.adv_pred[i] != ex.labels[i];
        let (colour, verdict) = match (clean_ok, fooled) {
            (false, _) => (Rgb([110, 110, 110]), " (wrong already)"),
            (true, true) => (Rgb([200, 0, 0]), " FOOLED"),
            (true, false) => (Rgb([0, 110, 0]), " robust"),
        };
        draw_text(
            &mut img,
            PAD,
            y0 + h + 2,
            &format!(
                "true {} / pred {}",
                name(ex.labels[i]),
                name(ex.clean_pred[i])
            ),
            black,
        );
        draw_text(
            &mut img,
            PAD,
            y0 + h + 2 + TEXT_H,
            &format!(
                "adv pred {} ({:.0}%){verdict}",
                name(ex.adv_pred[i]),
                100.0 * ex.adv_confidence[i],
            ),
            colour,
        );
    }
    img
}

/// Draws ASCII text with the 8×8 bitmap font (no font files needed).
fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, colour: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY[(ch as usize).min(127)];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let (px, py) = (x + i as u32 * 8 + col, y + row as u32);
                    if px < img.width() && py < img.height() {
                        img.put_pixel(px, py, colour);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples(n: usize) -> AdversarialExamples {
        AdversarialExamples {
            channels: 1,
            height: 4,
            width: 4,
            clean: vec![0.5; n * 16],
            adversarial: vec![0.6; n * 16],
            labels: vec![0; n],
            clean_pred: vec![0; n],
            adv_pred: vec![1; n],
            adv_confidence: vec![0.9; n],
            eps: 0.1,
        }
    }

    #[test]
    fn the_grid_draws_at_most_its_row_cap() {
        let names = vec!["a".to_string(), "b".to_string()];
        let capped = adversarial_grid(&examples(GRID_MAX_ROWS), &names);
        let many = adversarial_grid(&examples(10 * GRID_MAX_ROWS), &names);
        assert_eq!(many.dimensions(), capped.dimensions());
        let few = adversarial_grid(&examples(2), &names);
        assert!(few.height() < capped.height());
    }
}
