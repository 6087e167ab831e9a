//! NumPy arrays: `.npy` files and `.npz` archives of them (what `numpy.save`, `numpy.savez`
//! and `numpy.savez_compressed` write), so data prepared in Python can be used without a
//! conversion step.
//!
//! A split is an image array `x` and a label array `y`:
//!
//! * `x` is N×C×H×W, N×H×W×C or N×H×W (grey). A rank-4 array is channels-last when axis 3 is
//!   a channel count (1 or 3) and axis 1 is not; otherwise it is channels-first, so an
//!   ambiguous shape such as N×3×3×3 is read as N×C×H×W. Pixels are `uint8` (divided by 255)
//!   or `float32`/`float64` already in `[0, 1]`.
//! * `y` is 1-D (or N×1, as Keras ships CIFAR-10) of any integer type, values in `0..=255`.
//!
//! Both byte orders are read; Fortran-order arrays are transposed to C order on reading.
//! The header is a Python dict literal, parsed here by a small parser of the subset NumPy
//! writes (strings, booleans, integers and tuples). Reading is streamed with a limit taken
//! from the header, so a corrupt header cannot make us allocate more than the data present.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use zip::ZipArchive;

use super::{DataError, Dataset, Split};

/// The six bytes every `.npy` file starts with.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Optional file of class names, one per line, next to the arrays.
pub const CLASSES_FILE: &str = "classes.txt";

/// The files a split can come from, for messages: `test.npz`, or `x_test.npy` + `y_test.npy`.
pub fn file_names(split: Split) -> (String, String, String) {
    (
        format!("{split}.npz"),
        format!("x_{split}.npy"),
        format!("y_{split}.npy"),
    )
}

/// Load one split from `dir`: `DIR/<split>.npz` if it exists, else `DIR/x_<split>.npy` and
/// `DIR/y_<split>.npy`. Class names come from `DIR/classes.txt` if present (which then fixes
/// the number of classes), else they are the label values `"0"..` up to the largest label.
pub fn load_npy_split(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let (npz, x_name, y_name) = file_names(split);
    if dir.join(&npz).is_file() {
        return load_npz(&dir.join(npz), split);
    }
    let (x, y) = (dir.join(&x_name), dir.join(&y_name));
    match (x.is_file(), y.is_file()) {
        (true, true) => load_npy_pair(&x, &y),
        (true, false) => Err(DataError::Missing {
            path: y,
            hint: format!("{x_name} is there but not its labels {y_name}"),
        }),
        (false, true) => Err(DataError::Missing {
            path: x,
            hint: format!("{y_name} is there but not its images {x_name}"),
        }),
        (false, false) => Err(DataError::Missing {
            path: dir.join(npz.as_str()),
            hint: format!(
                "looked for {npz}, or {x_name} and {y_name}, in {}",
                dir.display()
            ),
        }),
    }
}

/// Load images from the `.npy` file `x_path` and labels from `y_path` (see the module
/// documentation for the accepted shapes and dtypes). A `classes.txt` next to `x_path` names
/// the classes.
pub fn load_npy_pair(x_path: &Path, y_path: &Path) -> Result<Dataset, DataError> {
    let x = read_npy(open(x_path)?, x_path.to_path_buf(), Role::Images)?;
    let y = read_npy(open(y_path)?, y_path.to_path_buf(), Role::Labels)?;
    assemble(x, y, parent(x_path))
}

/// [`load_npy_pair`] on the two files' bytes already in memory (the paths name them in
/// errors, and a `classes.txt` next to `x_path` still names the classes). What the fuzz
/// targets call: the same checks as on files.
pub fn parse_npy_pair(
    x_bytes: &[u8],
    x_path: &Path,
    y_bytes: &[u8],
    y_path: &Path,
) -> Result<Dataset, DataError> {
    let x = read_npy(x_bytes, x_path.to_path_buf(), Role::Images)?;
    let y = read_npy(y_bytes, y_path.to_path_buf(), Role::Labels)?;
    assemble(x, y, parent(x_path))
}

/// Load a split from an `.npz` archive holding the arrays `x` and `y`, `x_<split>` and
/// `y_<split>`, or `images` and `labels` (the first pair whose images are present). A
/// `classes.txt` next to the archive names the classes.
pub fn load_npz(path: &Path, split: Split) -> Result<Dataset, DataError> {
    npz_from(BufReader::new(open(path)?), path, split)
}

/// [`load_npz`] on an archive's bytes already in memory; `path` names them in errors.
pub fn parse_npz(bytes: &[u8], path: &Path, split: Split) -> Result<Dataset, DataError> {
    npz_from(io::Cursor::new(bytes), path, split)
}

