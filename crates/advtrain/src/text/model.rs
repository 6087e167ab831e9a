//! Text classifiers: a fastText-style bag of hashed character n-grams, a small character
//! CNN and a small character transformer encoder ([`super::transformer`]), all burn modules
//! that train on a CPU in minutes.
//!
//! All split into [`TextNet::embed`] (token ids → embeddings) and [`TextNet::head`]
//! (embeddings → logits), so embedding-space adversarial training can perturb between the two
//! and HotFlip can read gradients with respect to each token's embedding.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::{Device, Int, Tensor, TensorData};
use burn::tensor::activation::softmax;
use serde::{Deserialize, Serialize};

use super::canon::Canonicalizer;
use super::encode::{table_row, TextEncoder};
use super::transformer::{TextTransformer, MAX_POSITIONS};
use super::{TextClassifier, Token, WhiteBoxText};
use crate::error::{Error, Result};
use crate::fastpath::conv2d_relu;
use crate::loss::cross_entropy;

/// Which text architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextModelKind {
    /// Mean of hashed character n-gram embeddings → linear layer (Joulin et al. 2017).
    NgramBag,
    /// Character embeddings → two 1-D convolutions → max over time → linear (Zhang et al.
    /// 2015, much smaller).
    CharCnn,
    /// Character embeddings plus learned positions → a pre-norm transformer encoder
    /// (Vaswani et al. 2017, tiny) → masked mean over the real characters → linear.
    Transformer,
}

impl TextModelKind {
    /// The name as used on the command line and in records: `ngram-bag`, `char-cnn` or
    /// `transformer`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TextModelKind::NgramBag => "ngram-bag",
            TextModelKind::CharCnn => "char-cnn",
            TextModelKind::Transformer => "transformer",
        }
    }
}

impl fmt::Display for TextModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TextModelKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ngram-bag" | "fasttext" => Ok(TextModelKind::NgramBag),
            "char-cnn" => Ok(TextModelKind::CharCnn),
            "transformer" => Ok(TextModelKind::Transformer),
            other => Err(Error::config(format!(
                "unknown text model '{other}': expected 'ngram-bag', 'char-cnn' or 'transformer'"
            ))),
        }
    }
}

/// Everything needed to rebuild a text model before loading its weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextModelConfig {
    /// The architecture.
    pub kind: TextModelKind,
    /// How text becomes token ids; must match the kind (n-grams for the bag, characters
    /// for the CNN and the transformer).
    pub encoder: TextEncoder,
    /// Embedding width (the transformer's `d_model`).
    pub dim: usize,
    /// Convolution channels (char-CNN only).
    pub channels: usize,
    /// Number of output classes; at least 2.
    pub num_classes: usize,
    /// Encoder layers (transformer only; default 2). Defaulted so that run configurations
    /// written before the transformer existed still load.
    #[serde(default = "default_layers")]
    pub layers: usize,
    /// Attention heads (transformer only; default 4); must divide `dim`.
    #[serde(default = "default_heads")]
    pub heads: usize,
    /// Width of the position-wise feed-forward layer (transformer only; default 128).
    #[serde(default = "default_ff")]
    pub ff: usize,
    /// Dropout rate while training (transformer only; default 0.1), in `[0, 1)`.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
}

fn default_layers() -> usize {
    2
}

fn default_heads() -> usize {
    4
}

fn default_ff() -> usize {
    128
}

fn default_dropout() -> f64 {
    0.1
}

impl TextModelConfig {
    /// The defaults: 1024 characters read, 32-wide embeddings, 64 convolution channels; the
    /// transformer reads 256 characters (attention is quadratic in the length, and 256 keeps
    /// training on two CPU cores to minutes) with `dim` 64, 2 layers, 4 heads, a 128-wide
    /// feed-forward layer and dropout 0.1.
    pub fn new(kind: TextModelKind, num_classes: usize) -> Self {
        let (encoder, dim) = match kind {
            TextModelKind::NgramBag => (TextEncoder::ngrams(1024), 32),
            TextModelKind::CharCnn => (TextEncoder::chars(1024), 32),
            TextModelKind::Transformer => (TextEncoder::chars(256), 64),
        };
        Self {
            kind,
            encoder,
            dim,
            channels: 64,
            num_classes,
            layers: default_layers(),
            heads: default_heads(),
            ff: default_ff(),
            dropout: default_dropout(),
        }
    }

