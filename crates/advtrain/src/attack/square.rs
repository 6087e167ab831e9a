//! The Square attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): a score-based
//! black-box attack by random search, in L∞ and L2.
//!
//! It never computes a gradient; it only asks the model for logits at candidate points. That
//! is what makes it worth having next to PGD: a model that *masks* its gradients (rounding,
//! non-differentiable preprocessing, saturated softmax) defeats gradient attacks without being
//! robust, and Square still breaks it. It is also the black-box member of AutoAttack.
//!
//! The L∞ version follows `square_attack_linf` of the authors' code: a vertical-stripe start
//! at the corners of the ball, then per iteration one random square per image whose pixels
//! are all set to `x ± ε` (one sign per channel), kept when the loss improves. The L2
//! version follows `square_attack_l2`: a grid of ±"pseudo-Gaussian" bumps as the start, then
//! per iteration mass moved from one square window to another, always on the sphere of
//! radius ε. Deviations from the reference are listed on [`Square`].

use std::fmt;
use std::str::FromStr;

use burn::prelude::{Device, Int, Tensor, TensorData};
use rand::Rng as _;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{eval_mode, float_vec, int_vec, Attack};
use crate::error::{Error, Result};
use crate::model::window::{Window, WindowScorer};
use crate::model::Classifier;
use crate::rng::AdvRng;
use crate::threat::{Norm, ThreatModel};

/// The loss Square minimises. Success is decided by the margin either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SquareLoss {
    /// `z_y − max_{j≠y} z_j`: negative exactly when the example is misclassified, so the
    /// random search stops improving the wrong thing once it has won (the paper's choice).
    Margin,
    /// `log softmax(z)_y`, i.e. minus the cross-entropy.
    CrossEntropy,
}

impl SquareLoss {
    /// Short name as used on the command line and in attack names: `"margin"` or `"ce"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SquareLoss::Margin => "margin",
            SquareLoss::CrossEntropy => "ce",
        }
    }
}

impl fmt::Display for SquareLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SquareLoss {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "margin" => Ok(SquareLoss::Margin),
            "ce" | "cross-entropy" => Ok(SquareLoss::CrossEntropy),
            other => Err(Error::config(format!(
                "unknown square loss '{other}': expected 'margin' or 'ce'"
            ))),
        }
    }
}

/// Score-based black-box random search (untargeted), L∞ or L2.
///
/// Budget: each example gets at most `queries` model queries per restart, the one at the
/// starting point included; an example stops being queried as soon as it is misclassified,
/// and the whole attack stops when every example is. Restarts (`restarts > 1`) rerun the
/// attack from a fresh random start on the examples still unbroken, so an example may use up
/// to `queries · restarts` queries in all.
///
/// Deviations from the authors' reference code, all deliberate:
/// - Every model call is counted. The reference first drops clean-misclassified points with
///   an uncounted query; here the first (counted) query is at the random start, and a point
///   already misclassified there is done.
/// - Window positions are drawn from `0..=H−s` (the reference's `randint(0, H−s)` excludes
///   `H−s`, so the last row and column are never inside a window).
/// - Success is `margin < 0` (the reference stops at `≤ 0`): a tie is not a misclassification
///   for [`crate::eval::evaluate`], so the search goes on.
/// - A candidate is kept when the loss improves *or* it is misclassified (as AutoAttack's
///   `square.py` does; with the margin loss this is the same thing).
/// - L2 runs `queries − 1` iterations after the start, like L∞ (the reference L2 loop runs
///   one more); windows that would stick out of the image are clipped or made smaller, where
///   the reference would fail on such shapes.
/// - Non-square images: the side `s` is clamped to `min(H, W) − 1`.
/// - With ε ≤ 0 the attack makes its one query at the clean point and stops (the reference
///   would loop forever looking for a window that changes the image).
#[derive(Clone, Debug)]
pub struct Square {
    /// The ball the search stays in (L∞: corners of the box; L2: on the sphere of radius ε).
    pub threat: ThreatModel,
    /// Query budget per example and restart, the initial query included.
    pub queries: usize,
    /// Initial fraction of pixels in a window; shrinks by the schedule of
    /// [`Square::p_selection`].
    pub p_init: f32,
    /// Independent runs; each later one attacks only the examples still unbroken.
    /// 0 is treated as 1.
    pub restarts: usize,
    /// The loss minimised by the random search.
    pub loss: SquareLoss,
    /// Stretch the `p` schedule over the query budget (the reference's standalone default,
    /// `rescale_schedule=True`). AutoAttack's ensemble runs Square with `False`: the
    /// breakpoints stay at the published iteration counts whatever the budget.
    pub rescale_schedule: bool,
    /// Score L∞ candidates through the model's [`WindowScorer`] where it has one
    /// ([`Classifier::window_scorer`]): the same logits up to rounding, several times
    /// faster on small windows. Off: every query is a full forward pass.
    pub window_scoring: bool,
}