/// The split held by the `.npz` archive read by `reader`.
fn npz_from<R: Read + io::Seek>(
    reader: R,
    path: &Path,
    split: Split,
) -> Result<Dataset, DataError> {
    let mut zip = ZipArchive::new(reader)
        .map_err(|e| DataError::invalid(path, format!("not a readable .npz (zip) archive: {e}")))?;
    let (x_name, y_name) = pick_members(&zip, path, split)?;
    let x = read_member(&mut zip, path, &x_name, Role::Images)?;
    let y = read_member(&mut zip, path, &y_name, Role::Labels)?;
    assemble(x, y, parent(path))
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

fn open(path: &Path) -> Result<File, DataError> {
    File::open(path).map_err(|e| DataError::reading(path, e))
}

/// The `(images, labels)` member names of `zip` to read, without `.npy`.
fn pick_members<R: Read + io::Seek>(
    zip: &ZipArchive<R>,
    path: &Path,
    split: Split,
) -> Result<(String, String), DataError> {
    let pairs = [
        ("x".to_string(), "y".to_string()),
        (format!("x_{split}"), format!("y_{split}")),
        ("images".to_string(), "labels".to_string()),
    ];
    let has = |name: &str| zip.file_names().any(|f| f == format!("{name}.npy"));
    let Some((x, y)) = pairs.into_iter().find(|(x, _)| has(x)) else {
        let mut held: Vec<&str> = zip.file_names().collect();
        held.sort_unstable();
        return Err(DataError::invalid(
            path,
            format!(
                "no image array: expected x, x_{split} or images, but the archive holds [{}]",
                held.join(", ")
            ),
        ));
    };
    if !has(&y) {
        return Err(DataError::invalid(
            path,
            format!("holds the images {x} but not the labels {y}"),
        ));
    }
    Ok((x, y))
}

fn read_member<R: Read + io::Seek>(
    zip: &mut ZipArchive<R>,
    path: &Path,
    name: &str,
    role: Role,
) -> Result<NpyArray, DataError> {
    let label = PathBuf::from(format!("{} (array '{name}')", path.display()));
    let entry = zip
        .by_name(&format!("{name}.npy"))
        .map_err(|e| DataError::invalid(&label, format!("cannot read from the archive: {e}")))?;
    read_npy(entry, label, role)
}

/// What an array is for, which decides the dtypes it may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Images,
    Labels,
}

/// The numeric kinds this reader decodes; anything else keeps its type character for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    UInt,
    Float,
    Other(char),
}

/// A simple (non-structured) NumPy dtype such as `'<f4'`.
#[derive(Clone, Debug)]
struct Dtype {
    descr: String,
    kind: Kind,
    /// Bytes per element (0 when the descr has no size).
    size: usize,
    big_endian: bool,
}

impl Dtype {
    fn parse(descr: &str) -> Dtype {
        let (order, rest) = match descr.chars().next() {
            Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
            _ => ('=', descr),
        };
        let mut chars = rest.chars();
        let kind_char = chars.next().unwrap_or('?');
        let size = chars.as_str().parse().unwrap_or(0);
        let kind = match (kind_char, size) {
            ('i', 1 | 2 | 4 | 8) => Kind::Int,
            ('u', 1 | 2 | 4 | 8) => Kind::UInt,
            ('f', 4 | 8) => Kind::Float,
            (c, _) => Kind::Other(c),
        };
        let big_endian = order == '>' || (order == '=' && cfg!(target_endian = "big"));
        Dtype {
            descr: descr.to_string(),
            kind,
            size,
            big_endian,
        }
    }

    /// NumPy's name for the dtype, with the descr: `float16 ('<f2')`.
    fn name(&self) -> String {
        // saturating: a descr like '<f4555555555555555555' parses to a huge size.
        let bits = self.size.saturating_mul(8);
        let base = match self.kind {
            Kind::Int | Kind::Other('i') => format!("int{bits}"),
            Kind::UInt | Kind::Other('u') => format!("uint{bits}"),
            Kind::Float | Kind::Other('f') => format!("float{bits}"),
            Kind::Other('c') => format!("complex{bits}"),
            Kind::Other('b') => "bool".to_string(),
            Kind::Other('U') => "unicode string".to_string(),
            Kind::Other('S' | 'a') => "byte string".to_string(),
            Kind::Other('O') => "Python object".to_string(),
            Kind::Other('M' | 'm') => "datetime".to_string(),
            Kind::Other(_) => "unknown".to_string(),
        };
        format!("{base} ('{}')", self.descr)
    }

    /// Whether an array of this dtype can serve as `role`.
    fn fits(&self, role: Role) -> bool {
        match role {
            Role::Images => matches!((self.kind, self.size), (Kind::UInt, 1) | (Kind::Float, _)),
            Role::Labels => matches!(self.kind, Kind::Int | Kind::UInt),
        }
    }
}

/// The parsed header: what the body holds.
#[derive(Debug)]
struct Header {
    dtype: Dtype,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// One array read into memory, in C order.
struct NpyArray {
    /// Where the array came from, for messages: the file, or `archive.npz (array 'x')`.
    path: PathBuf,
    dtype: Dtype,
    shape: Vec<usize>,
    /// The elements' bytes, C order, in the file's byte order.
    data: Vec<u8>,
}

impl NpyArray {
    /// The elements as `f64`; only for float arrays.
    fn floats(&self) -> impl Iterator<Item = f64> + '_ {
        let (size, big) = (self.dtype.size, self.dtype.big_endian);
        self.data.chunks_exact(size).map(move |c| {
            let le = little_endian::<8>(c, big);
            match size {
                4 => f64::from(f32::from_le_bytes([le[0], le[1], le[2], le[3]])),
                _ => f64::from_le_bytes(le),
            }
        })
    }

    /// The elements as `i128`; only for integer arrays.
    fn ints(&self) -> impl Iterator<Item = i128> + '_ {
        let (size, big) = (self.dtype.size, self.dtype.big_endian);
        let signed = self.dtype.kind == Kind::Int;
        self.data.chunks_exact(size).map(move |c| {
            let v = i128::from_le_bytes(little_endian::<16>(c, big));
            let shift = 128 - 8 * size as u32;
            if signed {
                (v << shift) >> shift
            } else {
                v
            }
        })
    }
}

/// `c` as little-endian bytes, zero-padded to `N`.
fn little_endian<const N: usize>(c: &[u8], big: bool) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, &b) in c.iter().enumerate() {
        out[if big { c.len() - 1 - i } else { i }] = b;
    }
    out
}

