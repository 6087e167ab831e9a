//! Projected gradient descent (Madry et al. 2018), L∞ and L2, with restarts, targeted
//! variants and per-example worst-case tracking.

use burn::prelude::{Int, Tensor};

use super::{
    choose_targets, eot_suffix, eval_mode, float_vec, input_gradient_eot, int_vec, replace_rows,
    rows_of, select_rows, Attack, AttackLoss, InputGradient, TargetMode,
};
use crate::model::Classifier;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;

/// Iterated steepest-ascent steps, each projected back onto the threat model.
#[derive(Clone, Debug)]
pub struct Pgd {
    /// The ball every iterate is projected onto.
    pub threat: ThreatModel,
    /// Gradient steps per restart (default 10).
    pub steps: usize,
    /// Step size; `None` means 2.5·ε/steps (Madry et al.'s rule: enough to reach the
    /// boundary from anywhere in the ball).
    pub step_size: Option<f32>,
    /// Start each restart from a random point of the ball (the first from the clean input
    /// when false).
    pub random_start: bool,
    /// Independent runs; per example the strongest is kept.
    /// 0 is treated as 1.
    pub restarts: usize,
    /// The objective maximised (minimised towards the target when targeted).
    pub loss: AttackLoss,
    /// `Some` for a targeted attack.
    pub target: Option<TargetMode>,
    /// Keep, per example, the best point visited (a misclassified one if any, else the one of
    /// highest loss) instead of the last iterate. Costs nothing extra per step; evaluation
    /// uses it, training (which wants the standard PGD iterate) does not.
    pub keep_best: bool,
    /// Gradient samples averaged per step (expectation over transformation, for a model
    /// with a random forward pass); 1, the default, is plain PGD.
    pub eot: usize,
}

impl Pgd {
    /// Untargeted cross-entropy PGD with a random start, 10 steps, 1 restart, keeping the
    /// best point per example.
    pub fn new(threat: ThreatModel) -> Self {
        Self {
            threat,
            steps: 10,
            step_size: None,
            random_start: true,
            restarts: 1,
            loss: AttackLoss::CrossEntropy,
            target: None,
            keep_best: true,
            eot: 1,
        }
    }

    /// Sets the number of gradient steps per restart.
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// Sets a fixed step size, in pixel units, instead of 2.5·ε/steps.
    pub fn step_size(mut self, alpha: f32) -> Self {
        self.step_size = Some(alpha);
        self
    }

