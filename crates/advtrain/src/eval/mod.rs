//! Evaluation: clean and robust accuracy with per-example flags, confidence intervals and
//! accuracy-vs-ε curves.
//!
//! An example counts as robust only if the model classifies it correctly *and* every
//! adversarial point the attack found is still classified correctly (the convention of
//! RobustBench/AutoAttack). The attack's output is checked against its threat model before it
//! is scored, so a buggy attack cannot inflate or deflate the number silently.

pub mod audit;
pub mod calibration;
pub mod checks;
pub mod ensemble;
pub mod resume;
pub mod spatial;
pub mod spec;

use burn::prelude::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::attack::{int_vec, predict, Attack};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::progress::Progress;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;
use resume::{run_stages, Cover, EvalState, Plan};

/// Accuracy with its 95% Wilson score interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Examples counted as correct (for a robust accuracy: correct clean and after the attack).
    pub correct: usize,
    /// Examples scored: the denominator.
    pub n: usize,
    /// `correct / n` as a fraction in `[0, 1]` (not a percentage); 0 when `n` is 0.
    pub value: f64,
    /// 95% Wilson score interval `[low, high]` for `value`, fractions in `[0, 1]` with
    /// `low <= value <= high`; `[0, 1]` when `n` is 0 (nothing is known).
    pub ci95: [f64; 2],
}

impl Accuracy {
    /// `correct` of `n`, with the value and its 95% Wilson interval (z = 1.96) filled in, so
    /// every `Accuracy` carries its interval. `n = 0` gives value 0 and the interval `[0, 1]`
    /// rather than NaN. Expects `correct <= n`.
    pub fn new(correct: usize, n: usize) -> Self {
        let value = if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        };
        Self {
            correct,
            n,
            value,
            ci95: wilson_interval(correct, n, 1.96),
        }
    }

    /// `87.3% [86.6, 87.9]`
    pub fn display(&self) -> String {
        format!(
            "{:.2}% [{:.2}, {:.2}]",
            100.0 * self.value,
            100.0 * self.ci95[0],
            100.0 * self.ci95[1]
        )
    }
}

/// Wilson score interval for a binomial proportion (better than the normal approximation
/// near 0 and 1, where robust accuracies often are).
pub fn wilson_interval(successes: usize, n: usize, z: f64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let n_f = n as f64;
    let p = successes as f64 / n_f;
    let z2 = z * z;
    let denom = 1.0 + z2 / n_f;
    let centre = (p + z2 / (2.0 * n_f)) / denom;
    let half = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt() / denom;
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

/// The outcome of attacking every example of a data set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RobustEval {
    /// The attack, as its [`Attack::name`] describes it (settings and threat model), or the
    /// ensemble's name when the result comes from [`ensemble::EnsembleResult::as_eval`].
    pub attack: String,
    /// The threat model the attack ran under; every adversarial input was checked to lie
    /// inside it (and inside `[0, 1]`) before it was scored.
    pub threat: ThreatModel,
    /// Number of examples evaluated: the length of every per-example vector below.
    pub n: usize,
    /// Accuracy on the clean inputs.
    pub clean: Accuracy,
    /// Fraction correct clean *and* after the attack, so never above `clean`.
    pub robust: Accuracy,
    /// Per example: classified correctly on the clean input.
    pub clean_correct: Vec<bool>,
    /// Per example: correct on the clean input and on the attack's output.
    pub robust_correct: Vec<bool>,
    /// Per example: the true label.
    pub labels: Vec<u8>,
    /// Per example: the prediction on the adversarial input.
    pub adv_pred: Vec<u8>,
    /// Per example: the prediction on the clean input (what an imported model's agreement
    /// with its framework is checked on).
    pub clean_pred: Vec<u8>,
    /// The largest perturbation the attack produced, in the threat model's norm.
    pub max_perturbation: f32,
    /// Wall-clock seconds for the whole evaluation, clean predictions included.
    pub seconds: f64,
}

impl RobustEval {
    /// Accuracy per class: (clean, robust).
    pub fn per_class(&self, num_classes: usize) -> Vec<(Accuracy, Accuracy)> {
        (0..num_classes)
            .map(|c| {
                let idx: Vec<usize> = (0..self.n)
                    .filter(|&i| self.labels[i] as usize == c)
                    .collect();
                let clean = idx.iter().filter(|&&i| self.clean_correct[i]).count();
                let robust = idx.iter().filter(|&&i| self.robust_correct[i]).count();
                (
                    Accuracy::new(clean, idx.len()),
                    Accuracy::new(robust, idx.len()),
                )
            })
            .collect()
    }
}

