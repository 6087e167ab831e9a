//! Training text classifiers: standard, adversarial (on attacked copies of training texts,
//! mixed with clean ones), and embedding-space adversarial training.
//!
//! Character attacks are discrete and query-hungry, so adversarial examples are not crafted
//! per batch as on the image side: at the start of each adversarial epoch the current model
//! attacks a random `fraction` of the training set, and every clean batch of that epoch is
//! paired with a batch of those adversarial texts: `L = L(clean) + λ·L(adversarial)`.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::attack::{DeepWordBug, HotFlip, TextAttackResult};
use super::canon::Canonicalizer;
use super::edits::{EditKind, DEEPWORDBUG_KINDS};
use super::model::{batch_tensors, TextModel, TextModelConfig, TextNet};
use super::{TextDataset, Token};
use crate::attack::cross_entropy;
use crate::progress::Progress;
use crate::rng::{self, AdvRng};
use crate::train::OptimizerConfig;
use crate::{Error, Result};

/// The edit kinds of the `lookalike` attack.
pub const LOOKALIKE_KINDS: [EditKind; 2] = [EditKind::Homoglyph, EditKind::ZeroWidth];

/// A text attack and its settings: what adversarial training trains against and what
/// evaluation measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TextAttackConfig {
    /// Black-box character edits at the most important words (Gao et al. 2018).
    DeepWordBug {
        budget: usize,
        kinds: Vec<EditKind>,
        max_words: usize,
    },
    /// White-box gradient-ranked character flips with beam search (Ebrahimi et al. 2018).
    HotFlip {
        budget: usize,
        beam: usize,
        candidates: usize,
        /// Positions ranked per beam state (0: all).
        #[serde(default)]
        positions: usize,
    },
}

impl TextAttackConfig {
    /// DeepWordBug with every edit kind.
    pub fn deepwordbug(budget: usize) -> Self {
        TextAttackConfig::DeepWordBug {
            budget,
            kinds: DEEPWORDBUG_KINDS.to_vec(),
            max_words: 128,
        }
    }

    /// DeepWordBug restricted to look-alike (homoglyph) and invisible (zero-width)
    /// characters: the evasions input canonicalisation is meant to undo.
    pub fn lookalike(budget: usize) -> Self {
        TextAttackConfig::DeepWordBug {
            budget,
            kinds: LOOKALIKE_KINDS.to_vec(),
            max_words: 128,
        }
    }

    /// HotFlip with beam 2, 8 candidates per state, 64 positions ranked per state.
    pub fn hotflip(budget: usize) -> Self {
        TextAttackConfig::HotFlip {
            budget,
            beam: 2,
            candidates: 8,
            positions: 64,
        }
    }

    /// `deepwordbug`, `lookalike` or `hotflip`.
    pub fn from_name(name: &str, budget: usize) -> Result<Self> {
        let config = match name {
            "deepwordbug" | "dwb" => Self::deepwordbug(budget),
            "lookalike" => Self::lookalike(budget),
            "hotflip" => Self::hotflip(budget),
            other => {
                return Err(Error::config(format!(
                "unknown text attack '{other}': expected 'deepwordbug', 'lookalike' or 'hotflip'"
            )))
            }
        };
        config.validate()?;
        Ok(config)
    }