    /// A freshly initialised network (burn's `XConfig { .. }.init(&device)` convention):
    /// [`TextNet::new`] of this configuration, validated first.
    pub fn init(&self, device: &Device) -> Result<TextNet> {
        TextNet::new(self, device)
    }

    /// Checks the encoder, that it fits the kind, that `dim` and `channels` are at least 1
    /// and that there are at least 2 classes; for the transformer also the layers, heads
    /// (dividing `dim`), feed-forward width, dropout rate and length ([`MAX_POSITIONS`]).
    pub fn validate(&self) -> Result<()> {
        self.encoder.validate()?;
        let fits = matches!(
            (self.kind, &self.encoder),
            (TextModelKind::NgramBag, TextEncoder::Ngrams { .. })
                | (
                    TextModelKind::CharCnn | TextModelKind::Transformer,
                    TextEncoder::Chars { .. }
                )
        );
        if !fits {
            return Err(Error::config(format!(
                "model {} cannot read with encoder {:?}",
                self.kind, self.encoder
            )));
        }
        if self.dim == 0 || self.channels == 0 {
            return Err(Error::config("dim and channels must be at least 1"));
        }
        if self.num_classes < 2 {
            return Err(Error::config(format!(
                "a classifier needs at least 2 classes, got {}",
                self.num_classes
            )));
        }
        if self.kind == TextModelKind::Transformer {
            self.validate_transformer()?;
        }
        Ok(())
    }

