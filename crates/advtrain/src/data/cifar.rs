//! The CIFAR-10 binary format: fixed-size records of one label byte followed by a 32×32 RGB
//! image stored channel-major (1024 red, 1024 green, 1024 blue bytes, each row-major), which
//! is already the C×H×W layout [`Dataset`] uses.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Split};

/// Colour channels of a CIFAR-10 image (RGB).
pub const CHANNELS: usize = 3;
/// Height and width of a CIFAR-10 image, in pixels.
pub const SIDE: usize = 32;
/// Bytes of one image.
pub const IMAGE_BYTES: usize = CHANNELS * SIDE * SIDE;
/// Bytes of one record: the label, then the image.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Sub-directory the official archive extracts to; accepted so users can point `--data` at
/// the extraction directory.
pub const ARCHIVE_DIR: &str = "cifar-10-batches-bin";

const NUM_CLASSES: usize = super::FORMAT_CLASSES;

/// The batch files making up a split, in the order they are concatenated.
pub fn file_names(split: Split) -> Vec<&'static str> {
    match split {
        Split::Train => vec![
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
        ],
        Split::Test => vec!["test_batch.bin"],
    }
}

/// Read one batch file: `(labels, images)` with images as C×H×W bytes per record.
pub fn read_cifar_batch(path: &Path) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::reading(path, e))?;
    parse_cifar_batch(&bytes, path)
}

/// [`read_cifar_batch`] on a batch file's bytes already in memory; `path` names them in
/// errors. What the fuzz targets call: the same checks, no file system.
pub fn parse_cifar_batch(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(DataError::invalid(
            path,
            format!(
                "size {} bytes is not a positive multiple of the {RECORD_BYTES}-byte CIFAR-10 record \
                 (is this the binary version of CIFAR-10?)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / RECORD_BYTES;
    let mut labels = Vec::with_capacity(n);
    let mut images = Vec::with_capacity(n * IMAGE_BYTES);
    for (index, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0];
        if usize::from(label) >= NUM_CLASSES {
            return Err(DataError::BadLabel {
                path: path.to_path_buf(),
                index,
                label: label.into(),
                num_classes: NUM_CLASSES,
            });
        }
        labels.push(label);
        images.extend_from_slice(&record[1..]);
    }
    Ok((labels, images))
}

/// The directory holding the batch files: `dir` itself, or the archive's sub-directory if the
/// files are not directly in `dir`.
fn batch_dir(dir: &Path, first: &str) -> PathBuf {
    let nested = dir.join(ARCHIVE_DIR);
    if !dir.join(first).exists() && nested.is_dir() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// Load one split of CIFAR-10 from `dir` (or `dir/cifar-10-batches-bin`). The train split
/// needs all five batches: silently training on fewer would make results incomparable.
/// `class_names` must have 10 entries, or none to name the classes by index.
pub fn load_cifar_split(
    dir: &Path,
    split: Split,
    class_names: Vec<String>,
) -> Result<Dataset, DataError> {
    let names = file_names(split);
    let class_names = super::ten_class_names(dir, class_names)?;
    if !dir.is_dir() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            hint: "expected a directory holding the CIFAR-10 binary batches".to_string(),
        });
    }
    let base = batch_dir(dir, names[0]);
    let paths: Vec<PathBuf> = names.iter().map(|n| base.join(n)).collect();
    if let Some(absent) = paths.iter().find(|p| !p.exists()) {
        return Err(DataError::Missing {
            path: absent.clone(),
            hint: format!(
                "the CIFAR-10 {split} split needs {}; extract cifar-10-binary.tar.gz into the --data directory",
                names.join(", ")
            ),
        });
    }
    let mut labels = Vec::new();
    let mut images = Vec::new();
    for path in &paths {
        let (l, im) = read_cifar_batch(path)?;
        labels.extend_from_slice(&l);
        images.extend(im.iter().map(|&b| f32::from(b) / 255.0));
    }
    Ok(Dataset {
        images,
        labels,
        channels: CHANNELS,
        height: SIDE,
        width: SIDE,
        num_classes: NUM_CLASSES,
        class_names,
    })
}

/// Write a batch file (for tests): `images_chw` holds `labels.len()` images of 3×32×32 bytes.
pub fn write_cifar_batch(path: &Path, labels: &[u8], images_chw: &[u8]) -> io::Result<()> {
    if images_chw.len() != labels.len() * IMAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} image bytes do not make {} CIFAR-10 images of {IMAGE_BYTES} bytes",
                images_chw.len(),
                labels.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(labels.len() * RECORD_BYTES);
    for (label, image) in labels.iter().zip(images_chw.chunks_exact(IMAGE_BYTES)) {
        bytes.push(*label);
        bytes.extend_from_slice(image);
    }
    let mut file = io::BufWriter::new(fs::File::create(path)?);
    file.write_all(&bytes)?;
    file.flush()
}
