//! Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
//! ensemble of diverse parameter-free attacks"): PGD without a step size to tune. It starts
//! at 2ε, halves the step per example at checkpoints where progress stalls, adds momentum
//! and restarts from the best point found. APGD-CE maximises cross-entropy; APGD-T maximises
//! the targeted DLR loss towards each of the top-k other classes in turn.
//!
//! Follows the reference implementation (AutoAttack's `apgd`): checkpoints at
//! `p_0 = 0, p_1 = 0.22`, then shrinking by `0.03·N` down to `0.06·N`; oscillation threshold
//! ρ = 0.75; momentum 0.75; random start on the sphere of radius ε (L∞: scaled uniform).

use burn::prelude::{Int, Tensor, TensorData};
use rayon::prelude::*;

use super::{
    blend_rows as blend, cross_entropy, dlr, dlr_targeted, eot_suffix, eval_mode, float_vec,
    input_gradient_eot, int_vec, replace_rows, rows_of, select_rows, Attack,
};
use crate::model::Classifier;
use crate::rng::{self, AdvRng};
use crate::threat::{per_example_l2, Norm, ThreatModel};

/// The loss APGD ascends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApgdLoss {
    /// Cross-entropy of the true class (APGD-CE).
    CrossEntropy,
    /// Difference of logits ratio (falls back to the CW margin below 3 classes).
    Dlr,
}

/// Untargeted APGD.
#[derive(Clone, Debug)]
pub struct Apgd {
    /// The ball every iterate is projected onto.
    pub threat: ThreatModel,
    /// Iterations per restart (AutoAttack: 100); the step-size checkpoints scale with it.
    pub steps: usize,
    /// Independent runs from random starts, stopping early once every example is broken;
    /// 0 is treated as 1.
    pub restarts: usize,
    /// The loss ascended.
    pub loss: ApgdLoss,
    /// Gradient samples averaged per iteration (expectation over transformation, the
    /// reference's `eot_iter`; AutoAttack's `rand` version uses 20); 1 is plain APGD.
    pub eot: usize,
}

impl Apgd {
    /// APGD-CE with AutoAttack's standard budget: 100 iterations, 1 restart.
    pub fn new(threat: ThreatModel) -> Self {
        Self {
            threat,
            steps: 100,
            restarts: 1,
            loss: ApgdLoss::CrossEntropy,
            eot: 1,
        }
    }

    /// Sets the iterations per restart.
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// Sets the number of random restarts.
    pub fn restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts;
        self
    }

    /// Sets the loss ascended (APGD-CE or APGD-DLR).
    pub fn loss(mut self, loss: ApgdLoss) -> Self {
        self.loss = loss;
        self
    }

    /// Sets the gradient samples averaged per iteration (EOT); 1 is plain APGD.
    pub fn eot(mut self, samples: usize) -> Self {
        self.eot = samples.max(1);
        self
    }
}

impl Attack for Apgd {
    fn name(&self) -> String {
        let loss = match self.loss {
            ApgdLoss::CrossEntropy => "ce",
            ApgdLoss::Dlr => "dlr",
        };
        format!(
            "apgd-{loss}-{}x{} {}{}",
            self.steps,
            self.restarts.max(1),
            self.threat.describe(),
            eot_suffix(self.eot)
        )
    }

    fn threat(&self) -> ThreatModel {
        self.threat
    }

    fn perturb<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        rng: &mut AdvRng,
    ) -> Tensor<4> {
        let model = eval_mode(model);
        let labels = int_vec(&y);
        let mut merged = Merged::new(x.clone());
        for _ in 0..self.restarts.max(1) {
            // Each restart attacks only the points still robust (as the reference does).
            let Some(rows) = merged.rows_to_attack() else {
                break;
            };
            let (x_rows, y_rows) = rows_of(&x, &y, &rows);
            let loss = self.loss;
            let objective = move |logits: Tensor<2>| match loss {
                ApgdLoss::CrossEntropy => cross_entropy(logits, y_rows.clone()),
                ApgdLoss::Dlr => dlr(logits, y_rows.clone()),
            };
            let labels_rows: Vec<i64> = rows.iter().map(|&i| labels[i]).collect();
            let ascent = Ascent {
                threat: self.threat,
                steps: self.steps,
                eot: self.eot,
            };
            let run = single_run(&model, &x_rows, &labels_rows, &objective, ascent, rng);
            merged.absorb(&rows, run);
        }
        merged.x
    }
}

