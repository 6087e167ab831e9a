//! Fast adversarial training (Wong et al. 2020, "Fast is better than free"): FGSM from a
//! uniformly random start with step α = 1.25ε, projected. About as cheap as two standard
//! steps; prone to catastrophic overfitting at large ε or α, which the validation PGD
//! accuracy in `metrics.jsonl` shows.

use burn::prelude::{Int, Tensor};

use super::{BatchLoss, TrainingMethod};
use crate::attack::{cross_entropy, Attack, Fgsm};
use crate::model::Classifier;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;

/// Train on FGSM-RS examples with step `alpha_factor·ε`.
#[derive(Clone, Debug)]
pub struct FgsmRs {
    /// FGSM step as a multiple of ε (Wong et al.: 1.25); after a monitor rollback the
    /// step runs with it multiplied by the reduced step scale.
    pub alpha_factor: f32,
    /// Wong et al.'s random start; without it this is plain FGSM training (Goodfellow et
    /// al.), which overfits catastrophically far more readily.
    pub random_start: bool,
}

impl Default for FgsmRs {
    fn default() -> Self {
        Self {
            alpha_factor: 1.25,
            random_start: true,
        }
    }
}

impl TrainingMethod for FgsmRs {
    fn batch_loss<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        threat: ThreatModel,
        rng: &mut AdvRng,
    ) -> BatchLoss {
        let alpha = self.alpha_factor * threat.eps;
        let attack = if self.random_start {
            Fgsm::random_start(threat, alpha)
        } else {
            Fgsm::new(threat).with_step(alpha)
        };
        let x_adv = attack.perturb(model, x, y.clone(), rng);
        let logits = model.logits(x_adv);
        BatchLoss {
            loss: cross_entropy(logits.clone(), y).mean(),
            logits: logits.without_autodiff(),
        }
    }

    fn with_step_scale(&self, scale: f32, _eps: f32) -> Self {
        Self {
            alpha_factor: self.alpha_factor * scale,
            ..self.clone()
        }
    }
}
