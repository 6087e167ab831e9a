//! Runs: the directory a training run writes ([`RunDir`]), its records as typed structs,
//! and the run-level steps every front end needs (the end-of-training evaluation, an
//! evaluation under an [`AttackSpec`](crate::eval::spec::AttackSpec)).
//!
//! ```text
//! runs/fashion-mnist-small-cnn-fgsm-rs-eps0.1/
//!   config.toml              task = "image" | "text", and the fully resolved settings
//!   metrics.jsonl            one line per finished epoch
//!   model.safetensors        the latest (at the end: the final) weights
//!   model-best.safetensors   the best checkpoint's weights
//!   checkpoint.ckpt          the newest checkpoint (and checkpoint.prev.ckpt before it)
//!   summary.json             the headline numbers
//!   eval-<tag>.json          one record per evaluation (text runs: also examples-<tag>.jsonl);
//!                            the tag names every setting that differs from the attack's
//!                            reference (`pgd-steps1`), a subset (`-n500`) and other data
//!                            (`-data<hash>`), so no evaluation replaces a different one
//!   checks.json              the sanity checklist, when asked for (`checks-n<N>.json`: one
//!                            on fewer points than checks.json, kept beside it)
//!   .advtrain.lock           held by the one process writing the run (train, eval, ...)
//!   surrogate-standard.safetensors  the checklist's transfer surrogate (a standard model)
//!   report.html
//! ```
//!
//! Scripts depend on these keys (see DESIGN.md): every `eval-<attack>.json` has `attack`,
//! `norm`, `eps`, `n`, `clean_accuracy`, `robust_accuracy`; `summary.json` has `method`,
//! `eps`, `epochs`, `train_seconds`, `clean_accuracy`, `robust_accuracy`.
//!
//! Every result records what it measured: `model_sha256` (the weights' tensors) and
//! `test_data_sha256` (the test points). The summary combines only evaluations of the current
//! weights on its own test data, and the report shows only the current weights' results.

mod audit;
pub(crate) mod dir;
mod evaluate;
mod export;
mod finish;
mod image;
mod import;
mod surrogate;
mod worst_case;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::eval::{Accuracy, CurvePoint, RobustEval};
use crate::model::onnx::{InputRange, OnnxOptions};
use crate::model::{ModelKind, ModelShape, Normalization};
use crate::threat::Norm;
use crate::train::TrainConfig;

pub use audit::{current_audit, read_audit_record, AuditRecord};
pub use dir::{
    current_checks, current_evals, read_checks_record, ChecksRecord, EpochRecorder, EvalFile,
    RecordedEval, RunDir, RunLock, Task, LOCK_FILE,
};
pub use evaluate::{evaluate_spec, EvalRequest, SpecEvaluation};
pub use export::{export_run, ExportFormat, ExportWeights};
pub use finish::{final_evaluation, final_tag, BestOutcome, FinalEvaluation, FINAL_TAG};
pub use image::ImageSplits;
pub use import::{import_onnx, read_onnx, sha256_hex, ImportRequest, LoadedOnnx};
pub use surrogate::{
    checks_surrogate, standard_surrogate, surrogate_from_run, surrogate_train_config, Surrogate,
    SURROGATE_EPOCHS, SURROGATE_SEED,
};
pub use worst_case::{worst_case, WorstCase};

/// File names inside a run directory, written once so every reader and writer agrees.
pub mod files {
    /// The run's settings (TOML), with `task = "image" | "text"`.
    pub const CONFIG: &str = "config.toml";
    /// One JSON line per finished epoch.
    pub const METRICS: &str = "metrics.jsonl";
    /// The latest weights (safetensors).
    pub const MODEL: &str = "model.safetensors";
    /// The best checkpoint's weights, written by the training loop.
    pub const BEST_MODEL: &str = crate::train::BEST_MODEL;
    /// The headline numbers (JSON).
    pub const SUMMARY: &str = "summary.json";
    /// The side-effects audit of the current weights on the run's own test set, written by
    /// `eval --audit`.
    pub const AUDIT: &str = "audit.json";
    /// The sanity checklist, written by an evaluation that asks for it.
    pub const CHECKS: &str = "checks.json";
    /// The checklist's standard surrogate model for the transfer check, trained once on the
    /// run's training data and reused.
    pub const SURROGATE: &str = "surrogate-standard.safetensors";
    /// The HTML report.
    pub const REPORT: &str = "report.html";
    /// An imported model's ONNX file, copied into the run so the run stands alone (its
    /// weights are the starting point; `model.safetensors` holds them after training).
    pub const ONNX: &str = "model.onnx";
    /// `eval-<attack>.json`
    pub fn eval(attack: &str) -> String {
        format!("eval-{attack}.json")
    }
}

