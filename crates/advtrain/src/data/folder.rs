//! Image folders in the layout of torchvision's `ImageFolder`: `DIR/train/<class>/*.png` and
//! `DIR/test/<class>/*.png` (or class directories directly in `DIR`, read as the test split).
//!
//! Classes are the sub-directory names sorted, the label being the position, as
//! `ImageFolder` numbers them. Within a class, files are sorted by name; hidden files are
//! skipped, as are files whose extension is not an image one and nested directories (unlike
//! `ImageFolder`, which recurses). Each image is converted to the channel count the model
//! expects and brought to its size the way torchvision's `Resize(side)` + `CenterCrop(side)`
//! does:
//!
//! * grey is PIL's `convert("L")` (ITU-R 601-2 luma, `L = (19595 R + 38470 G + 7471 B +
//!   2^15) >> 16`), colour drops any alpha channel as PIL's `convert("RGB")` does;
//! * the image is scaled, keeping its aspect ratio, so that it just covers the target: for a
//!   square target the shorter side becomes the target side and the longer one
//!   `floor(long * side / short)`; bilinear filtering (`FilterType::Triangle`, widened when
//!   shrinking, like PIL's antialiased bilinear);
//! * the centre is cropped, offsets `round((size - target) / 2)` with Python's round-half-even.

use std::fs;
use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, ImageBuffer, ImageReader, Luma, Pixel};
use rayon::prelude::*;

use super::{DataError, Dataset, Split};

/// File extensions read as images, compared case-insensitively.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];

/// Labels are bytes, so at most this many classes.
const MAX_CLASSES: usize = 256;

/// What a folder is expected to look like, for messages.
const LAYOUT_HINT: &str =
    "expected DIR/train/<class>/<images> and DIR/test/<class>/<images>, or DIR/<class>/<images> \
     for a test split alone";

/// Load one split of an image folder as `shape = (channels, height, width)` images, channels
/// being 1 (grey) or 3 (RGB). See the module documentation for the layout and the resizing.
pub fn load_image_folder(
    dir: &Path,
    split: Split,
    shape: (usize, usize, usize),
) -> Result<Dataset, DataError> {
    check_shape(dir, shape)?;
    let root = split_dir(dir, split)?;
    let classes = class_dirs(&root)?;
    let files = list_images(&classes)?;
    let (c, h, w) = shape;
    let image_len = c * h * w;
    let mut images = vec![0.0f32; files.len() * image_len];
    let results: Vec<Result<(), DataError>> = images
        .par_chunks_mut(image_len)
        .zip(files.par_iter())
        .map(|(out, (path, _))| decode_into(path, shape, out))
        .collect();
    results.into_iter().collect::<Result<(), _>>()?;
    let labels = files.iter().map(|&(_, label)| label).collect();
    let names = classes
        .into_iter()
        .map(|(name, _)| name)
        .collect::<Vec<_>>();
    Dataset::new(images, labels, c, h, w, names.len(), names)
}

fn check_shape(dir: &Path, (c, h, w): (usize, usize, usize)) -> Result<(), DataError> {
    if c != 1 && c != 3 {
        return Err(DataError::invalid(
            dir,
            format!(
                "models expecting {c} channels cannot read an image folder: \
                 only 1 (grey) or 3 (RGB)"
            ),
        ));
    }
    if h == 0 || w == 0 || u32::try_from(h.max(w)).is_err() {
        return Err(DataError::invalid(
            dir,
            format!("image size {h}x{w} is not usable"),
        ));
    }
    Ok(())
}

