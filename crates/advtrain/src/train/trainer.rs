//! The one training loop: epochs, the learning-rate schedule, ε warm-up, the health
//! monitor and its actions, the best checkpoint, crash-safe checkpoints and resume, for any
//! modality and any [`TrainStep`](super::TrainStep).
//!
//! A modality (images, text) says what the loop cannot know through [`TrainTask`]: how many
//! examples an epoch has, how a batch is trained, how the model is validated, and what state
//! it carries between batches. Everything the loop itself does is the same for all of them,
//! so a text run gets the image run's checkpoints, bit-identical resume, schedules, best
//! checkpoint and monitor without a second copy of the loop.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::prelude::Device;
use burn::tensor::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::checkpoint::{self, BestRecord, Checkpoint, TrainState};
use super::monitor::{self, CollapsePolicy, HealthCheck, MonitorConfig, MonitorEvent};
use super::optim::{OptimizerConfig, Schedule};
use super::step::{StepContext, StepOutput};
use super::{CheckpointOptions, EpochMetrics, EpochObserver, Trained, BEST_MODEL};
use crate::error::{Error, Result};
use crate::model;
use crate::progress::Progress;
use crate::rng::{self, AdvRng, RngState};
use crate::threat::ThreatModel;

/// The loop's own settings, taken from a modality's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopSettings {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per batch.
    pub batch_size: usize,
    /// Base learning rate (the schedule scales it).
    pub lr: f64,
    /// The optimiser (its state is checkpointed).
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule over the whole run.
    pub schedule: Schedule,
    /// The health monitor's alarms and what to do on them.
    pub monitor: MonitorConfig,
    /// The run's seed.
    pub seed: u64,
    /// The stream of the training generator, `rng::derived(seed, stream)` (kept per
    /// modality so that a refactoring never changes a run's random numbers).
    pub rng_stream: u64,
    /// The threat model at full ε.
    pub threat: ThreatModel,
    /// ε grows linearly from 0 over this many epochs (0: full ε from the start).
    pub eps_warmup_epochs: f64,
}

impl LoopSettings {
    /// The threat model after `epochs_done` (fractional) epochs of training.
    pub fn threat_at(&self, epochs_done: f64) -> ThreatModel {
        let eps = if self.eps_warmup_epochs <= 0.0 {
            self.threat.eps
        } else {
            (self.threat.eps as f64 * (epochs_done / self.eps_warmup_epochs).min(1.0)) as f32
        };
        ThreatModel {
            norm: self.threat.norm,
            eps,
        }
    }
}

/// An end-of-epoch validation.
#[derive(Clone, Debug, Default)]
pub struct Validation {
    /// Clean accuracy on the validation split (`None` without one).
    pub clean: Option<f64>,
    /// The monitor's health check (`None` when robustness is not measured).
    pub check: Option<HealthCheck>,
}

/// What the loop needs from a modality. See the module docs.
pub trait TrainTask {
    /// The model being trained (with autodiff).
    type Model: Module + Clone + 'static;
    /// The run's full configuration, stored in checkpoints; a resume must match it.
    type Config: Serialize + DeserializeOwned + PartialEq;