/// The fully resolved configuration of a training run (`config.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Always [`Task::Image`]: the key tells image runs from text runs at a glance. Run
    /// directories written before it existed have no key, and are image runs.
    #[serde(default)]
    pub task: Task,
    /// The advtrain that trained the run, so a reader knows which code the numbers are from.
    pub advtrain_version: String,
    /// The data set's name (`fashion-mnist`, `mnist`, `cifar10`).
    pub dataset: String,
    /// Where its files were read from (an evaluation reads the test split from here).
    pub data_dir: PathBuf,
    /// Only the first `limit` training and test examples were used.
    pub limit: Option<usize>,
    /// Validation examples held out of the training split.
    pub val_size: usize,
    /// The architecture, rebuilt to load the weights, or `onnx` for an imported model
    /// (see `onnx`).
    pub model: RunModelKind,
    /// An imported model: where its ONNX file came from and how it is fed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<OnnxImport>,
    /// Class names given by the user (`--class-names`), over the data set's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    /// Input shape and class count of the model.
    pub shape: ModelShape,
    /// Input normalisation inside the model (CIFAR-10), if any.
    pub normalization: Option<Normalization>,
    /// The device trained on (a record; evaluation may use another).
    pub device: String,
    /// CPU threads used, if set.
    pub threads: Option<usize>,
    /// The training settings proper. A run made by `advtrain eval --model` (an imported
    /// model evaluated as it is) has `epochs = 0`, and its `eps` is the radius it was
    /// first evaluated at.
    pub train: TrainConfig,
    /// Steps of the PGD run on the test set after training (0: none).
    #[serde(default = "default_final_steps")]
    pub final_steps: usize,
    /// Restarts of that PGD.
    #[serde(default = "default_final_restarts")]
    pub final_restarts: usize,
}

/// Which network a run holds: a zoo architecture (`small-cnn`, ...) or an imported ONNX
/// file (`onnx`), written as that one word in `config.toml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum RunModelKind {
    /// One of advtrain's own architectures.
    Zoo(ModelKind),
    /// The run's `model.onnx`.
    Onnx,
}

impl RunModelKind {
    /// The zoo architecture, `None` for an imported model.
    pub fn zoo(self) -> Option<ModelKind> {
        match self {
            RunModelKind::Zoo(k) => Some(k),
            RunModelKind::Onnx => None,
        }
    }
}

impl std::fmt::Display for RunModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunModelKind::Zoo(k) => k.fmt(f),
            RunModelKind::Onnx => f.write_str("onnx"),
        }
    }
}

impl std::str::FromStr for RunModelKind {
    type Err = Error;
    fn from_str(s: &str) -> crate::error::Result<Self> {
        match s {
            "onnx" => Ok(RunModelKind::Onnx),
            zoo => zoo.parse().map(RunModelKind::Zoo),
        }
    }
}

impl From<RunModelKind> for String {
    fn from(kind: RunModelKind) -> String {
        kind.to_string()
    }
}

impl TryFrom<String> for RunModelKind {
    type Error = Error;
    fn try_from(s: String) -> crate::error::Result<Self> {
        s.parse()
    }
}

impl From<ModelKind> for RunModelKind {
    fn from(kind: ModelKind) -> Self {
        RunModelKind::Zoo(kind)
    }
}

/// Where an imported model came from, so a reader can tell which file the numbers are of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnnxImport {
    /// The file it was imported from (a copy is the run's `model.onnx`).
    pub source: PathBuf,
    /// SHA-256 of that file, in hex.
    pub sha256: String,
    /// Its default-domain opset.
    pub opset: i64,
    /// The pixel range it expects; advtrain scales `[0, 1]` images to it inside the model.
    #[serde(default)]
    pub input_range: InputRange,
    /// The image shape given for a graph with a flat input (`--input-shape`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_shape: Option<[usize; 3]>,
}

impl RunConfig {
    /// Whether the run only evaluates an imported model (made by `advtrain eval --model`,
    /// never trained here).
    pub fn is_import_only(&self) -> bool {
        self.onnx.is_some() && self.train.epochs == 0
    }