/// The directory holding the split's class directories.
fn split_dir(dir: &Path, split: Split) -> Result<PathBuf, DataError> {
    if !dir.is_dir() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            hint: LAYOUT_HINT.to_string(),
        });
    }
    let sub = dir.join(split.as_str());
    if sub.is_dir() {
        return Ok(sub);
    }
    let other = match split {
        Split::Train => Split::Test,
        Split::Test => Split::Train,
    };
    if dir.join(other.as_str()).is_dir() {
        return Err(DataError::Missing {
            path: sub,
            hint: format!(
                "{} has a {other}/ sub-directory but no {split}/",
                dir.display()
            ),
        });
    }
    match split {
        Split::Test => Ok(dir.to_path_buf()),
        Split::Train => Err(DataError::invalid(
            dir,
            "no train/ or test/ sub-directory: class directories directly in the folder are \
             read as the test split only; put training images under DIR/train/<class>/",
        )),
    }
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// The visible entries of `dir` as `(name, path)`, sorted by name.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_hidden(&name) {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The class directories of `root` as `(name, path)`, sorted by name.
fn class_dirs(root: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let classes: Vec<_> = entries(root)?
        .into_iter()
        .filter(|(_, path)| path.is_dir())
        .collect();
    match classes.len() {
        0 => Err(DataError::invalid(
            root,
            format!("no class sub-directories; {LAYOUT_HINT}"),
        )),
        1 => Err(DataError::invalid(
            root,
            format!(
                "only one class directory ({}): a classifier needs at least 2",
                classes[0].0
            ),
        )),
        n if n > MAX_CLASSES => Err(DataError::invalid(
            root,
            format!(
                "{n} class directories: at most {MAX_CLASSES} are supported (labels are bytes)"
            ),
        )),
        _ => Ok(classes),
    }
}

fn is_image(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    path.is_file() && IMAGE_EXTENSIONS.iter().any(|i| ext.eq_ignore_ascii_case(i))
}

/// Every image file with its label, class after class, each class's files sorted by name.
fn list_images(classes: &[(String, PathBuf)]) -> Result<Vec<(PathBuf, u8)>, DataError> {
    let mut files = Vec::new();
    // class_dirs allows at most 256 classes, so zipping with the byte range drops none.
    for ((name, dir), label) in classes.iter().zip(0..=u8::MAX) {
        let (images, skipped): (Vec<_>, Vec<_>) =
            entries(dir)?.into_iter().partition(|(_, p)| is_image(p));
        if images.is_empty() {
            return Err(DataError::invalid(
                dir,
                format!(
                    "class '{name}' has no images ({}); {} other entries skipped",
                    IMAGE_EXTENSIONS.join(", "),
                    skipped.len()
                ),
            ));
        }
        files.extend(images.into_iter().map(|(_, path)| (path, label)));
    }
    Ok(files)
}

/// Decode, convert, resize and crop the image at `path` into `out` (C×H×W, in `[0, 1]`).
fn decode_into(
    path: &Path,
    (c, h, w): (usize, usize, usize),
    out: &mut [f32],
) -> Result<(), DataError> {
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| DataError::io(path, e))?;
    convert_into(decode(reader, path)?, (c, h, w), out);
    Ok(())
}

/// Decode one image file's bytes already in memory (`path` names them in errors, and its
/// extension is the format when the content does not say) as [`load_image_folder`] decodes
/// each file: converted and brought to `shape`, C×H×W floats in `[0, 1]`. What the fuzz
/// targets call.
pub fn decode_image(
    bytes: &[u8],
    path: &Path,
    shape: (usize, usize, usize),
) -> Result<Vec<f32>, DataError> {
    check_shape(path, shape)?;
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes));
    if let Ok(format) = image::ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    let reader = reader
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let (c, h, w) = shape;
    let mut out = vec![0.0; c * h * w];
    convert_into(decode(reader, path)?, shape, &mut out);
    Ok(out)
}

/// The longest side, in pixels, of an image the folder reader decodes. Every image is
/// resized to the model's input (28 to a few hundred pixels), so nothing larger belongs in a
/// classification data set, and a 650-byte JPEG header can claim 18,737×4,102 pixels: the
/// fuzzer found one that cost seconds and hundreds of MB to decode.
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// Most bytes the decoder may allocate for one image (an 8192×8192 RGB image is 192 MiB).
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// The decoded image, or an error naming the file; images beyond [`MAX_IMAGE_SIDE`] are
/// refused from their header, before decoding.
fn decode<R: std::io::BufRead + std::io::Seek>(
    mut reader: ImageReader<R>,
    path: &Path,
) -> Result<DynamicImage, DataError> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => DataError::invalid(
            path,
            format!(
                "the image is larger than advtrain decodes (at most {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE} \
                 pixels, {} MiB): {e}; resize it first",
                MAX_DECODE_BYTES >> 20
            ),
        ),
        e => DataError::invalid(path, format!("cannot decode the image: {e}")),
    })
}

