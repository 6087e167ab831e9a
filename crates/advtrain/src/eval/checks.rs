//! The sanity checklist of Carlini et al. (2019, "On evaluating adversarial robustness") and
//! AutoAttack's own checks (`autoattack/checks.py`): cheap experiments whose outcome is known
//! for any honest evaluation. A warning means the robust accuracy may be too high (gradient
//! masking, a weak attack, a model left in training mode, a random model, probabilities
//! where logits belong) and must not be published without a closer look.
//!
//! | id | expectation | warns when |
//! |----|-------------|------------|
//! | 1 | accuracy does not increase with ε | PGD accuracy at a larger ε (¼, ½, 1, 2 × ε) exceeds a smaller one's by more than `tol` |
//! | 2 | an unbounded attack reaches ~0% | PGD-50 with any image reachable leaves more than 1% |
//! | 3 | PGD at least as strong as FGSM | PGD accuracy above FGSM's by more than `tol` |
//! | 4 | white-box at least as strong as black-box | Square breaks more than 1% of the points PGD left |
//! | 5 | doubling steps or restarts changes little | the doubled budget breaks significantly more points than it un-breaks (exact two-sided sign test on the points where the two runs disagree, p < 0.05) **and** the net drop is at least 0.5 points |
//! | 6 | input gradients finite and non-zero | any gradient is not finite, or more than 10% are exactly zero |
//! | 7 | predictions do not depend on batch composition | logits differ between one batch, one example at a time and a shuffled batch by more than 1e-4 of their scale, or a prediction changes; skipped when check 8 fails |
//! | 8 | deterministic forward pass | five identical calls differ (L2-normalised outputs by more than 1e-4, or a prediction): use AutoAttack's `rand` version |
//! | 9 | outputs are logits, not probabilities | every row is non-negative and sums to 1 (within 1e-3), or every output lies in `[0, 1]` |
//! | 10 | the attack beats random noise | PGD accuracy above the accuracy under random noise on the ε-sphere by more than `tol` |
//! | 11 | white-box beats transfer from a standard model | the 95% Wilson lower bound of the fraction of points broken by transfer but not by PGD exceeds 1%; skipped without a surrogate model |
//!
//! `tol` is half an example plus 0.2 points (`0.5 / n + 0.002`): the noise of one random start.
//! Ids are stable: the report reads check 1's curve, and a new check gets the next number.

use std::collections::BTreeMap;

use burn::prelude::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{clean_accuracy, clean_flags, evaluate, first_device, wilson_interval, RobustEval};
use crate::attack::{cross_entropy, input_gradient_with, Attack, Fgsm, Pgd, Square};
use crate::data::Dataset;
use crate::error::{Error, Result};
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
    /// Not run, and the detail says why: the transfer check (11) without a surrogate model,
    /// or the batch-composition check (7) on a model whose forward pass is random (check 8),
    /// where a change with the batch cannot be told from the model's own noise.
    Skip,
}

/// One line of the checklist with the figures behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// 1-based number of the check in the checklist (1 to 11, see the module docs), stable
    /// across runs and versions: a new check gets the next number.
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
    /// PGD steps of the reference attack (doubled in check 5; also the transfer attack's).
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

fn count(flags: &[bool]) -> usize {
    flags.iter().filter(|&&f| f).count()
}

