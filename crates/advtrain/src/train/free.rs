//! Free adversarial training (Shafahi et al. 2019, "Adversarial training for free!"):
//! each mini-batch is replayed `m` times; every replay's single backward pass yields both
//! the parameter gradient (for the update) and the input gradient, which moves a
//! perturbation δ carried over from replay to replay and from batch to batch. The attack
//! costs nothing extra; `m` replays cost `m` standard steps, so the paper trains for
//! `epochs / m` passes over the data. Published defaults: `m = 8`, step ε.

use std::collections::BTreeMap;

use burn::prelude::{Device, Int, Tensor, TensorData};

use super::step::{count_correct, ImageBatch, StepContext, StepOutput, TrainStep};
use crate::attack::cross_entropy;
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::threat::ThreatModel;

/// Free adversarial training as a [`TrainStep`]: `replays` updates per batch, the
/// perturbation moved by `step_size` (default ε) with each replay's input gradient and
/// carried to the next batch (and through checkpoints).
#[derive(Clone, Debug)]
pub struct FreeAt {
    /// Updates per batch (the paper's `m`).
    pub replays: usize,
    /// Ascent step of the perturbation (`None`: ε).
    pub step_size: Option<f32>,
    /// The perturbation carried over from the previous batch.
    delta: Option<Tensor<4>>,
}

impl FreeAt {
    /// Free AT with `replays` updates per batch and the given perturbation step.
    pub fn new(replays: usize, step_size: Option<f32>) -> Self {
        Self {
            replays,
            step_size,
            delta: None,
        }
    }

    /// The perturbation step at radius `eps`, scaled by the monitor's `scale`.
    fn step_at(&self, eps: f32, scale: f32) -> f32 {
        if scale == 1.0 {
            self.step_size.unwrap_or(eps)
        } else {
            self.step_size.unwrap_or(eps) * scale
        }
    }
}

/// Checkpoint part holding the carried perturbation: four little-endian u64 dimensions,
/// then the values as little-endian f32.
const DELTA_BLOB: &str = "free_delta";

impl<M: Classifier> TrainStep<M, ImageBatch> for FreeAt {
    fn step(
        &mut self,
        mut model: M,
        (x, y): ImageBatch,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput<M>> {
        let step = self.step_at(ctx.threat.eps, ctx.step_scale);
        let mut delta = match self.delta.take() {
            Some(d) if d.dims() == x.dims() => d,
            _ => Tensor::zeros(x.dims(), ctx.device),
        };
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for _ in 0..self.replays {
            let out = replay(&model, &x, y.clone(), &delta);
            loss_sum += ctx.loss_value(&out.loss)?;
            correct = count_correct(out.logits.clone().without_autodiff(), y.clone());
            let grads = out.loss.backward();
            let gx = out
                .input
                .grad(&grads)
                .expect("the input requires a gradient, so backward must produce one");
            let gp = burn::optim::GradientsParams::from_grads(grads, &model);
            model = ctx.optimizer.step(ctx.lr, model, gp);
            delta = next_delta(ctx.threat, &x, delta, gx, step);
        }
        self.delta = Some(delta);
        Ok(StepOutput {
            model,
            loss: loss_sum / self.replays as f64,
            correct,
        })
    }

    fn save_state(&self, blobs: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
        if let Some(d) = &self.delta {
            let mut bytes: Vec<u8> = d
                .dims()
                .iter()
                .flat_map(|&n| (n as u64).to_le_bytes())
                .collect();
            bytes.extend(
                crate::attack::float_vec(d)
                    .iter()
                    .flat_map(|v| v.to_le_bytes()),
            );
            blobs.insert(DELTA_BLOB.to_string(), bytes);
        }
        Ok(())
    }

    fn load_state(&mut self, blobs: &BTreeMap<String, Vec<u8>>, device: &Device) -> Result<()> {
        let Some(bytes) = blobs.get(DELTA_BLOB) else {
            self.delta = None;
            return Ok(());
        };
        let bad = || Error::config("free-AT perturbation in the checkpoint has the wrong size");
        if bytes.len() < 32 {
            return Err(bad());
        }
        let (head, body) = bytes.split_at(32);
        let dims: Vec<usize> = head
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")) as usize)
            .collect();
        let values: Vec<f32> = body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if count != Some(values.len()) || body.len() % 4 != 0 {
            return Err(bad());
        }
        let dims: [usize; 4] = dims.try_into().expect("four dimensions");
        self.delta = Some(Tensor::from_data(TensorData::new(values, dims), device));
        Ok(())
    }

    fn reset(&mut self) {
        self.delta = None;
    }
}

/// What one replay computed; the caller runs the backward pass (for the parameter update)
/// and reads the input gradient from `input`.
pub struct FreeReplay {
    /// Mean cross-entropy over the batch at the perturbed input, tracked by autodiff.
    pub loss: Tensor<1>,
    /// Logits at the perturbed input (still tracked; detach before counting).
    pub logits: Tensor<2>,
    /// The perturbed input, tracked by autodiff.
    pub input: Tensor<4>,
}

/// The loss at `clip(x + δ)` with the input tracked for its gradient. `delta` must have
/// `x`'s shape; pass zeros at the start and when the batch size changes.
pub fn replay<M: Classifier>(
    model: &M,
    x: &Tensor<4>,
    y: Tensor<1, Int>,
    delta: &Tensor<4>,
) -> FreeReplay {
    let input = (x.clone() + delta.clone())
        .clamp(0.0, 1.0)
        .without_autodiff()
        .autodiff()
        .require_grad();
    let logits = model.logits(input.clone());
    FreeReplay {
        loss: cross_entropy(logits.clone(), y).mean(),
        logits,
        input,
    }
}

/// δ after one signed (L∞) or normalised (L2) ascent step of size `step` along the input
/// gradient, projected back into the ball and the [0,1] box around `x`.
pub fn next_delta(
    threat: ThreatModel,
    x: &Tensor<4>,
    delta: Tensor<4>,
    grad: Tensor<4>,
    step: f32,
) -> Tensor<4> {
    let x_adv = (x.clone() + delta).clamp(0.0, 1.0);
    let moved = threat.step(x_adv, grad, step, x);
    moved - x.clone()
}