/// Python's text for a shape tuple: `(3,)`, `(2, 28, 28)`.
fn shape_text(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// Python's index of element `flat` of a C-order array: `[0, 2, 1]`.
fn index_text(mut flat: usize, shape: &[usize]) -> String {
    let mut index = vec![0; shape.len()];
    for (slot, &d) in index.iter_mut().zip(shape).rev() {
        *slot = flat % d.max(1);
        flat /= d.max(1);
    }
    let parts: Vec<String> = index.iter().map(|i| i.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Fill `buf` from `r` as far as the data goes; returns the number of bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize, DataError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
    Ok(got)
}

/// Read exactly `buf.len()` bytes, which start at byte `offset` of the file.
fn read_exact_at(
    r: &mut impl Read,
    buf: &mut [u8],
    offset: usize,
    path: &Path,
) -> Result<(), DataError> {
    let got = read_up_to(r, buf, path)?;
    if got < buf.len() {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: offset + buf.len(),
            got: offset + got,
        });
    }
    Ok(())
}

/// Read exactly `len` bytes starting at byte `offset`, allocating only as the bytes arrive:
/// a header length field claiming 4 GiB in a small file is a truncation, not an allocation.
fn read_limited(
    r: &mut impl Read,
    len: usize,
    offset: usize,
    path: &Path,
) -> Result<Vec<u8>, DataError> {
    let mut data = Vec::new();
    r.take(len as u64)
        .read_to_end(&mut data)
        .map_err(|e| DataError::io(path, e))?;
    if data.len() < len {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: offset + len,
            got: offset + data.len(),
        });
    }
    Ok(data)
}

/// Read the magic, version and header; returns the header and its total size in bytes.
fn read_header(r: &mut impl Read, path: &Path) -> Result<(Header, usize), DataError> {
    let mut pre = [0u8; 8];
    let got = read_up_to(r, &mut pre, path)?;
    if got < MAGIC.len() || pre[..6] != MAGIC[..] {
        return Err(DataError::invalid(
            path,
            format!(
                "not a NumPy .npy array: bad magic, it starts with b\"{}\" \
                 instead of b\"\\x93NUMPY\"",
                pre[..got.min(6)].escape_ascii()
            ),
        ));
    }
    read_exact_at(r, &mut pre[got..], got, path)?;
    let len_bytes = match pre[6] {
        1 => 2,
        2 | 3 => 4,
        v => {
            return Err(DataError::invalid(
                path,
                format!(
                    ".npy format version {v}.{} is not supported (1 to 3 are)",
                    pre[7]
                ),
            ))
        }
    };
    let mut len = [0u8; 4];
    read_exact_at(r, &mut len[..len_bytes], 8, path)?;
    let header_len = u32::from_le_bytes(len) as usize;
    let text = read_limited(r, header_len, 8 + len_bytes, path)?;
    let header = parse_header(&text).map_err(|e| {
        DataError::invalid(
            path,
            format!(
                "malformed .npy header ({e}): {:?}",
                String::from_utf8_lossy(&text).trim_end()
            ),
        )
    })?;
    Ok((header, 8 + len_bytes + header_len))
}

/// Read one `.npy` stream for `role`, checking its dtype before reading the body and that the
/// body is exactly as long as the header says.
fn read_npy(mut r: impl Read, path: PathBuf, role: Role) -> Result<NpyArray, DataError> {
    let (header, header_len) = read_header(&mut r, &path)?;
    check_dtype(&header.dtype, role, &path)?;
    let body = header
        .shape
        .iter()
        .try_fold(header.dtype.size, |acc, &d| acc.checked_mul(d))
        .filter(|b| b.checked_add(header_len).is_some())
        .ok_or_else(|| {
            DataError::invalid(
                &path,
                format!("shape {} is impossibly large", shape_text(&header.shape)),
            )
        })?;
    let mut data = read_limited(&mut r, body, header_len, &path)?;
    let trailing = io::copy(&mut r, &mut io::sink()).map_err(|e| DataError::io(&path, e))?;
    if trailing > 0 {
        return Err(DataError::invalid(
            &path,
            format!(
                "{trailing} trailing bytes after the {} array the header announces",
                shape_text(&header.shape)
            ),
        ));
    }
    if header.fortran_order {
        data = fortran_to_c(data, &header.shape, header.dtype.size);
    }
    Ok(NpyArray {
        path,
        dtype: header.dtype,
        shape: header.shape,
        data,
    })
}

fn check_dtype(dtype: &Dtype, role: Role, path: &Path) -> Result<(), DataError> {
    if dtype.fits(role) {
        return Ok(());
    }
    let want = match role {
        Role::Images => "images must be uint8 (0-255), float32 or float64 (in [0, 1])",
        Role::Labels => "labels must be integers (int8..int64 or uint8..uint64)",
    };
    Err(DataError::invalid(
        path,
        format!("unsupported dtype {}: {want}", dtype.name()),
    ))
}

/// Reorder the elements of a Fortran-order (first axis fastest) array into C order.
fn fortran_to_c(data: Vec<u8>, shape: &[usize], size: usize) -> Vec<u8> {
    let rank = shape.len();
    if rank < 2 || size == 0 {
        return data;
    }
    let mut stride = vec![1usize; rank];
    for j in 1..rank {
        stride[j] = stride[j - 1] * shape[j - 1];
    }
    let (mut index, mut offset) = (vec![0usize; rank], 0usize);
    let mut out = Vec::with_capacity(data.len());
    for _ in 0..data.len() / size {
        out.extend_from_slice(&data[offset * size..(offset + 1) * size]);
        for j in (0..rank).rev() {
            index[j] += 1;
            offset += stride[j];
            if index[j] < shape[j] {
                break;
            }
            offset -= stride[j] * shape[j];
            index[j] = 0;
        }
    }
    out
}

/// A value of the Python literal subset `.npy` headers use.
#[derive(Debug, PartialEq)]
enum PyValue {
    Str(String),
    Bool(bool),
    Int(usize),
    Tuple(Vec<PyValue>),
}

