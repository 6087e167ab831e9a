//! Text training as a [`TrainTask`] of the shared loop: tokenised batches, the epoch's
//! attacked texts for adversarial training (crafted once per epoch, checkpointed with the
//! run), and validation by clean accuracy and, for adversarial training, accuracy under the
//! run's attack.
//!
//! Character attacks are discrete and query-hungry, so adversarial examples are not crafted
//! per batch as on the image side: at the start of each adversarial epoch the current model
//! attacks a random `fraction` of the training set, and every clean batch of that epoch is
//! paired with a batch of those adversarial texts.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::prelude::{Device, Int, Tensor, TensorData};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use super::steps::{EmbeddingAtStep, TextBatch, TextCrossEntropy};
use super::{TextMethod, TextTrainConfig};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::rng::{self, AdvRng};
use crate::text::attack::TextAttackConfig;
use crate::text::evasion::{choose_threshold, EvasionRun, EvasionTarget, DEFAULT_CHUNK};
use crate::text::model::{batch_tensors, TextModel, TextNet};
use crate::text::{TextDataset, Token};
use crate::threat::ThreatModel;
use crate::train::monitor::HealthCheck;
use crate::train::{
    EpochMetrics, LoopSettings, StepContext, StepOutput, TrainStep, TrainTask, Validation,
};

/// The stream of the text training generator (`rng::derived(seed, TEXT_RNG_STREAM)`).
const TEXT_RNG_STREAM: u64 = 0x7e47;
/// Checkpoint part holding the epoch's attacked texts.
const ATTACKED_BLOB: &str = "text_attacked";

/// The attacked texts of the epoch in progress and how they were made.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AttackedSet {
    /// Tokens and class of each attacked text the attack changed.
    texts: Vec<(Vec<Token>, usize)>,
    /// Training texts attacked this epoch.
    attacked: usize,
    /// Of those classified correctly, the share the attack flipped.
    success_rate: Option<f64>,
    /// Seconds spent crafting them.
    seconds: f64,
    /// The order batches draw them in (drawn with the epoch's shuffle).
    #[serde(skip)]
    order: Vec<usize>,
}

/// Training a text network on a data set with one of the text methods.
pub struct TextTask<'a> {
    config: &'a TextTrainConfig,
    train: &'a TextDataset,
    val: Option<&'a TextDataset>,
    tokens: Vec<Vec<Token>>,
    step: Box<dyn TrainStep<TextNet, TextBatch>>,
    attacked: AttackedSet,
    device: Device,
}

impl<'a> TextTask<'a> {
    /// The task of `config` on `train`, validated on `val`.
    pub fn new(
        config: &'a TextTrainConfig,
        train: &'a TextDataset,
        val: Option<&'a TextDataset>,
        device: &Device,
    ) -> Self {
        let step: Box<dyn TrainStep<TextNet, TextBatch>> = match &config.method {
            TextMethod::Standard => Box::new(TextCrossEntropy { lambda: 0.0 }),
            TextMethod::Adversarial { lambda, .. } => {
                Box::new(TextCrossEntropy { lambda: *lambda })
            }
            TextMethod::EmbeddingAt { eps, steps, lambda } => Box::new(EmbeddingAtStep {
                eps: *eps,
                steps: *steps,
                lambda: *lambda,
            }),
        };
        Self {
            tokens: tokenize(config, &train.texts),
            config,
            train,
            val: val.filter(|v| !v.is_empty()),
            step,
            attacked: AttackedSet::default(),
            device: device.clone(),
        }
    }

    fn text_model(&self, net: &TextNet) -> TextModel {
        TextModel::new(
            self.config.model.clone(),
            self.config.canonicalizer,
            net,
            &self.device,
        )
    }

    /// Attacks a random `fraction` of the training texts with the model as it is now.
    fn craft(
        &mut self,
        net: &TextNet,
        epoch: usize,
        rng: &mut AdvRng,
        progress: &dyn Progress,
    ) -> Result<()> {
        let TextMethod::Adversarial {
            attack, fraction, ..
        } = &self.config.method
        else {
            return Ok(());
        };
        let t0 = Instant::now();
        let len = self.train.len();
        let n = ((len as f64 * fraction).round() as usize).clamp(1, len);
        let pick: Vec<usize> = rng::permutation(rng, len)[..n].to_vec();
        let texts: Vec<String> = pick.iter().map(|&i| self.train.texts[i].clone()).collect();
        let labels: Vec<usize> = pick.iter().map(|&i| self.train.labels[i]).collect();
        progress.note(&format!(
            "epoch {}: crafting {} adversarial texts ({})",
            epoch + 1,
            n,
            attack.name()
        ));
        let seed = self.config.seed ^ (epoch as u64) << 32;
        let results = attack.run(&self.text_model(net), &texts, &labels, seed)?;
        let correct = results
            .iter()
            .filter(|r| r.clean_prediction == r.label)
            .count();
        let flipped = results.iter().filter(|r| r.success()).count();
        let changed: Vec<_> = results.iter().filter(|r| !r.edits.is_empty()).collect();
        let adv_texts: Vec<String> = changed.iter().map(|r| r.adversarial.clone()).collect();
        let adv_labels = changed.iter().map(|r| r.label);
        self.attacked = AttackedSet {
            texts: tokenize(self.config, &adv_texts)
                .into_iter()
                .zip(adv_labels)
                .collect(),
            attacked: n,
            success_rate: (correct > 0).then(|| flipped as f64 / correct as f64),
            seconds: t0.elapsed().as_secs_f64(),
            order: Vec::new(),
        };
        Ok(())
    }

