//! Text run directories: the same layout and atomic writers as image runs, with text records.
//!
//! ```text
//! runs/spam-ngram-bag-adversarial/
//!   config.toml                    task = "text", data set, training settings
//!   model.safetensors              weights
//!   metrics.jsonl                  one TextEpochRecord per epoch, appended as epochs end
//!   summary.json                   clean test accuracy, time, data counts
//!   eval-<attack>-b<budget>.json   one TextEvalRecord per evaluation
//!   examples-<attack>-b<budget>.jsonl   every text's original / adversarial pair and edits
//!   report.html
//! ```

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::attack::TextAttackResult;
use super::eval::TextEvalRecord;
use super::model::{TextModel, TextNet};
use super::train::{TextEpochRecord, TextTrainConfig};
use crate::io::{append_jsonl, read_json, read_jsonl, read_toml, write_json, write_toml};
use crate::model::{load_safetensors, save_safetensors};
use crate::{Error, Result};

pub const CONFIG: &str = "config.toml";
pub const MODEL: &str = "model.safetensors";
pub const METRICS: &str = "metrics.jsonl";
pub const SUMMARY: &str = "summary.json";

/// The marker that tells text runs from image runs.
pub const TEXT_TASK: &str = "text";

/// A text run's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextRunConfig {
    /// Always `"text"`.
    pub task: String,
    pub advtrain_version: String,
    /// `spam-assassin`, `prompt-injection`, or `file`.
    pub dataset: String,
    /// The data directory (named data sets) or file (`file`).
    pub data: PathBuf,
    /// Seed of the train/test split.
    pub data_seed: u64,
    /// Only the first N training and test texts were used.
    pub limit: Option<usize>,
    pub train: TextTrainConfig,
}

/// What training produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextSummary {
    pub dataset: String,
    pub provenance: String,
    pub classes: Vec<String>,
    pub train_examples: usize,
    pub train_class_counts: Vec<usize>,
    pub test_examples: usize,
    pub test_class_counts: Vec<usize>,
    pub clean_test_accuracy: f64,
    pub epochs_completed: usize,
    pub train_seconds: f64,
}

/// Whether `dir` holds a text run.
pub fn is_text_run(dir: &Path) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        task: Option<String>,
    }
    read_toml::<Probe>(&dir.join(CONFIG))
        .ok()
        .and_then(|p| p.task)
        .is_some_and(|t| t == TEXT_TASK)
}

/// File stem of an evaluation: `clean` or `<attack>-b<budget>`.
pub fn eval_stem(attack: &str, budget: usize) -> String {
    if attack == "none" {
        "clean".to_string()
    } else {
        format!("{attack}-b{budget}")
    }
}

/// A text run directory.
pub struct TextRun {
    pub dir: PathBuf,
}

impl TextRun {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Opens an existing text run (its config must say `task = "text"`).
    pub fn open(dir: &Path) -> Result<(Self, TextRunConfig)> {
        let config: TextRunConfig = read_toml(&dir.join(CONFIG))?;
        if config.task != TEXT_TASK {
            return Err(Error::Record {
                path: dir.join(CONFIG),
                message: format!("task is '{}', not a text run", config.task),
            });
        }
        Ok((Self::new(dir), config))
    }

    pub fn write_config(&self, config: &TextRunConfig) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        write_toml(&self.dir.join(CONFIG), config)
    }

    pub fn append_epoch(&self, record: &TextEpochRecord) -> Result<()> {
        append_jsonl(&self.dir.join(METRICS), record)
    }

    pub fn epochs(&self) -> Result<Vec<TextEpochRecord>> {
        let path = self.dir.join(METRICS);
        if path.exists() {
            read_jsonl(&path)
        } else {
            Ok(Vec::new())
        }
    }

    pub fn save_model(&self, net: &TextNet) -> Result<()> {
        save_safetensors(net, &self.dir.join(MODEL))
    }

    /// Rebuilds the model from the config and loads the weights.
    pub fn load_model(&self, config: &TextRunConfig, device: &Device) -> Result<TextModel> {
        let device = device.clone().without_autodiff();
        let net = TextNet::new(&config.train.model, &device)?;
        let net = load_safetensors(net, &self.dir.join(MODEL))?;
        Ok(TextModel::new(
            config.train.model.clone(),
            config.train.canonicalizer,
            &net,
            &device,
        ))
    }

    pub fn write_summary(&self, summary: &TextSummary) -> Result<()> {
        write_json(&self.dir.join(SUMMARY), summary)
    }

    pub fn summary(&self) -> Result<Option<TextSummary>> {
        let path = self.dir.join(SUMMARY);
        path.exists().then(|| read_json(&path)).transpose()
    }

    /// Writes an evaluation record and every text's result (replacing an earlier evaluation
    /// with the same attack and budget).
    pub fn write_eval(&self, record: &TextEvalRecord, results: &[TextAttackResult]) -> Result<()> {
        let stem = eval_stem(&record.attack, record.budget);
        let examples = self.dir.join(format!("examples-{stem}.jsonl"));
        let mut body = String::new();
        for r in results {
            body.push_str(&serde_json::to_string(r).map_err(|e| Error::Record {
                path: examples.clone(),
                message: e.to_string(),
            })?);
            body.push('\n');
        }
        crate::io::write_atomic(&examples, body.as_bytes())?;
        write_json(&self.dir.join(format!("eval-{stem}.json")), record)
    }

    /// Every evaluation record in the run, clean first, then by attack and budget.
    pub fn evals(&self) -> Result<Vec<TextEvalRecord>> {
        let mut out: Vec<TextEvalRecord> = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&self.dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("eval-") && name.ends_with(".json") {
                out.push(read_json(&path)?);
            }
        }
        out.sort_by(|a, b| {
            (a.attack != "none", &a.attack, a.budget).cmp(&(
                b.attack != "none",
                &b.attack,
                b.budget,
            ))
        });
        Ok(out)
    }

    /// The per-text results of an evaluation, if written.
    pub fn examples(&self, attack: &str, budget: usize) -> Result<Vec<TextAttackResult>> {
        let path = self
            .dir
            .join(format!("examples-{}.jsonl", eval_stem(attack, budget)));
        if path.exists() {
            read_jsonl(&path)
        } else {
            Ok(Vec::new())
        }
    }
}
