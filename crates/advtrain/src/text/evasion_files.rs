//! Evasion results on disk, streamed: each chunk of attacked texts is appended (and synced)
//! to `evasion-<stem>.jsonl` as soon as it exists, so a filter that crashes or a process that
//! is killed loses at most the chunk in flight, and the next run with the same settings
//! continues where it stopped. The record `evasion-<stem>.json` is written last.
//!
//! The examples file starts with a header line holding the settings the examples depend on
//! (attack, operating point, seed, chunk size, data, model). Examples are reused only under
//! an identical header; a file with another header is replaced.
//!
//! ```text
//! evasion-deepwordbug-b5-fpr0.01.jsonl   {"header": {...}} then one EvasionExample per line
//! evasion-deepwordbug-b5-fpr0.01.json    the EvasionRecord
//! ```

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::attack::TextAttackConfig;
use super::evasion::{DetectionThreshold, EvasionExample, EvasionRecord, EvasionRun};
use super::TextDataset;
use crate::error::{Error, Result};
use crate::io::{read_json, write_atomic, write_json};

/// File stem of an evasion evaluation: `evasion-clean-fpr0.01` or
/// `evasion-<attack>-b<budget>[-q<queries>]-fpr0.01` (`-q` for a per-text query limit).
pub fn evasion_stem(attack: Option<&TextAttackConfig>, fpr: f64) -> String {
    match attack {
        None => format!("evasion-clean-fpr{fpr}"),
        Some(a) => {
            let queries = match a {
                TextAttackConfig::DeepWordBug { max_queries, .. } if *max_queries > 0 => {
                    format!("-q{max_queries}")
                }
                _ => String::new(),
            };
            format!("evasion-{}-b{}{queries}-fpr{fpr}", a.name(), a.budget())
        }
    }
}

/// What the streamed examples depend on: reused only when all of it is equal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvasionHeader {
    /// The attack's settings.
    pub attack: Option<TextAttackConfig>,
    /// The operating point.
    pub threshold: DetectionThreshold,
    /// The attack's seed.
    pub seed: u64,
    /// Malicious texts per attack call.
    pub chunk: usize,
    /// Fingerprint of the test texts.
    pub test_data_sha256: String,
    /// What was attacked: the weights' hash, or the target's description.
    pub target: String,
}

#[derive(Serialize, Deserialize)]
struct HeaderLine {
    header: EvasionHeader,
}

/// Runs `run` on `test` under `attack` with its examples streamed into `dir`, resuming from
/// a file an interrupted run with the same header left. `suffix` is appended to the file
/// stem (`-n100` for an evaluation of the first 100 texts, so it never replaces the whole
/// set's). Returns the record (also written) and its path.
pub fn evaluate_streamed(
    dir: &Path,
    run: &EvasionRun<'_>,
    test: &TextDataset,
    attack: Option<&TextAttackConfig>,
    model_sha256: Option<String>,
    suffix: &str,
) -> Result<(EvasionRecord, PathBuf)> {
    let stem = evasion_stem(attack, run.threshold.target_fpr) + suffix;
    let examples_path = dir.join(format!("{stem}.jsonl"));
    let header = EvasionHeader {
        attack: attack.cloned(),
        threshold: run.threshold.clone(),
        seed: run.seed,
        chunk: run.chunk,
        test_data_sha256: test.fingerprint(),
        target: model_sha256
            .clone()
            .unwrap_or_else(|| run.target_name.clone()),
    };
    let done = open_stream(&examples_path, &header)?;
    let (mut record, _) = run.evaluate(test, attack, done, &mut |chunk| {
        append_examples(&examples_path, chunk)
    })?;
    record.model_sha256 = model_sha256;
    let path = dir.join(format!("{stem}.json"));
    write_json(&path, &record)?;
    Ok((record, path))
}

/// The examples already in `path` under `header`; otherwise the file is started afresh
/// with the header. A last line cut short by a crash is dropped.
fn open_stream(path: &Path, header: &EvasionHeader) -> Result<Vec<EvasionExample>> {
    if let Ok(text) = fs::read_to_string(path) {
        let mut lines = text.lines();
        let same = lines
            .next()
            .and_then(|l| serde_json::from_str::<HeaderLine>(l).ok())
            .is_some_and(|h| &h.header == header);
        if same {
            // Only whole lines: a line without its newline was cut short by a crash.
            let complete = if text.ends_with('\n') {
                text.as_str()
            } else {
                &text[..text.rfind('\n').map_or(0, |i| i + 1)]
            };
            let examples: Vec<EvasionExample> = complete
                .lines()
                .skip(1)
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            // Rewrite without a torn tail, so appends start on a fresh line.
            if complete.len() != text.len() {
                write_atomic(path, complete.as_bytes())?;
            }
            return Ok(examples);
        }
    }
    let line = serde_json::to_string(&HeaderLine {
        header: header.clone(),
    })
    .map_err(|e| record_error(path, e))?;
    write_atomic(path, format!("{line}\n").as_bytes())?;
    Ok(Vec::new())
}

fn append_examples(path: &Path, examples: &[EvasionExample]) -> Result<()> {
    let mut body = String::new();
    for e in examples {
        body.push_str(&serde_json::to_string(e).map_err(|err| record_error(path, err))?);
        body.push('\n');
    }
    let mut f = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(body.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| Error::io(path, e))
}

fn record_error(path: &Path, e: serde_json::Error) -> Error {
    Error::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Every evasion record in `dir` (`evasion-*.json`), clean first, then by attack, budget
/// and rate. Records of other weights than `model_sha256` (when given) are left out.
pub fn read_evasion_records(dir: &Path, model_sha256: Option<&str>) -> Result<Vec<EvasionRecord>> {
    let mut out: Vec<EvasionRecord> = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("evasion-") && name.ends_with(".json") {
            let record: EvasionRecord = read_json(&path)?;
            let stale = matches!((record.model_sha256.as_deref(), model_sha256), (Some(a), Some(b)) if a != b);
            if !stale {
                out.push(record);
            }
        }
    }
    out.sort_by(|a, b| {
        (a.attack != "none", &a.attack, a.budget)
            .cmp(&(b.attack != "none", &b.attack, b.budget))
            .then(a.threshold.target_fpr.total_cmp(&b.threshold.target_fpr))
    });
    Ok(out)
}

/// The streamed examples of the evaluation `stem` in `dir` (empty if none).
pub fn read_evasion_examples(dir: &Path, stem: &str) -> Result<Vec<EvasionExample>> {
    let path = dir.join(format!("{stem}.jsonl"));
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}