/// APGD-T: targeted DLR towards each of the `targets` most likely other classes in turn
/// (AutoAttack: 9 targets, 100 iterations, 1 restart each). An example counts as broken as
/// soon as it is misclassified, whatever the class.
#[derive(Clone, Debug)]
pub struct ApgdTargeted {
    /// The ball every iterate is projected onto.
    pub threat: ThreatModel,
    /// Iterations per target class (AutoAttack: 100).
    pub steps: usize,
    /// How many of the most likely non-true classes to target in turn (AutoAttack: 9);
    /// capped at the number of classes minus one.
    pub targets: usize,
    /// Gradient samples averaged per iteration (EOT); 1 is plain APGD-T.
    pub eot: usize,
}

impl ApgdTargeted {
    /// APGD-T with AutoAttack's standard budget: 100 iterations towards each of 9 targets.
    pub fn new(threat: ThreatModel) -> Self {
        Self {
            threat,
            steps: 100,
            targets: 9,
            eot: 1,
        }
    }

    /// Sets the iterations per target class.
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// Sets how many target classes are tried.
    pub fn targets(mut self, targets: usize) -> Self {
        self.targets = targets;
        self
    }

    /// Sets the gradient samples averaged per iteration (EOT); 1 is plain APGD-T.
    pub fn eot(mut self, samples: usize) -> Self {
        self.eot = samples.max(1);
        self
    }
}

impl Attack for ApgdTargeted {
    fn name(&self) -> String {
        format!(
            "apgd-t-{}x{}targets {}{}",
            self.steps,
            self.targets,
            self.threat.describe(),
            eot_suffix(self.eot)
        )
    }

    fn threat(&self) -> ThreatModel {
        self.threat
    }

    fn perturb<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        rng: &mut AdvRng,
    ) -> Tensor<4> {
        let model = eval_mode(model);
        let labels = int_vec(&y);
        let b = labels.len();
        let clean_logits = model.logits(x.clone());
        let k = clean_logits.dims()[1];
        // Classes by decreasing clean logit; targets are ranks 2, 3, ... (rank 1 is usually y).
        let (_, order) = clean_logits.sort_descending_with_indices(1);
        let order = int_vec(&order.reshape([b * k]));
        let mut merged = Merged::new(x.clone());
        for rank in 1..=self.targets.min(k - 1) {
            // Each target class attacks only the points still robust (as the reference does).
            let Some(rows) = merged.rows_to_attack() else {
                break;
            };
            let targets: Vec<i64> = rows
                .iter()
                .map(|&i| {
                    // The rank-th most likely class other than the label.
                    let row = &order[i * k..(i + 1) * k];
                    *row.iter()
                        .filter(|&&c| c != labels[i])
                        .nth(rank - 1)
                        .expect("rank < classes")
                })
                .collect();
            let n = rows.len();
            let t = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), &x.device());
            let (x_rows, y_rows) = rows_of(&x, &y, &rows);
            let objective =
                move |logits: Tensor<2>| dlr_targeted(logits, y_rows.clone(), t.clone());
            let labels_rows: Vec<i64> = rows.iter().map(|&i| labels[i]).collect();
            let ascent = Ascent {
                threat: self.threat,
                steps: self.steps,
                eot: self.eot,
            };
            let run = single_run(&model, &x_rows, &labels_rows, &objective, ascent, rng);
            merged.absorb(&rows, run);
        }
        merged.x
    }
}

/// The outcome of one APGD run, per example.
struct RunResult {
    /// The first misclassified point found, else the point of highest loss.
    x: Tensor<4>,
    success: Vec<bool>,
    loss: Vec<f32>,
}

/// Per-example best over restarts/targets: success first, then loss.
struct Merged {
    x: Tensor<4>,
    success: Vec<bool>,
    loss: Vec<f32>,
    seen: bool,
}

impl Merged {
    fn new(x: Tensor<4>) -> Self {
        let b = x.dims()[0];
        Self {
            x,
            success: vec![false; b],
            loss: vec![f32::NEG_INFINITY; b],
            seen: false,
        }
    }

    /// The points a further run attacks: all of them at first, then those not broken yet;
    /// `None` when every point is broken.
    fn rows_to_attack(&self) -> Option<Vec<usize>> {
        let rows: Vec<usize> = (0..self.success.len())
            .filter(|&i| !self.seen || !self.success[i])
            .collect();
        (!rows.is_empty()).then_some(rows)
    }