    /// How an imported model is fed (its recorded input range, normalisation and shape).
    pub fn onnx_options(&self) -> crate::error::Result<OnnxOptions> {
        let onnx = self
            .onnx
            .as_ref()
            .ok_or_else(|| Error::config("config.toml: model = \"onnx\" needs an [onnx] table"))?;
        Ok(OnnxOptions {
            input_range: onnx.input_range,
            normalization: self.normalization.clone(),
            image_shape: onnx.image_shape,
        })
    }

    /// The model's name in records and reports: the architecture, or `onnx:<file name>`.
    pub fn model_name(&self) -> String {
        match (&self.model, &self.onnx) {
            (RunModelKind::Onnx, Some(o)) => format!(
                "onnx:{}",
                o.source
                    .file_name()
                    .map_or("model.onnx".into(), |n| n.to_string_lossy())
            ),
            (kind, _) => kind.to_string(),
        }
    }

    /// The class names evaluations print and record: the user's, else the data's.
    pub fn class_names_or(&self, data: &crate::data::Dataset) -> Vec<String> {
        self.class_names
            .clone()
            .unwrap_or_else(|| data.class_names.clone())
    }
}

fn default_final_steps() -> usize {
    20
}

fn default_final_restarts() -> usize {
    1
}

/// The headline numbers of a run (`summary.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The training method's name.
    pub method: String,
    /// The architecture's name.
    pub model: String,
    /// The data set's name.
    pub dataset: String,
    /// The training threat model's norm...
    pub norm: Norm,
    /// ...and radius: robust accuracies at this threat model are the headline.
    pub eps: f32,
    /// Epochs trained.
    pub epochs: usize,
    /// Wall-clock seconds of training, over every process of a resumed run.
    pub train_seconds: f64,
    /// Clean test accuracy.
    pub clean_accuracy: f64,
    /// Its 95% Wilson interval.
    pub clean_ci95: [f64; 2],
    /// Robust test accuracy at the training threat model: the per-point worst case over
    /// every evaluation there on the full test set (see `robust_combined`).
    pub robust_accuracy: Option<f64>,
    /// Its 95% Wilson interval.
    pub robust_ci95: Option<[f64; 2]>,
    /// The attack that gave `robust_accuracy`, or the attacks whose per-point results were
    /// combined into it.
    pub robust_attack: Option<String>,
    /// The evaluation files combined into `robust_accuracy`, all on the `n_test` points.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub robust_combined: Vec<String>,
    /// Evaluations at the training threat model left out of it (a subset, an earlier
    /// model), each with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub robust_left_out: Vec<String>,
    /// Test examples the accuracies are over.
    pub n_test: usize,
    /// SHA-256 of those test examples ([`crate::data::Dataset::fingerprint`]): an evaluation
    /// on other data (`eval --data`), even of the same size, never changes the headline.
    /// Summaries written before it existed have none; the first evaluation on the run's own
    /// data directory sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_data_sha256: Option<String>,
    /// The best checkpoint by validation accuracy (Rice et al.), beside the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_checkpoint: Option<BestCheckpoint>,
    /// Why the health monitor stopped training early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// How many times the monitor rolled training back.
    #[serde(default)]
    pub rollbacks: usize,
}

impl Summary {
    /// The summary of an imported model evaluated as it is, from its evaluation `record`
    /// (the robust accuracy is then combined per point by [`Summary::combine`]).
    pub fn imported(config: &RunConfig, record: &EvalRecord) -> Self {
        Self {
            method: "imported (not trained by advtrain)".into(),
            model: config.model_name(),
            dataset: config.dataset.clone(),
            norm: config.train.norm,
            eps: config.train.eps,
            epochs: 0,
            train_seconds: 0.0,
            clean_accuracy: record.clean_accuracy,
            clean_ci95: record.clean_ci95,
            robust_accuracy: None,
            robust_ci95: None,
            robust_attack: None,
            robust_combined: Vec::new(),
            robust_left_out: Vec::new(),
            n_test: record.n,
            test_data_sha256: record.test_data_sha256.clone(),
            best_checkpoint: None,
            stopped_early: None,
            rollbacks: 0,
        }
    }
}

/// Which epoch's checkpoint won, why, and how it does on the test set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestCheckpoint {
    /// The 1-based epoch whose end it was taken at.
    pub epoch: usize,
    /// Its weights' file in the run directory.
    pub file: String,
    /// In words, e.g. "highest validation PGD-10 accuracy (74.2%) over 15 epochs".
    pub why: String,
    /// What "best" was judged by.
    pub criterion: String,
    /// The criterion's value at that epoch.
    pub val_value: f64,
    /// The same criterion at the last epoch.
    pub last_epoch_val_value: Option<f64>,
    /// Its clean test accuracy.
    pub test_clean_accuracy: Option<f64>,
    /// Its robust test accuracy under the final PGD.
    pub test_robust_accuracy: Option<f64>,
    /// That accuracy's 95% Wilson interval.
    pub test_robust_ci95: Option<[f64; 2]>,
}

