//! The per-batch seam of training: a [`TrainStep`] trains a model on one batch, and the
//! shared loop ([`super::trainer`]) does everything else (epochs, schedules, the monitor,
//! checkpoints, resume, the best checkpoint).
//!
//! A method that needs one parameter update per batch implements [`TrainingMethod`] (the
//! loss of a batch) and gets its step for free; one that updates several times per batch,
//! like free adversarial training, implements [`TrainStep`] itself and owns its updates.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::{Device, Int, Tensor};

use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;

/// What a step may use besides the model and the batch: the optimiser and learning rate of
/// this batch, the current threat model (ε may be warming up), the monitor's step scale,
/// and the run's random generator (everything random in a step must come from it, or a
/// resumed run would not end bit-identical).
pub struct StepContext<'a> {
    /// The optimiser; a step calls it through [`StepContext::update`].
    pub optimizer: &'a mut ModuleOptimizer,
    /// Learning rate of this batch (after the schedule).
    pub lr: f64,
    /// The threat model at this point of training (ε after warm-up; ε = 0 for text).
    pub threat: ThreatModel,
    /// Multiplier on the method's attack step size (below 1 after monitor rollbacks).
    pub step_scale: f32,
    /// The run's training generator.
    pub rng: &'a mut AdvRng,
    /// Device for tensors the step creates (without autodiff).
    pub device: &'a Device,
    /// 0-based epoch and batch, for error messages.
    pub epoch: usize,
    /// 0-based batch index within the epoch.
    pub batch: usize,
    /// What the trainer keeps if the run diverges now, for the error message.
    pub kept: &'a str,
}

impl StepContext<'_> {
    /// The scalar value of `loss`, or a divergence error naming the epoch, batch and
    /// learning rate when it is NaN or infinite (checked before any update is made).
    pub fn loss_value(&self, loss: &Tensor<1>) -> Result<f64> {
        let value = loss.clone().into_scalar::<f32>() as f64;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(Error::Diverged(format!(
                "loss is {value} at epoch {}, batch {} (lr {:.4}); lower --lr or check the data{}",
                self.epoch + 1,
                self.batch + 1,
                self.lr,
                self.kept
            )))
        }
    }

    /// One optimiser update of `model` along the gradient of `loss`.
    pub fn update<M: Module>(&mut self, model: M, loss: Tensor<1>) -> M {
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.optimizer.step(self.lr, model, grads)
    }
}

/// What one step did.
pub struct StepOutput<M> {
    /// The model after the step's updates.
    pub model: M,
    /// Mean loss of the batch (the mean over updates for a method that updates several
    /// times).
    pub loss: f64,
    /// Examples of the batch classified correctly (on the inputs the method trained on).
    pub correct: usize,
}

/// Trains a model on one batch of type `B`: the seam every training method plugs into.
///
/// `M` is the model (with autodiff), `B` the batch: `(images, labels)` for image methods.
/// A step that carries state from batch to batch (free AT's perturbation) saves it in
/// checkpoints through [`TrainStep::save_state`] and [`TrainStep::load_state`], so a
/// resumed run continues exactly.
pub trait TrainStep<M, B> {
    /// Trains on `batch`: returns the updated model, the loss and the correct count.
    fn step(&mut self, model: M, batch: B, ctx: &mut StepContext<'_>) -> Result<StepOutput<M>>;

    /// Whether the method crafts adversarial examples (and so needs ε > 0, and the monitor
    /// judges the best checkpoint by robust accuracy).
    fn is_adversarial(&self) -> bool {
        true
    }

    /// Saves state carried between batches into the checkpoint's binary parts.
    fn save_state(&self, _blobs: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
        Ok(())
    }

    /// Restores what [`TrainStep::save_state`] wrote.
    fn load_state(&mut self, _blobs: &BTreeMap<String, Vec<u8>>, _device: &Device) -> Result<()> {
        Ok(())
    }

    /// Forgets carried state: the monitor restored an earlier checkpoint.
    fn reset(&mut self) {}
}

/// An image batch: images in `[0, 1]` and their labels.
pub type ImageBatch = (Tensor<4>, Tensor<1, Int>);

/// The loss of one batch, as a training method defines it.
pub struct BatchLoss {
    /// Scalar loss, tracked by autodiff through the model's parameters.
    pub loss: Tensor<1>,
    /// Logits the training accuracy is measured on (adversarial ones for adversarial
    /// methods), without autodiff.
    pub logits: Tensor<2>,
}

/// A way of training with one update per batch: what loss a batch contributes. Every such
/// method is a [`TrainStep`] for images.
pub trait TrainingMethod {
    /// The loss for batch `(x, y)` at the current threat model (ε may be warming up).
    fn batch_loss<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        threat: ThreatModel,
        rng: &mut AdvRng,
    ) -> BatchLoss;

    /// The method with its attack step multiplied by `scale` (the monitor's rollback);
    /// `eps` is the current radius, for step sizes given by default. Methods without an
    /// attack step return themselves.
    fn with_step_scale(&self, scale: f32, eps: f32) -> Self
    where
        Self: Sized;

    /// Whether the method attacks (see [`TrainStep::is_adversarial`]).
    fn is_adversarial(&self) -> bool {
        true
    }
}

impl<M: Classifier, T: TrainingMethod> TrainStep<M, ImageBatch> for T {
    fn step(
        &mut self,
        model: M,
        (x, y): ImageBatch,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput<M>> {
        let mut scaled = None;
        let method = at_step_scale(&*self, ctx, &mut scaled);
        let out = method.batch_loss(&model, x, y.clone(), ctx.threat, ctx.rng);
        let loss = ctx.loss_value(&out.loss)?;
        let correct = count_correct(out.logits, y);
        let model = ctx.update(model, out.loss);
        Ok(StepOutput {
            model,
            loss,
            correct,
        })
    }

    fn is_adversarial(&self) -> bool {
        TrainingMethod::is_adversarial(self)
    }
}

/// `method` at the context's step scale: itself at scale 1, else its scaled copy, kept in
/// `slot` (the monitor lowers the scale after a rollback).
pub(crate) fn at_step_scale<'m, T: TrainingMethod>(
    method: &'m T,
    ctx: &StepContext<'_>,
    slot: &'m mut Option<T>,
) -> &'m T {
    if ctx.step_scale == 1.0 {
        method
    } else {
        slot.insert(method.with_step_scale(ctx.step_scale, ctx.threat.eps))
    }
}

/// Examples whose arg-max logit is their label.
pub fn count_correct(logits: Tensor<2>, y: Tensor<1, Int>) -> usize {
    let b = logits.dims()[0];
    logits
        .argmax(1)
        .reshape([b])
        .equal(y)
        .int()
        .sum()
        .into_scalar::<i64>() as usize
}

/// The default attack step of a PGD-style inner attack, multiplied by `scale`: the step
/// every scaled method uses, written once so they all scale alike.
pub(crate) fn scaled_step(steps: usize, step: Option<f32>, scale: f32, eps: f32) -> Option<f32> {
    if scale == 1.0 {
        return step;
    }
    Some(step.unwrap_or(2.5 * eps / steps.max(1) as f32) * scale)
}
