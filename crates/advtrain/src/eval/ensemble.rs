//! An AutoAttack-style ensemble: diverse attacks run in sequence, each only on the points
//! every earlier attack failed to break, so a point counts as robust only if it survives
//! all of them (the per-point worst case), at little more cost than the strongest one.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{evaluate, first_device, Accuracy, RobustEval};
use crate::attack::{int_vec, predict};
use crate::attack::{AnyAttack, Apgd, ApgdTargeted, Attack, Square};
use crate::data::Dataset;
use crate::error::Result;
use crate::model::Classifier;
use crate::progress::Progress;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;

/// Which ensemble to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnsemblePreset {
    /// AutoAttack "standard" without FAB-T: APGD-CE (100 iterations), APGD-T (9 targets ×
    /// 100 iterations), Square (5,000 queries, p_init 0.8).
    Standard,
    /// A cheaper screen, named as such: APGD-CE (25), APGD-T (3 targets × 25), Square
    /// (1,000 queries). Use `Standard` for numbers you publish.
    Fast,
}

impl EnsemblePreset {
    /// The ensemble's name in records and reports: `"autoattack"` or `"autoattack-fast"`.
    pub fn name(&self) -> &'static str {
        match self {
            EnsemblePreset::Standard => "autoattack",
            EnsemblePreset::Fast => "autoattack-fast",
        }
    }

    /// The attacks of the preset at `threat`, in the order they run.
    pub fn attacks(&self, threat: ThreatModel) -> Vec<AnyAttack> {
        let (steps, targets, queries) = match self {
            EnsemblePreset::Standard => (100, 9, 5000),
            EnsemblePreset::Fast => (25, 3, 1000),
        };
        vec![
            AnyAttack::Apgd(Apgd::new(threat).steps(steps)),
            AnyAttack::ApgdTargeted(ApgdTargeted::new(threat).steps(steps).targets(targets)),
            AnyAttack::Square(Square::new(threat).queries(queries)),
        ]
    }
}

/// What one stage of the ensemble did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// The stage's attack, as its [`Attack::name`] describes it (budget and threat model).
    pub attack: String,
    /// Points still robust when the stage started.
    pub attacked: usize,
    /// Of those, how many it broke.
    pub broken: usize,
    /// Robust accuracy over the whole set after this stage.
    pub robust_after: f64,
    /// Wall-clock seconds the stage took.
    pub seconds: f64,
}

/// The ensemble's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnsembleResult {
    /// The ensemble's name (e.g. [`EnsemblePreset::name`]), used as the attack name.
    pub name: String,
    /// The threat model of the first attack (all stages share it); an L∞ ball of radius 0
    /// when there were no attacks.
    pub threat: ThreatModel,
    /// Number of examples evaluated.
    pub n: usize,
    /// Accuracy on the clean inputs.
    pub clean: Accuracy,
    /// Fraction correct clean and after every stage: the per-point worst case.
    pub robust: Accuracy,
    /// Per example: classified correctly on the clean input.
    pub clean_correct: Vec<bool>,
    /// Per example: correct on the clean input and not broken by any stage.
    pub robust_correct: Vec<bool>,
    /// Per example: the attack that broke it (`None`: robust, or wrong already when clean).
    pub broken_by: Vec<Option<String>>,
    /// Per example: the prediction on the adversarial input that broke it (else the clean
    /// prediction).
    pub adv_pred: Vec<u8>,
    /// Per example: the true label.
    pub labels: Vec<u8>,
    /// One entry per attack, in the order they ran.
    pub stages: Vec<Stage>,
    /// The largest perturbation any stage produced, in the threat model's norm (checked
    /// against ε by the evaluation).
    pub max_perturbation: f32,
    /// Wall-clock seconds for the whole ensemble, clean predictions included.
    pub seconds: f64,
}

/// Runs `attacks` in order, each on the points still robust, and keeps the worst case.
pub fn ensemble<M: Classifier>(
    name: &str,
    model: &M,
    data: &Dataset,
    attacks: &[AnyAttack],
    batch_size: usize,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<EnsembleResult> {
    let start = Instant::now();
    let threat = attacks
        .first()
        .map(|a| a.threat())
        .unwrap_or(ThreatModel::linf(0.0));
    let eval_model = model.valid();
    let device = first_device(&eval_model);
    let mut adv_pred = Vec::with_capacity(data.len());
    let order: Vec<usize> = (0..data.len()).collect();
    for chunk in order.chunks(batch_size.max(1)) {
        let (x, _) = data.batch(chunk, &device);
        adv_pred.extend(
            int_vec(&predict(&eval_model, x))
                .into_iter()
                .map(|p| p as u8),
        );
    }
    let clean_correct: Vec<bool> = (0..data.len())
        .map(|i| adv_pred[i] == data.labels[i])
        .collect();
    let mut robust_correct = clean_correct.clone();
    let mut broken_by = vec![None; data.len()];
    let mut stages = Vec::new();
    let mut max_pert = 0.0f32;
    for attack in attacks {
        let idx: Vec<usize> = (0..data.len()).filter(|&i| robust_correct[i]).collect();
        let stage_start = Instant::now();
        let mut broken = 0;
        if !idx.is_empty() {
            let sub = data.subset(&idx);
            let r = evaluate(model, &sub, attack, batch_size, rng, progress)?;
            max_pert = max_pert.max(r.max_perturbation);
            for (k, &i) in idx.iter().enumerate() {
                if !r.robust_correct[k] {
                    robust_correct[i] = false;
                    adv_pred[i] = r.adv_pred[k];
                    broken_by[i] = Some(attack.name());
                    broken += 1;
                }
            }
        }
        let robust_now = robust_correct.iter().filter(|&&r| r).count();
        progress.note(&format!(
            "{}: broke {broken} of {} points; robust accuracy now {:.2}%",
            attack.name(),
            idx.len(),
            100.0 * robust_now as f64 / data.len().max(1) as f64
        ));
        stages.push(Stage {
            attack: attack.name(),
            attacked: idx.len(),
            broken,
            robust_after: robust_now as f64 / data.len().max(1) as f64,
            seconds: stage_start.elapsed().as_secs_f64(),
        });
    }
    let n = data.len();
    Ok(EnsembleResult {
        name: name.to_string(),
        threat,
        n,
        clean: Accuracy::new(clean_correct.iter().filter(|&&c| c).count(), n),
        robust: Accuracy::new(robust_correct.iter().filter(|&&c| c).count(), n),
        clean_correct,
        robust_correct,
        broken_by,
        adv_pred,
        labels: data.labels.clone(),
        stages,
        max_perturbation: max_pert,
        seconds: start.elapsed().as_secs_f64(),
    })
}

impl EnsembleResult {
    /// The result in the shape of a single-attack evaluation (for records and reports).
    pub fn as_eval(&self) -> RobustEval {
        RobustEval {
            attack: self.name.clone(),
            threat: self.threat,
            n: self.n,
            clean: self.clean,
            robust: self.robust,
            clean_correct: self.clean_correct.clone(),
            robust_correct: self.robust_correct.clone(),
            labels: self.labels.clone(),
            adv_pred: self.adv_pred.clone(),
            max_perturbation: self.max_perturbation,
            seconds: self.seconds,
        }
    }
}