/// One robust evaluation (`eval-<attack>.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Attack family, e.g. `pgd`, `fgsm`.
    pub attack: String,
    /// Full description with settings.
    pub attack_description: String,
    /// The threat model's norm...
    pub norm: Norm,
    /// ...and radius.
    pub eps: f32,
    /// Examples evaluated.
    pub n: usize,
    /// Clean accuracy on them.
    pub clean_accuracy: f64,
    /// Its 95% Wilson interval.
    pub clean_ci95: [f64; 2],
    /// Robust accuracy: correct clean and after the attack.
    pub robust_accuracy: f64,
    /// Its 95% Wilson interval.
    pub robust_ci95: [f64; 2],
    /// Iterations, for iterative attacks.
    pub steps: Option<usize>,
    /// Restarts, for attacks that restart.
    pub restarts: Option<usize>,
    /// The seed of the attack's randomness.
    pub seed: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The largest perturbation found, in the threat model's norm (checked ≤ ε).
    pub max_perturbation: f32,
    /// Per class: clean and robust accuracy.
    pub per_class: Vec<ClassAccuracy>,
    /// Robust accuracy at other radii, when an ε-curve was asked for.
    pub eps_curve: Option<Vec<CurvePoint>>,
    /// Per example flags (1 = correct) and predictions, in data-set order.
    pub per_example: PerExample,
    /// Ensembles: what each stage did, and per example which attack broke it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<crate::eval::ensemble::Stage>>,
    /// Ensembles: per example, the attack that broke it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_by: Option<Vec<Option<String>>>,
    /// SHA-256 of the test examples evaluated ([`crate::data::Dataset::fingerprint`]): the
    /// summary combines only evaluations on the run's own test data (records written before
    /// it existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_data_sha256: Option<String>,
    /// SHA-256 of the weights evaluated ([`RunDir::model_sha256`]): a result belongs to the
    /// model it measured, and one of an earlier model is never shown as the current one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
}

/// Per-class accuracies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    /// The class index.
    pub class: usize,
    /// Its name in the data set.
    pub name: String,
    /// Clean accuracy on the class's examples.
    pub clean: Accuracy,
    /// Robust accuracy on them.
    pub robust: Accuracy,
}

/// Per-example outcome arrays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerExample {
    /// True labels.
    pub labels: Vec<u8>,
    /// 1 where the clean prediction is right.
    pub clean_correct: Vec<u8>,
    /// 1 where the example is right clean and after the attack.
    pub robust_correct: Vec<u8>,
    /// The prediction on the adversarial input.
    pub adv_pred: Vec<u8>,
    /// The prediction on the clean input (records written before it was kept have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clean_pred: Vec<u8>,
}

impl EvalRecord {
    /// Builds the record of an evaluation.
    pub fn from_eval(
        attack: &str,
        result: &RobustEval,
        steps: Option<usize>,
        restarts: Option<usize>,
        seed: u64,
        class_names: &[String],
    ) -> Self {
        let per_class = result
            .per_class(class_names.len())
            .into_iter()
            .enumerate()
            .map(|(class, (clean, robust))| ClassAccuracy {
                class,
                name: class_names[class].clone(),
                clean,
                robust,
            })
            .collect();
        let flags = |v: &[bool]| v.iter().map(|&b| u8::from(b)).collect();
        Self {
            attack: attack.to_string(),
            attack_description: result.attack.clone(),
            norm: result.threat.norm,
            eps: result.threat.eps,
            n: result.n,
            clean_accuracy: result.clean.value,
            clean_ci95: result.clean.ci95,
            robust_accuracy: result.robust.value,
            robust_ci95: result.robust.ci95,
            steps,
            restarts,
            seed,
            seconds: result.seconds,
            max_perturbation: result.max_perturbation,
            per_class,
            eps_curve: None,
            stages: None,
            broken_by: None,
            test_data_sha256: None,
            model_sha256: None,
            per_example: PerExample {
                labels: result.labels.clone(),
                clean_correct: flags(&result.clean_correct),
                robust_correct: flags(&result.robust_correct),
                adv_pred: result.adv_pred.clone(),
                clean_pred: result.clean_pred.clone(),
            },
        }
    }
}