/// Runs the checklist on `data` (use a subset of about 1,000 points: each check attacks it
/// again). The transfer check (11) needs a surrogate model and is skipped here; see
/// [`run_checks_with_surrogate`].
pub fn run_checks<M: Classifier>(
    model: &M,
    data: &Dataset,
    cfg: &ChecksConfig,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Vec<Check>> {
    run_all(model, None::<&M>, data, cfg, rng, progress)
}

/// [`run_checks`] with the transfer check (11): adversarial examples crafted by PGD on
/// `surrogate`, a separately trained standard (non-robust) model of the same input shape
/// and classes, are scored on `model`. If they break points that white-box PGD on `model`
/// could not, `model`'s gradients mislead (Carlini et al. 2019, §"transfer attacks").
pub fn run_checks_with_surrogate<M: Classifier, S: Classifier>(
    model: &M,
    surrogate: &S,
    data: &Dataset,
    cfg: &ChecksConfig,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Vec<Check>> {
    run_all(model, Some(surrogate), data, cfg, rng, progress)
}

fn run_all<M: Classifier, S: Classifier>(
    model: &M,
    surrogate: Option<&S>,
    data: &Dataset,
    cfg: &ChecksConfig,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Vec<Check>> {
    let threat = cfg.threat;
    threat.validate()?;
    let bs = cfg.batch_size.max(1);
    let n = data.len().max(1);
    let tol = 0.5 / n as f64 + 0.002;
    let mut out = Vec::new();

    let (c1, base) = eps_monotone(model, data, cfg, tol, rng, progress)?;
    out.push(c1);
    out.push(unbounded(model, data, cfg, rng, progress)?);
    out.push(pgd_vs_fgsm(model, data, cfg, &base, tol, rng, progress)?);
    out.push(white_vs_black(model, data, cfg, &base, rng, progress)?);
    out.push(budget(model, data, cfg, &base, rng, progress)?);
    out.push(gradients(model, data, bs));
    let repeat = repeatability(model, data);
    out.push(batch_composition(model, data, &repeat));
    out.push(deterministic(&repeat));
    out.push(logits_not_probabilities(model, data));
    out.push(noise_baseline(model, data, cfg, &base, tol, rng, progress)?);
    out.push(match surrogate {
        Some(s) => transfer(model, s, data, cfg, &base, rng, progress)?,
        None => Check {
            id: 11,
            name: TRANSFER.into(),
            verdict: Verdict::Skip,
            detail: "not run: no surrogate model was given (the CLI trains a standard one, or \
                     takes --transfer-from RUN_DIR; the library takes one in \
                     run_checks_with_surrogate)"
                .into(),
            figures: BTreeMap::new(),
        },
    });
    Ok(out)
}

fn pgd(threat: ThreatModel, eps: f32, steps: usize, restarts: usize) -> Pgd {
    Pgd::new(ThreatModel {
        norm: threat.norm,
        eps,
    })
    .steps(steps)
    .restarts(restarts)
}

/// Check 1; also returns the PGD run at ε, the reference the other checks compare with.
fn eps_monotone<M: Classifier>(
    model: &M,
    data: &Dataset,
    cfg: &ChecksConfig,
    tol: f64,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<(Check, RobustEval)> {
    let (threat, bs) = (cfg.threat, cfg.batch_size.max(1));
    let eps = threat.eps;
    let clean = clean_accuracy(model, data, bs, progress).value;
    let mut curve = vec![(0.0f32, clean)];
    let mut base = None;
    for e in [0.25 * eps, 0.5 * eps, eps, 2.0 * eps] {
        let run = evaluate(
            model,
            data,
            &pgd(threat, e, cfg.steps, 1),
            bs,
            rng,
            progress,
        )?;
        curve.push((e, run.robust.value));
        if e == eps {
            base = Some(run);
        }
    }
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
    let check = Check {
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
    };
    Ok((check, base.expect("eps is on the curve")))
}

/// Check 2: an unbounded attack drives accuracy to (almost) zero.
fn unbounded<M: Classifier>(
    model: &M,
    data: &Dataset,
    cfg: &ChecksConfig,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Check> {
    let eps = match cfg.threat.norm {
        Norm::Linf => 1.0,
        Norm::L2 => (data.image_len() as f32).sqrt(),
    };
    let attack = pgd(cfg.threat, eps, 50, 1);
    let acc = evaluate(model, data, &attack, cfg.batch_size.max(1), rng, progress)?
        .robust
        .value;
    Ok(check(
        2,
        "unbounded attack reaches ~0% accuracy",
        acc <= 0.01,
        if acc <= 0.01 {
            format!("PGD-50 at eps={eps} leaves {}", pct(acc))
        } else {
            format!("PGD-50 at eps={eps} (any image reachable) still leaves {}: gradients are not usable — gradient masking or a bug", pct(acc))
        },
        &[("eps", eps as f64), ("accuracy", acc)],
    ))
}

/// Check 3: iterative attacks are at least as strong as single-step ones.
fn pgd_vs_fgsm<M: Classifier>(
    model: &M,
    data: &Dataset,
    cfg: &ChecksConfig,
    base: &RobustEval,
    tol: f64,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Check> {
    let attack = Fgsm::new(cfg.threat);
    let fgsm = evaluate(model, data, &attack, cfg.batch_size.max(1), rng, progress)?
        .robust
        .value;
    let pgd_acc = base.robust.value;
    let ok = pgd_acc <= fgsm + tol;
    Ok(check(
        3,
        "PGD at least as strong as FGSM",
        ok,
        if ok {
            format!("PGD-{} {} <= FGSM {}", cfg.steps, pct(pgd_acc), pct(fgsm))
        } else {
            format!("FGSM ({}) beats PGD-{} ({}): the iterative attack is stuck (masked or noisy gradients)", pct(fgsm), cfg.steps, pct(pgd_acc))
        },
        &[("pgd", pgd_acc), ("fgsm", fgsm)],
    ))
}

/// Check 4: white-box at least as strong as black-box on the same points.
fn white_vs_black<M: Classifier>(
    model: &M,
    data: &Dataset,
    cfg: &ChecksConfig,
    base: &RobustEval,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Check> {
    let attack = Square::new(cfg.threat).queries(cfg.square_queries);
    let square = evaluate(model, data, &attack, cfg.batch_size.max(1), rng, progress)?;
    let only_square = (0..data.len())
        .filter(|&i| !square.robust_correct[i] && base.robust_correct[i])
        .count();
    let frac = only_square as f64 / data.len().max(1) as f64;
    Ok(check(
        4,
        "white-box at least as strong as black-box",
        frac <= 0.01,
        if frac <= 0.01 {
            format!(
                "PGD {} vs Square-{} {}; Square broke {only_square} point(s) PGD did not",
                pct(base.robust.value),
                cfg.square_queries,
                pct(square.robust.value)
            )
        } else {
            format!("the gradient-free Square attack broke {only_square} points ({}) that PGD could not: PGD's gradients are partly misleading (a sign of gradient masking); trust the ensemble's robust accuracy, not PGD's", pct(frac))
        },
        &[
            ("pgd", base.robust.value),
            ("square", square.robust.value),
            ("broken_only_by_square", only_square as f64),
        ],
    ))
}

/// Significance level of the sign tests (checks 5).
const ALPHA: f64 = 0.05;
/// The smallest net drop (a fraction of the points) check 5 calls practically relevant:
/// half a point, below the precision robust accuracies are reported with.
const MIN_DROP: f64 = 0.005;

/// Two-sided exact sign test (McNemar's exact test) on `b` and `c` discordant pairs: the
/// probability, if each disagreement were a fair coin, of a split at least as uneven.
fn sign_test_p(b: usize, c: usize) -> f64 {
    let m = b + c;
    if m == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // ln P(X = i) for X ~ Binomial(m, 1/2), i = 0..=k, summed in log space (m may be large).
    let base = -(m as f64) * std::f64::consts::LN_2;
    let mut log_choose = 0.0f64;
    let mut terms = Vec::with_capacity(k + 1);
    for i in 0..=k {
        if i > 0 {
            log_choose += ((m - i + 1) as f64).ln() - (i as f64).ln();
        }
        terms.push(log_choose + base);
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// One doubled-budget run compared point by point with the base run.
struct BudgetComparison {
    /// Points the base run left robust and the doubled run broke.
    newly_broken: usize,
    /// Points the base run broke and the doubled run left robust (another random start).
    unbroken: usize,
    /// The sign test's p-value on those two counts.
    p: f64,
    /// Net drop in robust accuracy, a fraction of the points.
    drop: f64,
    accuracy: f64,
}

impl BudgetComparison {
    fn new(base: &RobustEval, doubled: &RobustEval) -> Self {
        let pairs = base.robust_correct.iter().zip(&doubled.robust_correct);
        let newly_broken = pairs.clone().filter(|(b, d)| **b && !**d).count();
        let unbroken = pairs.filter(|(b, d)| !**b && **d).count();
        let n = base.n.max(1) as f64;
        Self {
            newly_broken,
            unbroken,
            p: sign_test_p(newly_broken, unbroken),
            drop: (newly_broken as f64 - unbroken as f64) / n,
            accuracy: doubled.robust.value,
        }
    }

    /// The doubled budget is significantly and relevantly stronger.
    fn stronger(&self) -> bool {
        self.newly_broken > self.unbroken && self.p < ALPHA && self.drop >= MIN_DROP
    }

    fn describe(&self, what: &str) -> String {
        format!(
            "{what} {} (broke {} more point(s), spared {}; sign test p={:.3})",
            pct(self.accuracy),
            self.newly_broken,
            self.unbroken,
            self.p
        )
    }
}

/// Check 5: more steps or restarts change little. Both doubled runs attack the same points
/// as the base run, so they are compared point by point: a doubled budget is a problem only
/// when it breaks significantly more points than it spares (exact two-sided sign test on the
/// points where the runs disagree, p < 0.05: points flip both ways with the random start
/// alone, so a fixed threshold is noise at small n) **and** the net drop is practically
/// relevant (at least 0.5 points, so a large n does not flag a drop too small to report).
fn budget<M: Classifier>(
    model: &M,
    data: &Dataset,
    cfg: &ChecksConfig,
    base: &RobustEval,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Check> {
    let (threat, bs, steps) = (cfg.threat, cfg.batch_size.max(1), cfg.steps);
    let eps = threat.eps;
    let double_steps = evaluate(
        model,
        data,
        &pgd(threat, eps, 2 * steps, 1),
        bs,
        rng,
        progress,
    )?;
    let double_restarts = evaluate(model, data, &pgd(threat, eps, steps, 2), bs, rng, progress)?;
    let s = BudgetComparison::new(base, &double_steps);
    let r = BudgetComparison::new(base, &double_restarts);
    let ok = !s.stronger() && !r.stronger();
    let runs = format!(
        "PGD-{steps} {}; {}; {}",
        pct(base.robust.value),
        s.describe(&format!("PGD-{}", 2 * steps)),
        r.describe("2 restarts")
    );
    Ok(check(
        5,
        "doubling steps or restarts changes little",
        ok,
        if ok {
            format!("{runs}: no significant (sign test p < {ALPHA}) drop of 0.5 points or more")
        } else {
            format!("{runs}: twice the budget breaks significantly more points than it spares (p < {ALPHA}) and drops accuracy by at least 0.5 points: the attack has not converged; use more steps/restarts or the ensemble")
        },
        &[
            ("pgd", base.robust.value),
            ("pgd_double_steps", s.accuracy),
            ("pgd_double_restarts", r.accuracy),
            ("double_steps_newly_broken", s.newly_broken as f64),
            ("double_steps_spared", s.unbroken as f64),
            ("double_steps_p", s.p),
            ("double_restarts_newly_broken", r.newly_broken as f64),
            ("double_restarts_spared", r.unbroken as f64),
            ("double_restarts_p", r.p),
        ],
    ))
}

/// Check 6: input gradients are finite and not zero.
fn gradients<M: Classifier>(model: &M, data: &Dataset, bs: usize) -> Check {
    let (zero, non_finite, total) = gradient_health(model, data, bs);
    let zero_frac = zero as f64 / total.max(1) as f64;
    check(
        6,
        "input gradients finite and non-zero",
        non_finite == 0 && zero_frac <= 0.1,
        if non_finite > 0 {
            format!("{non_finite} of {total} inputs have NaN/infinite gradients")
        } else if zero_frac > 0.1 {
            format!("the loss gradient is exactly zero on {} of inputs: gradient-based attacks cannot move them (saturated softmax, non-differentiable layers such as rounding): gradient masking", pct(zero_frac))
        } else {
            format!("gradients are finite, zero on {} of {total} inputs", zero)
        },
        &[
            ("zero_fraction", zero_frac),
            ("non_finite", non_finite as f64),
            ("inputs", total as f64),
        ],
    )
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

/// Logits as host rows.
fn host_rows(logits: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, k] = logits.dims();
    let v = logits
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    v.chunks(k.max(1)).map(<[f32]>::to_vec).collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// The model's outputs on the first `n` examples, in evaluation mode.
fn outputs<M: Classifier>(model: &M, data: &Dataset, idx: &[usize]) -> Vec<Vec<f32>> {
    let device = first_device(model);
    let (x, _) = data.batch(idx, &device);
    host_rows(model.logits(x))
}

/// Identical forward passes repeated on one batch (AutoAttack's `check_randomized`).
struct Repeatability {
    /// Largest L2 distance between a row of a repeat and the first call, each row divided by
    /// its L2 norm first (as AutoAttack does, so the scale of the logits does not matter).
    max_diff: f32,
    /// Examples whose prediction changed in some repeat.
    prediction_changes: usize,
    /// Examples in the batch.
    checked: usize,
    /// Forward passes.
    calls: usize,
}

impl Repeatability {
    fn deterministic(&self) -> bool {
        self.prediction_changes == 0 && self.max_diff <= 1e-4
    }
}

fn normalised(row: &[f32]) -> Vec<f32> {
    let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt() + 1e-10;
    row.iter().map(|v| v / norm).collect()
}

fn distance(a: &[f32], b: &[f32]) -> f32 {
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt();
    if d.is_nan() {
        f32::INFINITY
    } else {
        d
    }
}

fn repeatability<M: Classifier>(model: &M, data: &Dataset) -> Repeatability {
    let model = model.valid();
    let idx: Vec<usize> = (0..data.len().min(64)).collect();
    let calls = 5;
    let first = outputs(&model, data, &idx);
    let mut changed = vec![false; idx.len()];
    let mut max_diff = 0.0f32;
    for _ in 1..calls {
        let again = outputs(&model, data, &idx);
        for (i, (a, b)) in first.iter().zip(&again).enumerate() {
            max_diff = max_diff.max(distance(&normalised(a), &normalised(b)));
            changed[i] |= argmax(a) != argmax(b);
        }
    }
    Repeatability {
        max_diff,
        prediction_changes: count(&changed),
        checked: idx.len(),
        calls,
    }
}

/// Check 8: two identical calls give the same outputs.
fn deterministic(r: &Repeatability) -> Check {
    let ok = r.deterministic();
    check(
        8,
        "deterministic forward pass",
        ok,
        if ok {
            format!("{} identical calls on {} inputs agree (max difference of L2-normalised outputs {:.2e})", r.calls, r.checked, r.max_diff)
        } else {
            format!("{} identical calls on the same {} inputs differ (max difference of L2-normalised outputs {:.2e}, {} prediction(s) change): the model is randomized (dropout or noise at inference, a random defence); one sample of its gradient misleads the attacks: evaluate with AutoAttack's `rand` version (--version rand: EOT over 20 samples), as AutoAttack's check_randomized recommends", r.calls, r.checked, r.max_diff, r.prediction_changes)
        },
        &[
            ("max_normalised_difference", r.max_diff as f64),
            ("prediction_changes", r.prediction_changes as f64),
            ("inputs", r.checked as f64),
            ("calls", r.calls as f64),
        ],
    )
}

/// Check 7: logits do not depend on the batch an example is in. Compares one batch of the
/// first 32 examples with each example alone and with a shuffled batch; a difference above
/// 1e-4 of the logits' scale (the largest |logit|, at least 1) or a changed prediction
/// warns. Skipped when the forward pass is random (check 8).
fn batch_composition<M: Classifier>(model: &M, data: &Dataset, repeat: &Repeatability) -> Check {
    const NAME: &str = "evaluation mode, batch-independent predictions";
    if !repeat.deterministic() {
        return Check {
            id: 7,
            name: NAME.into(),
            verdict: Verdict::Skip,
            detail: "not run: two identical calls already differ (check 8), so a change with \
                     batch composition cannot be told from the model's own randomness"
                .into(),
            figures: BTreeMap::new(),
        };
    }
    let model = model.valid();
    let n = data.len().min(32);
    let idx: Vec<usize> = (0..n).collect();
    let together = outputs(&model, data, &idx);
    // A fixed shuffle (its own generator: the caller's stream is left alone).
    let order = crate::rng::permutation(&mut crate::rng::seeded(7), n);
    let shuffled = outputs(&model, data, &order);
    let scale = together
        .iter()
        .flatten()
        .fold(1.0f32, |m, v| m.max(v.abs()));
    let (mut max_diff, mut changed) = (0.0f32, 0usize);
    let mut compare = |a: &[f32], b: &[f32]| {
        max_diff = max_diff.max(distance_inf(a, b) / scale);
        usize::from(argmax(a) != argmax(b))
    };
    for (i, row) in together.iter().enumerate().take(n) {
        let alone = outputs(&model, data, &[i]);
        changed += compare(row, &alone[0]);
    }
    for (j, &i) in order.iter().enumerate() {
        changed += compare(&together[i], &shuffled[j]);
    }
    let ok = changed == 0 && max_diff <= 1e-4;
    check(
        7,
        NAME,
        ok,
        if ok {
            format!("logits of {n} inputs agree between one batch, one by one and a shuffled batch (max difference {max_diff:.2e} of their scale)")
        } else {
            format!("logits change with batch composition (max difference {max_diff:.2e} of their scale {scale:.3}, {changed} different predictions in {} comparisons): the model is not in evaluation mode (batch statistics in a normalisation layer) or its forward pass mixes examples", 2 * n)
        },
        &[
            ("max_relative_logit_difference", max_diff as f64),
            ("prediction_changes", changed as f64),
            ("inputs", n as f64),
        ],
    )
}

fn distance_inf(a: &[f32], b: &[f32]) -> f32 {
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    if d.is_nan() || a.iter().chain(b).any(|v| v.is_nan()) {
        f32::INFINITY
    } else {
        d
    }
}

/// Check 9: the model returns logits, not probabilities (AutoAttack's
/// `check_range_output`). Looks at the first 256 examples.
fn logits_not_probabilities<M: Classifier>(model: &M, data: &Dataset) -> Check {
    let model = model.valid();
    let idx: Vec<usize> = (0..data.len().min(256)).collect();
    let rows = outputs(&model, data, &idx);
    let all = || rows.iter().flatten().copied();
    let min = all().fold(f32::INFINITY, f32::min);
    let max = all().fold(f32::NEG_INFINITY, f32::max);
    let worst_sum = rows
        .iter()
        .map(|r| (r.iter().sum::<f32>() - 1.0).abs())
        .fold(0.0f32, f32::max);
    let simplex = !rows.is_empty() && min >= -1e-3 && worst_sum <= 1e-3;
    let unit = !rows.is_empty() && min >= 0.0 && max <= 1.0;
    let ok = !(simplex || unit);
    check(
        9,
        "outputs are logits, not probabilities",
        ok,
        if ok {
            format!(
                "outputs of {} inputs range over [{min:.3}, {max:.3}]: not probabilities",
                rows.len()
            )
        } else if simplex {
            format!("every row of the outputs on {} inputs is non-negative and sums to 1 (within {worst_sum:.1e}): the model returns probabilities (a softmax inside it); the attacks' losses assume logits and the softmax flattens their gradients — return the logits", rows.len())
        } else {
            format!("every output on {} inputs lies in [0, 1] ([{min:.3}, {max:.3}]): they look like probabilities (a sigmoid inside the model); the attacks' losses assume logits — return the logits", rows.len())
        },
        &[
            ("min_output", min as f64),
            ("max_output", max as f64),
            ("max_row_sum_error", worst_sum as f64),
        ],
    )
}

/// Robust flags (correct clean and on the perturbed input) of `model` on `data` perturbed
/// by `perturb(x, rng)`, a function of the clean batch (noise, or an attack on another
/// model), checked against the threat model before scoring.
fn flags_under<M: Classifier>(
    model: &M,
    data: &Dataset,
    threat: ThreatModel,
    bs: usize,
    label: &str,
    progress: &dyn Progress,
    mut perturb: impl FnMut(Tensor<4>, Tensor<1, Int>) -> Tensor<4>,
) -> Result<Vec<bool>> {
    let clean = clean_flags(model, data, bs, progress);
    let model = model.valid();
    let device = first_device(&model);
    let order: Vec<usize> = (0..data.len()).collect();
    let mut flags = Vec::with_capacity(data.len());
    progress.begin(label, data.len() as u64);
    for chunk in order.chunks(bs) {
        let (x, y) = data.batch(chunk, &device);
        let labels = crate::attack::int_vec(&y);
        let x_adv = perturb(x.clone(), y);
        let pert = threat.max_perturbation(&x_adv, &x);
        let within = pert <= threat.eps * (1.0 + 1e-5) + 1e-6; // false for NaN too
        if !within {
            return Err(Error::config(format!(
                "{label} left its threat model ({}): perturbation {pert}",
                threat.describe()
            )));
        }
        let pred = crate::attack::int_vec(&crate::attack::predict(&model, x_adv));
        for (k, &i) in chunk.iter().enumerate() {
            flags.push(clean[i] && pred[k] == labels[k]);
        }
        progress.advance(chunk.len() as u64, "");
    }
    progress.end();
    Ok(flags)
}

/// `x` moved to a random point of the ε-sphere and clipped to `[0, 1]`: in L∞ a random
/// corner (each pixel ±ε), in L2 a uniformly random direction of norm ε.
fn sphere_noise(threat: ThreatModel, x: &Tensor<4>, rng: &mut AdvRng) -> Tensor<4> {
    let dims = x.dims();
    let n: usize = dims.iter().product();
    let delta = match threat.norm {
        Norm::Linf => crate::rng::uniform_vec(rng, n, -1.0, 1.0)
            .into_iter()
            .map(|u| if u < 0.0 { -threat.eps } else { threat.eps })
            .collect(),
        Norm::L2 => {
            let mut v = crate::rng::normal_vec(rng, n);
            let per = (n / dims[0].max(1)).max(1);
            for chunk in v.chunks_mut(per) {
                let norm = chunk.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                chunk.iter_mut().for_each(|a| *a *= threat.eps / norm);
            }
            v
        }
    };
    let delta = Tensor::<4>::from_data(TensorData::new(delta, dims), &x.device());
    (x.clone() + delta).clamp(0.0, 1.0)
}

/// Check 10: the white-box attack is stronger than random noise of the same size.
fn noise_baseline<M: Classifier>(
    model: &M,
    data: &Dataset,
    cfg: &ChecksConfig,
    base: &RobustEval,
    tol: f64,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Check> {
    let threat = cfg.threat;
    let flags = flags_under(
        model,
        data,
        threat,
        cfg.batch_size.max(1),
        "random noise",
        progress,
        |x, _| sphere_noise(threat, &x, rng),
    )?;
    let noise = count(&flags) as f64 / data.len().max(1) as f64;
    let pgd_acc = base.robust.value;
    let ok = pgd_acc <= noise + tol;
    let sphere = match threat.norm {
        Norm::Linf => "random corners of the eps-cube",
        Norm::L2 => "random directions of norm eps",
    };
    Ok(check(
        10,
        "attack stronger than random noise",
        ok,
        if ok {
            format!(
                "PGD-{} {} <= random noise ({sphere}) {}",
                cfg.steps,
                pct(pgd_acc),
                pct(noise)
            )
        } else {
            format!("random noise ({sphere}) leaves {} but PGD-{} leaves {}: the attack is weaker than noise — its gradients are useless (masked, zero or random)", pct(noise), cfg.steps, pct(pgd_acc))
        },
        &[("pgd", pgd_acc), ("noise", noise)],
    ))
}

const TRANSFER: &str = "white-box stronger than transfer from a standard model";

/// Check 11: adversarial examples crafted by PGD on a standard surrogate do not break
/// (many) points white-box PGD left robust. Warns when the 95% Wilson lower bound of the
/// fraction of such points exceeds 1% (the same 1% as check 4, with the sample size
/// accounted for: at small n a few points are not evidence).
fn transfer<M: Classifier, S: Classifier>(
    model: &M,
    surrogate: &S,
    data: &Dataset,
    cfg: &ChecksConfig,
    base: &RobustEval,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Check> {
    let threat = cfg.threat;
    let surrogate = surrogate.valid();
    let device = first_device(&surrogate);
    if !data.is_empty() {
        let (x, _) = data.batch(&[0], &device);
        let (k_s, k_m) = (
            surrogate.logits(x.clone()).dims()[1],
            model.valid().logits(x).dims()[1],
        );
        if k_s != k_m {
            return Err(Error::config(format!(
                "the transfer surrogate scores {k_s} classes but the evaluated model {k_m}"
            )));
        }
    }
    let attack = pgd(threat, threat.eps, cfg.steps, 1);
    let label = format!("transfer {}", attack.name());
    let flags = flags_under(
        model,
        data,
        threat,
        cfg.batch_size.max(1),
        &label,
        progress,
        |x, y| attack.perturb(&surrogate, x, y, rng),
    )?;
    let n = data.len();
    let only_transfer = (0..n)
        .filter(|&i| !flags[i] && base.robust_correct[i])
        .count();
    let transfer_acc = count(&flags) as f64 / n.max(1) as f64;
    let [low, _] = wilson_interval(only_transfer, n, 1.96);
    let ok = low <= 0.01;
    Ok(check(
        11,
        TRANSFER,
        ok,
        if ok {
            format!("PGD {} vs transfer from a standard model {}; transfer broke {only_transfer} point(s) white-box PGD did not (95% lower bound {} <= 1%)", pct(base.robust.value), pct(transfer_acc), pct(low))
        } else {
            format!("PGD-{} run on a separately trained standard model broke {only_transfer} points ({}, 95% lower bound {} > 1%) that white-box PGD on this model could not: black-box beats white-box, so the model's gradients mislead the attack (gradient masking)", cfg.steps, pct(only_transfer as f64 / n.max(1) as f64), pct(low))
        },
        &[
            ("pgd", base.robust.value),
            ("transfer", transfer_acc),
            ("broken_only_by_transfer", only_transfer as f64),
            ("broken_only_by_transfer_ci_low", low),
        ],
    ))
}

/// True when every check passed or was skipped.
pub fn all_pass(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.verdict != Verdict::Warn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_test_matches_hand_computed_binomial_tails() {
        assert_eq!(sign_test_p(0, 0), 1.0);
        assert_eq!(sign_test_p(3, 3), 1.0);
        // Bin(5, 1/2): P(X = 0) = 1/32, two-sided 1/16.
        assert!((sign_test_p(5, 0) - 0.0625).abs() < 1e-12);
        assert!((sign_test_p(0, 6) - 0.031_25).abs() < 1e-12);
        // Bin(12, 1/2): P(X <= 2) = 79/4096.
        assert!((sign_test_p(10, 2) - 2.0 * 79.0 / 4096.0).abs() < 1e-12);
        // Large counts stay finite (log space): 600 vs 400 is far beyond chance.
        let p = sign_test_p(600, 400);
        assert!(p > 0.0 && p < 1e-8, "{p}");
        assert!(sign_test_p(5000, 5000) == 1.0);
    }

    fn eval_with(flags: &[bool]) -> RobustEval {
        let n = flags.len();
        RobustEval {
            attack: "pgd".into(),
            threat: ThreatModel::linf(0.1),
            n,
            clean: super::super::Accuracy::new(n, n),
            robust: super::super::Accuracy::new(count(flags), n),
            clean_correct: vec![true; n],
            robust_correct: flags.to_vec(),
            labels: vec![0; n],
            adv_pred: vec![0; n],
            clean_pred: vec![0; n],
            max_perturbation: 0.1,
            seconds: 0.0,
        }
    }

    #[test]
    fn a_doubled_budget_warns_only_on_a_significant_and_relevant_drop() {
        // n = 50: two points broken, none spared, is 4 points but p = 0.5: noise.
        let base = eval_with(&[true; 50]);
        let mut d = [true; 50];
        d[0] = false;
        d[1] = false;
        assert!(!BudgetComparison::new(&base, &eval_with(&d)).stronger());
        // n = 1000: 20 broken, 2 spared: p < 0.001 and a 1.8-point drop.
        let mut d = [true; 1000];
        d[..20].iter_mut().for_each(|f| *f = false);
        let mut b = eval_with(&[true; 1000]);
        b.robust_correct[500] = false;
        b.robust_correct[501] = false;
        assert!(BudgetComparison::new(&b, &eval_with(&d)).stronger());
        // n = 100,000: 120 vs 60 is significant but a 0.06-point drop: not relevant.
        let mut d = [true; 100_000];
        d[..120].iter_mut().for_each(|f| *f = false);
        let mut b = eval_with(&[true; 100_000]);
        b.robust_correct[50_000..50_060]
            .iter_mut()
            .for_each(|f| *f = false);
        let cmp = BudgetComparison::new(&b, &eval_with(&d));
        assert!(cmp.p < ALPHA && !cmp.stronger());
    }
}