/// The reference's tolerance for "this window would not change the image".
const SAME: f32 = 1e-7;
/// Resampling bound for the L∞ window signs (the reference loops without bound; with ε > 0 at
/// most one sign pattern in 2^C leaves a window unchanged, so this is never reached).
const MAX_RESAMPLE: usize = 64;
/// Guard against dividing by a zero norm.
const TINY: f64 = 1e-12;

impl Square {
    /// 5000 queries, `p_init = 0.8`, one restart, margin loss, the schedule rescaled to the
    /// budget (the reference's standalone defaults; [`Square::rescale_schedule`]`(false)` is
    /// the AutoAttack ensemble's configuration).
    pub fn new(threat: ThreatModel) -> Self {
        Self {
            threat,
            queries: 5000,
            p_init: 0.8,
            restarts: 1,
            loss: SquareLoss::Margin,
            rescale_schedule: true,
            window_scoring: true,
        }
    }

    /// Whether L∞ queries go through the model's window scorer, where it has one (see the
    /// field).
    pub fn window_scoring(mut self, on: bool) -> Self {
        self.window_scoring = on;
        self
    }

    /// Whether the `p` schedule is stretched over the query budget (see the field).
    pub fn rescale_schedule(mut self, on: bool) -> Self {
        self.rescale_schedule = on;
        self
    }

    /// The window fraction at iteration `it` under this attack's schedule.
    fn p_at(&self, it: usize) -> f32 {
        // Rescaling `it` to 10,000 of 10,000 iterations is the identity: the fixed schedule.
        let n_iters = if self.rescale_schedule {
            self.queries
        } else {
            10_000
        };
        Self::p_selection(self.p_init, it, n_iters)
    }

    /// Sets the query budget per example and restart.
    pub fn queries(mut self, queries: usize) -> Self {
        self.queries = queries;
        self
    }

    /// Sets the initial fraction of the image's pixels in a window (AutoAttack: 0.8); the
    /// window side is clamped to fit the image.
    pub fn p_init(mut self, p_init: f32) -> Self {
        self.p_init = p_init;
        self
    }

