//! Single-step attacks: FGSM (L∞, Goodfellow et al. 2015) and FGM (L2), optionally from a
//! random start (the "RS" of fast adversarial training, Wong et al. 2020).

use burn::prelude::{Int, Tensor};

use super::{eot_suffix, eval_mode, input_gradient, input_gradient_eot, Attack, AttackLoss};
use crate::model::Classifier;
use crate::rng::AdvRng;
use crate::threat::{Norm, ThreatModel};

/// One gradient-sign (L∞) or normalised-gradient (L2) step, projected onto the threat model.
#[derive(Clone, Debug)]
pub struct Fgsm {
    /// The ball the step is projected onto; its ε is also the default step size.
    pub threat: ThreatModel,
    /// Start from a random point of the ball instead of the clean input.
    pub random_start: bool,
    /// Step size; `None` means ε (plain FGSM).
    pub step_size: Option<f32>,
    /// The objective whose gradient gives the step direction.
    pub loss: AttackLoss,
    /// Gradient samples averaged (expectation over transformation, for a model with a
    /// random forward pass); 1, the default, is plain FGSM.
    pub eot: usize,
}

impl Fgsm {
    /// Plain FGSM/FGM: one step of size ε from the clean input.
    pub fn new(threat: ThreatModel) -> Self {
        Self {
            threat,
            random_start: false,
            step_size: None,
            loss: AttackLoss::CrossEntropy,
            eot: 1,
        }
    }

    /// FGSM with random start and step `alpha` (Wong et al. use α = 1.25ε).
    pub fn random_start(threat: ThreatModel, alpha: f32) -> Self {
        Self {
            threat,
            random_start: true,
            step_size: Some(alpha),
            loss: AttackLoss::CrossEntropy,
            eot: 1,
        }
    }

    /// Plain FGSM (no random start) with step `alpha` instead of ε; the result is still
    /// projected onto the ball.
    pub fn with_step(mut self, alpha: f32) -> Self {
        self.step_size = Some(alpha);
        self
    }

    /// The same attack maximising `loss` instead of cross-entropy.
    pub fn with_loss(mut self, loss: AttackLoss) -> Self {
        self.loss = loss;
        self
    }

    /// Sets the gradient samples averaged (EOT); 1 is plain FGSM.
    pub fn with_eot(mut self, samples: usize) -> Self {
        self.eot = samples.max(1);
        self
    }

    fn alpha(&self) -> f32 {
        self.step_size.unwrap_or(self.threat.eps)
    }

    /// The attack on a model already in evaluation mode (saves the mode switch in loops).
    pub fn perturb_eval<M: Classifier>(
        &self,
        eval_model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        rng: &mut AdvRng,
    ) -> Tensor<4> {
        let start = if self.random_start {
            self.threat.random_start(&x, rng)
        } else {
            x.clone()
        };
        let g = if self.eot > 1 {
            let loss = self.loss;
            let objective = |logits| loss.objective(logits, y.clone(), false);
            input_gradient_eot(eval_model, start.clone(), &objective, self.eot)
        } else {
            input_gradient(eval_model, start.clone(), y, self.loss, false)
        };
        self.threat.step(start, g.grad, self.alpha(), &x)
    }
}

impl Attack for Fgsm {
    fn name(&self) -> String {
        let base = match self.threat.norm {
            Norm::Linf => "fgsm",
            Norm::L2 => "fgm",
        };
        let rs = if self.random_start { "-rs" } else { "" };
        format!(
            "{base}{rs} {}{}",
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
        self.perturb_eval(&eval_mode(model), x, y, rng)
    }
}
