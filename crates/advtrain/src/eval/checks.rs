//! The sanity checklist of Carlini et al. (2019, "On evaluating adversarial robustness"):
//! cheap experiments whose outcome is known for any honest evaluation. A warning means the
//! robust accuracy may be too high (gradient masking, a weak attack, a model left in
//! training mode) and must not be published without a closer look.

use std::collections::BTreeMap;

use burn::prelude::Tensor;
use serde::{Deserialize, Serialize};

use super::{clean_accuracy, evaluate, first_device};
use crate::attack::{cross_entropy, input_gradient_with, Fgsm, Pgd, Square};
use crate::data::Dataset;
use crate::error::Result;
use crate::model::Classifier;
use crate::progress::Progress;
use crate::rng::AdvRng;
use crate::threat::{per_example_l2, Norm, ThreatModel};

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The outcome an honest evaluation has.
    Pass,
    /// The outcome is off: the robust accuracy may be overstated; read the check's detail.
    Warn,
    /// Not applicable (e.g. Square under L2).
    Skip,
}

/// One line of the checklist with the figures behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// 1-based number of the check in the checklist (1 to 7), stable across runs.
    pub id: usize,
    /// Short statement of what the check expects, e.g. "PGD at least as strong as FGSM".
    pub name: String,
    /// Whether the expectation held.
    pub verdict: Verdict,
    /// Plain-words explanation of the verdict.
    pub detail: String,
    /// The measurements behind the verdict by name (e.g. `"pgd"`, `"fgsm"`); accuracies and
    /// fractions are in `[0, 1]`, counts are whole numbers.
    pub figures: BTreeMap<String, f64>,
}

/// Settings of the checklist.
#[derive(Clone, Debug)]
pub struct ChecksConfig {
    /// The threat model under evaluation; check 1 also attacks at ¼, ½ and 2 times its ε.
    pub threat: ThreatModel,
    /// PGD steps of the reference attack (doubled in check 5).
    pub steps: usize,
    /// Square queries for check 4.
    pub square_queries: usize,
    /// Examples per forward pass; 0 is treated as 1.
    pub batch_size: usize,
}

impl ChecksConfig {
    /// Defaults for `threat`: PGD-20, 1,000 Square queries, batches of 256.
    pub fn new(threat: ThreatModel) -> Self {
        Self {
            threat,
            steps: 20,
            square_queries: 1000,
            batch_size: 256,
        }
    }
}