    /// Sets the number of independent runs.
    pub fn restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts;
        self
    }

    /// Sets the loss the search minimises.
    pub fn loss(mut self, loss: SquareLoss) -> Self {
        self.loss = loss;
        self
    }

    /// The published piecewise-constant schedule of the window fraction `p`: iteration `it`
    /// of `n_iters` is rescaled to 10,000 and `p` halves at 10, 50, 200, 500, 1000, 2000,
    /// 4000, 6000 and 8000. Large windows first find the coarse structure, small ones refine.
    pub fn p_selection(p_init: f32, it: usize, n_iters: usize) -> f32 {
        let it = if n_iters == 0 {
            0
        } else {
            (it as u128 * 10_000 / n_iters as u128) as usize
        };
        let div = match it {
            0..=10 => 1.0,
            11..=50 => 2.0,
            51..=200 => 4.0,
            201..=500 => 8.0,
            501..=1000 => 16.0,
            1001..=2000 => 32.0,
            2001..=4000 => 64.0,
            4001..=6000 => 128.0,
            6001..=8000 => 256.0,
            8001..=10_000 => 512.0,
            _ => 1.0,
        };
        p_init / div
    }

    /// The attack with per-example statistics: the adversarial batch, the number of model
    /// queries each example used, and whether the returned point is misclassified (as the
    /// attack measured it). With `queries == 0` the model is never called: `x` comes back
    /// with all counts 0 and nothing marked fooled.
    ///
    /// The model is only ever run in evaluation mode on plain (non-autodiff) tensors.
    pub fn perturb_with_stats<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        rng: &mut AdvRng,
    ) -> (Tensor<4>, Vec<usize>, Vec<bool>) {
        let dims = x.dims();
        let [b, c, h, w] = dims;
        let n = c * h * w;
        let mut queries = vec![0usize; b];
        let mut fooled = vec![false; b];
        if self.queries == 0 || b == 0 || n == 0 {
            return (x, queries, fooled);
        }
        let eval_model = eval_mode(model);
        let labels = int_vec(&y);
        let clean = float_vec(&x);
        let oracle = Oracle {
            model: &eval_model,
            device: x.device().without_autodiff(),
            dims,
            labels: &labels,
            loss: self.loss,
        };
        let mut best = clean.clone();
        let mut best_loss = vec![f32::INFINITY; b];
        for restart in 0..self.restarts.max(1) {
            let members: Vec<usize> = (0..b).filter(|&i| !fooled[i]).collect();
            if members.is_empty() {
                break;
            }
            let run = self.single_run(&oracle, &clean, &members, rng);
            for (k, &g) in members.iter().enumerate() {
                queries[g] += run.queries[k];
                let now_fooled = run.margin[k] < 0.0;
                if restart == 0 || now_fooled || run.loss[k] < best_loss[g] {
                    best[g * n..(g + 1) * n].copy_from_slice(&run.x[k * n..(k + 1) * n]);
                    best_loss[g] = run.loss[k];
                    fooled[g] = now_fooled;
                }
            }
        }
        let x_adv = Tensor::<4>::from_data(TensorData::new(best, dims), &x.device());
        (x_adv, queries, fooled)
    }

    /// One run on the examples `members` (indices into the batch), from a fresh start.
    fn single_run<M: Classifier>(
        &self,
        oracle: &Oracle<'_, M>,
        clean: &[f32],
        members: &[usize],
        rng: &mut AdvRng,
    ) -> Run {
        let [_, _, h, w] = oracle.dims;
        // NaN or ε ≤ 0: no room to move; ε = ∞: the box is the only limit.
        let eps = if self.threat.eps > 0.0 {
            self.threat.eps.min(f32::MAX)
        } else {
            0.0
        };
        let geo = Geometry::new(oracle.dims, eps, clean, members);
        let x = match self.threat.norm {
            Norm::Linf => geo.init_linf(rng),
            Norm::L2 => geo.init_l2(rng),
        };
        // L2 steps move mass across the whole image; only L∞ candidates differ in one window.
        let mut scorer = match self.threat.norm {
            Norm::Linf if self.window_scoring => oracle.window_scorer(),
            _ => None,
        };
        let scores = match scorer.as_mut() {
            Some(scorer) => oracle.track(scorer.as_mut(), &x, members),
            None => oracle.ask(&x, members),
        };
        let m = members.len();
        let mut run = Run {
            x,
            loss: scores.iter().map(|s| s.0).collect(),
            margin: scores.iter().map(|s| s.1).collect(),
            queries: vec![1; m],
        };
        let iterations = if eps > 0.0 { self.queries - 1 } else { 0 };
        let n = geo.n;
        for it in 0..iterations {
            // Only the examples not yet broken are queried: the cost falls as points break.
            // (Margins are never NaN: `scores` maps NaN to +∞.)
            let active: Vec<usize> = (0..m).filter(|&k| run.margin[k] >= 0.0).collect();
            if active.is_empty() {
                break;
            }
            let p = self.p_at(it);
            let side = (p as f64 * (h * w) as f64).sqrt().round_ties_even() as usize;
            let (candidates, windows) = match self.threat.norm {
                Norm::Linf => geo.propose_linf(&run.x, &active, side, rng),
                Norm::L2 => (geo.propose_l2(&run.x, &active, side, rng), Vec::new()),
            };
            let who: Vec<usize> = active.iter().map(|&k| members[k]).collect();
            let scores = match scorer.as_deref() {
                Some(scorer) => oracle.ask_windows(scorer, &candidates, &windows, &active, &who),
                None => oracle.ask(&candidates, &who),
            };
            for (a, &k) in active.iter().enumerate() {
                let (loss, margin) = scores[a];
                run.queries[k] += 1;
                if loss < run.loss[k] || margin < 0.0 {
                    let candidate = &candidates[a * n..(a + 1) * n];
                    if let Some(scorer) = scorer.as_mut() {
                        scorer.replace(k, candidate, windows[a]);
                    }
                    run.x[k * n..(k + 1) * n].copy_from_slice(candidate);
                    run.loss[k] = loss;
                    run.margin[k] = margin;
                }
            }
        }
        run
    }
}

