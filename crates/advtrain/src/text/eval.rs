//! Evaluating text classifiers: clean accuracy, accuracy under an attack, attack success rate,
//! edits and queries per text.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::attack::{TextAttackConfig, TextAttackResult};
use super::model::TextModel;
use super::TextDataset;
use crate::error::{Error, Result};

/// Result of evaluating one model under one attack (or none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextEvalRecord {
    /// `none`, `deepwordbug` or `hotflip`.
    pub attack: String,
    /// The attack's full settings (absent for clean evaluation).
    pub attack_config: Option<TextAttackConfig>,
    /// Edits allowed per text (0 for clean evaluation).
    pub budget: usize,
    /// The evaluated data set's name ([`TextDataset::name`]).
    pub dataset: String,
    /// Number of texts evaluated.
    pub examples: usize,
    /// Fraction of texts classified correctly as given, in `[0, 1]`.
    pub clean_accuracy: f64,
    /// Accuracy on the attacked texts (equals clean accuracy without an attack).
    pub robust_accuracy: f64,
    /// Of the texts classified correctly when clean, the share the attack flipped.
    pub attack_success_rate: f64,
    /// Mean edits over successful attacks.
    pub mean_edits: f64,
    /// Mean model queries per attacked text (black-box cost).
    pub mean_queries: f64,
    /// Wall-clock seconds for the evaluation.
    pub seconds: f64,
    /// Per-class clean and robust accuracy, in class order.
    pub per_class: Vec<TextClassAccuracy>,
    /// Fingerprint of the texts evaluated ([`TextDataset::fingerprint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_data_sha256: Option<String>,
    /// SHA-256 of the weights evaluated, stamped when the record is written to a run: a
    /// result belongs to the model it measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
}

/// Clean and robust accuracy of the texts of one true class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextClassAccuracy {
    /// The class's name (its index as text if the data set has no name for it).
    pub class: String,
    /// Texts of this class evaluated.
    pub examples: usize,
    /// Fraction of them classified correctly when clean (0 when there are none).
    pub clean_accuracy: f64,
    /// Fraction of them classified correctly on the attacked text (0 when there are none;
    /// texts wrong when clean are not attacked, so they count as wrong here too).
    pub robust_accuracy: f64,
}

/// Evaluates `model` on `data`, under `attack` if given. Returns the record and, for an
/// attack, every text's result (original, adversarial, edits).
pub fn evaluate_text(
    model: &TextModel,
    data: &TextDataset,
    attack: Option<&TextAttackConfig>,
    seed: u64,
) -> Result<(TextEvalRecord, Vec<TextAttackResult>)> {
    if data.is_empty() {
        return Err(Error::config("the evaluation set is empty"));
    }
    if data.num_classes() != model.config.num_classes {
        return Err(Error::config(format!(
            "the data has {} classes but the model {}",
            data.num_classes(),
            model.config.num_classes
        )));
    }
    let start = Instant::now();
    let results: Vec<TextAttackResult> = match attack {
        Some(a) => {
            a.validate()?;
            a.run(model, &data.texts, &data.labels, seed)?
        }
        None => {
            let pred = model.predict(&data.texts);
            data.texts
                .iter()
                .zip(&data.labels)
                .zip(pred)
                .map(|((t, &l), p)| TextAttackResult {
                    original: t.clone(),
                    adversarial: t.clone(),
                    label: l,
                    clean_prediction: p,
                    adversarial_prediction: p,
                    edits: Vec::new(),
                    queries: 1,
                })
                .collect()
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let record = summarize(model, data, attack, &results, seconds);
    Ok((record, results))
}

/// Aggregates per-text results into a record.
pub fn summarize(
    model: &TextModel,
    data: &TextDataset,
    attack: Option<&TextAttackConfig>,
    results: &[TextAttackResult],
    seconds: f64,
) -> TextEvalRecord {
    let n = results.len().max(1) as f64;
    let clean = results
        .iter()
        .filter(|r| r.clean_prediction == r.label)
        .count();
    let robust = results.iter().filter(|r| r.robust()).count();
    let successes: Vec<&TextAttackResult> = results.iter().filter(|r| r.success()).collect();
    let per_class = (0..model.config.num_classes)
        .map(|c| {
            let of: Vec<&TextAttackResult> = results.iter().filter(|r| r.label == c).collect();
            let m = of.len().max(1) as f64;
            TextClassAccuracy {
                class: data
                    .classes
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| c.to_string()),
                examples: of.len(),
                clean_accuracy: of.iter().filter(|r| r.clean_prediction == c).count() as f64 / m,
                robust_accuracy: of.iter().filter(|r| r.robust()).count() as f64 / m,
            }
        })
        .collect();
    TextEvalRecord {
        attack: attack.map_or("none", |a| a.name()).to_string(),
        attack_config: attack.cloned(),
        budget: attack.map_or(0, |a| a.budget()),
        dataset: data.name.clone(),
        examples: results.len(),
        clean_accuracy: clean as f64 / n,
        robust_accuracy: robust as f64 / n,
        attack_success_rate: if clean > 0 {
            successes.len() as f64 / clean as f64
        } else {
            0.0
        },
        mean_edits: if successes.is_empty() {
            0.0
        } else {
            successes.iter().map(|r| r.edits.len()).sum::<usize>() as f64 / successes.len() as f64
        },
        mean_queries: results.iter().map(|r| r.queries).sum::<usize>() as f64 / n,
        seconds,
        per_class,
        test_data_sha256: Some(data.fingerprint()),
        model_sha256: None,
    }
}