/// A recursive-descent parser of a `.npy` header: one dict of string keys.
struct HeaderParser<'a> {
    s: &'a [u8],
    pos: usize,
    /// Tuples open around the current position: bounded by [`MAX_TUPLE_DEPTH`] so that a
    /// header of nested parentheses cannot overflow the stack.
    depth: usize,
}

/// Deepest tuple nesting a header may have (NumPy writes one level: the shape).
const MAX_TUPLE_DEPTH: usize = 16;

impl HeaderParser<'_> {
    fn peek(&mut self) -> Option<u8> {
        while self
            .s
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_whitespace())
        {
            self.pos += 1;
        }
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.peek() {
            Some(found) if found == c => {
                self.pos += 1;
                Ok(())
            }
            Some(found) => Err(format!(
                "expected '{}' at byte {}, found '{}'",
                c as char, self.pos, found as char
            )),
            None => Err(format!("expected '{}', found the end", c as char)),
        }
    }

    /// `{'key': value, ...}` with an optional trailing comma.
    fn dict(&mut self) -> Result<Vec<(String, PyValue)>, String> {
        self.expect(b'{')?;
        let mut items = Vec::new();
        while self.peek() != Some(b'}') {
            let PyValue::Str(key) = self.value()? else {
                return Err("a dict key is not a string".to_string());
            };
            self.expect(b':')?;
            items.push((key, self.value()?));
            if self.peek() != Some(b'}') {
                self.expect(b',')?;
            }
        }
        self.expect(b'}')?;
        Ok(items)
    }

    fn value(&mut self) -> Result<PyValue, String> {
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => self.string(q),
            Some(b'(') => self.tuple(),
            Some(b'0'..=b'9') => self.int(),
            Some(b'T' | b'F') => self.boolean(),
            Some(b'[') => Err("a list value: structured (record) dtypes are not supported".into()),
            Some(c) => Err(format!("unexpected '{}' at byte {}", c as char, self.pos)),
            None => Err("unexpected end".to_string()),
        }
    }

    fn string(&mut self, quote: u8) -> Result<PyValue, String> {
        self.pos += 1;
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(|&c| c != quote) {
            self.pos += 1;
        }
        let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        self.expect(quote)?;
        Ok(PyValue::Str(text))
    }

    /// `(a, b)`, `(a,)` or `()`.
    fn tuple(&mut self) -> Result<PyValue, String> {
        self.expect(b'(')?;
        if self.depth >= MAX_TUPLE_DEPTH {
            return Err(format!(
                "tuples nested more than {MAX_TUPLE_DEPTH} deep at byte {}",
                self.pos
            ));
        }
        self.depth += 1;
        let mut items = Vec::new();
        while self.peek() != Some(b')') {
            items.push(self.value()?);
            if self.peek() != Some(b')') {
                self.expect(b',')?;
            }
        }
        self.expect(b')')?;
        self.depth -= 1;
        Ok(PyValue::Tuple(items))
    }

    /// A non-negative integer; Python 2's `L` suffix is accepted.
    fn int(&mut self) -> Result<PyValue, String> {
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        let digits = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        if self.s.get(self.pos) == Some(&b'L') {
            self.pos += 1;
        }
        digits
            .parse()
            .map(PyValue::Int)
            .map_err(|_| format!("integer {digits} is too large"))
    }

    fn boolean(&mut self) -> Result<PyValue, String> {
        for (word, value) in [("True", true), ("False", false)] {
            if self.s[self.pos..].starts_with(word.as_bytes()) {
                self.pos += word.len();
                return Ok(PyValue::Bool(value));
            }
        }
        Err(format!("unexpected word at byte {}", self.pos))
    }
}

/// Parse the header dict and pick out `descr`, `fortran_order` and `shape`.
fn parse_header(text: &[u8]) -> Result<Header, String> {
    let mut parser = HeaderParser {
        s: text,
        pos: 0,
        depth: 0,
    };
    let items = parser.dict()?;
    if let Some(c) = parser.peek() {
        return Err(format!("unexpected '{}' after the dict", c as char));
    }
    let get = |key: &str| {
        items
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("no '{key}' key"))
    };
    let PyValue::Str(descr) = get("descr")? else {
        return Err("'descr' is not a string: structured dtypes are not supported".to_string());
    };
    let &PyValue::Bool(fortran_order) = get("fortran_order")? else {
        return Err("'fortran_order' is not True or False".to_string());
    };
    let PyValue::Tuple(dims) = get("shape")? else {
        return Err("'shape' is not a tuple".to_string());
    };
    let shape = dims
        .iter()
        .map(|d| match d {
            PyValue::Int(n) => Ok(*n),
            _ => Err("'shape' holds a non-integer".to_string()),
        })
        .collect::<Result<_, _>>()?;
    Ok(Header {
        dtype: Dtype::parse(descr),
        fortran_order,
        shape,
    })
}

/// The image axes of `x`: count, channels, height, width, and whether channels come last.
#[derive(Debug)]
struct Layout {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    channels_last: bool,
}

/// Read the layout off `x`'s shape (see the module documentation for the rule).
fn layout(x: &NpyArray) -> Result<Layout, DataError> {
    let is_channels = |d: usize| d == 1 || d == 3;
    let shape = shape_text(&x.shape);
    let l = match x.shape[..] {
        [n, h, w] => Layout {
            n,
            c: 1,
            h,
            w,
            channels_last: false,
        },
        [n, h, w, c] if is_channels(c) && !is_channels(h) => Layout {
            n,
            c,
            h,
            w,
            channels_last: true,
        },
        [n, c, h, w] if is_channels(c) => Layout {
            n,
            c,
            h,
            w,
            channels_last: false,
        },
        [_, _, _, _] => {
            return Err(DataError::invalid(
                &x.path,
                format!(
                    "images of shape {shape}: neither axis 1 nor axis 3 is a channel count \
                     (1 or 3), so this is neither N×C×H×W nor N×H×W×C"
                ),
            ))
        }
        _ => {
            return Err(DataError::invalid(
                &x.path,
                format!(
                    "images of shape {shape} have rank {}: expected N×C×H×W, N×H×W×C \
                     or N×H×W (grey)",
                    x.shape.len()
                ),
            ))
        }
    };
    if l.n == 0 || l.c * l.h * l.w == 0 {
        return Err(DataError::invalid(
            &x.path,
            format!("images of shape {shape}: no pixels to use"),
        ));
    }
    Ok(l)
}