    /// The configuration checkpoints record.
    fn config(&self) -> &Self::Config;
    /// The loop's settings.
    fn settings(&self) -> LoopSettings;
    /// Training examples (one epoch visits each once).
    fn len(&self) -> usize;
    /// Whether the task has no training examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A fingerprint of the training and validation examples, recorded in checkpoints: a
    /// resume on other data (another `limit`, `val_size` or file) would continue mid-epoch
    /// on a different split, so it is refused. `None`: not checked.
    fn data_fingerprint(&self) -> Option<String> {
        None
    }
    /// The method's name for progress bars (empty: none).
    fn method_name(&self) -> String;
    /// Whether the method attacks (the monitor judges the best checkpoint by robustness).
    fn is_adversarial(&self) -> bool;
    /// Called at the start of every epoch, before its shuffle (text adversarial training
    /// crafts the epoch's attacked texts here). Not called again when a run resumes inside
    /// the epoch: the task's state comes back from the checkpoint instead.
    fn begin_epoch(
        &mut self,
        _model: &Self::Model,
        _epoch: usize,
        _rng: &mut AdvRng,
        _progress: &dyn Progress,
    ) -> Result<()> {
        Ok(())
    }
    /// The epoch's order of examples, drawn from `rng` (replayed from the same state on
    /// resume, so it must depend on nothing else that changes within the epoch).
    fn epoch_order(&mut self, rng: &mut AdvRng) -> Vec<usize> {
        rng::permutation(rng, self.len())
    }
    /// Trains on the examples `indices`.
    fn train_batch(
        &mut self,
        model: Self::Model,
        indices: &[usize],
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput<Self::Model>>;
    /// A health check inside an epoch (`monitor.every_batches`); `None` when the task does
    /// not measure robustness.
    fn health_check(
        &mut self,
        model: &Self::Model,
        rng: &mut AdvRng,
    ) -> Result<Option<HealthCheck>>;
    /// The end-of-epoch validation.
    fn validate(
        &mut self,
        model: &Self::Model,
        rng: &mut AdvRng,
        progress: &dyn Progress,
    ) -> Result<Validation>;
    /// What the best checkpoint is judged by when the method attacks.
    fn robust_criterion(&self, check: &HealthCheck) -> String {
        format!("validation PGD-{} accuracy", check.pgd_steps)
    }
    /// Adds the task's own figures to the epoch's metrics before they are recorded.
    fn finish_epoch(&mut self, _metrics: &mut EpochMetrics) {}
    /// Saves state carried between batches into the checkpoint's binary parts.
    fn save_state(&self, _blobs: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
        Ok(())
    }
    /// Restores what [`TrainTask::save_state`] wrote.
    fn load_state(&mut self, _blobs: &BTreeMap<String, Vec<u8>>, _device: &Device) -> Result<()> {
        Ok(())
    }
    /// Forgets carried state: the monitor restored an earlier checkpoint.
    fn reset(&mut self) {}
}

/// Weights and optimiser state, as bytes (the best checkpoint, kept for rollbacks).
#[derive(Clone)]
struct Snapshot {
    model: Vec<u8>,
    optimizer: Vec<u8>,
}

fn snapshot<M: Module>(model: &M, optimizer: &ModuleOptimizer) -> Result<Snapshot> {
    Ok(Snapshot {
        model: model::safetensors_bytes(model).map_err(Error::config)?,
        optimizer: optimizer
            .into_bytes()
            .map_err(|e| Error::config(format!("cannot save optimiser state: {e}")))?
            .to_vec(),
    })
}

fn restore_model<M: Module>(model: M, bytes: &[u8]) -> Result<M> {
    let model = model::load_safetensors_bytes(model, bytes.to_vec())
        .map_err(|e| Error::config(format!("cannot restore weights: {e}")))?;
    Ok(model.train())
}

fn restore_optimizer(config: &OptimizerConfig, bytes: &[u8]) -> Result<ModuleOptimizer> {
    config
        .build()
        .from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| Error::config(format!("cannot restore optimiser state: {e}")))
}

fn restore_rng(state: &RngState, what: &str) -> Result<AdvRng> {
    state
        .restore()
        .ok_or_else(|| Error::config(format!("malformed {what} generator state")))
}

/// The run as it goes: what the monitor's actions and the checkpoints touch.
struct Live<'a, T: TrainTask> {
    task: &'a mut T,
    settings: LoopSettings,
    model: T::Model,
    optimizer: ModuleOptimizer,
    st: TrainState,
    best: Option<Snapshot>,
    rng: AdvRng,
    val_rng: AdvRng,
    progress: &'a dyn Progress,
    checkpoint_dir: Option<&'a Path>,
    /// (epoch, batch) of the newest checkpoint on disk, for the divergence message.
    last_good: Option<(usize, usize)>,
}

