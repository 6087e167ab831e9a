//! MART (Wang et al. 2020, "Improving adversarial robustness requires revisiting
//! misclassified examples"): boosted cross-entropy on the adversarial example plus
//! `β·KL(f(x) ‖ f(x_adv))` weighted by `1 − p_y(x)`, so misclassified examples count more.
//! The inner maximisation is PGD on the cross-entropy; published defaults β = 6, 10 steps.

use burn::prelude::{Int, Tensor};
use burn::tensor::activation::softmax;

use super::step::scaled_step;
use super::{BatchLoss, PgdAt, TrainingMethod};
use crate::attack::{cross_entropy, kl_from_logits, Attack};
use crate::model::Classifier;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;

/// MART with a `steps`-step PGD inner maximisation.
#[derive(Clone, Debug)]
pub struct Mart {
    /// Weight β of the misclassification-weighted KL term (published default 6).
    pub beta: f32,
    /// Steps of the inner PGD attack (published default 10).
    pub steps: usize,
    /// Inner PGD step size in pixel units; `None`: 2.5·ε/steps at the current (warmed-up) ε.
    pub step_size: Option<f32>,
}

/// Per-example MART loss from clean and adversarial logits, shape `[batch]`:
/// `CE(z_adv, y) − log(1.0001 − max_{j≠y} p_adv,j) + β·KL(p ‖ p_adv)·(1.0000001 − p_y)`,
/// with the constants of the reference implementation.
pub fn mart_loss(
    clean_logits: Tensor<2>,
    adv_logits: Tensor<2>,
    y: Tensor<1, Int>,
    beta: f32,
) -> Tensor<1> {
    let [b, k] = adv_logits.dims();
    let adv_probs = softmax(adv_logits.clone(), 1);
    let true_mask = y.clone().one_hot::<2>(k).equal_elem(1);
    let wrong_max = adv_probs.mask_fill(true_mask, -1.0).max_dim(1).reshape([b]);
    let boosted =
        cross_entropy(adv_logits.clone(), y.clone()) - wrong_max.neg().add_scalar(1.0001).log();
    let true_probs = softmax(clean_logits.clone(), 1)
        .gather(1, y.reshape([b, 1]))
        .reshape([b]);
    let weight = true_probs.neg().add_scalar(1.000_000_1);
    boosted + (kl_from_logits(clean_logits, adv_logits) * weight).mul_scalar(beta)
}

impl TrainingMethod for Mart {
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
        let loss = mart_loss(clean_logits, adv_logits.clone(), y, self.beta).mean();
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