    pub fn name(&self) -> &'static str {
        match self {
            TextAttackConfig::DeepWordBug { kinds, .. } => {
                if kinds.as_slice() == LOOKALIKE_KINDS {
                    "lookalike"
                } else if kinds.as_slice() == DEEPWORDBUG_KINDS {
                    "deepwordbug"
                } else {
                    "deepwordbug-custom"
                }
            }
            TextAttackConfig::HotFlip { .. } => "hotflip",
        }
    }

    /// Edits allowed per text.
    pub fn budget(&self) -> usize {
        match *self {
            TextAttackConfig::DeepWordBug { budget, .. }
            | TextAttackConfig::HotFlip { budget, .. } => budget,
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            TextAttackConfig::DeepWordBug { .. } => {
                self.deepwordbug_with_seed(0).unwrap().validate()
            }
            TextAttackConfig::HotFlip { .. } => self.hotflip_attack().unwrap().validate(),
        }
    }

    fn deepwordbug_with_seed(&self, seed: u64) -> Option<DeepWordBug> {
        match self {
            TextAttackConfig::DeepWordBug {
                budget,
                kinds,
                max_words,
            } => Some(DeepWordBug {
                budget: *budget,
                kinds: kinds.clone(),
                max_words: *max_words,
                seed,
            }),
            _ => None,
        }
    }

    fn hotflip_attack(&self) -> Option<HotFlip> {
        match *self {
            TextAttackConfig::HotFlip {
                budget,
                beam,
                candidates,
                positions,
            } => Some(HotFlip {
                budget,
                beam,
                candidates,
                positions,
            }),
            _ => None,
        }
    }

    /// Attacks `texts` (true classes `labels`).
    pub fn run(
        &self,
        model: &TextModel,
        texts: &[String],
        labels: &[usize],
        seed: u64,
    ) -> Vec<TextAttackResult> {
        match self {
            TextAttackConfig::DeepWordBug { .. } => self
                .deepwordbug_with_seed(seed)
                .expect("variant checked")
                .attack(model, texts, labels),
            TextAttackConfig::HotFlip { .. } => self
                .hotflip_attack()
                .expect("variant checked")
                .attack(model, texts, labels),
        }
    }
}

/// How the model is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TextMethod {
    /// Clean cross-entropy.
    Standard,
    /// `L(clean) + λ·L(attacked)`, attacked copies refreshed every epoch from `warmup_epochs`
    /// on, against a random `fraction` of the training set.
    Adversarial {
        attack: TextAttackConfig,
        lambda: f64,
        fraction: f64,
        warmup_epochs: usize,
    },
    /// `L(clean) + λ·L(head(embed(x) + δ))`, δ found by `steps` normalised-gradient ascent
    /// steps inside `‖δ‖₂ ≤ eps·‖embed(x)‖₂` per text (Miyato et al. 2017; FreeLB, Zhu et al.
    /// 2020). The radius is relative because embedding scales differ between models.
    EmbeddingAt { eps: f64, steps: usize, lambda: f64 },
}

impl TextMethod {
    pub fn name(&self) -> &'static str {
        match self {
            TextMethod::Standard => "standard",
            TextMethod::Adversarial { .. } => "adversarial",
            TextMethod::EmbeddingAt { .. } => "embedding-at",
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            TextMethod::Standard => Ok(()),
            TextMethod::Adversarial {
                attack,
                lambda,
                fraction,
                ..
            } => {
                attack.validate()?;
                if !(lambda.is_finite() && *lambda >= 0.0) {
                    return Err(Error::config(format!("lambda must be >= 0, got {lambda}")));
                }
                if !(*fraction > 0.0 && *fraction <= 1.0) {
                    return Err(Error::config(format!(
                        "the attacked fraction must be in (0, 1], got {fraction}"
                    )));
                }
                Ok(())
            }
            TextMethod::EmbeddingAt { eps, steps, lambda } => {
                if !(eps.is_finite() && *eps > 0.0) {
                    return Err(Error::config(format!("eps must be > 0, got {eps}")));
                }
                if *steps == 0 {
                    return Err(Error::config("embedding-at needs at least 1 step"));
                }
                if !(lambda.is_finite() && *lambda >= 0.0) {
                    return Err(Error::config(format!("lambda must be >= 0, got {lambda}")));
                }
                Ok(())
            }
        }
    }
}

/// A text training run's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextTrainConfig {
    pub model: TextModelConfig,
    pub method: TextMethod,
    /// Input canonicalisation in front of the model (also during training).
    pub canonicalizer: Canonicalizer,
    pub epochs: usize,
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    pub seed: u64,
}

impl TextTrainConfig {
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.method.validate()?;
        if self.epochs == 0 {
            return Err(Error::config("epochs must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch size must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config(format!("lr must be > 0, got {}", self.lr)));
        }
        Ok(())
    }
}

/// One epoch of text training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextEpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss (the full objective).
    pub loss: f64,
    /// Clean training accuracy over the epoch's batches (as the model was while training).
    pub train_accuracy: f64,
    /// Clean accuracy on the validation texts at the end of the epoch.
    pub val_accuracy: Option<f64>,
    /// Training texts attacked this epoch (adversarial training).
    pub attacked: usize,
    /// Of those the model classified correctly, the share the attack flipped: watching it
    /// fall is watching the model learn the attack.
    pub attack_success_rate: Option<f64>,
    /// Seconds spent crafting adversarial texts this epoch.
    pub attack_seconds: f64,
    /// Seconds for the whole epoch.
    pub seconds: f64,
}