    /// Sets the number of independent runs; per example the strongest is kept.
    pub fn restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts;
        self
    }

    /// Whether the first run starts from a random point of the ball (later restarts always
    /// do).
    pub fn random_start(mut self, on: bool) -> Self {
        self.random_start = on;
        self
    }

    /// Sets the objective maximised.
    pub fn loss(mut self, loss: AttackLoss) -> Self {
        self.loss = loss;
        self
    }

    /// Makes the attack targeted, with targets chosen by `mode`.
    pub fn targeted(mut self, mode: TargetMode) -> Self {
        self.target = Some(mode);
        self
    }

    /// Whether to return each example's best point visited (`true`, the evaluation default)
    /// or the last iterate (`false`, what training and torchattacks use).
    pub fn keep_best(mut self, on: bool) -> Self {
        self.keep_best = on;
        self
    }

    /// Sets the gradient samples averaged per step (EOT); 1 is plain PGD.
    pub fn eot(mut self, samples: usize) -> Self {
        self.eot = samples.max(1);
        self
    }

    /// The step size in use.
    pub fn alpha(&self) -> f32 {
        self.step_size
            .unwrap_or(2.5 * self.threat.eps / self.steps.max(1) as f32)
    }

    /// The attack on a model already in evaluation mode.
    pub fn perturb_eval<M: Classifier>(
        &self,
        eval_model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        rng: &mut AdvRng,
    ) -> Tensor<4> {
        let targets = self
            .target
            .map(|mode| choose_targets(mode, eval_model, &x, &y, rng));
        self.run(eval_model, x, &y, targets, rng)
    }

    /// Targeted PGD towards explicit per-example `targets` (`y` are the true labels: a point
    /// misclassified into any class counts as broken).
    pub fn perturb_towards<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        targets: Tensor<1, Int>,
        rng: &mut AdvRng,
    ) -> Tensor<4> {
        self.run(&eval_mode(model), x, &y, Some(targets), rng)
    }

    /// Untargeted when `targets` is `None`, else descending the loss towards them.
    fn run<M: Classifier>(
        &self,
        eval_model: &M,
        x: Tensor<4>,
        y: &Tensor<1, Int>,
        targets: Option<Tensor<1, Int>>,
        rng: &mut AdvRng,
    ) -> Tensor<4> {
        let targeted = targets.is_some();
        let labels = targets.clone().unwrap_or_else(|| y.clone());
        if !self.keep_best {
            return self.last_iterate(eval_model, x, labels, targeted, rng);
        }
        let mut best = BestTracker::new(x.clone(), int_vec(y), targets.as_ref().map(int_vec));
        for restart in 0..self.restarts.max(1) {
            // Only the points still robust are attacked again: a broken one stays broken.
            let rows = best.rows_to_attack();
            if rows.is_empty() {
                break;
            }
            let (x_rows, labels_rows) = rows_of(&x, &labels, &rows);
            let start = self.random_start || restart > 0;
            let x_adv = self.ascend(
                eval_model,
                &x_rows,
                &labels_rows,
                targeted,
                start,
                rng,
                |x_t, g| best.update(&rows, x_t, &g.logits, &g.objective),
            );
            let logits = eval_model.logits(x_adv.clone());
            let objective = self.loss.objective(logits.clone(), labels_rows, targeted);
            best.update(&rows, &x_adv, &logits, &objective);
        }
        best.x
    }

    /// The standard PGD iterate of the last restart (what training uses).
    fn last_iterate<M: Classifier>(
        &self,
        eval_model: &M,
        x: Tensor<4>,
        labels: Tensor<1, Int>,
        targeted: bool,
        rng: &mut AdvRng,
    ) -> Tensor<4> {
        let mut last = x.clone();
        for restart in 0..self.restarts.max(1) {
            let start = self.random_start || restart > 0;
            last = self.ascend(eval_model, &x, &labels, targeted, start, rng, |_, _| {});
        }
        last
    }

    /// One run of `steps` projected steps from `x` (or a random point of its ball), calling
    /// `visit` at every iterate before its step with the gradient computed there.
    #[allow(clippy::too_many_arguments)]
    fn ascend<M: Classifier>(
        &self,
        eval_model: &M,
        x: &Tensor<4>,
        labels: &Tensor<1, Int>,
        targeted: bool,
        random_start: bool,
        rng: &mut AdvRng,
        mut visit: impl FnMut(&Tensor<4>, &InputGradient),
    ) -> Tensor<4> {
        let alpha = self.alpha();
        let mut x_adv = if random_start {
            self.threat.random_start(x, rng)
        } else {
            x.clone()
        };
        let loss = self.loss;
        let objective = |logits: Tensor<2>| loss.objective(logits, labels.clone(), targeted);
        for _ in 0..self.steps {
            let g = input_gradient_eot(eval_model, x_adv.clone(), &objective, self.eot);
            visit(&x_adv, &g);
            x_adv = self.threat.step(x_adv, g.grad, alpha, x);
        }
        x_adv
    }
}

impl Attack for Pgd {
    fn name(&self) -> String {
        let t = match self.target {
            Some(TargetMode::Random) => "-targeted(random)".to_string(),
            Some(TargetMode::LeastLikely) => "-targeted(least-likely)".to_string(),
            Some(TargetMode::Class(c)) => format!("-targeted({c})"),
            None => String::new(),
        };
        let eot = eot_suffix(self.eot);
        format!(
            "pgd{t}-{}x{} {} {} alpha={:.4}{eot}",
            self.steps,
            self.restarts.max(1),
            self.loss,
            self.threat.describe(),
            self.alpha()
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
        self.perturb_eval(&eval_mode(model), x, y, rng)
    }
}

/// Per-example best point so far. A point misclassified (into any class) beats one that is
/// not, so a broken iterate is never given up for one of higher objective; a targeted attack
/// then prefers an iterate on its target; among equals the higher objective wins.
struct BestTracker {
    x: Tensor<4>,
    broken: Vec<bool>,
    on_target: Vec<bool>,
    objective: Vec<f32>,
    labels: Vec<i64>,
    targets: Option<Vec<i64>>,
    seen: Vec<bool>,
}

impl BestTracker {
    fn new(x: Tensor<4>, labels: Vec<i64>, targets: Option<Vec<i64>>) -> Self {
        let b = labels.len();
        Self {
            x,
            broken: vec![false; b],
            on_target: vec![false; b],
            objective: vec![f32::NEG_INFINITY; b],
            labels,
            targets,
            seen: vec![false; b],
        }
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    /// The points worth another restart: not broken yet, and (targeted) not of the target
    /// class already.
    fn rows_to_attack(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| !self.broken[i])
            .filter(|&i| self.targets.as_ref().is_none_or(|t| t[i] != self.labels[i]))
            .collect()
    }

