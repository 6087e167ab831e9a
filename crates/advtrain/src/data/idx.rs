//! The IDX format of MNIST and Fashion-MNIST: a big-endian header (magic, then one `u32` per
//! dimension) followed by unsigned bytes. Files may be gzipped or raw.
//!
//! Files are streamed and the body is read with a limit taken from the header, so a corrupt
//! header cannot make us allocate gigabytes: memory grows only with the bytes really there.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::{DataError, Dataset, Split};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

const IMAGES_HEADER: usize = 16;
const LABELS_HEADER: usize = 8;

/// The `(images, labels)` base file names of a split, without the optional `.gz`.
pub fn file_names(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
}

pub(crate) fn file_names_list() -> String {
    let (a, b) = file_names(Split::Train);
    let (c, d) = file_names(Split::Test);
    format!("{a}, {b}, {c} and {d}")
}

/// `dir/base.gz` if it exists, else `dir/base`: the `.gz` is what distributions ship.
fn find_file(dir: &Path, base: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{base}.gz"));
    if gz.exists() {
        return Ok(gz);
    }
    let raw = dir.join(base);
    if raw.exists() {
        return Ok(raw);
    }
    Err(DataError::Missing {
        path: raw,
        hint: format!("neither {base}.gz nor {base} is in {}", dir.display()),
    })
}

/// A decompressing reader over the file, chosen by the gzip magic bytes rather than the file
/// name, so a mis-named file still reads.
struct IdxReader<'a> {
    path: PathBuf,
    gzip: bool,
    inner: Box<dyn Read + 'a>,
}

/// Whether `head` starts with the gzip magic bytes.
fn is_gzip(head: &[u8]) -> bool {
    head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b
}

impl<'a> IdxReader<'a> {
    fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::reading(path, e))?;
        let mut buf = BufReader::new(file);
        let head = buf.fill_buf().map_err(|e| DataError::io(path, e))?;
        let gzip = is_gzip(head);
        Ok(Self::new(path, gzip, buf))
    }

    /// A reader over bytes already in memory (`path` names them in errors).
    fn from_bytes(bytes: &'a [u8], path: &Path) -> Self {
        Self::new(path, is_gzip(bytes), bytes)
    }

    fn new(path: &Path, gzip: bool, buf: impl Read + 'a) -> Self {
        let inner: Box<dyn Read + 'a> = if gzip {
            Box::new(MultiGzDecoder::new(buf))
        } else {
            Box::new(buf)
        };
        IdxReader {
            path: path.to_path_buf(),
            gzip,
            inner,
        }
    }

    /// Decompression failures are reported as such; anything else is a plain I/O error.
    fn error(&self, e: io::Error) -> DataError {
        let corrupt = matches!(
            e.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        );
        if self.gzip && corrupt {
            DataError::Gzip {
                path: self.path.clone(),
                message: e.to_string(),
            }
        } else {
            DataError::io(&self.path, e)
        }
    }

    /// Fill `buf` as far as the data goes; returns the number of bytes read.
    fn read_up_to(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(got)
    }

    /// Read the header (magic + `dims` big-endian u32s) and check the magic.
    fn header(&mut self, magic: u32, dims: usize) -> Result<Vec<usize>, DataError> {
        let len = 4 * (dims + 1);
        let mut buf = vec![0u8; len];
        let got = self.read_up_to(&mut buf)?;
        let word = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        if got >= 4 && word(0) != magic {
            return Err(DataError::BadMagic {
                path: self.path.clone(),
                found: word(0),
                expected: magic,
            });
        }
        if got < len {
            return Err(DataError::Truncated {
                path: self.path.clone(),
                expected: len,
                got,
            });
        }
        Ok((1..=dims).map(|d| word(4 * d) as usize).collect())
    }

    /// Read exactly `body` bytes after a `header`-byte header and insist the file ends there.
    fn body(&mut self, header: usize, body: usize, what: &str) -> Result<Vec<u8>, DataError> {
        let mut data = Vec::new();
        (&mut self.inner)
            .take(body as u64)
            .read_to_end(&mut data)
            .map_err(|e| self.error(e))?;
        if data.len() < body {
            return Err(DataError::Truncated {
                path: self.path.clone(),
                expected: header + body,
                got: header + data.len(),
            });
        }
        let trailing = io::copy(&mut self.inner, &mut io::sink()).map_err(|e| self.error(e))?;
        if trailing > 0 {
            return Err(DataError::invalid(
                &self.path,
                format!("trailing {trailing} bytes after the {what} the header announces"),
            ));
        }
        Ok(data)
    }
}

/// Read an IDX images file: `(n, rows, cols, pixels)` with `pixels.len() == n * rows * cols`.
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    images_from(IdxReader::open(path)?)
}