impl<T: TrainTask> Live<'_, T> {
    fn event(&mut self, batch: Option<usize>, kind: &str, message: String) {
        self.progress.note(&format!(
            "[monitor] epoch {}{}: {kind}: {message}",
            self.st.epoch + 1,
            batch.map_or(String::new(), |b| format!(", batch {b}"))
        ));
        self.st.pending_events.push(MonitorEvent {
            epoch: self.st.epoch + 1,
            batch,
            kind: kind.to_string(),
            message,
        });
    }

    /// Restores the best checkpoint, if there is one; says which.
    fn restore_best(&mut self) -> Result<String> {
        match (&self.best, &self.st.best) {
            (Some(snap), Some(rec)) => {
                let snap = snap.clone();
                self.model = restore_model(self.model.clone(), &snap.model)?;
                self.optimizer = restore_optimizer(&self.settings.optimizer, &snap.optimizer)?;
                self.task.reset();
                Ok(format!(
                    "restored the best checkpoint (epoch {}, {} {:.2}%)",
                    rec.epoch,
                    rec.criterion,
                    100.0 * rec.value
                ))
            }
            _ => Ok("no checkpoint to restore yet (kept the current weights)".to_string()),
        }
    }

    fn on_alarm(&mut self, batch: Option<usize>, reason: String) -> Result<()> {
        self.event(batch, "alarm", reason.clone());
        match self.settings.monitor.on_collapse {
            CollapsePolicy::Ignore => self.event(
                batch,
                "ignore",
                "policy is 'ignore': training goes on".into(),
            ),
            CollapsePolicy::Rollback => {
                let restored = self.restore_best()?;
                self.st.step_scale *= self.settings.monitor.rollback_step_factor;
                self.st.rollbacks += 1;
                let msg = format!(
                    "{restored}; attack step size now {:.3}x its setting (rollback {})",
                    self.st.step_scale, self.st.rollbacks
                );
                self.event(batch, "rollback", msg);
            }
            CollapsePolicy::Stop => {
                let restored = self.restore_best()?;
                self.event(batch, "stop", format!("training stopped; {restored}"));
                self.st.stopped = Some(reason);
            }
        }
        Ok(())
    }

    /// Raises an alarm on `check` if the monitor's rules say so; returns whether it did.
    fn judge(&mut self, batch: Option<usize>, check: &HealthCheck) -> Result<bool> {
        let best = self.st.best.as_ref().and_then(|b| b.val_pgd_accuracy);
        let reason =
            monitor::alarm_reason(check, best, self.st.best_alignment, &self.settings.monitor);
        match reason {
            Some(reason) => {
                self.on_alarm(batch, reason)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn checkpoint(&mut self) -> Result<()> {
        let Some(dir) = self.checkpoint_dir else {
            return Ok(());
        };
        self.st.rng = RngState::of(&self.rng);
        self.st.val_rng = RngState::of(&self.val_rng);
        let mut blobs = BTreeMap::new();
        let now = snapshot(&self.model, &self.optimizer)?;
        blobs.insert("model".to_string(), now.model);
        blobs.insert("optimizer".to_string(), now.optimizer);
        if let Some(b) = &self.best {
            blobs.insert("best_model".to_string(), b.model.clone());
            blobs.insert("best_optimizer".to_string(), b.optimizer.clone());
        }
        self.task.save_state(&mut blobs)?;
        checkpoint::write(
            dir,
            &Checkpoint {
                state: self.st.clone(),
                blobs,
            },
        )?;
        self.last_good = Some((self.st.epoch, self.st.batch));
        Ok(())
    }

    /// What a divergence now leaves behind, for its error message.
    fn kept(&self) -> String {
        match (self.checkpoint_dir, self.last_good) {
            (Some(dir), Some((e, bt))) => format!(
                "; the last good checkpoint ({}) is kept in {}",
                if bt > 0 {
                    format!("after batch {bt} of epoch {}", e + 1)
                } else {
                    format!("after epoch {e}")
                },
                dir.display()
            ),
            _ => String::new(),
        }
    }

    /// Continues from `ckpt` (written by the same configuration).
    fn resume(&mut self, ckpt: Checkpoint, device: &Device) -> Result<()> {
        let stored: std::result::Result<T::Config, _> =
            serde_json::from_value(ckpt.state.config.clone());
        if stored.ok().as_ref() != Some(self.task.config()) {
            return Err(Error::config(
                "the checkpoint was written with a different training configuration",
            ));
        }
        if let (Some(stored), Some(now)) = (&ckpt.state.data_sha256, &self.st.data_sha256) {
            if stored != now {
                return Err(Error::config(format!(
                    "the checkpoint was written on other training data (fingerprint {} here, \
                     {} when checkpointed): the limit, validation size or data files changed; \
                     restore them, or start a new run",
                    &now[..12],
                    &stored[..stored.len().min(12)]
                )));
            }
        }
        let blob = |name: &str| ckpt.blobs.get(name).map(Vec::as_slice);
        let m = checkpoint::assign_param_ids(self.model.clone(), &ckpt.state.param_ids)?;
        self.model = restore_model(m, blob("model").unwrap_or_default())?;
        self.optimizer = restore_optimizer(
            &self.settings.optimizer,
            blob("optimizer").unwrap_or_default(),
        )?;
        if let (Some(m), Some(o)) = (blob("best_model"), blob("best_optimizer")) {
            self.best = Some(Snapshot {
                model: m.to_vec(),
                optimizer: o.to_vec(),
            });
        }
        self.task.load_state(&ckpt.blobs, device)?;
        self.rng = restore_rng(&ckpt.state.rng, "training")?;
        self.val_rng = restore_rng(&ckpt.state.val_rng, "validation")?;
        let fingerprint = self.st.data_sha256.take();
        self.st = ckpt.state;
        self.st.data_sha256 = fingerprint;
        Ok(())
    }
}

/// Trains `model` on `task` with checkpoints and resume as `options` say; `observer` sees
/// every finished epoch. Tensors are created on `device` (without autodiff; the model's
/// parameters carry it).
pub fn fit<T: TrainTask>(
    task: &mut T,
    model: T::Model,
    mut options: CheckpointOptions<'_>,
    device: &Device,
    progress: &dyn Progress,
    observer: &mut dyn EpochObserver<T::Model>,
) -> Result<Trained<T::Model>> {
    if task.is_empty() {
        return Err(Error::config("the training set is empty"));
    }
    if options.checkpoint_batches == Some(0) {
        return Err(Error::config("checkpoint interval must be >= 1 batch"));
    }
    let device = device.clone().without_autodiff();
    let settings = task.settings();
    let model = model.train();
    let rng = rng::derived(settings.seed, settings.rng_stream);
    let val_rng = rng::derived(settings.seed, 2);
    let config = serde_json::to_value(task.config())
        .map_err(|e| Error::config(format!("cannot record the configuration: {e}")))?;
    let mut st = TrainState::fresh(config, &rng, &val_rng, checkpoint::param_ids(&model));
    st.data_sha256 = task.data_fingerprint();
    let mut live = Live {
        optimizer: settings.optimizer.build(),
        settings,
        task,
        model,
        st,
        best: None,
        rng,
        val_rng,
        progress,
        checkpoint_dir: options.checkpoint_dir,
        last_good: None,
    };
    if let Some(ckpt) = options.resume.take() {
        live.resume(ckpt, &device)?;
    }
    let clock = Clock {
        total_base: live.st.total_seconds,
        run: Instant::now(),
    };
    let mut last_checkpoint = Instant::now();
    while live.st.epoch < live.settings.epochs && live.st.stopped.is_none() {
        let epoch_clock = EpochClock {
            base: live.st.epoch_seconds,
            start: Instant::now(),
        };
        run_epoch(
            &mut live,
            &options,
            &device,
            &clock,
            &epoch_clock,
            &mut last_checkpoint,
        )?;
        end_epoch(&mut live, &clock, &epoch_clock, observer)?;
        live.checkpoint()?;
        last_checkpoint = Instant::now();
    }
    let best_model = match &live.best {
        Some(snap) => Some(restore_model(live.model.clone(), &snap.model)?.valid()),
        None => None,
    };
    Ok(Trained {
        model: live.model.valid(),
        history: live.st.history,
        seconds: clock.total(),
        best: live.st.best,
        best_model,
        stopped: live.st.stopped,
        rollbacks: live.st.rollbacks,
    })
}

/// Seconds of training before this process started, and this process's clock.
struct Clock {
    total_base: f64,
    run: Instant,
}

impl Clock {
    fn total(&self) -> f64 {
        self.total_base + self.run.elapsed().as_secs_f64()
    }
}

/// Seconds of the epoch before this process took it over, and this process's share.
struct EpochClock {
    base: f64,
    start: Instant,
}

impl EpochClock {
    fn seconds(&self) -> f64 {
        self.base + self.start.elapsed().as_secs_f64()
    }
}

/// The batches of the epoch in progress (from where a resumed run stopped), with the
/// inside-epoch health checks and checkpoints.
fn run_epoch<T: TrainTask>(
    live: &mut Live<'_, T>,
    options: &CheckpointOptions<'_>,
    device: &Device,
    clock: &Clock,
    epoch_clock: &EpochClock,
    last_checkpoint: &mut Instant,
) -> Result<()> {
    let s = live.settings.clone();
    let epoch = live.st.epoch;
    let train_base = live.st.train_seconds;
    let order = if live.st.batch == 0 {
        live.task
            .begin_epoch(&live.model, epoch, &mut live.rng, live.progress)?;
        live.st.rng_epoch_start = RngState::of(&live.rng);
        live.task.epoch_order(&mut live.rng)
    } else {
        let mut r = restore_rng(&live.st.rng_epoch_start, "epoch-start")?;
        live.task.epoch_order(&mut r)
    };
    let batches_per_epoch = live.task.len().div_ceil(s.batch_size);
    let total_iters = (batches_per_epoch * s.epochs) as f64;
    let chunks: Vec<&[usize]> = order.chunks(s.batch_size).collect();
    let name = live.task.method_name();
    let label = if name.is_empty() {
        name
    } else {
        format!(" {name}")
    };
    live.progress.begin(
        &format!("epoch {}/{}{label}", epoch + 1, s.epochs),
        live.task.len() as u64,
    );
    if live.st.seen > 0 {
        live.progress.advance(live.st.seen as u64, "resumed");
    }
    for (i, chunk) in chunks.iter().enumerate().skip(live.st.batch) {
        let iter = (epoch * batches_per_epoch + i) as f64;
        let lr = s.schedule.lr_at_step(s.lr, iter, total_iters);
        live.st.last_lr = lr;
        live.st.last_eps = s.threat_at(iter / batches_per_epoch as f64).eps;
        let out =
            train_one_batch(live, chunk, i, lr, device).inspect_err(|_| live.progress.end())?;
        live.model = out.model;
        live.st.correct += out.correct;
        live.st.loss_sum += out.loss * chunk.len() as f64;
        live.st.seen += chunk.len();
        live.st.batch = i + 1;
        live.progress.advance(
            chunk.len() as u64,
            &format!(
                "loss {:.4} acc {:.1}%",
                live.st.loss_sum / live.st.seen as f64,
                100.0 * live.st.correct as f64 / live.st.seen as f64
            ),
        );
        let inside = i + 1 < chunks.len();
        if inside && live.task.is_adversarial() && inside_check(live, i + 1)? {
            break;
        }
        let due = options
            .checkpoint_minutes
            .is_some_and(|m| last_checkpoint.elapsed().as_secs_f64() >= m * 60.0)
            || options.checkpoint_batches.is_some_and(|k| (i + 1) % k == 0);
        if inside && due && live.checkpoint_dir.is_some() {
            live.st.epoch_seconds = epoch_clock.seconds();
            live.st.train_seconds = train_base + epoch_clock.start.elapsed().as_secs_f64();
            live.st.total_seconds = clock.total();
            live.checkpoint()?;
            *last_checkpoint = Instant::now();
        }
    }
    live.progress.end();
    live.st.train_seconds = train_base + epoch_clock.start.elapsed().as_secs_f64();
    Ok(())
}

/// One batch through the task's step.
fn train_one_batch<T: TrainTask>(
    live: &mut Live<'_, T>,
    chunk: &[usize],
    batch: usize,
    lr: f64,
    device: &Device,
) -> Result<StepOutput<T::Model>> {
    let kept = live.kept();
    let mut ctx = StepContext {
        optimizer: &mut live.optimizer,
        lr,
        threat: ThreatModel {
            norm: live.settings.threat.norm,
            eps: live.st.last_eps,
        },
        step_scale: live.st.step_scale,
        rng: &mut live.rng,
        device,
        epoch: live.st.epoch,
        batch,
        kept: &kept,
    };
    live.task.train_batch(live.model.clone(), chunk, &mut ctx)
}

/// The health check every `monitor.every_batches` batches; returns whether the monitor
/// stopped the run.
fn inside_check<T: TrainTask>(live: &mut Live<'_, T>, batches_done: usize) -> Result<bool> {
    let Some(k) = live.settings.monitor.every_batches else {
        return Ok(false);
    };
    if !batches_done.is_multiple_of(k) {
        return Ok(false);
    }
    let Some(mut check) = live.task.health_check(&live.model, &mut live.val_rng)? else {
        return Ok(false);
    };
    check.batch = Some(batches_done);
    live.st.pending_checks.push(check.clone());
    if live.judge(Some(batches_done), &check)? {
        return Ok(live.st.stopped.is_some());
    }
    Ok(false)
}

/// End of epoch: validation, the monitor, the best checkpoint, the metrics line.
fn end_epoch<T: TrainTask>(
    live: &mut Live<'_, T>,
    clock: &Clock,
    epoch_clock: &EpochClock,
    observer: &mut dyn EpochObserver<T::Model>,
) -> Result<()> {
    let epoch = live.st.epoch;
    let validation = live
        .task
        .validate(&live.model, &mut live.val_rng, live.progress)?;
    let adversarial = live.task.is_adversarial();
    let mut alarmed = false;
    if let (Some(c), true, None) = (&validation.check, adversarial, &live.st.stopped) {
        alarmed =
            live.judge(None, c)? && live.settings.monitor.on_collapse != CollapsePolicy::Ignore;
    }
    if let Some(a) = validation.check.as_ref().and_then(|c| c.grad_alignment) {
        if !alarmed && live.st.best_alignment.is_none_or(|b| a > b) {
            live.st.best_alignment = Some(a);
        }
    }
    if !alarmed && live.st.stopped.is_none() {
        consider_best(live, &validation, epoch)?;
    }
    let check = validation.check.as_ref();
    let mut metrics = EpochMetrics {
        epoch: epoch + 1,
        train_loss: live.st.loss_sum / live.st.seen.max(1) as f64,
        train_accuracy: live.st.correct as f64 / live.st.seen.max(1) as f64,
        lr: live.st.last_lr,
        eps: live.st.last_eps,
        val_clean_accuracy: validation.clean,
        val_robust_accuracy: check.map(|c| c.pgd_accuracy),
        val_attack: check.map(|c| c.pgd_attack.clone()),
        val_fgsm_accuracy: check.and_then(|c| c.fgsm_accuracy),
        val_fgsm_pgd_gap: check.and_then(|c| c.fgsm_pgd_gap),
        val_grad_alignment: check.and_then(|c| c.grad_alignment),
        step_scale: live.st.step_scale,
        checks: std::mem::take(&mut live.st.pending_checks),
        events: std::mem::take(&mut live.st.pending_events),
        best_epoch: live.st.best.as_ref().map(|b| b.epoch),
        epoch_seconds: epoch_clock.seconds(),
        train_images_per_second: live.st.seen as f64 / live.st.train_seconds.max(1e-9),
        extra: Default::default(),
    };
    live.task.finish_epoch(&mut metrics);
    observer.on_epoch(&metrics, &live.model)?;
    live.st.history.push(metrics);
    live.st.next_epoch(clock.total());
    Ok(())
}

/// Keeps the model as the best checkpoint if it beats the best so far: by robust
/// validation accuracy when the method attacks, by clean accuracy otherwise.
fn consider_best<T: TrainTask>(
    live: &mut Live<'_, T>,
    validation: &Validation,
    epoch: usize,
) -> Result<()> {
    let candidate = match (&validation.check, live.task.is_adversarial()) {
        (Some(c), true) => Some((live.task.robust_criterion(c), c.pgd_accuracy)),
        _ => validation
            .clean
            .map(|v| ("validation clean accuracy".to_string(), v)),
    };
    let Some((criterion, value)) = candidate else {
        return Ok(());
    };
    let better = live.st.best.as_ref().is_none_or(|b| value > b.value);
    if !better {
        return Ok(());
    }
    live.best = Some(snapshot(&live.model, &live.optimizer)?);
    live.st.best = Some(BestRecord {
        epoch: epoch + 1,
        criterion,
        value,
        val_clean_accuracy: validation.clean,
        val_pgd_accuracy: validation.check.as_ref().map(|c| c.pgd_accuracy),
    });
    if let Some(dir) = live.checkpoint_dir {
        model::save_safetensors(&live.model, &dir.join(BEST_MODEL))?;
    }
    Ok(())
}
