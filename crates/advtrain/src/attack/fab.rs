//! FAB, the Fast Adaptive Boundary attack (Croce & Hein 2020, "Minimally distorted
//! adversarial examples with a fast adaptive boundary attack"): a minimum-norm attack. Each
//! iteration linearises the classifier at the current point, picks the closest linearised
//! decision boundary, and projects both the current point and the clean point onto that
//! hyperplane intersected with the box `[0, 1]`; the next point is a biased combination of
//! the two projections (extrapolated by η). Once a point is adversarial it steps back towards
//! the clean input (factor β), so the attack walks along the boundary towards the clean point.
//! FAB-T does the same towards one target class at a time.
//!
//! Follows the reference implementation (AutoAttack's `fab_pt.py`, `fab_base.py` and
//! `fab_projections.py`): 100 iterations, α_max = 0.1, η = 1.05, β = 0.9; restarts after the
//! first start at a random point at distance ε/2; FAB-T targets the 2nd, 3rd, ... most likely
//! clean classes, 9 by default, each on the points still robust. As in the reference, a point
//! counts as broken only if the attack's output is misclassified (FAB-T: as any class) *and*
//! lies within ε; every other point is returned unchanged. So FAB's output is inside the
//! ε-ball and the box by construction, although FAB itself minimises the norm rather than
//! staying inside a ball.
//!
//! The hyperplane projections are exact, row by row, on the host (they sort every row); they
//! are ported step by step from the reference's batched code, bisection included.

use burn::prelude::{Int, Tensor, TensorData};
use rayon::prelude::*;

use super::{eval_mode, float_vec, input_gradient_with, int_vec, Attack};
use crate::model::Classifier;
use crate::rng::{self, AdvRng};
use crate::threat::{Norm, ThreatModel};

/// The step-size bounds and extrapolation of the reference (AutoAttack's defaults).
const ALPHA_MAX: f32 = 0.1;
const ETA: f32 = 1.05;
const BETA: f32 = 0.9;

/// At most this many rows (copies of the batch, one per class) go through the model in one
/// gradient pass of untargeted FAB; more classes take more passes.
const MAX_ROWS_PER_PASS: usize = 1024;

/// Untargeted FAB: minimal perturbation towards the closest linearised decision boundary.
#[derive(Clone, Debug)]
pub struct Fab {
    /// The ball a found adversarial must lie in to be returned; also the radius of the
    /// random starts (ε/2).
    pub threat: ThreatModel,
    /// Iterations per restart (AutoAttack: 100).
    pub steps: usize,
    /// Runs per point, the first from the clean input, later ones from random starts, each on
    /// the points still robust (AutoAttack: 1 in `standard`, 5 in `plus`); 0 is treated as 1.
    pub restarts: usize,
    /// Upper bound of the weight of the clean point's projection (AutoAttack: 0.1).
    pub alpha_max: f32,
    /// Overshoot of each projection step (AutoAttack: 1.05).
    pub eta: f32,
    /// Backward step towards the clean input once a point is adversarial (AutoAttack: 0.9).
    pub beta: f32,
}

impl Fab {
    /// FAB with AutoAttack's standard budget: 100 iterations, 1 restart.
    pub fn new(threat: ThreatModel) -> Self {
        Self {
            threat,
            steps: 100,
            restarts: 1,
            alpha_max: ALPHA_MAX,
            eta: ETA,
            beta: BETA,
        }
    }

    /// Sets the iterations per restart.
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// Sets the number of runs (the first from the clean input, the others random).
    pub fn restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts;
        self
    }

    fn settings(&self) -> Settings {
        Settings {
            threat: self.threat,
            steps: self.steps,
            alpha_max: self.alpha_max,
            eta: self.eta,
            beta: self.beta,
        }
    }
}