    /// The transformer's own fields (see [`TextModelConfig::validate`]).
    fn validate_transformer(&self) -> Result<()> {
        if self.layers == 0 || self.heads == 0 || self.ff == 0 {
            return Err(Error::config(format!(
                "a transformer needs at least 1 layer, 1 head and a feed-forward width of 1, \
                 got layers = {}, heads = {}, ff = {}",
                self.layers, self.heads, self.ff
            )));
        }
        if !self.dim.is_multiple_of(self.heads) {
            return Err(Error::config(format!(
                "the transformer's dim ({}) must be divisible by its heads ({})",
                self.dim, self.heads
            )));
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return Err(Error::config(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        let max_len = self.encoder.visible_len(usize::MAX);
        if max_len > MAX_POSITIONS {
            return Err(Error::config(format!(
                "a transformer reads at most {MAX_POSITIONS} characters, got max_len = {max_len}"
            )));
        }
        Ok(())
    }
}

/// fastText-style classifier.
#[derive(Module, Debug)]
pub struct NgramBag {
    embedding: Embedding,
    output: Linear,
}

/// Small character CNN; the convolutions are 1-D, run as `1 × k` 2-D convolutions so they use
/// the fast convolution path.
#[derive(Module, Debug)]
pub struct CharCnn {
    embedding: Embedding,
    conv1: Conv2d,
    conv2: Conv2d,
    output: Linear,
}

/// A text model of any of the architectures.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one model per run; boxing would only add indirection
pub enum TextNet {
    /// The fastText-style n-gram bag.
    NgramBag(NgramBag),
    /// The character CNN.
    CharCnn(CharCnn),
    /// The character transformer encoder.
    Transformer(TextTransformer),
}

impl TextNet {
    /// A freshly initialised network for `config` (validated first) on `device`: uniform
    /// `±1/dim` embeddings for the bag (fastText's), `N(0, 0.5²)` for the CNN and the
    /// transformer.
    pub fn new(config: &TextModelConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let vocab = config.encoder.vocab_size();
        Ok(match config.kind {
            TextModelKind::NgramBag => {
                // fastText's initialisation: small uniform embeddings.
                let a = 1.0 / config.dim as f64;
                TextNet::NgramBag(NgramBag {
                    embedding: EmbeddingConfig::new(vocab, config.dim)
                        .with_initializer(Initializer::Uniform { min: -a, max: a })
                        .init(device),
                    output: LinearConfig::new(config.dim, config.num_classes).init(device),
                })
            }
            TextModelKind::CharCnn => {
                let conv = |cin, cout| {
                    Conv2dConfig::new([cin, cout], [1, 5])
                        .with_padding(PaddingConfig2d::Explicit(0, 2, 0, 2))
                        .init(device)
                };
                TextNet::CharCnn(CharCnn {
                    embedding: EmbeddingConfig::new(vocab, config.dim)
                        .with_initializer(Initializer::Normal {
                            mean: 0.0,
                            std: 0.5,
                        })
                        .init(device),
                    conv1: conv(config.dim, config.channels),
                    conv2: conv(config.channels, config.channels),
                    output: LinearConfig::new(config.channels, config.num_classes).init(device),
                })
            }
            TextModelKind::Transformer => {
                let max_len = config.encoder.visible_len(usize::MAX);
                TextNet::Transformer(TextTransformer::new(config, max_len, device))
            }
        })
    }

    /// Token embeddings `[batch, tokens, dim]`.
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        match self {
            TextNet::NgramBag(m) => m.embedding.forward(ids),
            TextNet::CharCnn(m) => m.embedding.forward(ids),
            TextNet::Transformer(m) => m.embed(ids),
        }
    }

    /// Logits from token embeddings; `mask` `[batch, tokens]` is 1 on real tokens and 0 on
    /// padding, which never influences the output.
    pub fn head(&self, emb: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let [b, t, d] = emb.dims();
        let mask3: Tensor<3> = mask.clone().reshape([b, t, 1]);
        let emb = emb * mask3;
        match self {
            TextNet::NgramBag(m) => {
                let count = mask.sum_dim(1).clamp_min(1.0); // [b, 1]
                let mean = emb.sum_dim(1).reshape([b, d]) / count;
                m.output.forward(mean)
            }
            TextNet::CharCnn(m) => {
                let x: Tensor<4> = emb.swap_dims(1, 2).reshape([b, d, 1, t]);
                // Zero the padding after every layer, so a text reads the same whether it is
                // padded in a batch or alone (where the convolution pads with zeros).
                let mask4: Tensor<4> = mask.clone().reshape([b, 1, 1, t]);
                let x = conv2d_relu(&m.conv1, x) * mask4;
                let x = conv2d_relu(&m.conv2, x);
                let c = x.dims()[1];
                // ReLU outputs are >= 0, so zeroing padding keeps it out of the max.
                let x = x.reshape([b, c, t]) * mask.reshape([b, 1, t]);
                let pooled = x.max_dim(2).reshape([b, c]);
                m.output.forward(pooled)
            }
            TextNet::Transformer(m) => m.head(emb, mask),
        }
    }

    /// Logits for token ids.
    pub fn logits(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        self.head(self.embed(ids), mask)
    }

    /// The embedding table `[vocab, dim]`.
    pub fn embedding_table(&self) -> Tensor<2> {
        match self {
            TextNet::NgramBag(m) => m.embedding.weight.val(),
            TextNet::CharCnn(m) => m.embedding.weight.val(),
            TextNet::Transformer(m) => m.table(),
        }
    }
}

/// Token ids and mask tensors for a batch of token lists.
pub fn batch_tensors<T: AsRef<[Token]>>(
    encoder: &TextEncoder,
    tokens: &[T],
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2>) {
    let (ids, mask, t) = encoder.batch_ids(tokens);
    let b = tokens.len();
    (
        Tensor::from_data(TensorData::new(ids, [b, t]), device),
        Tensor::from_data(TensorData::new(mask, [b, t]), device),
    )
}

/// A trained text model ready for inference and attacks: the network in evaluation mode, how
/// it reads text, and the input canonicalisation in front of it (identity unless the model
/// was built with that defence).
#[derive(Clone, Debug)]
pub struct TextModel {
    /// The architecture and encoder the network was built with.
    pub config: TextModelConfig,
    /// The canonicalisation applied to every text before tokenising (identity unless the
    /// model was trained behind that defence).
    pub canonicalizer: Canonicalizer,
    net: TextNet,
    table: Vec<f32>,
    device: Device,
    /// Texts per forward pass.
    pub batch_size: usize,
}

impl TextModel {
    /// Wraps a network (any mode; an evaluation copy is kept).
    pub fn new(
        config: TextModelConfig,
        canonicalizer: Canonicalizer,
        net: &TextNet,
        device: &Device,
    ) -> Self {
        let net = net.valid();
        let table = net
            .embedding_table()
            .into_data()
            .try_into_vec::<f32>()
            .expect("embedding tables are f32");
        Self {
            config,
            canonicalizer,
            net,
            table,
            device: device.clone().without_autodiff(),
            batch_size: 64,
        }
    }

    /// The network, in evaluation mode.
    pub fn net(&self) -> &TextNet {
        &self.net
    }

    /// Tokens of a text exactly as the model reads it (canonicalised first).
    pub fn text_tokens(&self, text: &str) -> Vec<Token> {
        let chars: Vec<char> = self.canonical(text).chars().collect();
        self.config.encoder.tokens(&chars)
    }

    /// Class probabilities for already-tokenised texts, in batches.
    fn probabilities_of_tokens(&self, tokens: &[Vec<Token>]) -> Vec<Vec<f32>> {
        let mut out = Vec::with_capacity(tokens.len());
        for chunk in tokens.chunks(self.batch_size.max(1)) {
            let (ids, mask) = batch_tensors(&self.config.encoder, chunk, &self.device);
            out.extend(probabilities_of(self.net.logits(ids, mask)));
        }
        out
    }

    /// Class probabilities of each text: [`TextClassifier::probabilities`], which never
    /// fails for a model in this process.
    pub fn probabilities_infallible(&self, texts: &[String]) -> Vec<Vec<f32>> {
        // Tokenise in parallel: it is a noticeable share of a bag model's inference.
        use rayon::prelude::*;
        let tokens: Vec<Vec<Token>> = texts.par_iter().map(|t| self.text_tokens(t)).collect();
        self.probabilities_of_tokens(&tokens)
    }

    /// Predicted class of each text.
    pub fn predict(&self, texts: &[String]) -> Vec<usize> {
        self.probabilities_infallible(texts)
            .iter()
            .map(|p| super::argmax(p))
            .collect()
    }
}

impl TextClassifier for TextModel {
    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn probabilities(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        Ok(self.probabilities_infallible(texts))
    }
}

impl WhiteBoxText for TextModel {
    fn canonical(&self, text: &str) -> String {
        if self.canonicalizer.is_identity() {
            text.to_string()
        } else {
            self.canonicalizer.apply(text)
        }
    }

    fn tokens(&self, chars: &[char]) -> Vec<Token> {
        self.config.encoder.tokens(chars)
    }

    fn retoken(&self, chars: &[char], token: &Token) -> u32 {
        self.config.encoder.retoken(chars, token)
    }

    fn token_gradients(&self, texts: &[String], labels: &[usize]) -> Vec<Vec<f32>> {
        let d = self.config.dim;
        let mut out = Vec::with_capacity(texts.len());
        let pairs: Vec<(Vec<Token>, usize)> = texts
            .iter()
            .zip(labels)
            .map(|(t, &y)| {
                let chars: Vec<char> = t.chars().collect();
                (self.config.encoder.tokens(&chars), y)
            })
            .collect();
        for chunk in pairs.chunks(self.batch_size.max(1)) {
            let tokens: Vec<&[Token]> = chunk.iter().map(|(t, _)| t.as_slice()).collect();
            let b = tokens.len();
            let (ids, mask) = batch_tensors(&self.config.encoder, &tokens, &self.device);
            let t = ids.dims()[1];
            let y: Vec<i64> = chunk.iter().map(|&(_, y)| y as i64).collect();
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [b]), &self.device);
            let emb = self
                .net
                .embed(ids)
                .without_autodiff()
                .autodiff()
                .require_grad();
            let logits = self.net.head(emb.clone(), mask);
            let grads = cross_entropy(logits, y).sum().backward();
            let g = emb
                .grad(&grads)
                .expect("the embeddings require a gradient")
                .into_data()
                .try_into_vec::<f32>()
                .expect("f32 gradients");
            for (i, toks) in tokens.iter().enumerate() {
                out.push(g[i * t * d..(i * t + toks.len()) * d].to_vec());
            }
        }
        out
    }

    fn embedding_dim(&self) -> usize {
        self.config.dim
    }

    fn embedding_row(&self, id: u32) -> Vec<f32> {
        let d = self.config.dim;
        let r = table_row(id) as usize;
        self.table[r * d..(r + 1) * d].to_vec()
    }

    fn embedding_row_ref(&self, id: u32) -> Option<&[f32]> {
        let d = self.config.dim;
        let r = table_row(id) as usize;
        self.table.get(r * d..(r + 1) * d)
    }

    fn alphabet(&self) -> Vec<char> {
        ('a'..='z')
            .chain('A'..='Z')
            .chain('0'..='9')
            .chain(" .,!?'-".chars())
            .collect()
    }
}

/// Softmax probabilities of logits (rows).
pub fn probabilities_of(logits: Tensor<2>) -> Vec<Vec<f32>> {
    let k = logits.dims()[1];
    softmax(logits, 1)
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32")
        .chunks(k)
        .map(<[f32]>::to_vec)
        .collect()
}
