//! Image training as a [`TrainTask`]: batches from a [`Dataset`] (augmented if the
//! configuration says so), a [`TrainStep`] per batch, and the health monitor's clean / FGSM
//! / PGD-k validation.

use std::collections::BTreeMap;

use burn::prelude::Device;

use super::monitor::{self, HealthCheck};
use super::step::{ImageBatch, StepContext, StepOutput, TrainStep};
use super::trainer::{LoopSettings, TrainTask, Validation};
use super::TrainConfig;
use crate::data::Dataset;
use crate::error::Result;
use crate::eval;
use crate::model::Classifier;
use crate::progress::{Progress, Silent};
use crate::rng::AdvRng;

/// Training an image classifier of type `M` with one step on a data set.
pub struct ImageTask<'a, M> {
    train: &'a Dataset,
    val: &'a Dataset,
    config: &'a TrainConfig,
    step: Box<dyn TrainStep<M, ImageBatch> + 'a>,
    name: String,
}

impl<'a, M: Classifier + 'static> ImageTask<'a, M> {
    /// The task of `config`'s method.
    pub fn new(train: &'a Dataset, val: &'a Dataset, config: &'a TrainConfig) -> Self {
        Self::with_step(
            train,
            val,
            config,
            config.method.image_step(),
            config.method.name(),
        )
    }

    /// The task with a step of the caller's own (`name` is shown in progress bars); the
    /// rest of `config` (epochs, optimiser, schedule, ε, monitor) applies as for any method.
    pub fn with_step(
        train: &'a Dataset,
        val: &'a Dataset,
        config: &'a TrainConfig,
        step: Box<dyn TrainStep<M, ImageBatch> + 'a>,
        name: &str,
    ) -> Self {
        Self {
            train,
            val,
            config,
            step,
            name: name.to_string(),
        }
    }

    /// Batch size of validation passes (no gradients are kept, so larger than training's).
    fn eval_batch(&self) -> usize {
        self.config.batch_size.max(256)
    }
}

impl<M: Classifier + 'static> TrainTask for ImageTask<'_, M> {
    type Model = M;
    type Config = TrainConfig;

    fn config(&self) -> &TrainConfig {
        self.config
    }

    fn settings(&self) -> LoopSettings {
        let c = self.config;
        LoopSettings {
            epochs: c.epochs,
            batch_size: c.batch_size,
            lr: c.lr,
            optimizer: c.optimizer.clone(),
            schedule: c.schedule.clone(),
            monitor: c.monitor.clone(),
            seed: c.seed,
            rng_stream: 1,
            threat: c.threat(),
            eps_warmup_epochs: c.eps_warmup_epochs,
        }
    }

    fn len(&self) -> usize {
        self.train.len()
    }

    fn data_fingerprint(&self) -> Option<String> {
        Some(crate::io::sha256_hex(
            format!("{}/{}", self.train.fingerprint(), self.val.fingerprint()).as_bytes(),
        ))
    }

    fn method_name(&self) -> String {
        self.name.clone()
    }

    fn is_adversarial(&self) -> bool {
        self.step.is_adversarial()
    }

    fn train_batch(
        &mut self,
        model: M,
        indices: &[usize],
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput<M>> {
        let augment = &self.config.augment;
        let batch = if augment.is_active() {
            self.train
                .batch_augmented(indices, augment, ctx.rng, ctx.device)
        } else {
            self.train.batch(indices, ctx.device)
        };
        self.step.step(model, batch, ctx)
    }

    fn health_check(&mut self, model: &M, rng: &mut AdvRng) -> Result<Option<HealthCheck>> {
        if self.config.eps <= 0.0 || self.val.is_empty() {
            return Ok(None);
        }
        self.check(model, rng, &Silent).map(Some)
    }

    fn validate(
        &mut self,
        model: &M,
        rng: &mut AdvRng,
        progress: &dyn Progress,
    ) -> Result<Validation> {
        if self.val.is_empty() {
            return Ok(Validation::default());
        }
        if self.config.eps > 0.0 {
            let check = self.check(model, rng, progress)?;
            return Ok(Validation {
                clean: Some(check.clean_accuracy),
                check: Some(check),
            });
        }
        let clean = eval::clean_accuracy(model, self.val, self.eval_batch(), progress).value;
        Ok(Validation {
            clean: Some(clean),
            check: None,
        })
    }

    fn save_state(&self, blobs: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
        self.step.save_state(blobs)
    }

    fn load_state(&mut self, blobs: &BTreeMap<String, Vec<u8>>, device: &Device) -> Result<()> {
        self.step.load_state(blobs, device)
    }

    fn reset(&mut self) {
        self.step.reset()
    }
}

impl<M: Classifier + 'static> ImageTask<'_, M> {
    /// The monitor's clean / FGSM / PGD-k / alignment check on the validation split.
    fn check(&self, model: &M, rng: &mut AdvRng, progress: &dyn Progress) -> Result<HealthCheck> {
        monitor::check(
            model,
            self.val,
            self.config.threat(),
            self.config.val_pgd_steps,
            self.config.monitor.max_examples,
            self.eval_batch(),
            rng,
            progress,
        )
    }
}