impl Attack for Fab {
    fn name(&self) -> String {
        format!(
            "fab-{}x{} {}",
            self.steps,
            self.restarts.max(1),
            self.threat.describe()
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
        perturb_runs(model, x, y, &self.settings(), None, self.restarts, rng)
    }
}

/// FAB-T: FAB towards each of the `targets` most likely other classes in turn (AutoAttack:
/// 9 targets, 100 iterations, 1 restart each), each on the points still robust. A point
/// counts as broken as soon as it is misclassified, whatever the class.
#[derive(Clone, Debug)]
pub struct FabTargeted {
    /// The ball a found adversarial must lie in to be returned; also the radius of the
    /// random starts (ε/2).
    pub threat: ThreatModel,
    /// Iterations per target class and restart (AutoAttack: 100).
    pub steps: usize,
    /// How many of the most likely non-true classes to target in turn (AutoAttack: 9);
    /// capped at the number of classes minus one.
    pub targets: usize,
    /// Runs per target class, the first from the clean input, later ones from random starts
    /// (AutoAttack: 1); 0 is treated as 1.
    pub restarts: usize,
    /// Upper bound of the weight of the clean point's projection (AutoAttack: 0.1).
    pub alpha_max: f32,
    /// Overshoot of each projection step (AutoAttack: 1.05).
    pub eta: f32,
    /// Backward step towards the clean input once a point is adversarial (AutoAttack: 0.9).
    pub beta: f32,
}

impl FabTargeted {
    /// FAB-T with AutoAttack's standard budget: 100 iterations towards each of 9 targets.
    pub fn new(threat: ThreatModel) -> Self {
        Self {
            threat,
            steps: 100,
            targets: 9,
            restarts: 1,
            alpha_max: ALPHA_MAX,
            eta: ETA,
            beta: BETA,
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

    /// Sets the number of runs per target class.
    pub fn restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts;
        self
    }
}

impl Attack for FabTargeted {
    fn name(&self) -> String {
        let restarts = match self.restarts.max(1) {
            1 => String::new(),
            r => format!("x{r}"),
        };
        format!(
            "fab-t-{}x{}targets{restarts} {}",
            self.steps,
            self.targets,
            self.threat.describe()
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
        let settings = Settings {
            threat: self.threat,
            steps: self.steps,
            alpha_max: self.alpha_max,
            eta: self.eta,
            beta: self.beta,
        };
        perturb_runs(
            model,
            x,
            y,
            &settings,
            Some(self.targets),
            self.restarts,
            rng,
        )
    }
}

/// What one FAB run needs besides the points.
struct Settings {
    threat: ThreatModel,
    steps: usize,
    alpha_max: f32,
    eta: f32,
    beta: f32,
}

/// One run of the outer loop: untargeted or towards the `rank`-th most likely other class,
/// from the clean input or from a random start.
#[derive(Clone, Copy)]
struct Run {
    target_rank: Option<usize>,
    random_start: bool,
}

/// A batch on the host: `n` rows of `len` values, with the image dims to rebuild tensors.
struct Batch {
    values: Vec<f32>,
    n: usize,
    len: usize,
    /// `[channels, height, width]`.
    image: [usize; 3],
}

impl Batch {
    fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.len..(i + 1) * self.len]
    }

    fn rows(&self, idx: &[usize]) -> Batch {
        let mut values = Vec::with_capacity(idx.len() * self.len);
        for &i in idx {
            values.extend_from_slice(self.row(i));
        }
        Batch {
            values,
            n: idx.len(),
            len: self.len,
            image: self.image,
        }
    }

