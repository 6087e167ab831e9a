//! How a user's ONNX model is fed (`eval --model`, `train --init`): the pixel range it
//! expects, the normalisation it was trained with, the image shape of a flat input, and
//! the names of its classes.

use std::path::PathBuf;

use advtrain::model::onnx::{InputRange, OnnxOptions};
use advtrain::model::Normalization;
use anyhow::{bail, Context, Result};
use clap::Args;

/// The flags describing an imported model's input.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct ModelInputFlags {
    /// Pixel range the ONNX model was trained on: 0,1 (default) or 0,255. advtrain scales
    /// [0,1] images to it inside the model, so --eps stays in [0,1] pixel units.
    #[arg(long, value_name = "LO,HI")]
    pub input_range: Option<String>,
    /// Per-channel mean the ONNX model expects subtracted (after the range scaling), when
    /// the normalisation is not in the graph, e.g. 0.2860 or 0.485,0.456,0.406.
    #[arg(long, value_name = "M[,M,M]", requires = "std")]
    pub mean: Option<String>,
    /// Per-channel standard deviation to divide by, with --mean.
    #[arg(long, value_name = "S[,S,S]", requires = "mean")]
    pub std: Option<String>,
    /// Image shape C,H,W for a model whose input is flat ([N, C·H·W]), e.g. 1,28,28.
    #[arg(long, value_name = "C,H,W")]
    pub input_shape: Option<String>,
    /// File with one class name per line, in label order (default: the data set's names).
    #[arg(long, value_name = "FILE")]
    pub class_names: Option<PathBuf>,
}

impl ModelInputFlags {
    /// Whether any of these flags was given.
    pub fn any(&self) -> bool {
        self != &ModelInputFlags::default()
    }

    /// The import options these flags describe.
    pub fn options(&self) -> Result<OnnxOptions> {
        let input_range: InputRange = match &self.input_range {
            Some(r) => r.parse()?,
            None => InputRange::Unit,
        };
        let normalization = match (&self.mean, &self.std) {
            (Some(m), Some(s)) => Some(normalization(m, s)?),
            _ => None,
        };
        let image_shape = self.input_shape.as_deref().map(parse_shape).transpose()?;
        Ok(OnnxOptions {
            input_range,
            normalization,
            image_shape,
        })
    }

    /// The class names of `--class-names`, checked against the model's number of classes.
    pub fn class_names(&self, num_classes: usize) -> Result<Option<Vec<String>>> {
        let Some(path) = &self.class_names else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--class-names {}: cannot read", path.display()))?;
        let names: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if names.len() != num_classes {
            bail!(
                "--class-names {}: {} names for a model with {num_classes} classes (one name per line, in label order)",
                path.display(),
                names.len()
            );
        }
        Ok(Some(names))
    }
}

/// `--mean` and `--std` as a normalisation, each value finite and every std positive.
fn normalization(mean: &str, std: &str) -> Result<Normalization> {
    let mean = floats("--mean", mean)?;
    let std = floats("--std", std)?;
    if mean.len() != std.len() {
        bail!(
            "--mean has {} values and --std {}: give one per channel to both",
            mean.len(),
            std.len()
        );
    }
    if let Some(s) = std.iter().find(|s| **s <= 0.0) {
        bail!("--std {s}: every standard deviation must be positive");
    }
    Ok(Normalization { mean, std })
}

/// A comma-separated list of finite numbers.
fn floats(flag: &str, s: &str) -> Result<Vec<f32>> {
    s.split(',')
        .map(|v| {
            let x: f32 = v
                .trim()
                .parse()
                .with_context(|| format!("{flag}: '{v}' is not a number"))?;
            if !x.is_finite() {
                bail!("{flag}: {x} is not finite");
            }
            Ok(x)
        })
        .collect()
}

/// `C,H,W`, each at least 1.
pub(crate) fn parse_shape(s: &str) -> Result<[usize; 3]> {
    let dims: Vec<usize> = s
        .split(',')
        .map(|v| v.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("--input-shape '{s}': expected C,H,W, e.g. 1,28,28"))?;
    match dims[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => bail!("--input-shape '{s}': expected three positive sizes C,H,W, e.g. 1,28,28"),
    }
}