/// A trained text model and its history.
pub struct TrainedText {
    pub net: TextNet,
    pub history: Vec<TextEpochRecord>,
    pub train_seconds: f64,
}

/// Trains a text model from scratch. `on_epoch` sees each finished epoch (to write metrics as
/// they arrive).
pub fn train_text(
    config: &TextTrainConfig,
    train: &TextDataset,
    val: Option<&TextDataset>,
    device: &Device,
    progress: &dyn Progress,
    on_epoch: &mut dyn FnMut(&TextEpochRecord, &TextNet) -> Result<()>,
) -> Result<TrainedText> {
    config.validate()?;
    if train.is_empty() {
        return Err(Error::config("the training set is empty"));
    }
    if train.num_classes() != config.model.num_classes {
        return Err(Error::config(format!(
            "the data has {} classes but the model {}",
            train.num_classes(),
            config.model.num_classes
        )));
    }
    let device = device.clone().without_autodiff();
    let mut net = init_net(&config.model, config.seed, &device)?.train();
    let mut optimizer = OptimizerConfig::adam().build();
    let mut rng = rng::derived(config.seed, 0x7e47);
    let encoder = &config.model.encoder;
    let canon = config.canonicalizer;
    let tokenize = |texts: &[String]| -> Vec<Vec<Token>> {
        use rayon::prelude::*;
        texts
            .par_iter()
            .map(|t| {
                let t = if canon.is_identity() {
                    t.clone()
                } else {
                    canon.apply(t)
                };
                let chars: Vec<char> = t.chars().collect();
                encoder.tokens(&chars)
            })
            .collect()
    };
    let clean_tokens = tokenize(&train.texts);
    let mut history = Vec::new();
    let start = Instant::now();
    for epoch in 0..config.epochs {
        let epoch_start = Instant::now();
        // Adversarial copies for this epoch, crafted against the model as it is now.
        let mut adv: Vec<(Vec<Token>, usize)> = Vec::new();
        let (mut attacked, mut success_rate, mut attack_seconds) = (0, None, 0.0);
        if let TextMethod::Adversarial {
            attack,
            fraction,
            warmup_epochs,
            ..
        } = &config.method
        {
            if epoch >= *warmup_epochs {
                let t0 = Instant::now();
                let n = ((train.len() as f64 * fraction).round() as usize).clamp(1, train.len());
                let pick: Vec<usize> = rng::permutation(&mut rng, train.len())[..n].to_vec();
                let texts: Vec<String> = pick.iter().map(|&i| train.texts[i].clone()).collect();
                let labels: Vec<usize> = pick.iter().map(|&i| train.labels[i]).collect();
                let model = TextModel::new(config.model.clone(), canon, &net, &device);
                progress.note(&format!(
                    "epoch {}: crafting {} adversarial texts ({})",
                    epoch + 1,
                    n,
                    attack.name()
                ));
                let results =
                    attack.run(&model, &texts, &labels, config.seed ^ (epoch as u64) << 32);
                let correct = results
                    .iter()
                    .filter(|r| r.clean_prediction == r.label)
                    .count();
                let flipped = results.iter().filter(|r| r.success()).count();
                success_rate = (correct > 0).then(|| flipped as f64 / correct as f64);
                attacked = n;
                let adv_texts: Vec<String> = results
                    .iter()
                    .filter(|r| !r.edits.is_empty())
                    .map(|r| r.adversarial.clone())
                    .collect();
                let adv_labels: Vec<usize> = results
                    .iter()
                    .filter(|r| !r.edits.is_empty())
                    .map(|r| r.label)
                    .collect();
                adv = tokenize(&adv_texts).into_iter().zip(adv_labels).collect();
                attack_seconds = t0.elapsed().as_secs_f64();
            }
        }
        let order = rng::permutation(&mut rng, train.len());
        let adv_order = rng::permutation(&mut rng, adv.len());
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        progress.begin(
            &format!("epoch {}/{}", epoch + 1, config.epochs),
            train.len() as u64,
        );
        for (bi, chunk) in order.chunks(config.batch_size).enumerate() {
            let tokens: Vec<&[Token]> = chunk.iter().map(|&i| clean_tokens[i].as_slice()).collect();
            let labels: Vec<usize> = chunk.iter().map(|&i| train.labels[i]).collect();
            let (ids, mask) = batch_tensors(encoder, &tokens, &device);
            let y = labels_tensor(&labels, &device);
            let b = labels.len();
            let emb = net.embed(ids.clone());
            let logits = net.head(emb.clone(), mask.clone());
            let mut loss = cross_entropy(logits.clone(), y.clone()).mean();
            match &config.method {
                TextMethod::Standard => {}
                TextMethod::Adversarial { lambda, .. } => {
                    if !adv.is_empty() {
                        let take: Vec<usize> = (0..b)
                            .map(|k| adv_order[(bi * config.batch_size + k) % adv.len()])
                            .collect();
                        let at: Vec<&[Token]> = take.iter().map(|&i| adv[i].0.as_slice()).collect();
                        let al: Vec<usize> = take.iter().map(|&i| adv[i].1).collect();
                        let (aids, amask) = batch_tensors(encoder, &at, &device);
                        let alogits = net.logits(aids, amask);
                        let aloss = cross_entropy(alogits, labels_tensor(&al, &device)).mean();
                        loss = loss + aloss.mul_scalar(*lambda);
                    }
                }
                TextMethod::EmbeddingAt { eps, steps, lambda } => {
                    let delta = embedding_perturbation(
                        &net,
                        ids,
                        mask.clone(),
                        y.clone(),
                        *eps,
                        *steps,
                        &mut rng,
                    );
                    let alogits = net.head(emb + delta, mask);
                    let aloss = cross_entropy(alogits, y.clone()).mean();
                    loss = loss + aloss.mul_scalar(*lambda);
                }
            }
            let value = loss.clone().into_scalar::<f32>() as f64;
            if !value.is_finite() {
                progress.end();
                return Err(Error::Diverged(format!(
                    "loss is {value} at epoch {}, batch {}; lower --lr",
                    epoch + 1,
                    bi + 1
                )));
            }
            let pred = logits.without_autodiff().argmax(1).reshape([b]);
            correct += pred.equal(y).int().sum().into_scalar::<i64>() as usize;
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optimizer.step(config.lr, net, grads);
            loss_sum += value * b as f64;
            seen += b;
            progress.advance(
                b as u64,
                &format!(
                    "loss {:.4} acc {:.1}%",
                    loss_sum / seen as f64,
                    100.0 * correct as f64 / seen as f64
                ),
            );
        }
        progress.end();
        let val_accuracy = val.filter(|v| !v.is_empty()).map(|v| {
            let model = TextModel::new(config.model.clone(), canon, &net, &device);
            let pred = model.predict(&v.texts);
            pred.iter().zip(&v.labels).filter(|(p, l)| p == l).count() as f64 / v.len() as f64
        });
        let record = TextEpochRecord {
            epoch: epoch + 1,
            loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_accuracy,
            attacked,
            attack_success_rate: success_rate,
            attack_seconds,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        on_epoch(&record, &net)?;
        history.push(record);
    }
    Ok(TrainedText {
        net,
        history,
        train_seconds: start.elapsed().as_secs_f64(),
    })
}

/// burn's device seed is process-wide and parameters are initialised on first use: seed,
/// build and touch every parameter under one lock, so runs in parallel threads stay
/// reproducible.
pub fn init_net(config: &TextModelConfig, seed: u64, device: &Device) -> Result<TextNet> {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    let net = TextNet::new(config, device)?;
    let ids = Tensor::<2, Int>::zeros([1, 1], device);
    let mask = Tensor::<2>::ones([1, 1], device);
    let _ = net.logits(ids, mask).into_data();
    Ok(net)
}

fn labels_tensor(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(v, [labels.len()]), device)
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