    fn tensor(&self, device: &burn::prelude::Device) -> Tensor<4> {
        let [c, h, w] = self.image;
        Tensor::from_data(
            TensorData::new(self.values.clone(), [self.n, c, h, w]),
            device,
        )
    }
}

/// The reference's `perturb`: `restarts` runs (untargeted), or `restarts` runs towards each
/// of the `targets` most likely other classes (FAB-T), one after another, each on the points
/// still robust; a point is replaced by a run's output only if that is misclassified and
/// within ε.
fn perturb_runs<M: Classifier>(
    model: &M,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    settings: &Settings,
    targets: Option<usize>,
    restarts: usize,
    rng: &mut AdvRng,
) -> Tensor<4> {
    let model = eval_mode(model);
    let device = x.device();
    let [b, c, h, w] = x.dims();
    let clean = Batch {
        values: float_vec(&x),
        n: b,
        len: c * h * w,
        image: [c, h, w],
    };
    let labels = int_vec(&y);
    let clean_logits = model.logits(clean.tensor(&device));
    let k = clean_logits.dims()[1];
    let mut acc: Vec<bool> = int_vec(&clean_logits.argmax(1).reshape([b]))
        .iter()
        .zip(&labels)
        .map(|(p, l)| p == l)
        .collect();
    // Target rank 1 is the most likely other class (the reference's `target_class = 2`).
    let ranks: Vec<Option<usize>> = match targets {
        None => vec![None],
        Some(t) => (1..=t.min(k - 1)).map(Some).collect(),
    };
    let runs = ranks.into_iter().flat_map(|target_rank| {
        (0..restarts.max(1)).map(move |counter| Run {
            target_rank,
            random_start: counter > 0,
        })
    });
    let mut adv = clean.values.clone();
    for run in runs {
        let to_fool: Vec<usize> = (0..b).filter(|&i| acc[i]).collect();
        if to_fool.is_empty() {
            break;
        }
        let x_sub = clean.rows(&to_fool);
        let y_sub: Vec<i64> = to_fool.iter().map(|&i| labels[i]).collect();
        let adv_curr = single_run(&model, &x_sub, &y_sub, settings, run, rng, &device);
        let pred = predicted(&model, &adv_curr, &device);
        for (j, &i) in to_fool.iter().enumerate() {
            let res = norm(settings.threat.norm, adv_curr.row(j), x_sub.row(j));
            if pred[j] != y_sub[j] && res <= settings.threat.eps {
                acc[i] = false;
                adv[i * clean.len..(i + 1) * clean.len].copy_from_slice(adv_curr.row(j));
            }
        }
    }
    Tensor::from_data(TensorData::new(adv, [b, c, h, w]), &device)
}

/// Predicted class per row.
fn predicted<M: Classifier>(model: &M, x: &Batch, device: &burn::prelude::Device) -> Vec<i64> {
    let logits = model.logits(x.tensor(device));
    int_vec(&logits.argmax(1).reshape([x.n]))
}

/// The norm of `a - b`, accumulated in f64 so that the ε test agrees with evaluation's.
fn norm(norm: Norm, a: &[f32], b: &[f32]) -> f32 {
    let diffs = a.iter().zip(b).map(|(p, q)| f64::from(p - q));
    match norm {
        Norm::Linf => diffs.fold(0.0f64, |m, d| m.max(d.abs())) as f32,
        Norm::L2 => diffs.map(|d| d * d).sum::<f64>().sqrt() as f32,
    }
}

/// The reference's `attack_single_run`: `steps` FAB iterations on the correctly classified
/// points of `x`; returns, per point, the closest adversarial found, or the clean point.
fn single_run<M: Classifier>(
    model: &M,
    x: &Batch,
    labels: &[i64],
    settings: &Settings,
    run: Run,
    rng: &mut AdvRng,
    device: &burn::prelude::Device,
) -> Batch {
    let threat = settings.threat;
    let clean_logits = model.logits(x.tensor(device));
    let k = clean_logits.dims()[1];
    let clean_logits = float_vec(&clean_logits);
    let correct: Vec<usize> = (0..x.n)
        .filter(|&i| argmax(&clean_logits[i * k..(i + 1) * k]) as i64 == labels[i])
        .collect();
    let mut out = Batch {
        values: x.values.clone(),
        n: x.n,
        len: x.len,
        image: x.image,
    };
    if correct.is_empty() {
        return out;
    }
    let im2 = x.rows(&correct);
    let la2: Vec<i64> = correct.iter().map(|&i| labels[i]).collect();
    let (bs, len) = (im2.n, im2.len);
    // The classes whose logit difference to the label is linearised, per block of rows:
    // every other class (untargeted), or the one target.
    let blocks: Vec<Vec<i64>> = match run.target_rank {
        None => (0..k - 1)
            .map(|j| {
                la2.iter()
                    .map(|&l| {
                        if (j as i64) < l {
                            j as i64
                        } else {
                            j as i64 + 1
                        }
                    })
                    .collect()
            })
            .collect(),
        Some(rank) => {
            // The reference takes the (rank+1)-th largest clean logit; on the correctly
            // classified points attacked here the largest is the label's, so this is the
            // rank-th most likely class other than the label (ties cannot pick the label).
            vec![correct
                .iter()
                .map(|&i| {
                    let row = &clean_logits[i * k..(i + 1) * k];
                    let mut order: Vec<usize> = (0..k).collect();
                    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                    *order
                        .iter()
                        .filter(|&&c| c as i64 != labels[i])
                        .nth(rank - 1)
                        .expect("rank < classes") as i64
                })
                .collect()]
        }
    };

    let mut adv = im2.values.clone();
    let mut res2 = vec![1e10f32; bs];
    let mut x1 = im2.values.clone();
    if run.random_start {
        random_start(&mut x1, &im2.values, len, threat, rng);
    }
    for _ in 0..settings.steps {
        let (df, dg) = logit_difference_gradients(model, &x1, &im2, &la2, &blocks, k, device);
        let m = blocks.len();
        // Per point: the hyperplane of the closest linearised boundary.
        let planes: Vec<(Vec<f32>, f32)> = (0..bs)
            .map(|i| {
                let dist = |j: usize| {
                    let g = &dg[(j * bs + i) * len..(j * bs + i + 1) * len];
                    let dual = match threat.norm {
                        Norm::Linf => g.iter().map(|v| v.abs()).sum::<f32>(),
                        Norm::L2 => g.iter().map(|v| v * v).sum::<f32>().sqrt(),
                    };
                    df[j * bs + i].abs() / (1e-12 + dual)
                };
                let mut ind = 0;
                let mut best = dist(0);
                for j in 1..m {
                    let d = dist(j);
                    if d < best {
                        best = d;
                        ind = j;
                    }
                }
                let w = dg[(ind * bs + i) * len..(ind * bs + i + 1) * len].to_vec();
                let x1_i = &x1[i * len..(i + 1) * len];
                let b = -df[ind * bs + i] + dot(&w, x1_i);
                (w, b)
            })
            .collect();
        // Project the current points and the clean points onto their hyperplanes.
        let project = |t: &[f32], w: &[f32], b: f32| match threat.norm {
            Norm::Linf => projection_linf(t, w, b),
            Norm::L2 => projection_l2(t, w, b),
        };
        let (d1, d2): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (0..bs)
            .into_par_iter()
            .map(|i| {
                let (w, b) = &planes[i];
                (
                    project(&x1[i * len..(i + 1) * len], w, *b),
                    project(im2.row(i), w, *b),
                )
            })
            .unzip();
        let size = |d: &[f32]| {
            let a = match threat.norm {
                Norm::Linf => d.iter().fold(0.0f32, |m, v| m.max(v.abs())),
                Norm::L2 => d.iter().map(|v| v * v).sum::<f32>().sqrt(),
            };
            a.max(1e-8)
        };
        for i in 0..bs {
            let (a1, a2) = (size(&d1[i]), size(&d2[i]));
            let alpha = (a1 / (a1 + a2)).max(0.0).min(settings.alpha_max);
            let row = &mut x1[i * len..(i + 1) * len];
            for (p, ((&o, &s1), &s2)) in row
                .iter_mut()
                .zip(im2.row(i).iter().zip(&d1[i]).zip(&d2[i]))
            {
                *p = ((*p + settings.eta * s1) * (1.0 - alpha) + (o + s2 * settings.eta) * alpha)
                    .clamp(0.0, 1.0);
            }
        }
        let x1_batch = Batch {
            values: x1,
            n: bs,
            len,
            image: im2.image,
        };
        let pred = predicted(model, &x1_batch, device);
        x1 = x1_batch.values;
        for i in 0..bs {
            if pred[i] == la2[i] {
                continue;
            }
            let row = &mut x1[i * len..(i + 1) * len];
            let t = norm(threat.norm, row, im2.row(i));
            if t < res2[i] {
                adv[i * len..(i + 1) * len].copy_from_slice(row);
                res2[i] = t;
            }
            for (p, &o) in row.iter_mut().zip(im2.row(i)) {
                *p = o + (*p - o) * settings.beta;
            }
        }
    }
    for (j, &i) in correct.iter().enumerate() {
        if res2[j] < 1e10 {
            out.values[i * len..(i + 1) * len].copy_from_slice(&adv[j * len..(j + 1) * len]);
        }
    }
    out
}

/// The reference's random start: a uniformly random direction at distance ε/2 (L∞: a
/// uniform draw in the cube scaled to max-norm ε/2), clipped to the box.
fn random_start(x1: &mut [f32], im2: &[f32], len: usize, threat: ThreatModel, rng: &mut AdvRng) {
    let t = match threat.norm {
        Norm::Linf => rng::uniform_vec(rng, x1.len(), -1.0, 1.0),
        Norm::L2 => rng::normal_vec(rng, x1.len()),
    };
    for ((row, t), o) in x1.chunks_mut(len).zip(t.chunks(len)).zip(im2.chunks(len)) {
        let scale = match threat.norm {
            Norm::Linf => t.iter().fold(0.0f32, |m, v| m.max(v.abs())),
            Norm::L2 => t.iter().map(|v| v * v).sum::<f32>().sqrt(),
        };
        for ((p, &v), &c) in row.iter_mut().zip(t).zip(o) {
            *p = (c + threat.eps * v / scale * 0.5).clamp(0.0, 1.0);
        }
    }
}

/// The reference's `get_diff_logits_grads_batch(_targeted)`: for each block `j` of classes
/// (one class per point), the logit differences `f_c − f_y` at `x1` and their input
/// gradients. Returns `df[j·n + i]` and `dg[(j·n + i)·len ..]`.
///
/// The reference backpropagates every logit through one graph; here the batch is repeated
/// once per block and each copy backpropagates its own difference, in one pass for up to
/// [`MAX_ROWS_PER_PASS`] rows (the same gradients: in evaluation mode every row of the
/// batch is computed independently).
fn logit_difference_gradients<M: Classifier>(
    model: &M,
    x1: &[f32],
    im2: &Batch,
    labels: &[i64],
    blocks: &[Vec<i64>],
    k: usize,
    device: &burn::prelude::Device,
) -> (Vec<f32>, Vec<f32>) {
    let (n, len) = (im2.n, im2.len);
    let per_pass = (MAX_ROWS_PER_PASS / n).max(1);
    let mut df = Vec::with_capacity(blocks.len() * n);
    let mut dg = Vec::with_capacity(blocks.len() * n * len);
    for group in blocks.chunks(per_pass) {
        let rows = group.len() * n;
        let mut values = Vec::with_capacity(rows * len);
        let mut mask = vec![0.0f32; rows * k];
        for (j, classes) in group.iter().enumerate() {
            values.extend_from_slice(x1);
            for i in 0..n {
                let r = j * n + i;
                mask[r * k + classes[i] as usize] += 1.0;
                mask[r * k + labels[i] as usize] -= 1.0;
            }
        }
        let batch = Batch {
            values,
            n: rows,
            len,
            image: im2.image,
        };
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, k]), device);
        let g = input_gradient_with(model, batch.tensor(device), |logits| {
            (logits * mask).sum_dim(1).reshape([rows])
        });
        df.extend(float_vec(&g.objective));
        dg.extend(float_vec(&g.grad));
    }
    (df, dg)
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = j;
        }
    }
    best
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(p, q)| p * q).sum()
}