/// Convert `img` to `c` channels and `h`×`w` into `out` (C×H×W, in `[0, 1]`).
fn convert_into(img: DynamicImage, (c, h, w): (usize, usize, usize), out: &mut [f32]) {
    let (h, w) = (h as u32, w as u32);
    if c == 1 {
        write_chw(&resize_and_crop(&pil_grey(&img), h, w), out);
    } else {
        write_chw(&resize_and_crop(&img.to_rgb8(), h, w), out);
    }
}

/// PIL's `convert("L")`: ITU-R 601-2 luma in 16-bit fixed point (exact for grey input).
fn pil_grey(img: &DynamicImage) -> GrayImage {
    let rgb = img.to_rgb8();
    GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0.map(u32::from);
        let luma = (19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16;
        Luma([luma as u8])
    })
}

/// `img`'s pixels as planes of `[0, 1]` floats.
fn write_chw<P: Pixel<Subpixel = u8>>(img: &ImageBuffer<P, Vec<u8>>, out: &mut [f32]) {
    let plane = (img.width() * img.height()) as usize;
    for (i, p) in img.pixels().enumerate() {
        for (ch, &v) in p.channels().iter().enumerate() {
            out[ch * plane + i] = f32::from(v) / 255.0;
        }
    }
}

/// Scale `img` to cover `h`×`w` keeping its aspect ratio, then crop the centre.
fn resize_and_crop<P: Pixel<Subpixel = u8> + 'static>(
    img: &ImageBuffer<P, Vec<u8>>,
    h: u32,
    w: u32,
) -> ImageBuffer<P, Vec<u8>> {
    let (rw, rh) = cover_size(img.width(), img.height(), w, h);
    if (rw, rh) == img.dimensions() {
        return centre_crop(img, w, h);
    }
    centre_crop(&imageops::resize(img, rw, rh, FilterType::Triangle), w, h)
}

fn centre_crop<P: Pixel<Subpixel = u8> + 'static>(
    img: &ImageBuffer<P, Vec<u8>>,
    w: u32,
    h: u32,
) -> ImageBuffer<P, Vec<u8>> {
    let x = crop_offset(img.width(), w);
    let y = crop_offset(img.height(), h);
    imageops::crop_imm(img, x, y, w, h).to_image()
}

/// The `(width, height)` of an `iw`×`ih` image scaled to just cover `tw`×`th`: the side with
/// the larger ratio becomes exact, the other `floor(side * ratio)` (torchvision's rounding).
fn cover_size(iw: u32, ih: u32, tw: u32, th: u32) -> (u32, u32) {
    let (iw, ih, tw, th) = (u64::from(iw), u64::from(ih), u64::from(tw), u64::from(th));
    let (w, h) = if th * iw >= tw * ih {
        (iw * th / ih, th)
    } else {
        (tw, ih * tw / iw)
    };
    (w.max(tw) as u32, h.max(th) as u32)
}

