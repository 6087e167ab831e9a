//! Projected gradient descent (Madry et al. 2018), L∞ and L2, with restarts, targeted
//! variants and per-example worst-case tracking.

use burn::prelude::{Int, Tensor};

use super::{
    blend_rows, choose_targets, eval_mode, float_vec, input_gradient, int_vec, Attack, AttackLoss,
    TargetMode,
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
        let (labels, targeted) = match self.target {
            Some(mode) => (choose_targets(mode, eval_model, &x, &y, rng), true),
            None => (y, false),
        };
        self.run(eval_model, x, labels, targeted, rng)
    }

    /// Targeted PGD towards explicit per-example `targets`.
    pub fn perturb_towards<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        targets: Tensor<1, Int>,
        rng: &mut AdvRng,
    ) -> Tensor<4> {
        self.run(&eval_mode(model), x, targets, true, rng)
    }

    fn run<M: Classifier>(
        &self,
        eval_model: &M,
        x: Tensor<4>,
        labels: Tensor<1, Int>,
        targeted: bool,
        rng: &mut AdvRng,
    ) -> Tensor<4> {
        let alpha = self.alpha();
        let label_vec = int_vec(&labels);
        let mut best = BestTracker::new(x.clone(), label_vec, targeted);
        let mut last = x.clone();
        for restart in 0..self.restarts.max(1) {
            let mut x_adv = if self.random_start || restart > 0 {
                self.threat.random_start(&x, rng)
            } else {
                x.clone()
            };
            for _ in 0..self.steps {
                let g = input_gradient(
                    eval_model,
                    x_adv.clone(),
                    labels.clone(),
                    self.loss,
                    targeted,
                );
                if self.keep_best {
                    best.update(&x_adv, &g.logits, &g.objective);
                }
                x_adv = self.threat.step(x_adv, g.grad, alpha, &x);
            }
            if self.keep_best {
                let logits = eval_model.logits(x_adv.clone());
                let objective = self
                    .loss
                    .objective(logits.clone(), labels.clone(), targeted);
                best.update(&x_adv, &logits, &objective);
                if best.all_successful() {
                    break;
                }
            } else {
                last = x_adv;
            }
        }
        if self.keep_best {
            best.x
        } else {
            last
        }
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
        format!(
            "pgd{t}-{}x{} {} {} alpha={:.4}",
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

/// Per-example best point so far: a successful one beats an unsuccessful one; among equals
/// the higher objective wins.
struct BestTracker {
    x: Tensor<4>,
    success: Vec<bool>,
    objective: Vec<f32>,
    labels: Vec<i64>,
    targeted: bool,
    seen: bool,
}

impl BestTracker {
    fn new(x: Tensor<4>, labels: Vec<i64>, targeted: bool) -> Self {
        let b = labels.len();
        Self {
            x,
            success: vec![false; b],
            objective: vec![f32::NEG_INFINITY; b],
            labels,
            targeted,
            seen: false,
        }
    }

    fn update(&mut self, x_t: &Tensor<4>, logits: &Tensor<2>, objective: &Tensor<1>) {
        let b = self.labels.len();
        let pred = int_vec(&logits.clone().argmax(1).reshape([b]));
        let obj = float_vec(objective);
        let mut take = vec![false; b];
        for i in 0..b {
            let success = if self.targeted {
                pred[i] == self.labels[i]
            } else {
                pred[i] != self.labels[i]
            };
            let o = if obj[i].is_nan() {
                f32::NEG_INFINITY
            } else {
                obj[i]
            };
            let better = !self.seen
                || (success && !self.success[i])
                || (success == self.success[i] && o > self.objective[i]);
            if better {
                take[i] = true;
                self.success[i] = success;
                self.objective[i] = o;
            }
        }
        self.seen = true;
        self.x = blend_rows(self.x.clone(), x_t.clone(), &take);
    }

    fn all_successful(&self) -> bool {
        self.success.iter().all(|&s| s)
    }
}
