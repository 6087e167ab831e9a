//! Text run directories: a typed view of a [`RunDir`] whose task is text, with the same
//! layout, atomic writers and checkpoints as image runs and text records in them.
//!
//! ```text
//! runs/spam-ngram-bag-adversarial/
//!   config.toml                    task = "text", data set, training settings
//!   model.safetensors              weights
//!   model-best.safetensors         the best checkpoint's weights
//!   checkpoint.ckpt                the newest checkpoint (resume with `train --resume`)
//!   metrics.jsonl                  one TextEpochRecord per epoch, appended as epochs end
//!   summary.json                   clean test accuracy, time, data counts
//!   eval-<attack>-b<budget>.json   one TextEvalRecord per evaluation
//!   examples-<attack>-b<budget>.jsonl   every text's original / adversarial pair and edits
//!   report.html
//! ```

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::attack::{TextAttackConfig, TextAttackResult};
use super::data;
use super::eval::{evaluate_text, TextEvalRecord};
use super::evasion::{choose_threshold, EvasionRecord, EvasionRun, EvasionTarget, DEFAULT_CHUNK};
use super::evasion_files::evaluate_streamed;
use super::model::{TextModel, TextNet};
use super::train::{TextEpochRecord, TextTrainConfig, TrainedText};
use super::TextDataset;
use crate::error::{Error, Result};
use crate::io::{read_json, read_jsonl, read_toml, write_json, write_toml};
use crate::model::load_safetensors;
use crate::progress::Progress;
use crate::run::dir::{refuse_weaker, Measured};
use crate::run::{files, RunDir, Task};
use crate::train::EpochMetrics;

pub use crate::run::files::{CONFIG, METRICS, MODEL, SUMMARY};

/// Share of the training texts held out for per-epoch validation (stratified).
pub const VAL_FRACTION: f64 = 0.1;
/// Share of a user's file held out as the test set (stratified).
pub const FILE_TEST_FRACTION: f64 = 0.2;

/// A text run's configuration (`config.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextRunConfig {
    /// Always [`Task::Text`]: what tells text runs from image runs.
    pub task: Task,
    /// The advtrain that trained the run, so a reader knows which code the numbers are from.
    pub advtrain_version: String,
    /// `spam-assassin`, `prompt-injection`, or `file`.
    pub dataset: String,
    /// The data directory (named data sets) or file (`file`).
    pub data: PathBuf,
    /// Seed of the train/test split.
    pub data_seed: u64,
    /// Only the first N training and test texts were used.
    pub limit: Option<usize>,
    /// The training settings proper.
    pub train: TextTrainConfig,
    /// The attacks run on the test set after training; kept here so a resumed run ends
    /// with the same evaluations. Runs written before the key have none.
    #[serde(default)]
    pub eval_attacks: Vec<TextAttackConfig>,
}

/// What training produced (`summary.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextSummary {
    /// The data set's name (`file` for a user's file).
    pub dataset: String,
    /// Where the texts came from, as the data set describes itself.
    pub provenance: String,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Training texts (validation excluded).
    pub train_examples: usize,
    /// Training texts per class.
    pub train_class_counts: Vec<usize>,
    /// Test texts.
    pub test_examples: usize,
    /// Test texts per class.
    pub test_class_counts: Vec<usize>,
    /// Clean accuracy on the test texts.
    pub clean_test_accuracy: f64,
    /// Epochs trained.
    pub epochs_completed: usize,
    /// Wall-clock seconds of training, over every process of a resumed run.
    pub train_seconds: f64,
    /// Fingerprint of the test texts ([`TextDataset::fingerprint`]): an evaluation on
    /// other texts (`eval --data`) gets files of its own. Older summaries have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_data_sha256: Option<String>,
}

impl<'a> From<&'a TextEvalRecord> for Measured<'a> {
    fn from(r: &'a TextEvalRecord) -> Self {
        Measured {
            model: r.model_sha256.as_deref(),
            data: r.test_data_sha256.as_deref(),
            n: r.examples,
        }
    }
}

/// File stem of an evaluation: `clean` or `<attack>-b<budget>`.
pub fn eval_stem(attack: &str, budget: usize) -> String {
    if attack == "none" {
        "clean".to_string()
    } else {
        format!("{attack}-b{budget}")
    }
}

/// `(train, test)` of a text data set: a named one ([`data::load_named`]) under `data`, or
/// (`dataset == "file"`) a user's CSV/JSONL file split 80/20 by class; each cut to `limit`.
/// The same arguments give the same texts, which is what lets a run be evaluated and
/// resumed later.
pub fn load_text_data(
    dataset: &str,
    data: &Path,
    seed: u64,
    limit: Option<usize>,
) -> Result<(TextDataset, TextDataset)> {
    let (train, test) = if dataset == "file" {
        let all = data::load_labelled_file(data)?;
        data::split_stratified(&all, seed, FILE_TEST_FRACTION)
    } else {
        data::load_named(dataset, data, seed)?
    };
    Ok(match limit {
        Some(n) => (train.take(n), test.take(n)),
        None => (train, test),
    })
}