    /// The attacked texts paired with batch `batch` of `size` clean texts.
    fn attacked_batch(
        &self,
        batch: usize,
        size: usize,
    ) -> Option<(Tensor<2, Int>, Tensor<2>, Tensor<1, Int>)> {
        let set = &self.attacked;
        if set.texts.is_empty() || !matches!(self.config.method, TextMethod::Adversarial { .. }) {
            return None;
        }
        let take: Vec<usize> = (0..size)
            .map(|k| set.order[(batch * self.config.batch_size + k) % set.texts.len()])
            .collect();
        let tokens: Vec<&[Token]> = take.iter().map(|&i| set.texts[i].0.as_slice()).collect();
        let labels: Vec<usize> = take.iter().map(|&i| set.texts[i].1).collect();
        let (ids, mask) = batch_tensors(&self.config.model.encoder, &tokens, &self.device);
        Some((ids, mask, labels_tensor(&labels, &self.device)))
    }

    /// Accuracy under the run's attack on the first validation texts (adversarial training
    /// only: the other methods have no attack to watch).
    /// A two-class filter's health: the validation detection rate under the run's attack
    /// at the run's false-positive rate, the threshold chosen on the watched texts' benign
    /// half (the filter's operating point, as it would be deployed).
    fn detection_under_attack(
        &self,
        model: &TextModel,
        watched: &TextDataset,
        attack: &TextAttackConfig,
        clean: f64,
        rng: &mut AdvRng,
    ) -> Result<Option<HealthCheck>> {
        let counts = watched.class_counts();
        if counts.contains(&0) {
            return Ok(None); // a class missing among the watched texts: nothing to measure
        }
        let target = EvasionTarget::WhiteBox(model);
        let threshold = choose_threshold(target, watched, 1, self.config.fpr)?;
        let run = EvasionRun {
            target,
            target_name: "model".to_string(),
            positive: 1,
            threshold,
            chunk: DEFAULT_CHUNK,
            seed: rng.next_u64(),
        };
        let (record, _) = run.evaluate(watched, Some(attack), Vec::new(), &mut |_| Ok(()))?;
        Ok(Some(HealthCheck {
            batch: None,
            n: record.malicious,
            clean_accuracy: clean,
            fgsm_accuracy: None,
            pgd_accuracy: record.tpr_attacked.value,
            pgd_steps: attack.budget(),
            pgd_attack: attack.name().to_string(),
            fgsm_pgd_gap: None,
            grad_alignment: None,
            attack_label: Some(format!(
                "{} (budget {}) detection rate at {}% FPR",
                attack.name(),
                attack.budget(),
                100.0 * self.config.fpr
            )),
        }))
    }

    fn attacked_accuracy(
        &self,
        net: &TextNet,
        clean: f64,
        rng: &mut AdvRng,
    ) -> Result<Option<HealthCheck>> {
        let (TextMethod::Adversarial { attack, .. }, Some(val)) = (&self.config.method, self.val)
        else {
            return Ok(None);
        };
        let n = self
            .config
            .monitor
            .max_examples
            .unwrap_or(val.len())
            .min(val.len());
        let model = self.text_model(net);
        let watched = val.take(n);
        if watched.num_classes() == 2 {
            return self.detection_under_attack(&model, &watched, attack, clean, rng);
        }
        let results = attack.run(&model, &watched.texts, &watched.labels, rng.next_u64())?;
        let robust = results.iter().filter(|r| r.robust()).count();
        Ok(Some(HealthCheck {
            batch: None,
            n,
            clean_accuracy: clean,
            fgsm_accuracy: None,
            pgd_accuracy: robust as f64 / n.max(1) as f64,
            pgd_steps: attack.budget(),
            pgd_attack: attack.name().to_string(),
            fgsm_pgd_gap: None,
            grad_alignment: None,
            attack_label: Some(format!("{} (budget {})", attack.name(), attack.budget())),
        }))
    }
}

