//! Standard (non-adversarial) training: the baseline every robust method is compared with.

use burn::prelude::{Int, Tensor};

use super::{BatchLoss, TrainingMethod};
use crate::attack::cross_entropy;
use crate::model::Classifier;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;

/// Minimise the clean cross-entropy; ε is ignored.
#[derive(Clone, Debug, Default)]
pub struct Standard;

impl TrainingMethod for Standard {
    fn batch_loss<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        _threat: ThreatModel,
        _rng: &mut AdvRng,
    ) -> BatchLoss {
        let logits = model.logits(x);
        BatchLoss {
            loss: cross_entropy(logits.clone(), y).mean(),
            logits: logits.without_autodiff(),
        }
    }

    fn with_step_scale(&self, _scale: f32, _eps: f32) -> Self {
        Standard
    }

    fn is_adversarial(&self) -> bool {
        false
    }
}