/// The texts a training run uses.
pub struct TextSplits {
    /// The whole training side (for its provenance and classes).
    pub all_train: TextDataset,
    /// The texts trained on.
    pub train: TextDataset,
    /// The held-out validation texts ([`VAL_FRACTION`] of the training side).
    pub val: TextDataset,
    /// The test texts.
    pub test: TextDataset,
    /// The texts whose benign ones choose the operating threshold: the validation texts,
    /// or, for a data set of [`data::CALIBRATES_ON_TEST`] (synthetic training negatives),
    /// [`data::CALIBRATION_SHARE`] of the test corpus's benign rows, held out of `test`.
    pub calibration: TextDataset,
}

impl TextSplits {
    /// Holds [`VAL_FRACTION`] of `all_train` out for validation (stratified, by `seed`), and
    /// the calibration texts out of `test` where the data set calibrates on its test corpus.
    pub fn new(all_train: TextDataset, test: TextDataset, seed: u64) -> Self {
        let (train, val) = data::split_stratified(&all_train, seed, VAL_FRACTION);
        let (test, calibration) = if data::CALIBRATES_ON_TEST.contains(&all_train.name.as_str()) {
            let (mut rest, calibration) =
                data::hold_out_benign(&test, 0, data::CALIBRATION_SHARE, seed);
            rest.provenance = format!(
                "{} {} of its benign rows (seed {seed}) are held out to choose the threshold \
                 on, leaving {} test texts.",
                rest.provenance,
                calibration.len(),
                rest.len()
            );
            (rest, calibration)
        } else {
            let mut calibration = val.clone();
            calibration.name = format!("{} validation", val.name);
            (test, calibration)
        };
        Self {
            all_train,
            train,
            val,
            test,
            calibration,
        }
    }
}

impl TextRunConfig {
    /// `(train, test)` as the run read them, the data read from `data` instead of the
    /// recorded place if given.
    pub fn load_data(&self, data: Option<&Path>) -> Result<(TextDataset, TextDataset)> {
        let path = data.unwrap_or(&self.data);
        load_text_data(&self.dataset, path, self.data_seed, self.limit)
    }

    /// The run's training, validation and test texts.
    pub fn splits(&self) -> Result<TextSplits> {
        let (all_train, test) = self.load_data(None)?;
        Ok(TextSplits::new(all_train, test, self.data_seed))
    }
}

/// What the end of a text training run measured.
#[derive(Clone, Debug)]
pub struct TextFinalEvaluation {
    /// The summary written.
    pub summary: TextSummary,
    /// Clean accuracy on the test texts.
    pub clean: TextEvalRecord,
    /// One record per attack of [`TextRunConfig::eval_attacks`], in order (data sets of
    /// more than two classes; a binary filter is evaluated for evasion instead).
    pub attacked: Vec<TextEvalRecord>,
    /// A binary filter's evasion records at the run's false-positive rate: clean, then one
    /// per attack of [`TextRunConfig::eval_attacks`].
    pub evasion: Vec<EvasionRecord>,
}

/// A text run directory.
pub struct TextRun {
    run: RunDir,
}

impl TextRun {
    /// Creates the directory ([`RunDir::create`]: refused if it holds a run, unless
    /// `force`) and writes `config`.
    pub fn create(path: impl Into<PathBuf>, force: bool, config: &TextRunConfig) -> Result<Self> {
        let run = Self {
            run: RunDir::create(path, Task::Text, force)?,
        };
        run.write_config(config)?;
        Ok(run)
    }

    /// Opens an existing text run (its config must say `task = "text"`).
    pub fn open(dir: &Path) -> Result<(Self, TextRunConfig)> {
        let run = RunDir::open(dir)?;
        run.expect_task(Task::Text)?;
        let config: TextRunConfig = read_toml(&run.file(CONFIG))?;
        Ok((Self { run }, config))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.run.path()
    }

    /// The run directory underneath, for what text and image runs share (checkpoints,
    /// file paths).
    pub fn dir(&self) -> &RunDir {
        &self.run
    }

    /// Writes `config.toml` (with `task = "text"`).
    pub fn write_config(&self, config: &TextRunConfig) -> Result<()> {
        let config = TextRunConfig {
            task: Task::Text,
            ..config.clone()
        };
        write_toml(&self.run.file(CONFIG), &config)
    }

