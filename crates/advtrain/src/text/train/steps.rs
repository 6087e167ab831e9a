//! The text training methods as [`TrainStep`]s on a [`TextBatch`]: clean cross-entropy,
//! `L(clean) + λ·L(attacked)` on the epoch's attacked texts, and embedding-space
//! adversarial training. The shared loop ([`crate::train::fit`]) runs them.

use burn::module::Module;
use burn::prelude::{Int, Tensor, TensorData};

use crate::error::Result;
use crate::loss::cross_entropy;
use crate::rng::{self, AdvRng};
use crate::text::model::TextNet;
use crate::train::{count_correct, StepContext, StepOutput, TrainStep};

/// One batch of texts as the network reads them.
pub struct TextBatch {
    /// Token ids `[batch, tokens]`.
    pub ids: Tensor<2, Int>,
    /// 1 for real tokens, 0 for padding, `[batch, tokens]`.
    pub mask: Tensor<2>,
    /// Classes `[batch]`.
    pub labels: Tensor<1, Int>,
    /// The paired batch of attacked texts (ids, mask, labels), when the method trains on
    /// attacked copies and the epoch has some.
    pub attacked: Option<(Tensor<2, Int>, Tensor<2>, Tensor<1, Int>)>,
}

/// Clean cross-entropy, plus `λ·L(attacked)` when the batch carries attacked texts: the
/// standard method (λ = 0, no attacked texts) and text adversarial training.
#[derive(Clone, Debug)]
pub struct TextCrossEntropy {
    /// Weight of the attacked texts' loss.
    pub lambda: f64,
}

impl TrainStep<TextNet, TextBatch> for TextCrossEntropy {
    fn step(
        &mut self,
        net: TextNet,
        batch: TextBatch,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput<TextNet>> {
        let emb = net.embed(batch.ids);
        let logits = net.head(emb, batch.mask);
        let mut loss = cross_entropy(logits.clone(), batch.labels.clone()).mean();
        if let Some((ids, mask, labels)) = batch.attacked {
            let attacked = cross_entropy(net.logits(ids, mask), labels).mean();
            loss = loss + attacked.mul_scalar(self.lambda);
        }
        finish(net, loss, logits, batch.labels, ctx)
    }

    fn is_adversarial(&self) -> bool {
        self.lambda > 0.0
    }
}

/// Embedding-space adversarial training: `L(clean) + λ·L(head(embed(x) + δ))`, δ from
/// [`embedding_perturbation`].
#[derive(Clone, Debug)]
pub struct EmbeddingAtStep {
    /// Radius relative to each text's embedding norm.
    pub eps: f64,
    /// Ascent steps of δ.
    pub steps: usize,
    /// Weight of the perturbed loss.
    pub lambda: f64,
}

impl TrainStep<TextNet, TextBatch> for EmbeddingAtStep {
    fn step(
        &mut self,
        net: TextNet,
        batch: TextBatch,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput<TextNet>> {
        let emb = net.embed(batch.ids.clone());
        let logits = net.head(emb.clone(), batch.mask.clone());
        let mut loss = cross_entropy(logits.clone(), batch.labels.clone()).mean();
        let delta = embedding_perturbation(
            &net,
            batch.ids,
            batch.mask.clone(),
            batch.labels.clone(),
            self.eps,
            self.steps,
            ctx.rng,
        );
        let perturbed = net.head(emb + delta, batch.mask);
        let perturbed = cross_entropy(perturbed, batch.labels.clone()).mean();
        loss = loss + perturbed.mul_scalar(self.lambda);
        finish(net, loss, logits, batch.labels, ctx)
    }

    /// Judged by clean accuracy: the perturbation lives in embedding space, which no text
    /// attack measures.
    fn is_adversarial(&self) -> bool {
        false
    }
}

/// Checks the loss, counts the clean predictions that are right, and updates.
fn finish(
    net: TextNet,
    loss: Tensor<1>,
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    ctx: &mut StepContext<'_>,
) -> Result<StepOutput<TextNet>> {
    let value = ctx.loss_value(&loss)?;
    let correct = count_correct(logits.without_autodiff(), labels.without_autodiff());
    let model = ctx.update(net, loss);
    Ok(StepOutput {
        model,
        loss: value,
        correct,
    })
}

/// The embedding-space perturbation δ `[batch, tokens, dim]` (no autodiff): `steps` ascent
/// steps along the per-text L2-normalised gradient, each of length `radius/steps·2`,
/// projected back onto `‖δ‖₂ ≤ radius = eps·‖embed(x)‖₂` (padding excluded). Crafted on an
/// evaluation copy of the network, so only δ is differentiated.
pub fn embedding_perturbation(
    net: &TextNet,
    ids: Tensor<2, Int>,
    mask: Tensor<2>,
    labels: Tensor<1, Int>,
    eps: f64,
    steps: usize,
    rng: &mut AdvRng,
) -> Tensor<3> {
    let eval = net.valid();
    let base = eval.embed(ids.without_autodiff());
    let mask = mask.without_autodiff();
    let labels = labels.without_autodiff();
    let [b, t, d] = base.dims();
    let device = base.device();
    let mask3: Tensor<3> = mask.clone().reshape([b, t, 1]);
    let per_text_norm = |x: Tensor<3>| -> Tensor<3> {
        (x.clone() * x)
            .sum_dim(2)
            .sum_dim(1)
            .sqrt()
            .reshape([b, 1, 1])
    };
    let radius = per_text_norm(base.clone() * mask3.clone()).mul_scalar(eps);
    // Random start inside the ball, then ascent.
    let noise = Tensor::<3>::from_data(
        TensorData::new(rng::normal_vec(rng, b * t * d), [b, t, d]),
        &device,
    ) * mask3.clone();
    let noise_norm = per_text_norm(noise.clone()).clamp_min(1e-12);
    let mut delta = noise / noise_norm * radius.clone().mul_scalar(0.5);
    let step = radius.clone().mul_scalar(2.0 / steps as f64);
    for _ in 0..steps {
        let d_var = delta.clone().autodiff().require_grad();
        let logits = eval.head(base.clone() + d_var.clone(), mask.clone());
        let grads = cross_entropy(logits, labels.clone()).sum().backward();
        let g = d_var.grad(&grads).expect("delta requires a gradient") * mask3.clone();
        let g_norm = per_text_norm(g.clone()).clamp_min(1e-12);
        delta = delta + g / g_norm * step.clone();
        // Project onto the ball.
        let norm = per_text_norm(delta.clone()).clamp_min(1e-12);
        let scale = (radius.clone() / norm).clamp_max(1.0);
        delta = delta * scale;
    }
    delta
}