    /// Folds in a run over the points `rows` (its rows, in that order).
    fn absorb(&mut self, rows: &[usize], run: RunResult) {
        let first = !self.seen;
        self.seen = true;
        let take: Vec<usize> = (0..rows.len())
            .filter(|&k| {
                // Rows come from `rows_to_attack`: after the first run, none is broken yet.
                let i = rows[k];
                first || (!self.success[i] && (run.success[k] || run.loss[k] > self.loss[i]))
            })
            .collect();
        if take.is_empty() {
            return;
        }
        for &k in &take {
            self.success[rows[k]] = run.success[k];
            self.loss[rows[k]] = run.loss[k];
        }
        let values = if take.len() == rows.len() {
            run.x
        } else {
            select_rows(&run.x, &take)
        };
        let targets: Vec<usize> = take.iter().map(|&k| rows[k]).collect();
        self.x = replace_rows(self.x.clone(), &targets, values);
    }
}

/// A per-example scalar as a `[batch, 1, 1, 1]` tensor.
fn column(values: &[f32], like: &Tensor<4>) -> Tensor<4> {
    Tensor::<4>::from_data(
        TensorData::new(values.to_vec(), [values.len(), 1, 1, 1]),
        &like.device(),
    )
}

/// A uniform random start on the boundary of the ε-ball around `x` (as the reference does),
/// clipped to `[0, 1]`.
fn boundary_start(x: &Tensor<4>, threat: ThreatModel, rng: &mut AdvRng) -> Tensor<4> {
    let dims = x.dims();
    let b = dims[0];
    let n = dims.iter().product::<usize>();
    let t = match threat.norm {
        Norm::Linf => {
            let t = Tensor::<4>::from_data(
                TensorData::new(rng::uniform_vec(rng, n, -1.0, 1.0), dims),
                &x.device(),
            );
            let max = t
                .clone()
                .abs()
                .reshape([b as i32, -1])
                .max_dim(1)
                .reshape([b, 1, 1, 1]);
            t / max.add_scalar(1e-12)
        }
        Norm::L2 => {
            let t =
                Tensor::<4>::from_data(TensorData::new(rng::normal_vec(rng, n), dims), &x.device());
            let norm = per_example_l2(t.clone());
            t / norm.add_scalar(1e-12)
        }
    };
    (x.clone() + t.mul_scalar(threat.eps)).clamp(0.0, 1.0)
}

/// At a checkpoint of APGD's step-size schedule, which examples halve their step: those whose
/// loss rose in at most 75% of the last `k` steps (oscillation), or whose best loss did not
/// improve since the last checkpoint when their step was not reduced there.
fn step_reductions(
    loss_steps: &[Vec<f32>],
    k: usize,
    reduced_last_check: &[bool],
    loss_best_last_check: &[f32],
    loss_best: &[f32],
) -> Vec<bool> {
    let last = loss_steps.len() - 1;
    (0..loss_best.len())
        .map(|j| {
            let rises = (0..k)
                .filter(|&c| last > c && loss_steps[last - c][j] > loss_steps[last - c - 1][j])
                .count();
            let oscillating = rises as f64 <= k as f64 * 0.75;
            let no_improvement = !reduced_last_check[j] && loss_best_last_check[j] >= loss_best[j];
            oscillating || no_improvement
        })
        .collect()
}

/// The settings of one APGD run: `steps` iterations from a random start on the ball's
/// boundary, each gradient averaged over `eot` samples.
#[derive(Clone, Copy)]
struct Ascent {
    threat: ThreatModel,
    steps: usize,
    eot: usize,
}

/// APGD's iterate with momentum `a`: `z = P(x_adv + step·dir(grad))`, then
/// `P(x_adv + a·(z − x_adv) + (1 − a)·(x_adv − x_old))`, `P` the projection onto the ball
/// around `x` and the box; as tensor operations, for any norm.
fn tensor_momentum_step(
    threat: ThreatModel,
    x: &Tensor<4>,
    x_adv: &Tensor<4>,
    x_old: Tensor<4>,
    grad: &Tensor<4>,
    step: &[f32],
    a: f32,
) -> Tensor<4> {
    let momentum_delta = x_adv.clone() - x_old;
    let z = threat.project(
        x_adv.clone() + threat.ascent_direction(grad.clone()) * column(step, x),
        x,
    );
    threat.project(
        x_adv.clone() + (z - x_adv.clone()).mul_scalar(a) + momentum_delta.mul_scalar(1.0 - a),
        x,
    )
}