    /// Appends one finished epoch to `metrics.jsonl`.
    pub fn append_epoch(&self, record: &TextEpochRecord) -> Result<()> {
        self.run.append_metrics(record)
    }

    /// Replaces `metrics.jsonl` with the epochs of a checkpoint's history: a resumed run
    /// continues from the checkpoint, and the file may hold epochs after it.
    pub fn rewrite_epochs(&self, history: &[EpochMetrics]) -> Result<()> {
        let records: Vec<TextEpochRecord> = history.iter().map(TextEpochRecord::from).collect();
        self.run.rewrite_metrics(&records)
    }

    /// The epochs recorded so far.
    pub fn epochs(&self) -> Result<Vec<TextEpochRecord>> {
        self.run.read_metrics()
    }

    /// Saves the latest weights.
    pub fn save_model(&self, net: &TextNet) -> Result<()> {
        self.run.save_model(net)
    }

    /// Rebuilds the model from the config and loads the weights.
    pub fn load_model(&self, config: &TextRunConfig, device: &Device) -> Result<TextModel> {
        let device = device.clone().without_autodiff();
        let net = TextNet::new(&config.train.model, &device)?;
        let net = load_safetensors(net, &self.run.file(MODEL))?;
        Ok(TextModel::new(
            config.train.model.clone(),
            config.train.canonicalizer,
            &net,
            &device,
        ))
    }

    /// Writes `summary.json`.
    pub fn write_summary(&self, summary: &TextSummary) -> Result<()> {
        write_json(&self.run.file(SUMMARY), summary)
    }

    /// The summary, `None` before training has finished.
    pub fn summary(&self) -> Result<Option<TextSummary>> {
        let path = self.run.file(SUMMARY);
        path.exists().then(|| read_json(&path)).transpose()
    }

    /// Writes an evaluation record and every text's result, stamped with the weights' hash.
    /// A `subset` evaluation (`--limit`) gets files of its own (`-n<N>`), so it never
    /// replaces the full test set's; an earlier record of the same weights and data on more
    /// texts is never replaced (the error says so). Returns the record's path.
    pub fn write_eval(
        &self,
        record: &TextEvalRecord,
        results: &[TextAttackResult],
        subset: bool,
    ) -> Result<PathBuf> {
        let mut record = record.clone();
        record.model_sha256 = self.run.model_sha256()?;
        let mut stem = eval_stem(&record.attack, record.budget);
        if subset {
            stem.push_str(&format!("-n{}", record.examples));
        }
        let own = self.summary()?.and_then(|s| s.test_data_sha256);
        if let (Some(own), Some(this), false) = (&own, &record.test_data_sha256, subset) {
            if own != this {
                stem.push_str(&format!("-data{}", &this[..8]));
            }
        }
        let path = self.run.file(&files::eval(&stem));
        if let Ok(old) = read_json::<TextEvalRecord>(&path) {
            refuse_weaker(&path, (&old).into(), (&record).into(), "texts")?;
        }
        let examples = self.run.file(&format!("examples-{stem}.jsonl"));
        let mut body = String::new();
        for r in results {
            body.push_str(&serde_json::to_string(r).map_err(|e| Error::Record {
                path: examples.clone(),
                message: e.to_string(),
            })?);
            body.push('\n');
        }
        crate::io::write_atomic(&examples, body.as_bytes())?;
        write_json(&path, &record)?;
        Ok(path)
    }

