//! The surrogate model of the checklist's transfer check
//! ([`run_checks_with_surrogate`](crate::eval::checks::run_checks_with_surrogate)): a
//! standard (non-robust) model of the run's architecture trained on the run's training
//! data, cached in the run directory, or another run's model.

use std::path::Path;

use burn::prelude::{Device, Tensor};

use super::{files, RunConfig, RunDir, Task};
use crate::error::{Error, Result};
use crate::model::{self, Classifier, ImageModel, ModelKind, ZooModel};
use crate::progress::Progress;
use crate::train::{self, MethodConfig, NoObserver, OptimizerConfig, Schedule, TrainConfig};

/// Epochs the standard surrogate trains for: enough for a model whose adversarial examples
/// transfer, cheap beside the checklist itself.
pub const SURROGATE_EPOCHS: usize = 2;

/// The surrogate's fixed seed (its weights do not depend on the run's seed, so two runs on
/// the same data and architecture share the same surrogate).
pub const SURROGATE_SEED: u64 = 0x5eed_7a05;

/// A surrogate model and where it came from.
pub struct Surrogate {
    /// The model.
    pub model: ImageModel,
    /// In words, e.g. "standard small-cnn trained for 2 epochs (cached in ...)".
    pub origin: String,
    /// Whether it was trained by this call (false: read from the cache or another run).
    pub trained: bool,
}

/// The training settings of the standard surrogate: plain cross-entropy, Adam at 1e-3 with
/// a constant rate, batches of 128, no augmentation, [`SURROGATE_EPOCHS`] epochs, seed
/// [`SURROGATE_SEED`].
pub fn surrogate_train_config() -> TrainConfig {
    let mut config = TrainConfig::new(MethodConfig::Standard, 0.0);
    config.epochs = SURROGATE_EPOCHS;
    config.batch_size = 128;
    config.lr = 1e-3;
    config.optimizer = OptimizerConfig::adam();
    config.schedule = Schedule::Constant;
    config.seed = SURROGATE_SEED;
    config
}

/// The run's standard surrogate: read from `surrogate-standard.safetensors` in the run
/// directory if it is there and fits the run's architecture, else trained on the run's
/// training split ([`surrogate_train_config`]; read from `data_dir` instead of the recorded
/// directory if given) and written there atomically, so the next `eval --checks` reuses it.
pub fn standard_surrogate(
    dir: &RunDir,
    config: &RunConfig,
    data_dir: Option<&Path>,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Surrogate> {
    dir.expect_task(Task::Image)?;
    let path = dir.file(files::SURROGATE);
    let kind = surrogate_kind(config);
    let fresh = || -> Result<ZooModel> {
        model::init_seeded(device, SURROGATE_SEED, || {
            let model = ZooModel::new(kind, &config.shape, config.normalization.clone(), device)?;
            // burn initialises parameters lazily: touch them all under the seed.
            let s = &config.shape;
            let _ = model.logits(Tensor::zeros([1, s.channels, s.height, s.width], device));
            Ok(model)
        })
    };
    if path.is_file() {
        // A cache that does not load (another architecture after a forced re-train, a
        // damaged file) is trained again rather than trusted.
        if let Ok(model) = model::load_safetensors(fresh()?, &path) {
            return Ok(Surrogate {
                model: ImageModel::Zoo(model),
                origin: format!("standard {kind} (cached in {})", path.display()),
                trained: false,
            });
        }
    }
    let splits = match data_dir {
        Some(d) => RunConfig {
            data_dir: d.to_path_buf(),
            ..config.clone()
        }
        .load_splits()?,
        None => config.load_splits()?,
    };
    let empty = splits.train.take(0);
    progress.note(&format!(
        "training a standard {kind} for {SURROGATE_EPOCHS} epochs as the transfer check's surrogate"
    ));
    let trained = train::train(
        fresh()?,
        &splits.train,
        &empty,
        &surrogate_train_config(),
        device,
        progress,
        &mut NoObserver,
    )?;
    model::save_safetensors(&trained.model, &path)?;
    Ok(Surrogate {
        model: ImageModel::Zoo(trained.model),
        origin: format!(
            "standard {kind} trained for {SURROGATE_EPOCHS} epochs (cached in {})",
            path.display()
        ),
        trained: true,
    })
}

/// The surrogate's architecture: the run's own, or `small-cnn` for an imported model (whose
/// architecture advtrain cannot initialise afresh).
fn surrogate_kind(config: &RunConfig) -> ModelKind {
    config.model.zoo().unwrap_or(ModelKind::SmallCnn)
}

/// Another image run's model as the surrogate (`--transfer-from`): refused, naming both
/// shapes, unless its input images and classes are those of `config`'s model.
pub fn surrogate_from_run(from: &Path, config: &RunConfig, device: &Device) -> Result<Surrogate> {
    let other = RunDir::open(from)?;
    other.expect_task(Task::Image)?;
    let theirs = other.config()?;
    let (a, b) = (&theirs.shape, &config.shape);
    if a != b {
        return Err(Error::Record {
            path: from.to_path_buf(),
            message: format!(
                "its {} takes {}×{}×{} images in {} classes, but the evaluated run's {} takes {}×{}×{} in {}: a transfer surrogate must see the same inputs and classes",
                theirs.model_name(), a.channels, a.height, a.width, a.num_classes,
                config.model_name(), b.channels, b.height, b.width, b.num_classes
            ),
        });
    }
    Ok(Surrogate {
        model: other.load_model(&theirs, device)?,
        origin: format!("{} of run {}", theirs.model_name(), from.display()),
        trained: false,
    })
}

/// The surrogate `advtrain eval --checks` uses: another run's model if `transfer_from` is
/// given, else the run's cached (or newly trained, from `data_dir` if given) standard
/// surrogate.
pub fn checks_surrogate(
    dir: &RunDir,
    config: &RunConfig,
    data_dir: Option<&Path>,
    transfer_from: Option<&Path>,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Surrogate> {
    match transfer_from {
        Some(from) => surrogate_from_run(from, config, device),
        None => standard_surrogate(dir, config, data_dir, device, progress),
    }
}