impl Attack for Square {
    fn name(&self) -> String {
        let loss = match self.loss {
            SquareLoss::Margin => String::new(),
            SquareLoss::CrossEntropy => "-ce".to_string(),
        };
        let restarts = if self.restarts > 1 {
            format!("x{}", self.restarts)
        } else {
            String::new()
        };
        let schedule = if self.rescale_schedule {
            ""
        } else {
            " fixed-schedule"
        };
        format!(
            "square{loss}-{}{restarts} {} p_init={}{schedule}",
            self.queries,
            self.threat.describe(),
            self.p_init
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
        self.perturb_with_stats(model, x, y, rng).0
    }
}

/// The state of one run, per member example: current best point (host, row-major), its loss
/// and margin, and the queries spent.
struct Run {
    x: Vec<f32>,
    loss: Vec<f32>,
    margin: Vec<f32>,
    queries: Vec<usize>,
}

/// The black box: logits in, per-example (loss, margin) out.
struct Oracle<'a, M> {
    model: &'a M,
    device: Device,
    dims: [usize; 4],
    labels: &'a [i64],
    loss: SquareLoss,
}

impl<M: Classifier> Oracle<'_, M> {
    /// One query for each row of `rows` (row `r` is an image of batch example `who[r]`).
    fn ask(&self, rows: &[f32], who: &[usize]) -> Vec<(f32, f32)> {
        let [_, c, h, w] = self.dims;
        let m = who.len();
        let t = Tensor::<4>::from_data(TensorData::new(rows.to_vec(), [m, c, h, w]), &self.device);
        let logits = self.model.logits(t);
        let k = logits.dims()[1];
        self.scores(&float_vec(&logits), k, who)
    }

    /// Per-row (loss, margin) of `z` (`[rows, k]` logits; row `r` belongs to example `who[r]`).
    fn scores(&self, z: &[f32], k: usize, who: &[usize]) -> Vec<(f32, f32)> {
        who.iter()
            .enumerate()
            .map(|(r, &g)| scores(&z[r * k..(r + 1) * k], self.labels[g], self.loss))
            .collect()
    }

    /// The model's window scorer for this batch's images, if it has one.
    fn window_scorer(&self) -> Option<Box<dyn WindowScorer>> {
        let [_, c, h, w] = self.dims;
        self.model.window_scorer([c, h, w])
    }

    /// [`Oracle::ask`] through `scorer`, which starts tracking `rows` as members `0..m`.
    fn track(&self, scorer: &mut dyn WindowScorer, rows: &[f32], who: &[usize]) -> Vec<(f32, f32)> {
        let z = scorer.track(rows);
        self.scores(&z, scorer.classes(), who)
    }

    /// [`Oracle::ask`] for candidates that each differ from their member's tracked point in
    /// `windows[r]` only: row `r` is a candidate for run member `members[r]`, example `who[r]`.
    fn ask_windows(
        &self,
        scorer: &dyn WindowScorer,
        rows: &[f32],
        windows: &[Window],
        members: &[usize],
        who: &[usize],
    ) -> Vec<(f32, f32)> {
        let n = rows.len() / who.len().max(1);
        let k = scorer.classes();
        // The closure must not hold `self`: the model need not be `Sync`.
        let (labels, loss) = (self.labels, self.loss);
        (0..who.len())
            .into_par_iter()
            .map_init(
                || vec![0.0f32; k],
                |z, r| {
                    let row = &rows[r * n..(r + 1) * n];
                    scorer.logits_with_window(members[r], row, windows[r], z);
                    scores(z, labels[who[r]], loss)
                },
            )
            .collect()
    }
}