fn figures(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn check(id: usize, name: &str, ok: bool, detail: String, figs: &[(&str, f64)]) -> Check {
    Check {
        id,
        name: name.into(),
        verdict: if ok { Verdict::Pass } else { Verdict::Warn },
        detail,
        figures: figures(figs),
    }
}

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

/// Runs the seven checks on `data` (use a subset of about 1,000 points: each check attacks
/// it again).
pub fn run_checks<M: Classifier>(
    model: &M,
    data: &Dataset,
    cfg: &ChecksConfig,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Vec<Check>> {
    let threat = cfg.threat;
    threat.validate()?;
    let eps = threat.eps;
    let bs = cfg.batch_size.max(1);
    let pgd = |eps: f32, steps: usize, restarts: usize| {
        Pgd::new(ThreatModel {
            norm: threat.norm,
            eps,
        })
        .steps(steps)
        .restarts(restarts)
    };
    let mut out = Vec::new();

    // 1. Accuracy does not increase with ε.
    let clean = clean_accuracy(model, data, bs, progress).value;
    let radii = [0.25 * eps, 0.5 * eps, eps, 2.0 * eps];
    let mut curve = vec![(0.0f32, clean)];
    for &e in &radii {
        curve.push((
            e,
            evaluate(model, data, &pgd(e, cfg.steps, 1), bs, rng, progress)?
                .robust
                .value,
        ));
    }
    let tol = 0.5 / data.len().max(1) as f64 + 0.002;
    let rises: Vec<String> = curve
        .windows(2)
        .filter(|w| w[1].1 > w[0].1 + tol)
        .map(|w| {
            format!(
                "{} at eps {} > {} at eps {}",
                pct(w[1].1),
                w[1].0,
                pct(w[0].1),
                w[0].0
            )
        })
        .collect();
    let figs: Vec<(String, f64)> = curve
        .iter()
        .map(|(e, a)| (format!("accuracy_at_eps_{e}"), *a))
        .collect();
    out.push(Check {
        id: 1,
        name: "accuracy does not increase with eps".into(),
        verdict: if rises.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Warn
        },
        detail: if rises.is_empty() {
            format!(
                "robust accuracy falls monotonically: {}",
                curve
                    .iter()
                    .map(|(e, a)| format!("{e}: {}", pct(*a)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                "accuracy rose with a larger budget ({}): the attack is not finding the worst case",
                rises.join("; ")
            )
        },
        figures: figs.into_iter().collect(),
    });
    let pgd_ref = curve[3].1;

    // 2. An unbounded attack drives accuracy to (almost) zero.
    let unbounded = match threat.norm {
        Norm::Linf => 1.0,
        Norm::L2 => (data.image_len() as f32).sqrt(),
    };
    let acc_unbounded = evaluate(model, data, &pgd(unbounded, 50, 1), bs, rng, progress)?
        .robust
        .value;
    out.push(check(
        2,
        "unbounded attack reaches ~0% accuracy",
        acc_unbounded <= 0.01,
        if acc_unbounded <= 0.01 {
            format!("PGD-50 at eps={unbounded} leaves {}", pct(acc_unbounded))
        } else {
            format!("PGD-50 at eps={unbounded} (any image reachable) still leaves {}: gradients are not usable — gradient masking or a bug", pct(acc_unbounded))
        },
        &[("eps", unbounded as f64), ("accuracy", acc_unbounded)],
    ));

    // 3. Iterative attacks are at least as strong as single-step ones.
    let fgsm = evaluate(model, data, &Fgsm::new(threat), bs, rng, progress)?
        .robust
        .value;
    out.push(check(
        3,
        "PGD at least as strong as FGSM",
        pgd_ref <= fgsm + tol,
        if pgd_ref <= fgsm + tol {
            format!("PGD-{} {} <= FGSM {}", cfg.steps, pct(pgd_ref), pct(fgsm))
        } else {
            format!("FGSM ({}) beats PGD-{} ({}): the iterative attack is stuck (masked or noisy gradients)", pct(fgsm), cfg.steps, pct(pgd_ref))
        },
        &[("pgd", pgd_ref), ("fgsm", fgsm)],
    ));

    // 4. White-box at least as strong as black-box on the same points.
    let square = evaluate(
        model,
        data,
        &Square::new(threat).queries(cfg.square_queries),
        bs,
        rng,
        progress,
    )?;
    let pgd_run = evaluate(model, data, &pgd(eps, cfg.steps, 1), bs, rng, progress)?;
    let only_square = (0..data.len())
        .filter(|&i| !square.robust_correct[i] && pgd_run.robust_correct[i])
        .count();
    let frac = only_square as f64 / data.len().max(1) as f64;
    out.push(check(
        4,
        "white-box at least as strong as black-box",
        frac <= 0.01,
        if frac <= 0.01 {
            format!("PGD {} vs Square-{} {}; Square broke {only_square} point(s) PGD did not", pct(pgd_run.robust.value), cfg.square_queries, pct(square.robust.value))
        } else {
            format!("the gradient-free Square attack broke {only_square} points ({}) that PGD could not: PGD's gradients are partly misleading (a sign of gradient masking); trust the ensemble's robust accuracy, not PGD's", pct(frac))
        },
        &[("pgd", pgd_run.robust.value), ("square", square.robust.value), ("broken_only_by_square", only_square as f64)],
    ));

    // 5. More steps or restarts change little.
    let double_steps = evaluate(model, data, &pgd(eps, 2 * cfg.steps, 1), bs, rng, progress)?
        .robust
        .value;
    let double_restarts = evaluate(model, data, &pgd(eps, cfg.steps, 2), bs, rng, progress)?
        .robust
        .value;
    let moved = (pgd_ref - double_steps)
        .abs()
        .max((pgd_ref - double_restarts).abs());
    out.push(check(
        5,
        "doubling steps or restarts changes little",
        moved < 0.01,
        if moved < 0.01 {
            format!("PGD-{} {}, PGD-{} {}, 2 restarts {}", cfg.steps, pct(pgd_ref), 2 * cfg.steps, pct(double_steps), pct(double_restarts))
        } else {
            format!("robust accuracy moves by {:.2} points with twice the budget (PGD-{} {}, PGD-{} {}, 2 restarts {}): the attack has not converged; use more steps/restarts or the ensemble", 100.0 * moved, cfg.steps, pct(pgd_ref), 2 * cfg.steps, pct(double_steps), pct(double_restarts))
        },
        &[("pgd", pgd_ref), ("pgd_double_steps", double_steps), ("pgd_double_restarts", double_restarts)],
    ));

    // 6. Input gradients are finite and not zero.
    let (zero, non_finite, total) = gradient_health(model, data, bs);
    let zero_frac = zero as f64 / total.max(1) as f64;
    out.push(check(
        6,
        "input gradients finite and non-zero",
        non_finite == 0 && zero_frac <= 0.1,
        if non_finite > 0 {
            format!("{non_finite} of {total} inputs have NaN/infinite gradients")
        } else if zero_frac > 0.1 {
            format!("the loss gradient is exactly zero on {} of inputs: gradient-based attacks cannot move them (saturated softmax, non-differentiable layers): gradient masking", pct(zero_frac))
        } else {
            format!("gradients are finite, zero on {} of {total} inputs", zero)
        },
        &[("zero_fraction", zero_frac), ("non_finite", non_finite as f64), ("inputs", total as f64)],
    ));

    // 7. Evaluation mode; predictions do not depend on batch composition.
    let (max_diff, disagreements, checked) = batch_independence(model, data);
    out.push(check(
        7,
        "evaluation mode, batch-independent predictions",
        disagreements == 0 && max_diff <= 1e-3,
        if disagreements == 0 && max_diff <= 1e-3 {
            format!("logits of {checked} inputs agree between one batch and one-by-one (max difference {max_diff:.2e})")
        } else {
            format!("logits change with batch composition (max difference {max_diff:.2e}, {disagreements} different predictions of {checked}): the model is not in evaluation mode (batch norm, dropout)")
        },
        &[("max_logit_difference", max_diff as f64), ("prediction_changes", disagreements as f64)],
    ));
    Ok(out)
}

/// Counts inputs whose cross-entropy gradient is exactly zero or not finite.
fn gradient_health<M: Classifier>(model: &M, data: &Dataset, bs: usize) -> (usize, usize, usize) {
    let model = model.valid();
    let device = first_device(&model);
    let n = data.len().min(1024);
    let (mut zero, mut bad) = (0, 0);
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(bs) {
        let (x, y) = data.batch(chunk, &device);
        let g = input_gradient_with(&model, x, |logits| cross_entropy(logits, y));
        let norms = per_example_l2(g.grad)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        for v in norms {
            if !v.is_finite() {
                bad += 1;
            } else if v == 0.0 {
                zero += 1;
            }
        }
    }
    (zero, bad, n)
}

/// Compares logits computed in one batch with logits computed one example at a time.
fn batch_independence<M: Classifier>(model: &M, data: &Dataset) -> (f32, usize, usize) {
    let model = model.valid();
    let device = first_device(&model);
    let n = data.len().min(32);
    let idx: Vec<usize> = (0..n).collect();
    let (x, _) = data.batch(&idx, &device);
    let together = model.logits(x);
    let mut max_diff = 0.0f32;
    let mut changed = 0;
    for i in 0..n {
        let (xi, _) = data.batch(&[i], &device);
        let alone = model.logits(xi);
        let k = alone.dims()[1];
        let row: Tensor<2> = together.clone().slice([i..i + 1, 0..k]);
        let diff = (row.clone() - alone.clone())
            .abs()
            .max()
            .into_scalar::<f32>();
        max_diff = max_diff.max(if diff.is_nan() { f32::INFINITY } else { diff });
        let a = row.argmax(1).into_scalar::<i64>();
        let b = alone.argmax(1).into_scalar::<i64>();
        changed += usize::from(a != b);
    }
    (max_diff, changed, n)
}

/// True when every check passed or was skipped.
pub fn all_pass(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.verdict != Verdict::Warn)
}