    /// Folds in the iterate `x_t` of the points `rows` (its rows, in that order).
    fn update(
        &mut self,
        rows: &[usize],
        x_t: &Tensor<4>,
        logits: &Tensor<2>,
        objective: &Tensor<1>,
    ) {
        let pred = int_vec(&logits.clone().argmax(1).reshape([rows.len()]));
        let obj = float_vec(objective);
        let mut take = vec![false; rows.len()];
        for (k, &i) in rows.iter().enumerate() {
            let broken = pred[k] != self.labels[i];
            let on_target = self.targets.as_ref().is_some_and(|t| pred[k] == t[i]);
            let o = if obj[k].is_nan() {
                f32::NEG_INFINITY
            } else {
                obj[k]
            };
            let rank = (broken, on_target);
            let old = (self.broken[i], self.on_target[i]);
            if !self.seen[i] || rank > old || (rank == old && o > self.objective[i]) {
                take[k] = true;
                self.seen[i] = true;
                self.broken[i] = broken;
                self.on_target[i] = on_target;
                self.objective[i] = o;
            }
        }
        let taken: Vec<usize> = (0..rows.len()).filter(|&k| take[k]).collect();
        if taken.is_empty() {
            return;
        }
        let values = if taken.len() == rows.len() {
            x_t.clone()
        } else {
            select_rows(x_t, &taken)
        };
        let targets: Vec<usize> = taken.iter().map(|&k| rows[k]).collect();
        self.x = replace_rows(self.x.clone(), &targets, values);
    }
}

#[cfg(test)]
mod tests {
    use burn::prelude::{Tensor, TensorData};

    use super::BestTracker;

    fn device() -> burn::prelude::Device {
        burn::prelude::Device::flex()
    }

    fn rows(values: &[f32]) -> Tensor<4> {
        Tensor::<4>::from_data(
            TensorData::new(values.to_vec(), [values.len(), 1, 1, 1]),
            &device(),
        )
    }

    /// One-hot-ish logits predicting `class` of 3.
    fn logits(classes: &[usize]) -> Tensor<2> {
        let mut v = vec![0.0f32; classes.len() * 3];
        for (i, &c) in classes.iter().enumerate() {
            v[i * 3 + c] = 5.0;
        }
        Tensor::<2>::from_data(TensorData::new(v, [classes.len(), 3]), &device())
    }

    fn objective(values: &[f32]) -> Tensor<1> {
        Tensor::<1>::from_data(TensorData::new(values.to_vec(), [values.len()]), &device())
    }

    #[test]
    fn targeted_tracking_keeps_an_iterate_misclassified_into_another_class() {
        // True class 0, target 2. The first iterate is misclassified as class 1 (broken, off
        // target); the second is classified correctly again but scores higher on the
        // target's objective. The broken one must be kept: giving it up would count the
        // point as robust.
        let mut best = BestTracker::new(rows(&[0.0]), vec![0], Some(vec![2]));
        best.update(&[0], &rows(&[0.3]), &logits(&[1]), &objective(&[-2.0]));
        best.update(&[0], &rows(&[0.6]), &logits(&[0]), &objective(&[-0.5]));
        assert!(best.broken[0]);
        assert_eq!(best.x.clone().into_scalar::<f32>(), 0.3);
        assert!(
            best.rows_to_attack().is_empty(),
            "a broken point is not attacked again"
        );
        // An iterate on the target beats a merely misclassified one.
        best.update(&[0], &rows(&[0.9]), &logits(&[2]), &objective(&[-3.0]));
        assert_eq!(best.x.into_scalar::<f32>(), 0.9);
    }

    #[test]
    fn updates_of_a_subset_touch_only_its_rows() {
        let mut best = BestTracker::new(rows(&[0.0, 0.0, 0.0]), vec![0, 0, 0], None);
        best.update(
            &[0, 1, 2],
            &rows(&[0.1, 0.1, 0.1]),
            &logits(&[0, 1, 0]),
            &objective(&[1.0, 1.0, 1.0]),
        );
        assert_eq!(best.rows_to_attack(), vec![0, 2]);
        // Rows 0 and 2 again: row 2 breaks, row 0 improves its loss; row 1 is untouched.
        best.update(
            &[0, 2],
            &rows(&[0.2, 0.3]),
            &logits(&[0, 2]),
            &objective(&[2.0, 0.5]),
        );
        let x: Vec<f32> = best
            .x
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(x, vec![0.2, 0.1, 0.3]);
        assert!(best.broken[2] && !best.broken[0]);
    }
}