/// (loss, margin) of one logit row; NaN counts as +∞ (never an improvement, never a success).
fn scores(z: &[f32], label: i64, loss: SquareLoss) -> (f32, f32) {
    let y = usize::try_from(label)
        .ok()
        .filter(|&y| y < z.len())
        .unwrap_or_else(|| panic!("label {label} out of range for {} classes", z.len()));
    let other = z
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != y)
        .map(|(_, &v)| v)
        .fold(f32::NEG_INFINITY, f32::max);
    let margin = z[y] - other;
    let value = match loss {
        SquareLoss::Margin => margin,
        SquareLoss::CrossEntropy => {
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = max + z.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
            z[y] - lse
        }
    };
    let clean = |v: f32| if v.is_nan() { f32::INFINITY } else { v };
    (clean(value), clean(margin))
}

/// Image geometry and the clean rows of the members of a run.
struct Geometry<'a> {
    c: usize,
    h: usize,
    w: usize,
    n: usize,
    eps: f32,
    clean: &'a [f32],
    members: &'a [usize],
}

impl<'a> Geometry<'a> {
    fn new(dims: [usize; 4], eps: f32, clean: &'a [f32], members: &'a [usize]) -> Self {
        let [_, c, h, w] = dims;
        Self {
            c,
            h,
            w,
            n: c * h * w,
            eps,
            clean,
            members,
        }
    }

    /// Clean image of member `k`.
    fn clean_row(&self, k: usize) -> &[f32] {
        let g = self.members[k];
        &self.clean[g * self.n..(g + 1) * self.n]
    }

    /// Largest window side that fits with room to move: `min(H, W) − 1`, at least 1.
    fn max_side(&self) -> usize {
        self.h.min(self.w).saturating_sub(1).max(1)
    }

    /// Vertical stripes: every column of every channel at `x ± ε` (one sign per column),
    /// clipped to [0, 1]. A corner of the ball with structure CNNs respond to strongly.
    fn init_linf(&self, rng: &mut AdvRng) -> Vec<f32> {
        let (c, h, w) = (self.c, self.h, self.w);
        let mut out = Vec::with_capacity(self.members.len() * self.n);
        for k in 0..self.members.len() {
            let x = self.clean_row(k);
            let start = out.len();
            out.extend_from_slice(x);
            for ch in 0..c {
                for col in 0..w {
                    let v = if rng.random::<bool>() {
                        self.eps
                    } else {
                        -self.eps
                    };
                    for r in 0..h {
                        let i = ch * h * w + r * w + col;
                        out[start + i] = (x[i] + v).clamp(0.0, 1.0);
                    }
                }
            }
        }
        out
    }

    /// For each active member: its best point with one random `s×s` window (all channels)
    /// set to `x ± ε`, one sign per channel, redrawn while the window would not change.
    /// Every pixel stays at `x ± ε` or at the best point's value, so the candidate is in the
    /// ball and, clipped, in the box. Returns the candidates and their windows.
    fn propose_linf(
        &self,
        best: &[f32],
        active: &[usize],
        side: usize,
        rng: &mut AdvRng,
    ) -> (Vec<f32>, Vec<Window>) {
        let (c, h, w, n) = (self.c, self.h, self.w, self.n);
        let s = side.clamp(1, self.max_side()).min(h).min(w);
        let mut out = Vec::with_capacity(active.len() * n);
        let mut windows = Vec::with_capacity(active.len());
        for &k in active {
            let x = self.clean_row(k);
            let cur = &best[k * n..(k + 1) * n];
            let start = out.len();
            out.extend_from_slice(cur);
            let r0 = rng.random_range(0..=h - s);
            let c0 = rng.random_range(0..=w - s);
            windows.push(Window::square(r0, c0, s));
            for _ in 0..MAX_RESAMPLE {
                let mut changed = false;
                for ch in 0..c {
                    let v = if rng.random::<bool>() {
                        self.eps
                    } else {
                        -self.eps
                    };
                    for r in r0..r0 + s {
                        for col in c0..c0 + s {
                            let i = ch * h * w + r * w + col;
                            let new = (x[i] + v).clamp(0.0, 1.0);
                            changed |= (new - cur[i]).abs() >= SAME;
                            out[start + i] = new;
                        }
                    }
                }
                if changed {
                    break;
                }
            }
        }
        (out, windows)
    }