/// The labels of `y` as bytes, checking the shape (N or N×1) and the range.
fn labels(y: &NpyArray) -> Result<Vec<u8>, DataError> {
    if !matches!(y.shape[..], [_] | [_, 1]) {
        return Err(DataError::invalid(
            &y.path,
            format!(
                "labels of shape {}: expected one label per example, shape (N,) or (N, 1)",
                shape_text(&y.shape)
            ),
        ));
    }
    y.ints()
        .enumerate()
        .map(|(i, v)| {
            u8::try_from(v).map_err(|_| {
                let why = if v < 0 { "is negative" } else { "is above 255" };
                DataError::invalid(
                    &y.path,
                    format!("label y[{i}] = {v} {why}: labels must be class indices in 0..=255"),
                )
            })
        })
        .collect()
}

/// The pixels of `x` as `[0, 1]` floats in N×C×H×W order.
fn pixels(x: &NpyArray, l: &Layout) -> Result<Vec<f32>, DataError> {
    let values: Vec<f32> = if x.dtype.kind == Kind::UInt {
        x.data.iter().map(|&b| f32::from(b) / 255.0).collect()
    } else {
        check_unit_range(x)?;
        x.floats().map(|v| v as f32).collect()
    };
    Ok(if l.channels_last && l.c > 1 {
        channels_first(&values, l)
    } else {
        values
    })
}

/// Refuse float pixels outside `[0, 1]` (or NaN), naming the first one, with a hint when the
/// data looks like 0-255 values or normalised values.
fn check_unit_range(x: &NpyArray) -> Result<(), DataError> {
    let bad = x
        .floats()
        .enumerate()
        .find(|(_, v)| !(0.0..=1.0).contains(v));
    let Some((i, v)) = bad else {
        return Ok(());
    };
    let (min, max) = x
        .floats()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let hint = if v.is_nan() {
        String::new()
    } else if min < 0.0 {
        format!(" (the minimum is {min}: normalised data? store the pixels before normalisation)")
    } else if max <= 255.0 {
        format!(" (the maximum is {max}: 0-255 pixels? divide by 255 or store them as uint8)")
    } else {
        String::new()
    };
    Err(DataError::invalid(
        &x.path,
        format!(
            "pixel x{} = {v} is outside [0, 1]{hint}; float pixels must be in [0, 1]",
            index_text(i, &x.shape)
        ),
    ))
}

/// N×H×W×C to N×C×H×W.
fn channels_first(values: &[f32], l: &Layout) -> Vec<f32> {
    let (c, hw) = (l.c, l.h * l.w);
    let mut out = vec![0.0; values.len()];
    for (dst, src) in out
        .chunks_exact_mut(c * hw)
        .zip(values.chunks_exact(c * hw))
    {
        for (p, pixel) in src.chunks_exact(c).enumerate() {
            for (ch, &v) in pixel.iter().enumerate() {
                dst[ch * hw + p] = v;
            }
        }
    }
    out
}

/// Check `x` and `y` agree and build the data set, naming classes from `dir/classes.txt`.
fn assemble(x: NpyArray, y: NpyArray, dir: &Path) -> Result<Dataset, DataError> {
    let l = layout(&x)?;
    let labels = labels(&y)?;
    if labels.len() != l.n {
        return Err(DataError::CountMismatch {
            images: x.path,
            n_images: l.n,
            labels: y.path,
            n_labels: labels.len(),
        });
    }
    let names = class_names(dir, &labels, &y.path)?;
    let images = pixels(&x, &l)?;
    Dataset::new(images, labels, l.c, l.h, l.w, names.len(), names)
}

/// The class names: `dir/classes.txt` if it exists (enough lines for every label), else the
/// label values up to the largest. Fewer than two classes is refused.
fn class_names(dir: &Path, labels: &[u8], y_path: &Path) -> Result<Vec<String>, DataError> {
    let needed = labels.iter().max().map_or(0, |&m| usize::from(m) + 1);
    let file = dir.join(CLASSES_FILE);
    let names = match read_class_file(&file)? {
        Some(names) if names.len() < needed => {
            return Err(DataError::invalid(
                &file,
                format!(
                    "{} class names, but the labels go up to {} ({needed} classes)",
                    names.len(),
                    needed - 1
                ),
            ))
        }
        Some(names) => names,
        None => (0..needed).map(|c| c.to_string()).collect(),
    };
    if names.len() < 2 {
        return Err(DataError::invalid(
            y_path,
            format!(
                "only {} class: a classifier needs at least 2 (a {CLASSES_FILE} naming every \
                 class fixes the count when a split lacks some)",
                names.len()
            ),
        ));
    }
    Ok(names)
}

