//! Run records: what a run directory holds, as typed structs.
//!
//! Scripts depend on these keys (see DESIGN.md): every `eval-<attack>.json` has `attack`,
//! `norm`, `eps`, `n`, `clean_accuracy`, `robust_accuracy`; `summary.json` has `method`,
//! `eps`, `epochs`, `train_seconds`, `clean_accuracy`, `robust_accuracy`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::eval::{Accuracy, CurvePoint, RobustEval};
use crate::model::{ModelKind, ModelShape, Normalization};
use crate::threat::Norm;
use crate::train::TrainConfig;

/// File names inside a run directory.
pub mod files {
    pub const CONFIG: &str = "config.toml";
    pub const METRICS: &str = "metrics.jsonl";
    pub const MODEL: &str = "model.safetensors";
    pub const SUMMARY: &str = "summary.json";
    /// `eval-<attack>.json`
    pub fn eval(attack: &str) -> String {
        format!("eval-{attack}.json")
    }
}

/// The fully resolved configuration of a training run (`config.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub advtrain_version: String,
    pub dataset: String,
    pub data_dir: PathBuf,
    /// Only the first `limit` training and test examples were used.
    pub limit: Option<usize>,
    pub val_size: usize,
    pub model: ModelKind,
    pub shape: ModelShape,
    pub normalization: Option<Normalization>,
    pub device: String,
    pub threads: Option<usize>,
    pub train: TrainConfig,
    /// Steps of the PGD run on the test set after training (0: none).
    #[serde(default = "default_final_steps")]
    pub final_steps: usize,
    #[serde(default = "default_final_restarts")]
    pub final_restarts: usize,
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
    pub method: String,
    pub model: String,
    pub dataset: String,
    pub norm: Norm,
    pub eps: f32,
    pub epochs: usize,
    pub train_seconds: f64,
    /// Clean test accuracy.
    pub clean_accuracy: f64,
    pub clean_ci95: [f64; 2],
    /// The lowest robust test accuracy any evaluation at the training ε found.
    pub robust_accuracy: Option<f64>,
    pub robust_ci95: Option<[f64; 2]>,
    /// The attack that gave `robust_accuracy`.
    pub robust_attack: Option<String>,
    pub n_test: usize,
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

/// Which epoch's checkpoint won, why, and how it does on the test set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestCheckpoint {
    pub epoch: usize,
    pub file: String,
    /// In words, e.g. "highest validation PGD-10 accuracy (74.2%) over 15 epochs".
    pub why: String,
    pub criterion: String,
    pub val_value: f64,
    /// The same criterion at the last epoch.
    pub last_epoch_val_value: Option<f64>,
    pub test_clean_accuracy: Option<f64>,
    pub test_robust_accuracy: Option<f64>,
    pub test_robust_ci95: Option<[f64; 2]>,
}

impl Summary {
    /// Folds an evaluation in: the robust accuracy at the training threat model is the
    /// worst case over all attacks run so far.
    pub fn absorb(&mut self, eval: &EvalRecord) {
        self.clean_accuracy = eval.clean_accuracy;
        self.clean_ci95 = eval.clean_ci95;
        self.n_test = eval.n;
        let same_threat = eval.norm == self.norm && (eval.eps - self.eps).abs() <= 1e-6;
        if same_threat
            && self
                .robust_accuracy
                .is_none_or(|r| eval.robust_accuracy <= r)
        {
            self.robust_accuracy = Some(eval.robust_accuracy);
            self.robust_ci95 = Some(eval.robust_ci95);
            self.robust_attack = Some(eval.attack_description.clone());
        }
    }
}

/// One robust evaluation (`eval-<attack>.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Attack family, e.g. `pgd`, `fgsm`.
    pub attack: String,
    /// Full description with settings.
    pub attack_description: String,
    pub norm: Norm,
    pub eps: f32,
    pub n: usize,
    pub clean_accuracy: f64,
    pub clean_ci95: [f64; 2],
    pub robust_accuracy: f64,
    pub robust_ci95: [f64; 2],
    pub steps: Option<usize>,
    pub restarts: Option<usize>,
    pub seed: u64,
    pub seconds: f64,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_by: Option<Vec<Option<String>>>,
}

/// Per-class accuracies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    pub class: usize,
    pub name: String,
    pub clean: Accuracy,
    pub robust: Accuracy,
}

/// Per-example outcome arrays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerExample {
    pub labels: Vec<u8>,
    pub clean_correct: Vec<u8>,
    pub robust_correct: Vec<u8>,
    pub adv_pred: Vec<u8>,
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
            per_example: PerExample {
                labels: result.labels.clone(),
                clean_correct: flags(&result.clean_correct),
                robust_correct: flags(&result.robust_correct),
                adv_pred: result.adv_pred.clone(),
            },
        }
    }
}