/// [`read_idx_images`] on a file's bytes (raw or gzipped) already in memory; `path` names
/// them in errors. What the fuzz targets call: the same checks, no file system.
pub fn parse_idx_images(
    bytes: &[u8],
    path: &Path,
) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    images_from(IdxReader::from_bytes(bytes, path))
}

/// The images of an opened IDX stream.
fn images_from(mut r: IdxReader<'_>) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let path = r.path.clone();
    let path = path.as_path();
    let dims = r.header(IMAGES_MAGIC, 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    if n == 0 || rows == 0 || cols == 0 {
        return Err(DataError::invalid(
            path,
            format!("header announces {n} images of {rows}x{cols}: nothing to train on"),
        ));
    }
    let body = n
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .filter(|v| v.checked_add(IMAGES_HEADER).is_some())
        .ok_or_else(|| {
            DataError::invalid(
                path,
                format!("header announces an impossible size: {n} images of {rows}x{cols}"),
            )
        })?;
    let pixels = r.body(IMAGES_HEADER, body, &format!("{n} images of {rows}x{cols}"))?;
    Ok((n, rows, cols, pixels))
}

/// Read an IDX labels file. Label values are not range-checked here: that needs the number
/// of classes, which [`load_idx_split`] knows.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    labels_from(IdxReader::open(path)?)
}

/// [`read_idx_labels`] on bytes already in memory; `path` names them in errors.
pub fn parse_idx_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    labels_from(IdxReader::from_bytes(bytes, path))
}

/// The labels of an opened IDX stream.
fn labels_from(mut r: IdxReader<'_>) -> Result<Vec<u8>, DataError> {
    let n = r.header(LABELS_MAGIC, 1)?[0];
    if n == 0 {
        return Err(DataError::invalid(&r.path, "header announces 0 labels"));
    }
    r.body(LABELS_HEADER, n, &format!("{n} labels"))
}

/// Load one split of an MNIST-style data set from `dir`. `class_names` must have 10 entries,
/// or none to name the classes by index.
pub fn load_idx_split(
    dir: &Path,
    split: Split,
    class_names: Vec<String>,
) -> Result<Dataset, DataError> {
    let class_names = super::ten_class_names(dir, class_names)?;
    if !dir.is_dir() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            hint: format!(
                "expected a directory holding {} (optionally .gz)",
                file_names_list()
            ),
        });
    }
    let (images_name, labels_name) = file_names(split);
    let images_path = find_file(dir, images_name)?;
    let labels_path = find_file(dir, labels_name)?;
    let (n, rows, cols, pixels) = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != n {
        return Err(DataError::CountMismatch {
            images: images_path,
            n_images: n,
            labels: labels_path,
            n_labels: labels.len(),
        });
    }
    let num_classes = class_names.len();
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= num_classes)
    {
        return Err(DataError::BadLabel {
            path: labels_path,
            index,
            label: label.into(),
            num_classes,
        });
    }
    Ok(Dataset {
        images: pixels.iter().map(|&b| f32::from(b) / 255.0).collect(),
        labels,
        channels: 1,
        height: rows,
        width: cols,
        num_classes,
        class_names,
    })
}

fn write_file(path: &Path, bytes: &[u8], gzip: bool) -> io::Result<()> {
    let file = io::BufWriter::new(File::create(path)?);
    if gzip {
        let mut enc = GzEncoder::new(file, Compression::fast());
        enc.write_all(bytes)?;
        enc.finish()?.flush()
    } else {
        let mut file = file;
        file.write_all(bytes)?;
        file.flush()
    }
}

fn to_u32(v: usize, what: &str) -> io::Result<u32> {
    u32::try_from(v).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} {v} does not fit an IDX header"),
        )
    })
}

/// Write an IDX images file (gzipped if `gzip`), for tests and for exporting data.
pub fn write_idx_images(
    path: &Path,
    n: usize,
    rows: usize,
    cols: usize,
    pixels: &[u8],
    gzip: bool,
) -> io::Result<()> {
    if n.checked_mul(rows).and_then(|v| v.checked_mul(cols)) != Some(pixels.len()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} pixels do not make {n} images of {rows}x{cols}",
                pixels.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(IMAGES_HEADER + pixels.len());
    bytes.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    for (v, what) in [
        (n, "image count"),
        (rows, "row count"),
        (cols, "column count"),
    ] {
        bytes.extend_from_slice(&to_u32(v, what)?.to_be_bytes());
    }
    bytes.extend_from_slice(pixels);
    write_file(path, &bytes, gzip)
}

/// Write an IDX labels file (gzipped if `gzip`).
pub fn write_idx_labels(path: &Path, labels: &[u8], gzip: bool) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(LABELS_HEADER + labels.len());
    bytes.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    bytes.extend_from_slice(&to_u32(labels.len(), "label count")?.to_be_bytes());
    bytes.extend_from_slice(labels);
    write_file(path, &bytes, gzip)
}
