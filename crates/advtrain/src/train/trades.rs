//! TRADES (Zhang et al. 2019): `CE(f(x), y) + β·KL(f(x) ‖ f(x_adv))`, where `x_adv`
//! maximises the KL term (not the cross-entropy). β trades clean accuracy for robustness
//! (β = 6 on CIFAR-10, 1 on MNIST in the paper).

use burn::prelude::{Int, Tensor, TensorData};

use super::step::scaled_step;
use super::{BatchLoss, TrainingMethod};
use crate::attack::{cross_entropy, input_gradient_with, kl_from_logits};
use crate::model::Classifier;
use crate::rng::{self, AdvRng};
use crate::threat::ThreatModel;

/// TRADES with a `steps`-step inner maximisation of the KL divergence.
#[derive(Clone, Debug)]
pub struct Trades {
    /// Weight β of the KL robustness term (default 6, the paper's CIFAR-10 value; 1 for
    /// MNIST in the paper); larger trades clean accuracy for robustness.
    pub beta: f32,
    /// Ascent steps of the inner KL maximisation (default 10).
    pub steps: usize,
    /// Inner step size in pixel units; `None`: 2.5·ε/steps at the current (warmed-up) ε.
    pub step_size: Option<f32>,
}

impl Trades {
    fn alpha(&self, threat: ThreatModel) -> f32 {
        self.step_size
            .unwrap_or(2.5 * threat.eps / self.steps.max(1) as f32)
    }

    /// The inner maximisation: start at `x` plus small Gaussian noise (0.001·N(0, 1), as in
    /// the reference code, since the KL gradient vanishes at `x` itself), then ascend the KL.
    pub fn adversarial<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        threat: ThreatModel,
        rng: &mut AdvRng,
    ) -> Tensor<4> {
        let eval_model = model.valid();
        let clean_logits = eval_model.logits(x.clone());
        let dims = x.dims();
        let noise = rng::normal_vec(rng, dims.iter().product())
            .into_iter()
            .map(|v| 0.001 * v)
            .collect::<Vec<_>>();
        let noise = Tensor::<4>::from_data(TensorData::new(noise, dims), &x.device());
        let mut x_adv = threat.project(x.clone() + noise, &x);
        let alpha = self.alpha(threat);
        for _ in 0..self.steps {
            let target = clean_logits.clone();
            let g = input_gradient_with(&eval_model, x_adv.clone(), move |adv_logits| {
                kl_from_logits(target, adv_logits)
            });
            x_adv = threat.step(x_adv, g.grad, alpha, &x);
        }
        x_adv
    }
}

impl TrainingMethod for Trades {
    fn batch_loss<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        threat: ThreatModel,
        rng: &mut AdvRng,
    ) -> BatchLoss {
        let x_adv = self.adversarial(model, x.clone(), threat, rng);
        let clean_logits = model.logits(x);
        let adv_logits = model.logits(x_adv);
        let loss = cross_entropy(clean_logits.clone(), y).mean()
            + kl_from_logits(clean_logits, adv_logits.clone())
                .mean()
                .mul_scalar(self.beta);
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