/// Clean accuracy flags for every example (model switched to evaluation mode).
pub fn clean_flags<M: Classifier>(
    model: &M,
    data: &Dataset,
    batch_size: usize,
    progress: &dyn Progress,
) -> Vec<bool> {
    let model = model.valid();
    let device = first_device(&model);
    let order: Vec<usize> = (0..data.len()).collect();
    let mut flags = Vec::with_capacity(data.len());
    progress.begin("clean", data.len() as u64);
    for chunk in order.chunks(batch_size.max(1)) {
        let (x, y) = data.batch(chunk, &device);
        flags.extend(correct(&predict(&model, x), &y));
        progress.advance(chunk.len() as u64, "");
    }
    progress.end();
    flags
}

/// Clean accuracy of `model` on `data`.
pub fn clean_accuracy<M: Classifier>(
    model: &M,
    data: &Dataset,
    batch_size: usize,
    progress: &dyn Progress,
) -> Accuracy {
    let flags = clean_flags(model, data, batch_size, progress);
    Accuracy::new(flags.iter().filter(|&&f| f).count(), flags.len())
}

/// Attacks every example of `data` and scores the result.
///
/// Fails if the attack leaves its threat model (beyond float rounding) or the model
/// returns non-finite logits.
pub fn evaluate<M: Classifier, A: Attack>(
    model: &M,
    data: &Dataset,
    attack: &A,
    batch_size: usize,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<RobustEval> {
    let name = attack.name();
    let plan = Plan {
        name: &name,
        attacks: std::slice::from_ref(attack),
        cover: Cover::All,
        batch_size,
    };
    let state = run_stages(model, data, &plan, None, rng, &mut |_| Ok(()), progress)?;
    Ok(state.robust_eval())
}

impl EvalState {
    /// The outcome as a [`RobustEval`] named after the evaluation.
    pub fn robust_eval(&self) -> RobustEval {
        let n = self.labels.len();
        let count = |v: &[bool]| v.iter().filter(|&&c| c).count();
        RobustEval {
            attack: self.key.name.clone(),
            threat: self.key.threat,
            n,
            clean: Accuracy::new(count(&self.clean_correct), n),
            robust: Accuracy::new(count(&self.robust_correct), n),
            clean_correct: self.clean_correct.clone(),
            robust_correct: self.robust_correct.clone(),
            labels: self.labels.clone(),
            adv_pred: self.adv_pred.clone(),
            clean_pred: self.clean_pred.clone(),
            max_perturbation: self.max_perturbation,
            seconds: self.seconds,
        }
    }
}

/// One point of an accuracy-vs-ε curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Radius ε of the attack's ball, in pixel units of `[0, 1]` images, in the curve's norm
    /// (the norm is not stored here: it is the one the whole curve was run with).
    pub eps: f32,
    /// Robust accuracy at this ε; at ε = 0 it is the clean accuracy, measured without
    /// attacking.
    pub robust: Accuracy,
}

/// Robust accuracy at each ε, attacking with `make_attack(ε)`. At ε = 0 no attack can move
/// a point, so the clean accuracy is the exact value: it is measured without attacking
/// (one forward pass, and no draws from `rng`, so the other points do not depend on
/// whether 0 is on the curve).
pub fn eps_curve<M: Classifier, A: Attack>(
    model: &M,
    data: &Dataset,
    eps_values: &[f32],
    make_attack: impl Fn(f32) -> A,
    batch_size: usize,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Vec<CurvePoint>> {
    eps_values
        .iter()
        .map(|&eps| {
            if eps == 0.0 {
                let robust = clean_accuracy(model, data, batch_size, progress);
                return Ok(CurvePoint { eps, robust });
            }
            let result = evaluate(model, data, &make_attack(eps), batch_size, rng, progress)?;
            Ok(CurvePoint {
                eps,
                robust: result.robust,
            })
        })
        .collect()
}

fn correct(pred: &Tensor<1, Int>, y: &Tensor<1, Int>) -> Vec<bool> {
    int_vec(pred)
        .into_iter()
        .zip(int_vec(y))
        .map(|(p, l)| p == l)
        .collect()
}

fn check_finite(logits: &Tensor<2>) -> Result<()> {
    let bad = logits
        .clone()
        .is_finite()
        .bool_not()
        .any()
        .into_scalar::<bool>();
    if bad {
        return Err(Error::Diverged(
            "the model produced NaN or infinite logits".into(),
        ));
    }
    Ok(())
}

/// The device holding a model's parameters (Flex if it has none).
pub fn first_device<M: Classifier>(model: &M) -> burn::prelude::Device {
    model
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(burn::prelude::Device::flex)
        .without_autodiff()
}