/// [`tensor_momentum_step`] in L∞ as one pass over the floats, bit for bit the tensor
/// expression's operations in its order (the sign with burn's rule: 0 for 0 and NaN).
/// The tensor form is about fifteen passes over the batch on one core, a tenth of an
/// APGD-T profile beside the model's parallel passes. `clean` is the clean batch's
/// floats, read once per run rather than once per step.
fn linf_momentum_step(
    eps: f32,
    clean: &[f32],
    x_adv: &Tensor<4>,
    x_old: &Tensor<4>,
    grad: &Tensor<4>,
    step: &[f32],
    a: f32,
) -> Tensor<4> {
    let dims = x_adv.dims();
    let per_row = dims[1..].iter().product::<usize>().max(1);
    let [xa, xo, g] = [x_adv, x_old, grad].map(float_vec);
    let project = |v: f32, x: f32| (x + (v - x).clamp(-eps, eps)).clamp(0.0, 1.0);
    let direction = |g: f32| {
        if g.is_nan() || g == 0.0 {
            0.0
        } else {
            1.0f32.copysign(g)
        }
    };
    let mut out = vec![0.0f32; xa.len()];
    out.par_chunks_mut(per_row)
        .enumerate()
        .for_each(|(row, out)| {
            let at = row * per_row;
            let s = step[row];
            for (k, o) in out.iter_mut().enumerate() {
                let (x, xa, xo) = (clean[at + k], xa[at + k], xo[at + k]);
                let z = project(xa + direction(g[at + k]) * s, x);
                *o = project(xa + (z - xa) * a + (xa - xo) * (1.0 - a), x);
            }
        });
    Tensor::<4>::from_data(TensorData::new(out, dims), &x_adv.device())
}

/// One APGD run of `ascent` on the examples `x` with true `labels`.
fn single_run<M: Classifier>(
    model: &M,
    x: &Tensor<4>,
    labels: &[i64],
    objective: &dyn Fn(Tensor<2>) -> Tensor<1>,
    ascent: Ascent,
    rng: &mut AdvRng,
) -> RunResult {
    let Ascent { threat, steps, eot } = ascent;
    let b = labels.len();
    let eps = threat.eps;
    let mut x_adv = boundary_start(x, threat, rng);
    // (`f32::clamp` panics on a NaN bound: such a radius keeps the tensor form's NaNs.)
    let fused_linf = threat.norm == Norm::Linf && threat.eps >= 0.0;
    let clean = if fused_linf { float_vec(x) } else { Vec::new() };

    let eval = |x_at: &Tensor<4>| {
        let g = input_gradient_eot(model, x_at.clone(), objective, eot);
        let pred = int_vec(&g.logits.clone().argmax(1).reshape([b]));
        let loss = float_vec(&g.objective);
        let loss: Vec<f32> = loss
            .into_iter()
            .map(|v| if v.is_nan() { f32::NEG_INFINITY } else { v })
            .collect();
        (g.grad, pred, loss)
    };

    let (mut grad, pred, loss) = eval(&x_adv);
    let mut success: Vec<bool> = (0..b).map(|i| pred[i] != labels[i]).collect();
    let mut x_best_adv = x_adv.clone();
    let mut x_best = x_adv.clone();
    let mut grad_best = grad.clone();
    let mut loss_best = loss.clone();
    let mut loss_steps: Vec<Vec<f32>> = vec![loss];

    let mut step = vec![2.0 * eps; b];
    let mut x_old = x_adv.clone();
    let n_iter_2 = ((0.22 * steps as f64) as usize).max(1);
    let n_iter_min = ((0.06 * steps as f64) as usize).max(1);
    let size_decr = ((0.03 * steps as f64) as usize).max(1);
    let mut k = n_iter_2;
    let mut counter = 0;
    let mut loss_best_last_check = loss_best.clone();
    let mut reduced_last_check = vec![true; b];

    for i in 0..steps {
        let a = if i > 0 { 0.75 } else { 1.0 };
        let next = if fused_linf {
            linf_momentum_step(threat.eps, &clean, &x_adv, &x_old, &grad, &step, a)
        } else {
            tensor_momentum_step(threat, x, &x_adv, x_old, &grad, &step, a)
        };
        x_old = std::mem::replace(&mut x_adv, next);
        let (g, pred, loss) = eval(&x_adv);
        grad = g;

        // First misclassified point per example.
        let newly: Vec<bool> = (0..b)
            .map(|j| pred[j] != labels[j] && !success[j])
            .collect();
        x_best_adv = blend(x_best_adv, x_adv.clone(), &newly);
        for j in 0..b {
            success[j] |= newly[j];
        }
        // Highest-loss point per example.
        let improved: Vec<bool> = (0..b).map(|j| loss[j] > loss_best[j]).collect();
        x_best = blend(x_best, x_adv.clone(), &improved);
        grad_best = blend(grad_best, grad.clone(), &improved);
        for j in 0..b {
            if improved[j] {
                loss_best[j] = loss[j];
            }
        }
        loss_steps.push(loss);

        counter += 1;
        if counter == k {
            // Oscillation: the loss rose in at most ρ·k of the last k steps.
            let reduce = step_reductions(
                &loss_steps,
                k,
                &reduced_last_check,
                &loss_best_last_check,
                &loss_best,
            );
            reduced_last_check = reduce.clone();
            loss_best_last_check = loss_best.clone();
            if reduce.iter().any(|&r| r) {
                for j in 0..b {
                    if reduce[j] {
                        step[j] /= 2.0;
                    }
                }
                x_adv = blend(x_adv, x_best.clone(), &reduce);
                grad = blend(grad, grad_best.clone(), &reduce);
            }
            k = k.saturating_sub(size_decr).max(n_iter_min);
            counter = 0;
        }
    }
    let out = blend(x_best, x_best_adv, &success);
    RunResult {
        x: out,
        success,
        loss: loss_best,
    }
}

