//! Free adversarial training (Shafahi et al. 2019, "Adversarial training for free!"):
//! each mini-batch is replayed `m` times; every replay's single backward pass yields both
//! the parameter gradient (for the update) and the input gradient, which moves a
//! perturbation δ carried over from replay to replay and from batch to batch. The attack
//! costs nothing extra; `m` replays cost `m` standard steps, so the paper trains for
//! `epochs / m` passes over the data. Published defaults: `m = 8`, step ε.

use burn::prelude::{Int, Tensor};

use crate::attack::cross_entropy;
use crate::model::Classifier;
use crate::threat::ThreatModel;

/// What one replay computed; the caller runs the backward pass (for the parameter update)
/// and reads the input gradient from `input`.
pub struct FreeReplay {
    pub loss: Tensor<1>,
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
