//! Mixed clean + adversarial training (Goodfellow et al. 2015, with a PGD inner attack):
//! `L = L(f(x), y) + λ·L(f(x_adv), y)`. Keeps more clean accuracy than PGD-AT at some cost
//! in robustness; λ sets the trade-off.

use burn::prelude::{Int, Tensor};

use super::step::scaled_step;
use super::{BatchLoss, PgdAt, TrainingMethod};
use crate::attack::{cross_entropy, Attack};
use crate::model::Classifier;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;

/// Clean loss plus λ times the loss on PGD-`steps` examples.
#[derive(Clone, Debug)]
pub struct Mixed {
    /// Weight λ of the adversarial loss against the clean one (default 1: equal weight);
    /// must be finite and `>= 0`.
    pub lambda: f32,
    /// Steps of the inner PGD attack (published default 10).
    pub steps: usize,
    /// Inner PGD step size in pixel units; `None`: 2.5·ε/steps at the current (warmed-up) ε.
    pub step_size: Option<f32>,
}

impl TrainingMethod for Mixed {
    fn batch_loss<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        threat: ThreatModel,
        rng: &mut AdvRng,
    ) -> BatchLoss {
        let inner = PgdAt {
            steps: self.steps,
            step_size: self.step_size,
        };
        let x_adv = inner
            .attack(threat)
            .perturb(model, x.clone(), y.clone(), rng);
        let clean_logits = model.logits(x);
        let adv_logits = model.logits(x_adv);
        let loss = cross_entropy(clean_logits, y.clone()).mean()
            + cross_entropy(adv_logits.clone(), y)
                .mean()
                .mul_scalar(self.lambda);
        BatchLoss {
            loss,
            logits: adv_logits.without_autodiff(),
        }
    }

    fn with_step_scale(&self, scale: f32, eps: f32) -> Self {
        Self {
            step_size: scaled_step(self.steps, self.step_size, scale, eps),
            ..self.clone()
        }
    }
}