    /// Grid of pseudo-Gaussian bumps of side `H/5` with random signs per channel, rescaled to
    /// L2 norm ε and clipped to [0, 1].
    fn init_l2(&self, rng: &mut AdvRng) -> Vec<f32> {
        let (c, h, w, n) = (self.c, self.h, self.w, self.n);
        let m = self.members.len();
        let s = (h / 5).max(1);
        let offset = h.saturating_sub(5 * s) / 2;
        let mut delta = vec![0.0f64; m * n];
        let mut top = offset;
        for _ in 0..h / s {
            let mut left = offset;
            for _ in 0..w / s {
                let bump = meta_pseudo_gaussian(s, rng);
                for k in 0..m {
                    for ch in 0..c {
                        let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                        for r in top..(top + s).min(h) {
                            for col in left..(left + s).min(w) {
                                delta[k * n + ch * h * w + r * w + col] +=
                                    sign * bump[(r - top) * s + (col - left)];
                            }
                        }
                    }
                }
                left += s;
            }
            top += s;
        }
        let mut out = Vec::with_capacity(m * n);
        for k in 0..m {
            self.push_on_sphere(&mut out, k, &delta[k * n..(k + 1) * n]);
        }
        out
    }

    /// Appends `clip(x + ε·δ/‖δ‖)` for member `k` (the clean point if δ = 0).
    fn push_on_sphere(&self, out: &mut Vec<f32>, k: usize, delta: &[f64]) {
        let x = self.clean_row(k);
        let norm = delta.iter().map(|d| d * d).sum::<f64>().sqrt();
        let scale = if norm > TINY {
            self.eps as f64 / norm
        } else {
            0.0
        };
        out.extend(
            x.iter()
                .zip(delta)
                .map(|(&xi, &d)| ((xi as f64 + d * scale) as f32).clamp(0.0, 1.0)),
        );
    }

    /// The reference's L2 step, with one pair of windows for the whole active batch: window 1
    /// gets a fresh ± bump plus its old (normalised) content, rescaled per channel to the
    /// mass of windows 1 ∪ 2 plus the unused budget; window 2 is emptied; the result is put
    /// back on the sphere of radius ε and clipped.
    fn propose_l2(
        &self,
        best: &[f32],
        active: &[usize],
        side: usize,
        rng: &mut AdvRng,
    ) -> Vec<f32> {
        let (c, h, w, n) = (self.c, self.h, self.w, self.n);
        let mut s = side.max(3);
        if s.is_multiple_of(2) {
            s += 1;
        }
        let s = s.min(self.max_side()).min(h).min(w);
        let (r1, c1) = (rng.random_range(0..=h - s), rng.random_range(0..=w - s));
        let (r2, c2) = (rng.random_range(0..=h - s), rng.random_range(0..=w - s));
        let in1 = |r: usize, col: usize| r >= r1 && r < r1 + s && col >= c1 && col < c1 + s;
        let in2 = |r: usize, col: usize| r >= r2 && r < r2 + s && col >= c2 && col < c2 + s;
        let bump = meta_pseudo_gaussian(s, rng);
        let eps2 = (self.eps as f64).powi(2);
        let mut out = Vec::with_capacity(active.len() * n);
        let mut delta = vec![0.0f64; n];
        let mut window = vec![0.0f64; c * s * s];
        for &k in active {
            let x = self.clean_row(k);
            let cur = &best[k * n..(k + 1) * n];
            for ((d, &b), &xi) in delta.iter_mut().zip(cur).zip(x) {
                *d = b as f64 - xi as f64;
            }
            let image_norm2: f64 = delta.iter().map(|d| d * d).sum();
            let budget = (eps2 - image_norm2).max(0.0) / c as f64;
            for ch in 0..c {
                let plane = &delta[ch * h * w..(ch + 1) * h * w];
                let (mut w1, mut both) = (0.0f64, 0.0f64);
                for r in 0..h {
                    for col in 0..w {
                        let d2 = plane[r * w + col].powi(2);
                        if in1(r, col) {
                            w1 += d2;
                        }
                        if in1(r, col) || in2(r, col) {
                            both += d2;
                        }
                    }
                }
                let w1 = w1.sqrt();
                let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                let win = &mut window[ch * s * s..(ch + 1) * s * s];
                for i in 0..s {
                    for j in 0..s {
                        let old = plane[(r1 + i) * w + c1 + j] / (1e-10 + w1);
                        win[i * s + j] = bump[i * s + j] * sign + old;
                    }
                }
                let norm = win.iter().map(|v| v * v).sum::<f64>().sqrt();
                let target = (budget + both).sqrt();
                let scale = if norm > TINY { target / norm } else { 0.0 };
                win.iter_mut().for_each(|v| *v *= scale);
            }
            for ch in 0..c {
                for i in 0..s {
                    for j in 0..s {
                        delta[ch * h * w + (r2 + i) * w + c2 + j] = 0.0;
                    }
                }
                for i in 0..s {
                    for j in 0..s {
                        delta[ch * h * w + (r1 + i) * w + c1 + j] = window[ch * s * s + i * s + j];
                    }
                }
            }
            self.push_on_sphere(&mut out, k, &delta);
        }
        out
    }
}