/// Indices that sort `v` ascending by `f32::total_cmp`, ties in index order (the order
/// of a stable sort, on which the projections' running sums depend bit for bit).
///
/// A least-significant-byte-first radix sort of each coordinate's total-order key,
/// carried packed with its index in one `u64`: every pass is stable, so ties stay in
/// index order, and a pass whose byte is the same for every key is skipped. The FAB
/// projections sort every row of 784 coordinates in every iteration: the comparison
/// sort of the same packed values was a tenth of FAB-T's time, the indirect stable
/// sort before it a fifth.
fn argsort(v: &[f32]) -> Vec<usize> {
    assert!(
        v.len() <= u32::MAX as usize,
        "argsort keeps indices in 32 bits"
    );
    let mut packed: Vec<u64> = v
        .iter()
        .enumerate()
        .map(|(i, x)| (u64::from(total_order_key(*x)) << 32) | i as u64)
        .collect();
    let mut spare = vec![0u64; packed.len()];
    let byte = |p: u64, pass: usize| ((p >> (32 + 8 * pass)) & 0xFF) as usize;
    let mut counts = [[0usize; 256]; 4];
    for &p in &packed {
        for (pass, c) in counts.iter_mut().enumerate() {
            c[byte(p, pass)] += 1;
        }
    }
    for (pass, c) in counts.iter().enumerate() {
        if c.contains(&packed.len()) {
            continue;
        }
        let mut starts = [0usize; 256];
        for b in 1..256 {
            starts[b] = starts[b - 1] + c[b - 1];
        }
        for &p in &packed {
            let b = byte(p, pass);
            spare[starts[b]] = p;
            starts[b] += 1;
        }
        std::mem::swap(&mut packed, &mut spare);
    }
    packed.iter().map(|p| (p & 0xFFFF_FFFF) as usize).collect()
}