/// torchvision's centre-crop offset `int(round((size - target) / 2))`, rounding half to even.
fn crop_offset(size: u32, target: u32) -> u32 {
    let diff = size.saturating_sub(target);
    let half = diff / 2;
    if diff % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    /// A scratch directory removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("advtrain-folder-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        /// `rel`'s path, its parent directories created.
        fn path(&self, rel: &str) -> PathBuf {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            path
        }

        fn grey(&self, rel: &str, side: u32, value: u8) {
            GrayImage::from_pixel(side, side, Luma([value]))
                .save(self.path(rel))
                .unwrap();
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn err_text(r: Result<Dataset, DataError>) -> String {
        r.expect_err("expected an error").to_string()
    }

    #[test]
    fn classes_and_files_are_sorted_and_odd_entries_skipped() {
        let s = Scratch::new("order");
        s.grey("test/b_dog/2.png", 4, 20);
        s.grey("test/b_dog/10.PNG", 4, 10);
        s.grey("test/b_dog/1.png", 4, 0);
        s.grey("test/a_cat/x.png", 4, 255);
        s.grey("test/c_zebra/z.bmp", 4, 40);
        s.grey("test/.hidden/h.png", 4, 1);
        s.grey("test/a_cat/.thumb.png", 4, 1);
        fs::write(s.path("test/a_cat/notes.txt"), "not an image").unwrap();
        fs::write(s.path("test/README"), "a file among the classes").unwrap();
        let d = load_image_folder(&s.0, Split::Test, (1, 4, 4)).unwrap();
        assert_eq!(d.class_names, vec!["a_cat", "b_dog", "c_zebra"]);
        assert_eq!(d.labels, vec![0, 1, 1, 1, 2]);
        let firsts: Vec<u8> = (0..d.len())
            .map(|i| (d.image(i)[0] * 255.0).round() as u8)
            .collect();
        assert_eq!(
            firsts,
            vec![255, 0, 10, 20, 40],
            "files must be in name order"
        );
    }

    #[test]
    fn landscape_image_is_resized_by_its_shorter_side_then_centre_cropped() {
        let s = Scratch::new("resize");
        // 40 wide, 20 high: red rises 6 per column, blue 10 per row, green is flat.
        let img = RgbImage::from_fn(40, 20, |x, y| Rgb([6 * x as u8, 100, 10 * y as u8]));
        img.save(s.path("test/a/wide.png")).unwrap();
        s.grey("test/b/other.png", 28, 0);
        let d = load_image_folder(&s.0, Split::Test, (3, 28, 28)).unwrap();
        let px = d.image(0);
        let at = |c: usize, row: usize, col: usize| px[c * 784 + row * 28 + col] * 255.0;
        // Resized to 56x28 (scale 1.4), columns 14..42 kept: crop column j samples source
        // x = (14 + j + 0.5) / 1.4 - 0.5 and row i samples y = (i + 0.5) / 1.4 - 0.5.
        for j in 0..28 {
            let expected = 6.0 * ((14.5 + j as f32) / 1.4 - 0.5);
            assert!(
                (at(0, 5, j) - expected).abs() <= 1.0,
                "col {j}: {} vs {expected}",
                at(0, 5, j)
            );
        }
        for i in 1..27 {
            let expected = 10.0 * ((i as f32 + 0.5) / 1.4 - 0.5);
            assert!(
                (at(2, i, 3) - expected).abs() <= 1.0,
                "row {i}: {} vs {expected}",
                at(2, i, 3)
            );
        }
        assert!((0..784).all(|p| (px[784 + p] * 255.0 - 100.0).abs() < 0.5));
    }

    #[test]
    fn colour_is_converted_to_grey_or_kept_per_channel_count() {
        let s = Scratch::new("channels");
        RgbImage::from_pixel(8, 8, Rgb([200, 100, 50]))
            .save(s.path("test/colour/c.png"))
            .unwrap();
        RgbImage::from_pixel(8, 8, Rgb([200, 100, 50]))
            .save(s.path("test/colour/d.jpg"))
            .unwrap();
        s.grey("test/grey/g.png", 8, 77);
        let grey = load_image_folder(&s.0, Split::Test, (1, 8, 8)).unwrap();
        let luma = (19595 * 200 + 38470 * 100 + 7471 * 50 + 0x8000) >> 16;
        assert_eq!((grey.image(0)[0] * 255.0).round() as u32, luma);
        assert!(
            ((grey.image(1)[0] * 255.0) - luma as f32).abs() <= 3.0,
            "JPEG is lossy"
        );
        assert_eq!((grey.image(2)[0] * 255.0).round(), 77.0, "grey stays exact");
        let rgb = load_image_folder(&s.0, Split::Test, (3, 8, 8)).unwrap();
        assert_eq!(rgb.channels, 3);
        let firsts = |i: usize| -> Vec<f32> {
            (0..3)
                .map(|c| (rgb.image(i)[c * 64] * 255.0).round())
                .collect()
        };
        assert_eq!(firsts(0), vec![200.0, 100.0, 50.0]);
        assert!(firsts(1)
            .iter()
            .zip([200.0, 100.0, 50.0])
            .all(|(a, b)| (a - b).abs() <= 4.0));
        assert_eq!(firsts(2), vec![77.0, 77.0, 77.0]);
        let e = err_text(load_image_folder(&s.0, Split::Test, (4, 8, 8)));
        assert!(
            e.contains("4 channels") && e.contains("only 1 (grey) or 3 (RGB)"),
            "{e}"
        );
    }

    #[test]
    fn corrupt_image_is_an_error_naming_the_file() {
        let s = Scratch::new("corrupt");
        s.grey("test/a/ok.png", 4, 0);
        s.grey("test/b/ok.png", 4, 0);
        fs::write(s.path("test/b/broken.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
        let e = err_text(load_image_folder(&s.0, Split::Test, (1, 4, 4)));
        assert!(e.contains("broken.png: cannot decode the image"), "{e}");
    }

    #[test]
    fn class_without_images_is_an_error() {
        let s = Scratch::new("empty");
        s.grey("train/a/ok.png", 4, 0);
        fs::write(s.path("train/b/notes.txt"), "no images here").unwrap();
        let e = err_text(load_image_folder(&s.0, Split::Train, (1, 4, 4)));
        assert!(
            e.contains("class 'b' has no images (png, jpg, jpeg, bmp, webp)"),
            "{e}"
        );
        assert!(e.contains("1 other entries skipped"), "{e}");
    }

    #[test]
    fn flat_layout_is_the_test_split_only() {
        let s = Scratch::new("flat");
        s.grey("a/1.png", 4, 0);
        s.grey("b/1.png", 4, 255);
        let d = load_image_folder(&s.0, Split::Test, (1, 4, 4)).unwrap();
        assert_eq!(d.labels, vec![0, 1]);
        let e = err_text(load_image_folder(&s.0, Split::Train, (1, 4, 4)));
        assert!(e.contains("read as the test split only"), "{e}");
    }

    #[test]
    fn layout_problems_are_reported() {
        let s = Scratch::new("layout");
        let e = err_text(load_image_folder(
            &s.0.join("absent"),
            Split::Test,
            (1, 4, 4),
        ));
        assert!(e.contains("absent: not found"), "{e}");
        s.grey("train/a/1.png", 4, 0);
        let e = err_text(load_image_folder(&s.0, Split::Test, (1, 4, 4)));
        assert!(e.contains("has a train/ sub-directory but no test/"), "{e}");
        let e = err_text(load_image_folder(&s.0, Split::Train, (1, 4, 4)));
        assert!(e.contains("only one class directory (a)"), "{e}");
        for c in 0..257 {
            fs::create_dir_all(s.0.join(format!("test/c{c:03}"))).unwrap();
        }
        let e = err_text(load_image_folder(&s.0, Split::Test, (1, 4, 4)));
        assert!(e.contains("257 class directories: at most 256"), "{e}");
    }

    #[test]
    fn cover_size_and_crop_offset_follow_torchvision() {
        assert_eq!(cover_size(40, 20, 28, 28), (56, 28));
        assert_eq!(cover_size(20, 40, 28, 28), (28, 56));
        assert_eq!(cover_size(33, 32, 32, 32), (33, 32));
        assert_eq!(cover_size(100, 100, 20, 10), (20, 20));
        assert_eq!(cover_size(10, 7, 3, 3), (4, 3));
        assert_eq!(crop_offset(56, 28), 14);
        assert_eq!(crop_offset(29, 28), 0, "round(0.5) is 0");
        assert_eq!(crop_offset(31, 28), 2, "round(1.5) is 2");
        assert_eq!(crop_offset(33, 28), 2, "round(2.5) is 2");
    }
}