    /// Every evaluation record of the run's current weights (records of earlier weights,
    /// left by a run trained again, are not this model's), clean first, then by attack and
    /// budget.
    pub fn evals(&self) -> Result<Vec<TextEvalRecord>> {
        let current = self.run.model_sha256()?;
        let mut out: Vec<TextEvalRecord> = Vec::new();
        let dir = self.path();
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("eval-") && name.ends_with(".json") {
                let record: TextEvalRecord = read_json(&path)?;
                let stale =
                    matches!((&record.model_sha256, &current), (Some(a), Some(b)) if a != b);
                if !stale {
                    out.push(record);
                }
            }
        }
        out.sort_by(|a, b| {
            (a.attack != "none", &a.attack, a.budget, b.examples).cmp(&(
                b.attack != "none",
                &b.attack,
                b.budget,
                a.examples,
            ))
        });
        Ok(out)
    }

    /// The per-text results of an evaluation, if written.
    pub fn examples(&self, attack: &str, budget: usize) -> Result<Vec<TextAttackResult>> {
        let path = self
            .run
            .file(&format!("examples-{}.jsonl", eval_stem(attack, budget)));
        if path.exists() {
            read_jsonl(&path)
        } else {
            Ok(Vec::new())
        }
    }

    /// The end of training: the saved model's clean test accuracy, the summary, then each of
    /// `config.eval_attacks` on the test texts, every record written as it is measured.
    pub fn final_evaluation(
        &self,
        config: &TextRunConfig,
        trained: &TrainedText,
        data: &TextSplits,
        device: &Device,
        progress: &dyn Progress,
    ) -> Result<TextFinalEvaluation> {
        let model = self.load_model(config, device)?;
        let seed = config.data_seed;
        let (clean, _) = evaluate_text(&model, &data.test, None, seed)?;
        self.write_eval(&clean, &[], false)?;
        let summary = TextSummary {
            dataset: config.dataset.clone(),
            provenance: data.all_train.provenance.clone(),
            classes: data.all_train.classes.clone(),
            train_examples: data.train.len(),
            train_class_counts: data.train.class_counts(),
            test_examples: data.test.len(),
            test_class_counts: data.test.class_counts(),
            clean_test_accuracy: clean.clean_accuracy,
            epochs_completed: trained.history.len(),
            train_seconds: trained.train_seconds,
            test_data_sha256: Some(data.test.fingerprint()),
        };
        self.write_summary(&summary)?;
        if data.test.num_classes() == 2 {
            let evasion = self.evasion(&model, config, data, progress)?;
            return Ok(TextFinalEvaluation {
                summary,
                clean,
                attacked: Vec::new(),
                evasion,
            });
        }
        let mut attacked = Vec::new();
        for attack in &config.eval_attacks {
            progress.note(&format!(
                "evaluating under {} (budget {})",
                attack.name(),
                attack.budget()
            ));
            let (record, results) = evaluate_text(&model, &data.test, Some(attack), seed)?;
            self.write_eval(&record, &results, false)?;
            attacked.push(record);
        }
        Ok(TextFinalEvaluation {
            summary,
            clean,
            attacked,
            evasion: Vec::new(),
        })
    }

    /// Evasion of the run's model at `config.train.fpr`: the threshold chosen on the benign
    /// calibration texts ([`TextSplits::calibration`]), then clean and each of `config.eval_attacks` on the test texts,
    /// each record written as it is measured.
    fn evasion(
        &self,
        model: &TextModel,
        config: &TextRunConfig,
        data: &TextSplits,
        progress: &dyn Progress,
    ) -> Result<Vec<EvasionRecord>> {
        let fpr = config.train.fpr;
        let run = self.evasion_run(model, &data.calibration, fpr, config.data_seed)?;
        let sha = self.run.model_sha256()?;
        let mut out =
            vec![evaluate_streamed(self.path(), &run, &data.test, None, sha.clone(), "")?.0];
        for attack in &config.eval_attacks {
            progress.note(&format!(
                "evasion under {} (budget {}) at {:.1}% FPR",
                attack.name(),
                attack.budget(),
                100.0 * fpr
            ));
            out.push(
                evaluate_streamed(self.path(), &run, &data.test, Some(attack), sha.clone(), "")?.0,
            );
        }
        Ok(out)
    }

    /// The file-stem suffix of an evasion evaluation on `test`: `-n<N>` for the first `N`
    /// texts only (`limit`), `-data<sha>` for texts other than the run's own test set, so
    /// neither ever replaces the full test set's files; empty for the run's own test set.
    pub fn evasion_suffix(&self, test: &TextDataset, limit: Option<usize>) -> Result<String> {
        if let Some(n) = limit.filter(|&n| n < test.len()) {
            return Ok(format!("-n{n}"));
        }
        let own = self.summary()?.and_then(|s| s.test_data_sha256);
        let this = test.fingerprint();
        Ok(match own {
            Some(own) if own != this => format!("-data{}", &this[..8]),
            _ => String::new(),
        })
    }

    /// The evasion evaluation of this run's `model` at `fpr`, its threshold chosen on the
    /// benign texts of `val` (normally [`TextSplits::calibration`]; class 1 is malicious).
    pub fn evasion_run<'m>(
        &self,
        model: &'m TextModel,
        val: &TextDataset,
        fpr: f64,
        seed: u64,
    ) -> Result<EvasionRun<'m>> {
        let target = EvasionTarget::WhiteBox(model);
        Ok(EvasionRun {
            target,
            target_name: "model".to_string(),
            positive: 1,
            threshold: choose_threshold(target, val, 1, fpr)?,
            chunk: DEFAULT_CHUNK,
            seed,
        })
    }

    /// Evasion records of the run's current weights.
    pub fn evasion_records(&self) -> Result<Vec<EvasionRecord>> {
        let sha = self.run.model_sha256()?;
        super::evasion_files::read_evasion_records(self.path(), sha.as_deref())
    }
}