/// `x`'s bits mapped so that unsigned order is `f32::total_cmp`'s order: negative values
/// have every bit flipped, the others only the sign bit (what `total_cmp` computes).
fn total_order_key(x: f32) -> u32 {
    let bits = x.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// The number of bisection steps of the reference: `ceil(log2(len))`.
fn bisection_steps(len: usize) -> usize {
    (len as f64).log2().ceil() as usize
}

/// `max(v, 0)` as torch's `clamp_min` computes it (NaN stays NaN).
fn clamp_min0(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// The reference's `projection_linf` for one point: the smallest-L∞ step `d` such that
/// `t + d` lies on the hyperplane `w·z = b` and in the box `[0, 1]`. If the hyperplane does
/// not meet the box, the step to the box corner closest to it.
pub(crate) fn projection_linf(t: &[f32], w: &[f32], b: f32) -> Vec<f32> {
    let dim = t.len();
    let sign = if dot(w, t) - b >= 0.0 { 1.0 } else { -1.0 };
    let w: Vec<f32> = w.iter().map(|v| v * sign).collect();
    let b = b * sign;

    let a: Vec<f32> = w.iter().map(|&v| f32::from(u8::from(v < 0.0))).collect();
    let nonzero: Vec<f32> = w.iter().map(|&v| f32::from(u8::from(v != 0.0))).collect();
    let mut d: Vec<f32> = (0..dim).map(|j| (a[j] - t[j]) * nonzero[j]).collect();
    let p: Vec<f32> = (0..dim).map(|j| a[j] - t[j] * (2.0 * a[j] - 1.0)).collect();
    let indp = argsort(&p);

    let b = b - dot(&w, t);
    let b0 = dot(&w, &d);

    // Coordinates by decreasing p: cumulated |w| and the offsets of the box-bound ones.
    let mut s = Vec::with_capacity(dim);
    let mut sb = Vec::with_capacity(dim);
    let (mut acc_s, mut acc_sb) = (0.0f32, 0.0f32);
    for &j in indp.iter().rev() {
        acc_s += w[j].abs();
        acc_sb += -w[j] * d[j];
        s.push(acc_s);
        sb.push(acc_sb + b0);
    }

    let b2 = sb[dim - 1] - s[dim - 1] * p[indp[0]];
    let c_l = b - b2 > 0.0;
    let c2 = (b - b0 > 0.0) && !c_l;

    if c_l {
        let lmbd_opt = clamp_min0((b - sb[dim - 1]) / (-s[dim - 1]));
        for j in 0..dim {
            d[j] = (2.0 * a[j] - 1.0) * lmbd_opt;
        }
    } else if c2 {
        let (mut lb, mut ub) = (0.0f32, (dim - 1) as f32);
        for _ in 0..bisection_steps(dim) {
            let counter4 = ((lb + ub) / 2.0).floor();
            let k = counter4 as usize;
            let indcurr = indp[dim - 1 - k];
            let b2 = sb[k] - s[k] * p[indcurr];
            if b - b2 > 0.0 {
                lb = counter4;
            } else {
                ub = counter4;
            }
        }
        let lb = lb as usize;
        let lmbd_opt = clamp_min0((b - sb[lb]) / (-s[lb]));
        for j in 0..dim {
            d[j] = lmbd_opt.min(d[j]) * a[j] + (-lmbd_opt).max(d[j]) * (1.0 - a[j]);
        }
    }
    (0..dim).map(|j| d[j] * nonzero[j]).collect()
}

/// The reference's `projection_l2` for one point: the smallest-L2 step `d` such that
/// `t + d` lies on the hyperplane `w·z = b` and in the box `[0, 1]` (the step
/// `clip(t − λw) − t` for the right λ ≥ 0); if the hyperplane does not meet the box, the
/// step towards it as far as the box allows.
pub(crate) fn projection_l2(t: &[f32], w: &[f32], b: f32) -> Vec<f32> {
    let dim = t.len();
    let c = dot(w, t) - b;
    let sign = if c >= 0.0 { 1.0 } else { -1.0 };
    let w: Vec<f32> = w.iter().map(|v| v * sign).collect();
    let c = c * sign;
    let live: Vec<f32> = w
        .iter()
        .map(|v| f32::from(u8::from(v.abs() > 1e-8)))
        .collect();

    // r[j]: the step λ along −w at which coordinate j reaches the box.
    let r: Vec<f32> = (0..dim)
        .map(|j| {
            if w[j].abs() < 1e-8 {
                return 1e12;
            }
            let v = (t[j] / w[j]).max((t[j] - 1.0) / w[j]).clamp(-1e12, 1e12);
            if v == -1e12 {
                1e12
            } else {
                v
            }
        })
        .collect();
    let indr = argsort(&r);
    let mut rs: Vec<f32> = indr.iter().map(|&j| r[j]).collect();
    let mut rs2: Vec<f32> = rs[1..]
        .iter()
        .copied()
        .chain(std::iter::once(0.0))
        .collect();
    rs.iter_mut().filter(|v| **v == 1e12).for_each(|v| *v = 0.0);
    rs2.iter_mut()
        .filter(|v| **v == 1e12)
        .for_each(|v| *v = 0.0);

    let w3s: Vec<f32> = indr.iter().map(|&j| w[j] * w[j]).collect();
    let w5: f32 = w3s.iter().sum();
    let mut ws = Vec::with_capacity(dim);
    let mut acc = 0.0f32;
    for v in &w3s {
        acc += v;
        ws.push(w5 - acc);
    }
    let mut d: Vec<f32> = (0..dim).map(|j| -(r[j] * w[j]) * live[j]).collect();
    let mut s = Vec::with_capacity(dim + 1);
    s.push(-w5 * rs[0]);
    let mut acc = 0.0f32;
    for k in 0..dim {
        acc += (-rs2[k] + rs[k]) * ws[k];
        s.push(acc - w5 * rs[0]);
    }

    let c4 = s[0] + c < 0.0;
    let c3 = dot(&d, &w) + c > 0.0;
    let c2 = !(c4 || c3);

    if c4 {
        let alpha = c / w5;
        for j in 0..dim {
            d[j] = -alpha * w[j];
        }
    } else if c2 {
        let (mut lb, mut ub) = (0.0f32, (dim - 1) as f32);
        for _ in 0..bisection_steps(dim) {
            let counter4 = ((lb + ub) / 2.0).floor();
            if s[counter4 as usize] + c > 0.0 {
                lb = counter4;
            } else {
                ub = counter4;
            }
        }
        let lb = lb as usize;
        let mut alpha = (s[lb] + c) / ws[lb] + rs[lb];
        if ws[lb] == 0.0 {
            alpha = 0.0;
        }
        for j in 0..dim {
            let c5 = f32::from(u8::from(alpha > r[j]));
            d[j] = d[j] * c5 - alpha * w[j] * (1.0 - c5);
        }
    }
    (0..dim).map(|j| d[j] * live[j]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{seeded, uniform_vec};

    /// Brute force, L∞: the smallest δ for which the box `[max(−δ, −t), min(δ, 1 − t)]`
    /// of steps reaches `w·(t + d) = b`, by bisection on δ; `None` if even the whole box
    /// does not reach the hyperplane.
    fn brute_linf(t: &[f32], w: &[f32], b: f32) -> Option<f64> {
        let c = f64::from(dot(w, t)) - f64::from(b);
        // Largest decrease (c > 0) or increase (c < 0) of w·d within radius δ.
        let reach = |delta: f64| -> f64 {
            t.iter()
                .zip(w)
                .map(|(&tj, &wj)| {
                    let (tj, wj) = (f64::from(tj), f64::from(wj) * c.signum());
                    if wj > 0.0 {
                        wj * delta.min(tj)
                    } else {
                        -wj * delta.min(1.0 - tj)
                    }
                })
                .sum()
        };
        if reach(1.0) < c.abs() {
            return None;
        }
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..100 {
            let mid = (lo + hi) / 2.0;
            if reach(mid) >= c.abs() {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }

    /// Brute force, L2: the projection is `clip(t − λw·sign) − t` for the λ ≥ 0 that meets
    /// the hyperplane (KKT), found by bisection on λ.
    fn brute_l2(t: &[f32], w: &[f32], b: f32) -> Option<f64> {
        let c = f64::from(dot(w, t)) - f64::from(b);
        let step = |lambda: f64| -> Vec<f64> {
            t.iter()
                .zip(w)
                .map(|(&tj, &wj)| {
                    let tj = f64::from(tj);
                    (tj - lambda * f64::from(wj) * c.signum()).clamp(0.0, 1.0) - tj
                })
                .collect()
        };
        let decrease = |lambda: f64| -> f64 {
            -step(lambda)
                .iter()
                .zip(w)
                .map(|(d, &wj)| d * f64::from(wj) * c.signum())
                .sum::<f64>()
        };
        if decrease(1e6) < c.abs() {
            return None;
        }
        let (mut lo, mut hi) = (0.0f64, 1e6f64);
        for _ in 0..200 {
            let mid = (lo + hi) / 2.0;
            if decrease(mid) >= c.abs() {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(step(hi).iter().map(|d| d * d).sum::<f64>().sqrt())
    }

    fn case(seed: u64, dim: usize, spread: f32) -> (Vec<f32>, Vec<f32>, f32) {
        let mut rng = seeded(seed);
        let t = uniform_vec(&mut rng, dim, 0.5 - spread, 0.5 + spread);
        let w = uniform_vec(&mut rng, dim, -1.0, 1.0);
        let shift = uniform_vec(&mut rng, 1, -1.0, 1.0)[0] * spread * dim as f32 / 4.0;
        let b = dot(&w, &t) + shift;
        (t, w, b)
    }

    fn check_feasible(t: &[f32], w: &[f32], b: f32, d: &[f32]) {
        let z: Vec<f32> = t.iter().zip(d).map(|(p, q)| p + q).collect();
        for v in &z {
            assert!((-1e-5..=1.0 + 1e-5).contains(v), "left the box: {v}");
        }
        let scale: f32 = w.iter().map(|v| v.abs()).sum();
        let gap = (dot(w, &z) - b).abs();
        assert!(
            gap <= 1e-4 * scale.max(1.0),
            "missed the hyperplane by {gap}"
        );
    }

    #[test]
    fn argsort_is_the_stable_total_order_sort() {
        let specials = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            1e-45,
            f32::MAX,
            f32::MIN,
        ];
        let mut state = 12345u32;
        for len in [0usize, 1, 2, 7, 33, 784] {
            let v: Vec<f32> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                    // Few distinct values, so ties are common, and the special ones.
                    match state >> 28 {
                        0..=3 => specials[(state >> 8) as usize % specials.len()],
                        _ => ((state >> 20) % 9) as f32 / 8.0,
                    }
                })
                .collect();
            let mut stable: Vec<usize> = (0..len).collect();
            stable.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
            assert_eq!(argsort(&v), stable, "length {len}");
            // and a row of distinct values over several binades, as FAB's are
            let v: Vec<f32> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                    (state >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
                })
                .collect();
            let mut stable: Vec<usize> = (0..len).collect();
            stable.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
            assert_eq!(argsort(&v), stable, "distinct values, length {len}");
        }
    }

    #[test]
    fn linf_projection_inside_the_box_is_the_dual_norm_formula() {
        // Far from the box edges: d = −(w·t − b)/‖w‖₁ · sign(w), of L∞ size |w·t − b|/‖w‖₁.
        let t = vec![0.5f32; 6];
        let w = vec![1.0, -2.0, 0.5, 0.0, 3.0, -1.0];
        let b = dot(&w, &t) + 0.3;
        let d = projection_linf(&t, &w, b);
        check_feasible(&t, &w, b, &d);
        let expect = 0.3 / 7.5;
        for (j, &wj) in w.iter().enumerate() {
            let want = if wj == 0.0 { 0.0 } else { expect * wj.signum() };
            assert!(
                (d[j] - want).abs() < 1e-6,
                "coordinate {j}: {} vs {want}",
                d[j]
            );
        }
    }

    #[test]
    fn l2_projection_inside_the_box_is_the_orthogonal_projection() {
        let t = vec![0.4f32, 0.6, 0.5, 0.5, 0.45];
        let w = vec![1.0, -2.0, 0.5, 0.0, 3.0];
        let b = dot(&w, &t) - 0.2;
        let d = projection_l2(&t, &w, b);
        check_feasible(&t, &w, b, &d);
        let ww = dot(&w, &w);
        for (j, &wj) in w.iter().enumerate() {
            let want = -0.2 * wj / ww;
            assert!(
                (d[j] - want).abs() < 1e-6,
                "coordinate {j}: {} vs {want}",
                d[j]
            );
        }
    }

    #[test]
    fn projections_are_feasible_and_no_farther_than_brute_force() {
        let mut checked = [0usize; 2];
        for seed in 0..300u64 {
            let dim = 1 + (seed as usize % 17);
            // Wide spreads put points at the box edges, so the box constraints bind.
            let spread = [0.05, 0.3, 0.5][seed as usize % 3];
            let (t, w, b) = case(seed, dim, spread);
            if let Some(opt) = brute_linf(&t, &w, b) {
                let d = projection_linf(&t, &w, b);
                check_feasible(&t, &w, b, &d);
                let size = d.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
                assert!(
                    size <= opt * (1.0 + 1e-4) + 1e-6,
                    "seed {seed}: linf {size} > {opt}"
                );
                checked[0] += 1;
            }
            if let Some(opt) = brute_l2(&t, &w, b) {
                let d = projection_l2(&t, &w, b);
                check_feasible(&t, &w, b, &d);
                let size = d.iter().map(|v| f64::from(v * v)).sum::<f64>().sqrt();
                assert!(
                    size <= opt * (1.0 + 1e-4) + 1e-6,
                    "seed {seed}: l2 {size} > {opt}"
                );
                checked[1] += 1;
            }
        }
        assert!(
            checked.iter().all(|&c| c > 200),
            "too few feasible cases: {checked:?}"
        );
    }

    #[test]
    fn projections_end_at_the_nearest_corner_when_the_hyperplane_misses_the_box() {
        // w·z = 10 is out of reach of the box [0,1]^3 for w = (1, 1, 1): go to (1, 1, 1).
        let t = vec![0.2f32, 0.5, 0.9];
        let w = vec![1.0f32, 1.0, 1.0];
        for d in [projection_linf(&t, &w, 10.0), projection_l2(&t, &w, 10.0)] {
            for (p, q) in t.iter().zip(&d) {
                assert!((p + q - 1.0).abs() < 1e-6, "{d:?}");
            }
        }
    }
}