/// The reference's `pseudo_gaussian_pert_rectangles`: an `x×y` (row-major) bump made of
/// nested rectangles with weights `1/(k+1)²`, normalised to unit L2 norm.
fn pseudo_gaussian_rectangles(x: usize, y: usize) -> Vec<f64> {
    let mut delta = vec![0.0f64; x * y];
    let (xc, yc) = (x / 2 + 1, y / 2 + 1);
    let (mut top, mut left) = (xc as i64 - 1, yc as i64 - 1);
    for counter in 0..xc.max(yc) {
        let span = 2 * counter as i64 + 1;
        let (r0, r1) = (top.max(0), (top + span).min(x as i64));
        let (c0, c1) = (left.max(0), (left + span).min(y as i64));
        let weight = 1.0 / ((counter + 1) as f64).powi(2);
        for r in r0..r1 {
            for col in c0..c1 {
                delta[r as usize * y + col as usize] += weight;
            }
        }
        top -= 1;
        left -= 1;
    }
    normalise(&mut delta);
    delta
}

/// The reference's `meta_pseudo_gaussian_pert` (two sub-squares): a positive bump on the top
/// half and a negative one on the bottom half of an `s×s` window, unit norm, transposed with
/// probability 1/2.
fn meta_pseudo_gaussian(s: usize, rng: &mut AdvRng) -> Vec<f64> {
    let half = s / 2;
    let mut delta = pseudo_gaussian_rectangles(half, s);
    delta.extend(
        pseudo_gaussian_rectangles(s - half, s)
            .into_iter()
            .map(|v| -v),
    );
    normalise(&mut delta);
    if rng.random::<f64>() > 0.5 {
        let mut t = vec![0.0f64; s * s];
        for i in 0..s {
            for j in 0..s {
                t[j * s + i] = delta[i * s + j];
            }
        }
        delta = t;
    }
    delta
}

fn normalise(v: &mut [f64]) {
    let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
    if norm > TINY {
        v.iter_mut().for_each(|a| *a /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::Square;
    use crate::attack::Attack;
    use crate::threat::ThreatModel;

    #[test]
    fn the_ensembles_square_keeps_the_published_breakpoints() {
        // 1,000 queries: iteration 600 is in 501..=1000 of the fixed schedule (p/16); the
        // standalone attack stretches it to 6,000 of 10,000 (p/128).
        let standalone = Square::new(ThreatModel::linf(0.1)).queries(1000);
        assert_eq!(standalone.p_at(600), 0.8 / 128.0);
        let in_ensemble = standalone.clone().rescale_schedule(false);
        assert_eq!(in_ensemble.p_at(600), 0.8 / 16.0);
        assert_eq!(in_ensemble.p_at(5), 0.8);
        assert!(in_ensemble.name().contains("fixed-schedule"));
        // At 10,000 queries both schedules are the published one.
        let full = Square::new(ThreatModel::linf(0.1)).queries(10_000);
        assert_eq!(
            full.p_at(4500),
            full.clone().rescale_schedule(false).p_at(4500)
        );
    }
}
