//! Files that survive a kill, and the text formats run records use.
//!
//! Every record advtrain writes goes through [`write_atomic`] (write a temporary file,
//! fsync, rename, fsync the directory), so a crash leaves the old file or the new one and
//! never half of either; readers name the file (and the line, for JSONL) in every error.
//! This is the lowest layer beside `rng`: it knows no advtrain type.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// The environment variable of the crash-safety test: `ADVTRAIN_FAULT_AT_WRITE=N` makes the
/// `N`-th file write of the process (an atomic rename or a JSONL append, counted from 1)
/// abort the process just before it happens, as a kill at that moment would. Unset in
/// normal use, where [`fault_point`] costs one relaxed atomic increment.
pub const FAULT_AT_WRITE: &str = "ADVTRAIN_FAULT_AT_WRITE";

/// Counts a file write and aborts the process if it is the one [`FAULT_AT_WRITE`] names.
pub fn fault_point() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<u64>> = OnceLock::new();
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| std::env::var(FAULT_AT_WRITE).ok()?.parse().ok());
    if let Some(target) = *target {
        if WRITES.fetch_add(1, Ordering::Relaxed) + 1 == target {
            eprintln!("{FAULT_AT_WRITE}={target}: aborting before this write");
            std::process::abort();
        }
    }
}

/// `fs::rename`, one [`fault_point`] first: every record advtrain replaces goes through it.
pub fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    fault_point();
    fs::rename(from, to)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over the target. A crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of the file at `path`, in lower-case hex, read in pieces (a model file can be
/// hundreds of megabytes); `None` when there is no such file.
pub fn sha256_file(path: &Path) -> Result<Option<String>> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(Some(hex(&hash.finalize())))
}

/// Writes pretty JSON atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, format!("{text}\n").as_bytes())
}

/// Reads JSON, naming the file in any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Writes TOML atomically.
pub fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = toml::to_string_pretty(value).map_err(|e| Error::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes())
}

/// Reads TOML, naming the file in any error.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    toml::from_str(&text).map_err(|e| Error::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Appends one JSON line and flushes it to disk (`metrics.jsonl`).
pub fn append_jsonl<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let line = serde_json::to_string(value).map_err(|e| Error::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    fault_point();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(format!("{line}\n").as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| Error::io(path, e))
}

/// Reads every line of a JSONL file.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Record {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_html_escaped(&mut out, c);
    }
    out
}

/// Appends one character, escaped as [`escape_html`] does.
pub fn push_html_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        c => out.push(c),
    }
}
