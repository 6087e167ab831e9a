//! A small transformer encoder over characters: token embeddings, learned positional
//! embeddings, burn's pre-norm [`TransformerEncoder`] with the padding mask, a final layer
//! norm, masked mean pooling over the real tokens and a linear output.
//!
//! The positional embeddings are added in [`TextTransformer::head`], not in
//! [`TextTransformer::embed`]: `embed` is the token table alone, so HotFlip's per-token
//! gradients and embedding-space adversarial training perturb exactly what a character
//! substitution changes, as they do for the other text models.
//!
//! Padding never influences a real token: it is masked out of every attention (burn fills
//! masked scores with `-1e4`, whose softmax weight is exactly 0 in f32) and out of the
//! pooling, so a text reads the same alone and padded in a batch.
//!
//! Dropout (training only) draws from burn's process-wide device generator. To keep runs
//! replayable (the same run, resumed or not, trains bit-identically), a training forward
//! seeds that generator from the batch itself (the sums of its embeddings and mask) under
//! [`crate::model::init_seeded`]'s lock: the masks are a function of the weights and the
//! batch, both of which a checkpoint restores.

use burn::module::Module;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::prelude::{Device, Int, Tensor};

use super::model::TextModelConfig;

/// Most positions a transformer reads (its encoder's `max_len`): attention costs memory
/// quadratic in the length, and the positional table is allocated for every position.
pub const MAX_POSITIONS: usize = 8192;

/// Character transformer encoder classifier (see the module docs).
#[derive(Module, Debug)]
pub struct TextTransformer {
    embedding: Embedding,
    position: Embedding,
    dropout: Dropout,
    encoder: TransformerEncoder,
    norm: LayerNorm,
    output: Linear,
}

impl TextTransformer {
    /// A fresh network for a validated `config` whose encoder reads `max_len` characters:
    /// `N(0, 0.5²)` token embeddings (as the char-CNN's), `N(0, 0.1²)` positional ones, burn's
    /// defaults for the encoder layers.
    pub(super) fn new(config: &TextModelConfig, max_len: usize, device: &Device) -> Self {
        let d = config.dim;
        let normal = |std| Initializer::Normal { mean: 0.0, std };
        TextTransformer {
            embedding: EmbeddingConfig::new(config.encoder.vocab_size(), d)
                .with_initializer(normal(0.5))
                .init(device),
            position: EmbeddingConfig::new(max_len, d)
                .with_initializer(normal(0.1))
                .init(device),
            dropout: DropoutConfig::new(config.dropout).init(),
            encoder: TransformerEncoderConfig::new(d, config.ff, config.heads, config.layers)
                .with_dropout(config.dropout)
                .with_norm_first(true)
                .init(device),
            norm: LayerNormConfig::new(d).init(device),
            output: LinearConfig::new(d, config.num_classes).init(device),
        }
    }

    /// Token embeddings `[batch, tokens, dim]`: the token table only.
    pub(super) fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.embedding.forward(ids)
    }

    /// The token table `[vocab, dim]`.
    pub(super) fn table(&self) -> Tensor<2> {
        self.embedding.weight.val()
    }

    /// Logits from token embeddings and the mask (1 on real tokens). Positions past the
    /// positional table are ignored, as the encoder ignores characters past `max_len`.
    pub(super) fn head(&self, emb: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let max_len = self.position.weight.val().dims()[0];
        let t = emb.dims()[1];
        let (emb, mask) = if t > max_len {
            (emb.narrow(1, 0, max_len), mask.narrow(1, 0, max_len))
        } else {
            (emb, mask)
        };
        if self.stochastic(&emb) {
            let key = dropout_key(&emb, &mask);
            crate::model::init_seeded(&emb.device(), key, || self.forward(emb, mask))
        } else {
            self.forward(emb, mask)
        }
    }

    /// Whether a forward would draw dropout masks: some dropout is in training mode, has a
    /// rate, and the input can be differentiated (burn's own condition).
    fn stochastic(&self, emb: &Tensor<3>) -> bool {
        let active = |d: &Dropout| d.training.is_enabled() && d.prob > 0.0;
        emb.device().is_autodiff()
            && (active(&self.dropout) || self.encoder.layers.iter().any(|l| active(&l.dropout)))
    }

    fn forward(&self, emb: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let [b, t, d] = emb.dims();
        let mask3: Tensor<3> = mask.clone().reshape([b, t, 1]);
        let pos: Tensor<3> = self
            .position
            .weight
            .val()
            .narrow(0, 0, t)
            .reshape([1, t, d]);
        let x = self.dropout.forward((emb + pos) * mask3.clone());
        let padding = mask.clone().lower_elem(0.5);
        let x = self
            .encoder
            .forward(TransformerEncoderInput::new(x).mask_pad(padding));
        let x = self.norm.forward(x) * mask3;
        let count = mask.sum_dim(1).clamp_min(1.0); // [b, 1]
        let pooled = x.sum_dim(1).reshape([b, d]) / count;
        self.output.forward(pooled)
    }
}

/// The seed of a training forward's dropout masks: a hash of the bits of the batch's
/// embedding and mask sums, read without autodiff.
fn dropout_key(emb: &Tensor<3>, mask: &Tensor<2>) -> u64 {
    let e = emb.clone().without_autodiff().sum().into_scalar::<f32>();
    let m = mask.clone().without_autodiff().sum().into_scalar::<f32>();
    let [b, t, d] = emb.dims();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for word in [
        e.to_bits() as u64,
        m.to_bits() as u64,
        b as u64,
        t as u64,
        d as u64,
    ] {
        h ^= word;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h
}