#[cfg(test)]
mod tests {
    use burn::prelude::{Tensor, TensorData};

    use super::{Merged, RunResult};

    fn rows(values: &[f32]) -> Tensor<4> {
        let device = burn::prelude::Device::flex();
        Tensor::<4>::from_data(
            TensorData::new(values.to_vec(), [values.len(), 1, 1, 1]),
            &device,
        )
    }

    #[test]
    fn the_fused_linf_step_is_the_tensor_step_bit_for_bit() {
        use crate::rng::{seeded, uniform_vec};
        use crate::threat::{Norm, ThreatModel};
        let device = burn::prelude::Device::flex();
        let (b, len) = (3, 50);
        let mut rng = seeded(7);
        let tensor =
            |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [b, 2, 5, 5]), &device);
        let x: Vec<f32> = uniform_vec(&mut rng, b * len, 0.0, 1.0);
        // iterates at the box's and the ball's edges and inside, as APGD's are
        let near = |rng: &mut _, v: &[f32]| -> Vec<f32> {
            let noise = uniform_vec(rng, v.len(), -0.15, 0.15);
            v.iter()
                .zip(noise)
                .map(|(v, n)| (v + n).clamp(0.0, 1.0))
                .collect()
        };
        let (x_adv, x_old) = (near(&mut rng, &x), near(&mut rng, &x));
        let mut grad = uniform_vec(&mut rng, b * len, -1.0, 1.0);
        for (k, g) in grad.iter_mut().enumerate() {
            match k % 7 {
                0 => *g = 0.0,
                1 => *g = -0.0,
                2 => *g = f32::NAN,
                _ => {}
            }
        }
        let threat = ThreatModel {
            norm: Norm::Linf,
            eps: 0.1,
        };
        let step = [0.2, 0.05, 0.0125];
        for a in [1.0, 0.75] {
            let [x, x_adv, x_old, grad] = [&x, &x_adv, &x_old, &grad].map(|v| tensor(v.clone()));
            let clean = super::float_vec(&x);
            let fused = super::linf_momentum_step(0.1, &clean, &x_adv, &x_old, &grad, &step, a);
            let plain = super::tensor_momentum_step(threat, &x, &x_adv, x_old, &grad, &step, a);
            let bits = |t: &Tensor<4>| {
                super::float_vec(t)
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&fused), bits(&plain), "momentum {a}");
        }
    }

    #[test]
    fn later_runs_attack_only_unbroken_points_and_keep_broken_ones() {
        let mut merged = Merged::new(rows(&[0.0; 3]));
        assert_eq!(merged.rows_to_attack(), Some(vec![0, 1, 2]));
        merged.absorb(
            &[0, 1, 2],
            RunResult {
                x: rows(&[0.1, 0.2, 0.3]),
                success: vec![false, true, false],
                loss: vec![1.0, 5.0, 2.0],
            },
        );
        assert_eq!(merged.rows_to_attack(), Some(vec![0, 2]));
        // A second run over rows 0 and 2: row 0 breaks, row 2 only reaches a lower loss.
        merged.absorb(
            &[0, 2],
            RunResult {
                x: rows(&[0.4, 0.5]),
                success: vec![true, false],
                loss: vec![0.5, 1.0],
            },
        );
        let x: Vec<f32> = merged
            .x
            .clone()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(x, vec![0.4, 0.2, 0.3]);
        assert_eq!(merged.rows_to_attack(), Some(vec![2]));
        merged.absorb(
            &[2],
            RunResult {
                x: rows(&[0.6]),
                success: vec![true],
                loss: vec![0.0],
            },
        );
        assert_eq!(merged.rows_to_attack(), None);
    }
}