impl TrainTask for TextTask<'_> {
    type Model = TextNet;
    type Config = TextTrainConfig;

    fn config(&self) -> &TextTrainConfig {
        self.config
    }

    fn settings(&self) -> LoopSettings {
        let c = self.config;
        LoopSettings {
            epochs: c.epochs,
            batch_size: c.batch_size,
            lr: c.lr,
            optimizer: crate::train::OptimizerConfig::adam(),
            schedule: c.schedule.clone(),
            monitor: c.monitor.clone(),
            seed: c.seed,
            rng_stream: TEXT_RNG_STREAM,
            threat: ThreatModel::linf(0.0),
            eps_warmup_epochs: 0.0,
        }
    }

    fn len(&self) -> usize {
        self.train.len()
    }

    fn data_fingerprint(&self) -> Option<String> {
        let val = self.val.map(|v| v.fingerprint()).unwrap_or_default();
        Some(crate::io::sha256_hex(
            format!("{}/{val}", self.train.fingerprint()).as_bytes(),
        ))
    }

    fn method_name(&self) -> String {
        String::new()
    }

    fn is_adversarial(&self) -> bool {
        matches!(self.config.method, TextMethod::Adversarial { .. })
    }

    fn begin_epoch(
        &mut self,
        net: &TextNet,
        epoch: usize,
        rng: &mut AdvRng,
        progress: &dyn Progress,
    ) -> Result<()> {
        self.attacked = AttackedSet::default();
        if let TextMethod::Adversarial { warmup_epochs, .. } = self.config.method {
            if epoch >= warmup_epochs {
                self.craft(net, epoch, rng, progress)?;
            }
        }
        Ok(())
    }

    fn epoch_order(&mut self, rng: &mut AdvRng) -> Vec<usize> {
        let order = rng::permutation(rng, self.train.len());
        self.attacked.order = rng::permutation(rng, self.attacked.texts.len());
        order
    }

    fn train_batch(
        &mut self,
        net: TextNet,
        indices: &[usize],
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput<TextNet>> {
        let tokens: Vec<&[Token]> = indices.iter().map(|&i| self.tokens[i].as_slice()).collect();
        let labels: Vec<usize> = indices.iter().map(|&i| self.train.labels[i]).collect();
        let (ids, mask) = batch_tensors(&self.config.model.encoder, &tokens, &self.device);
        let batch = TextBatch {
            ids,
            mask,
            labels: labels_tensor(&labels, &self.device),
            attacked: self.attacked_batch(ctx.batch, labels.len()),
        };
        self.step.step(net, batch, ctx)
    }

    fn health_check(&mut self, _: &TextNet, _: &mut AdvRng) -> Result<Option<HealthCheck>> {
        Ok(None)
    }

    fn validate(
        &mut self,
        net: &TextNet,
        rng: &mut AdvRng,
        _progress: &dyn Progress,
    ) -> Result<Validation> {
        let Some(val) = self.val else {
            return Ok(Validation::default());
        };
        let pred = self.text_model(net).predict(&val.texts);
        let right = pred.iter().zip(&val.labels).filter(|(p, l)| p == l).count();
        let clean = right as f64 / val.len() as f64;
        Ok(Validation {
            clean: Some(clean),
            check: self.attacked_accuracy(net, clean, rng)?,
        })
    }

    fn robust_criterion(&self, check: &HealthCheck) -> String {
        format!("validation {} accuracy", check.robust_name())
    }

    fn finish_epoch(&mut self, metrics: &mut EpochMetrics) {
        let a = &self.attacked;
        metrics.extra.insert("attacked".into(), a.attacked.into());
        metrics
            .extra
            .insert("attack_success_rate".into(), a.success_rate.into());
        metrics
            .extra
            .insert("attack_seconds".into(), a.seconds.into());
    }

    fn save_state(&self, blobs: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
        let bytes = serde_json::to_vec(&self.attacked)
            .map_err(|e| Error::config(format!("cannot save the attacked texts: {e}")))?;
        blobs.insert(ATTACKED_BLOB.to_string(), bytes);
        Ok(())
    }

    fn load_state(&mut self, blobs: &BTreeMap<String, Vec<u8>>, _: &Device) -> Result<()> {
        self.attacked = match blobs.get(ATTACKED_BLOB) {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| {
                Error::config(format!("checkpoint's attacked texts are corrupt: {e}"))
            })?,
            None => AttackedSet::default(),
        };
        Ok(())
    }
}

/// Tokens of each text after the run's canonicalisation, in parallel.
fn tokenize(config: &TextTrainConfig, texts: &[String]) -> Vec<Vec<Token>> {
    use rayon::prelude::*;
    let canon = config.canonicalizer;
    texts
        .par_iter()
        .map(|t| {
            let t = if canon.is_identity() {
                t.clone()
            } else {
                canon.apply(t)
            };
            let chars: Vec<char> = t.chars().collect();
            config.model.encoder.tokens(&chars)
        })
        .collect()
}

/// Class labels as a tensor.
pub(crate) fn labels_tensor(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(v, [labels.len()]), device)
}