/// The lines of a class-name file, or `None` if there is none. Trailing blank lines are
/// ignored; a blank line among the names is an error.
fn read_class_file(path: &Path) -> Result<Option<Vec<String>>, DataError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DataError::io(path, e)),
    };
    let names: Vec<String> = text
        .trim_end()
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect();
    if let Some(i) = names.iter().position(|n| n.is_empty()) {
        return Err(DataError::invalid(path, format!("line {} is empty", i + 1)));
    }
    if names.len() > 256 {
        return Err(DataError::invalid(
            path,
            format!("{} class names: at most 256 are supported", names.len()),
        ));
    }
    Ok(Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::FileOptions;
    use zip::{CompressionMethod, ZipWriter};

    /// A scratch directory removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("advtrain-npy-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, bytes).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A version-1 `.npy` file, laid out as `numpy.save` does (header padded to 64 bytes).
    fn npy_with(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {}, }}",
            shape_text(shape)
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
        npy_with(descr, false, shape, data)
    }

    fn f32_le(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn i64_le(v: &[i64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn write_npz(path: &Path, members: &[(&str, Vec<u8>)], method: CompressionMethod) {
        let mut zip = ZipWriter::new(File::create(path).unwrap());
        for (name, bytes) in members {
            let options = FileOptions::default().compression_method(method);
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    fn err_text(r: Result<Dataset, DataError>) -> String {
        r.expect_err("expected an error").to_string()
    }

    /// A valid split: 2 grey 2×2 images as uint8, labels 0 and 1 as int64.
    fn small_pair(s: &Scratch, split: &str) {
        s.write(
            &format!("x_{split}.npy"),
            &npy("|u1", &[2, 2, 2], &[0, 51, 102, 255, 0, 0, 0, 0]),
        );
        s.write(
            &format!("y_{split}.npy"),
            &npy("<i8", &[2], &i64_le(&[0, 1])),
        );
    }

    #[test]
    fn uint8_nhwc_becomes_nchw_floats() {
        let s = Scratch::new("nhwc");
        // One 2×2 RGB image, pixels row by row: (0, 51, 102), (153, 204, 255), (255, 0, 51),
        // (102, 153, 204).
        let hwc = [0, 51, 102, 153, 204, 255, 255, 0, 51, 102, 153, 204];
        s.write("x_test.npy", &npy("|u1", &[1, 2, 2, 3], &hwc));
        s.write("y_test.npy", &npy("|u1", &[1], &[1]));
        let d = load_npy_split(&s.0, Split::Test).unwrap();
        assert_eq!((d.channels, d.height, d.width), (3, 2, 2));
        let planes = [0.0, 0.6, 1.0, 0.4, 0.2, 0.8, 0.0, 0.6, 0.4, 1.0, 0.2, 0.8];
        assert_eq!(d.images, planes);
        assert_eq!(d.labels, vec![1]);
        assert_eq!(d.num_classes, 2);
        assert_eq!(d.class_names, vec!["0", "1"]);
    }

    #[test]
    fn float32_nchw_is_read_as_is() {
        let s = Scratch::new("nchw");
        let px: Vec<f32> = (0..2 * 3 * 2 * 2).map(|i| i as f32 / 23.0).collect();
        s.write("x_train.npy", &npy("<f4", &[2, 3, 2, 2], &f32_le(&px)));
        s.write("y_train.npy", &npy("<i4", &[2], &[2, 0, 0, 0, 0, 0, 0, 0]));
        let d = load_npy_split(&s.0, Split::Train).unwrap();
        assert_eq!((d.len(), d.channels, d.height, d.width), (2, 3, 2, 2));
        assert_eq!(d.images, px);
        assert_eq!(d.labels, vec![2, 0]);
        assert_eq!(d.num_classes, 3);
    }

    #[test]
    fn ambiguous_shape_is_read_channels_first() {
        let s = Scratch::new("ambiguous");
        let px: Vec<f32> = (0..27).map(|i| i as f32 / 26.0).collect();
        s.write("x_test.npy", &npy("<f4", &[1, 3, 3, 3], &f32_le(&px)));
        s.write("y_test.npy", &npy("<i8", &[1], &i64_le(&[1])));
        let d = load_npy_split(&s.0, Split::Test).unwrap();
        assert_eq!(d.images, px, "N×3×3×3 must be taken as N×C×H×W, unchanged");
    }

    #[test]
    fn grey_nhw_has_one_channel() {
        let s = Scratch::new("grey");
        small_pair(&s, "test");
        let d = load_npy_split(&s.0, Split::Test).unwrap();
        assert_eq!((d.len(), d.channels, d.height, d.width), (2, 1, 2, 2));
        assert_eq!(&d.images[..4], &[0.0, 0.2, 0.4, 1.0]);
    }

    #[test]
    fn big_endian_float64_images_and_int16_labels() {
        let s = Scratch::new("big-endian");
        let px = [0.0f64, 0.25, 0.5, 1.0];
        let bytes: Vec<u8> = px.iter().flat_map(|v| v.to_be_bytes()).collect();
        let x = s.write("x.npy", &npy(">f8", &[1, 2, 2], &bytes));
        let labels: Vec<u8> = [1i16].iter().flat_map(|v| v.to_be_bytes()).collect();
        let y = s.write("y.npy", &npy(">i2", &[1], &labels));
        let d = load_npy_pair(&x, &y).unwrap();
        assert_eq!(d.images, vec![0.0, 0.25, 0.5, 1.0]);
        assert_eq!(d.labels, vec![1]);
    }

    #[test]
    fn int64_and_column_labels_are_accepted() {
        let s = Scratch::new("int64");
        let x = s.write("x.npy", &npy("|u1", &[3, 1, 1], &[0, 1, 2]));
        let y = s.write("y.npy", &npy("<i8", &[3, 1], &i64_le(&[4, 0, 255])));
        let d = load_npy_pair(&x, &y).unwrap();
        assert_eq!(d.labels, vec![4, 0, 255]);
        assert_eq!(d.num_classes, 256);
        let y = s.write("y.npy", &npy("<u8", &[3], &i64_le(&[1, 0, 1])));
        assert_eq!(load_npy_pair(&x, &y).unwrap().labels, vec![1, 0, 1]);
    }

    #[test]
    fn fortran_order_is_transposed_to_c_order() {
        let s = Scratch::new("fortran");
        // C-order image values v[n][h][w] = 100n + 10h + w for a 2×2×3 array, stored with
        // the first axis fastest.
        let (n, h, w) = (2, 2, 3);
        let mut fortran = Vec::new();
        for k in 0..w {
            for j in 0..h {
                for i in 0..n {
                    fortran.push((100 * i + 10 * j + k) as u8);
                }
            }
        }
        let x = s.write("x.npy", &npy_with("|u1", true, &[n, h, w], &fortran));
        let y = s.write("y.npy", &npy_with("<i8", true, &[2], &i64_le(&[0, 1])));
        let d = load_npy_pair(&x, &y).unwrap();
        let expected: Vec<f32> = [0, 1, 2, 10, 11, 12, 100, 101, 102, 110, 111, 112]
            .iter()
            .map(|&v| v as f32 / 255.0)
            .collect();
        assert_eq!(d.images, expected);
    }

    #[test]
    fn npz_stored_and_deflated_with_each_naming() {
        for (method, (xn, yn)) in [
            (CompressionMethod::Stored, ("x.npy", "y.npy")),
            (CompressionMethod::Deflated, ("x_test.npy", "y_test.npy")),
            (CompressionMethod::Deflated, ("images.npy", "labels.npy")),
        ] {
            let s = Scratch::new(&format!("npz-{xn}"));
            let x = npy("|u1", &[2, 1, 2], &[0, 255, 255, 0]);
            let y = npy("<i8", &[2], &i64_le(&[1, 0]));
            write_npz(&s.0.join("test.npz"), &[(xn, x), (yn, y)], method);
            let d = load_npy_split(&s.0, Split::Test).unwrap();
            assert_eq!(d.images, vec![0.0, 1.0, 1.0, 0.0], "{xn}");
            assert_eq!(d.labels, vec![1, 0], "{xn}");
        }
    }

    #[test]
    fn classes_txt_names_the_classes_and_fixes_their_count() {
        let s = Scratch::new("classes");
        small_pair(&s, "test");
        s.write(CLASSES_FILE, b"cat\ndog\r\nbird\n\n");
        let d = load_npy_split(&s.0, Split::Test).unwrap();
        assert_eq!(d.class_names, vec!["cat", "dog", "bird"]);
        assert_eq!(d.num_classes, 3);
        s.write(CLASSES_FILE, b"cat\n");
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(
            e.contains("classes.txt") && e.contains("1 class names"),
            "{e}"
        );
        assert!(e.contains("labels go up to 1 (2 classes)"), "{e}");
        s.write(CLASSES_FILE, b"cat\n\ndog\n");
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("line 2 is empty"), "{e}");
    }

    #[test]
    fn missing_files_are_listed() {
        let s = Scratch::new("missing");
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("test.npz: not found"), "{e}");
        assert!(
            e.contains("looked for test.npz, or x_test.npy and y_test.npy"),
            "{e}"
        );
        s.write("x_train.npy", &npy("|u1", &[1, 1, 1], &[0]));
        let e = err_text(load_npy_split(&s.0, Split::Train));
        assert!(e.contains("y_train.npy: not found"), "{e}");
        assert!(e.contains("x_train.npy is there but not its labels"), "{e}");
    }

    #[test]
    fn bad_magic_and_bad_version_are_refused() {
        let s = Scratch::new("magic");
        small_pair(&s, "test");
        s.write("x_test.npy", b"PK\x03\x04 not an npy file");
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("x_test.npy") && e.contains("bad magic"), "{e}");
        assert!(e.contains("b\"PK\\x03\\x04 n\""), "{e}");
        let mut v9 = npy("|u1", &[1, 1, 1], &[0]);
        v9[6] = 9;
        s.write("x_test.npy", &v9);
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("version 9.0 is not supported"), "{e}");
    }

    #[test]
    fn unsupported_dtypes_are_named() {
        let s = Scratch::new("dtype");
        small_pair(&s, "test");
        s.write("x_test.npy", &npy("<c8", &[1, 1, 1], &[0; 8]));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("unsupported dtype complex64 ('<c8')"), "{e}");
        s.write("x_test.npy", &npy("<i2", &[1, 1, 1], &[0; 2]));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("int16 ('<i2'): images must be uint8"), "{e}");
        small_pair(&s, "test");
        s.write("y_test.npy", &npy("<f4", &[2], &f32_le(&[0.0, 1.0])));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(
            e.contains("y_test.npy") && e.contains("float32 ('<f4'): labels must be integers"),
            "{e}"
        );
        s.write(
            "y_test.npy",
            &npy_header_only("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (2,), }"),
        );
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(
            e.contains("structured (record) dtypes are not supported"),
            "{e}"
        );
    }

    fn npy_header_only(header: &str) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out
    }

    #[test]
    fn count_mismatch_and_wrong_ranks_are_refused() {
        let s = Scratch::new("shape");
        small_pair(&s, "test");
        s.write("y_test.npy", &npy("<i8", &[3], &i64_le(&[0, 1, 1])));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(
            e.contains("x_test.npy has 2 images but") && e.contains("y_test.npy has 3 labels"),
            "{e}"
        );
        s.write("y_test.npy", &npy("<i8", &[1, 2], &i64_le(&[0, 1])));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(
            e.contains("labels of shape (1, 2): expected one label per example"),
            "{e}"
        );
        small_pair(&s, "test");
        s.write("x_test.npy", &npy("|u1", &[2, 4], &[0; 8]));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("images of shape (2, 4) have rank 2"), "{e}");
        s.write("x_test.npy", &npy("|u1", &[2, 2, 2, 2], &[0; 16]));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(
            e.contains("neither axis 1 nor axis 3 is a channel count"),
            "{e}"
        );
        s.write("x_test.npy", &npy("|u1", &[0, 2, 2], &[]));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("no pixels to use"), "{e}");
    }

    #[test]
    fn truncated_and_overlong_data_are_refused() {
        let s = Scratch::new("truncated");
        small_pair(&s, "test");
        let full = npy("|u1", &[2, 2, 2], &[0; 8]);
        s.write("x_test.npy", &full[..full.len() - 3]);
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(
            e.contains("x_test.npy: truncated: expected 136 bytes, got 133"),
            "{e}"
        );
        s.write("x_test.npy", &full[..20]);
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("truncated: expected 128 bytes, got 20"), "{e}");
        let mut long = full.clone();
        long.push(7);
        s.write("x_test.npy", &long);
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(
            e.contains("1 trailing bytes after the (2, 2, 2) array"),
            "{e}"
        );
    }

    #[test]
    fn float_pixels_outside_unit_range_are_refused_with_a_hint() {
        let s = Scratch::new("range");
        small_pair(&s, "test");
        let px = [0.0, 0.5, 200.0, 3.0, 0.0, 0.0, 0.0, 0.0];
        s.write("x_test.npy", &npy("<f4", &[2, 2, 2], &f32_le(&px)));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(
            e.contains("pixel x[0, 1, 0] = 200 is outside [0, 1]"),
            "{e}"
        );
        assert!(e.contains("divide by 255"), "{e}");
        let px = [0.0, 0.5, f32::NAN, 3.0, 0.0, 0.0, 0.0, 0.0];
        s.write("x_test.npy", &npy("<f4", &[2, 2, 2], &f32_le(&px)));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("pixel x[0, 1, 0] = NaN"), "{e}");
        let px = [0.0, -0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        s.write("x_test.npy", &npy("<f4", &[2, 2, 2], &f32_le(&px)));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("normalised data?"), "{e}");
    }

    #[test]
    fn bad_label_values_and_a_single_class_are_refused() {
        let s = Scratch::new("labels");
        small_pair(&s, "test");
        s.write("y_test.npy", &npy("<i8", &[2], &i64_le(&[0, -1])));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("label y[1] = -1 is negative"), "{e}");
        s.write("y_test.npy", &npy("<i8", &[2], &i64_le(&[256, 0])));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("label y[0] = 256 is above 255"), "{e}");
        s.write("y_test.npy", &npy("<i8", &[2], &i64_le(&[0, 0])));
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(
            e.contains("only 1 class: a classifier needs at least 2"),
            "{e}"
        );
    }

    #[test]
    fn npz_problems_are_reported() {
        let s = Scratch::new("npz-errors");
        let x = npy("|u1", &[2, 1, 1], &[0, 1]);
        write_npz(
            &s.0.join("test.npz"),
            &[("a.npy", x.clone())],
            CompressionMethod::Stored,
        );
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(
            e.contains("test.npz: no image array: expected x, x_test or images"),
            "{e}"
        );
        assert!(e.contains("holds [a.npy]"), "{e}");
        write_npz(
            &s.0.join("test.npz"),
            &[("x.npy", x)],
            CompressionMethod::Stored,
        );
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("holds the images x but not the labels y"), "{e}");
        let zeros = npy("<f8", &[2, 1, 1], &[0; 16]);
        let y = npy("<i8", &[2], &i64_le(&[0, 1]));
        write_npz(
            &s.0.join("test.npz"),
            &[("x.npy", zeros), ("y.npy", y)],
            CompressionMethod::Deflated,
        );
        assert!(load_npy_split(&s.0, Split::Test).is_ok());
        s.write("test.npz", b"not a zip");
        let e = err_text(load_npy_split(&s.0, Split::Test));
        assert!(e.contains("not a readable .npz (zip) archive"), "{e}");
    }

    #[test]
    fn npz_member_errors_name_the_array() {
        let s = Scratch::new("npz-member");
        let x = npy("|u1", &[2, 1, 1], &[0, 1]);
        let y = npy("<f4", &[2], &f32_le(&[0.0, 1.0]));
        write_npz(
            &s.0.join("train.npz"),
            &[("x_train.npy", x), ("y_train.npy", y)],
            CompressionMethod::Deflated,
        );
        let e = err_text(load_npy_split(&s.0, Split::Train));
        assert!(
            e.contains("train.npz (array 'y_train'): unsupported dtype float32"),
            "{e}"
        );
    }

    #[test]
    fn version_2_header_is_read() {
        let s = Scratch::new("v2");
        small_pair(&s, "test");
        let v1 = npy("<i8", &[2], &i64_le(&[1, 0]));
        let header_len = u16::from_le_bytes([v1[8], v1[9]]) as u32;
        let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
        v2.extend_from_slice(&header_len.to_le_bytes());
        v2.extend_from_slice(&v1[10..]);
        s.write("y_test.npy", &v2);
        assert_eq!(
            load_npy_split(&s.0, Split::Test).unwrap().labels,
            vec![1, 0]
        );
    }

    #[test]
    fn header_parser_reads_numpy_variants() {
        let h = parse_header(b"{'descr': '<u2', 'fortran_order': False, 'shape': (3L, 4L), }  \n")
            .unwrap();
        assert_eq!(h.shape, vec![3, 4]);
        assert_eq!(
            (h.dtype.kind, h.dtype.size, h.dtype.big_endian),
            (Kind::UInt, 2, false)
        );
        let h =
            parse_header(b"{\"shape\": (), \"fortran_order\": True, \"descr\": \">f8\"}").unwrap();
        assert!(h.shape.is_empty() && h.fortran_order && h.dtype.big_endian);
        let e = parse_header(b"{'descr': '<u2', 'shape': (3,)}").unwrap_err();
        assert_eq!(e, "no 'fortran_order' key");
        let e = parse_header(b"{'descr': '<u2' 'shape': (3,)}").unwrap_err();
        assert!(e.starts_with("expected ','"), "{e}");
    }
}
