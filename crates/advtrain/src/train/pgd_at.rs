//! PGD adversarial training (Madry et al. 2018): `min_θ E[max_{δ∈B_ε} L(f(x+δ), y)]`,
//! training on the adversarial examples only.

use burn::prelude::{Int, Tensor};

use super::step::scaled_step;
use super::{BatchLoss, TrainingMethod};
use crate::attack::{cross_entropy, Attack, Pgd};
use crate::model::Classifier;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;

/// Train on PGD-`steps` examples (random start, step `step_size` or 2.5ε/steps).
#[derive(Clone, Debug)]
pub struct PgdAt {
    /// Steps of the inner PGD attack (published default 10).
    pub steps: usize,
    /// Inner PGD step size in pixel units; `None`: 2.5·ε/steps at the current (warmed-up) ε.
    pub step_size: Option<f32>,
}

impl PgdAt {
    /// The inner attack for radius `threat`.
    pub fn attack(&self, threat: ThreatModel) -> Pgd {
        let pgd = Pgd::new(threat).steps(self.steps).keep_best(false);
        match self.step_size {
            Some(a) => pgd.step_size(a),
            None => pgd,
        }
    }
}

impl TrainingMethod for PgdAt {
    fn batch_loss<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        threat: ThreatModel,
        rng: &mut AdvRng,
    ) -> BatchLoss {
        let x_adv = self.attack(threat).perturb(model, x, y.clone(), rng);
        let logits = model.logits(x_adv);
        BatchLoss {
            loss: cross_entropy(logits.clone(), y).mean(),
            logits: logits.without_autodiff(),
        }
    }

    fn with_step_scale(&self, scale: f32, eps: f32) -> Self {
        Self {
            step_size: scaled_step(self.steps, self.step_size, scale, eps),
            ..self.clone()
        }
    }
}
