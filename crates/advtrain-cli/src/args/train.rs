//! `advtrain train`'s flags: every training setting (also readable from `--config FILE`),
//! the run directory, `--resume`.

use std::path::PathBuf;

use advtrain::run::files;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;

use super::{run_config, Common, ModelInputFlags};

/// The training flags of `advtrain train`, as typed (all optional; the command resolves them
/// into a run's `RunConfig`). Every one can also come from `--config FILE` (TOML, same names
/// in kebab-case); a flag given on the command line wins over the file.
#[derive(Args, Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrainFlags {
    /// Data set: fashion-mnist, mnist, cifar10, npy (--data DIR with train.npz and
    /// test.npz, or x_train.npy, y_train.npy, x_test.npy, y_test.npy) or image-folder
    /// (--data DIR with train/ and test/, one sub-directory of images per class).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Directory holding the data set's files (default for fashion-mnist:
    /// /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model: small-cnn, madry-cnn, mlp, preact-resnet18 (or your own: see --init); for text
    /// data sets ngram-bag (default), char-cnn or transformer.
    #[arg(long)]
    pub model: Option<String>,
    /// Method: standard, pgd-at, mixed, fgsm-rs, trades, free, mart.
    #[arg(long)]
    pub method: Option<String>,
    /// Radius of the threat model (pixel scale, images in [0,1]).
    #[arg(long)]
    pub eps: Option<f32>,
    /// Norm of the threat model: linf or l2.
    #[arg(long)]
    pub norm: Option<String>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base learning rate (default 0.1 for fgsm-rs, 0.05 otherwise; 1e-3 with Adam).
    #[arg(long)]
    pub lr: Option<f64>,
    /// sgd or adam.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// SGD momentum (default 0.9).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// L2 weight decay (default 5e-4 for SGD, 0 for Adam).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// constant, piecewise (x0.1 at 50% and 75%) or one-cycle (default for fgsm-rs).
    #[arg(long)]
    pub schedule: Option<String>,
    /// Grow eps linearly from 0 over this many epochs.
    #[arg(long)]
    pub eps_warmup: Option<f64>,
    /// Random crop (with padding) and horizontal flip augmentation.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub augment: Option<bool>,
    /// Inner attack steps for pgd-at, mixed and trades (default 10).
    #[arg(long)]
    pub attack_steps: Option<usize>,
    /// Inner attack step size (default 2.5·eps/steps).
    #[arg(long)]
    pub step_size: Option<f32>,
    /// fgsm-rs step as a multiple of eps (default 1.25).
    #[arg(long)]
    pub alpha_factor: Option<f32>,
    /// fgsm-rs without its random start (plain FGSM training; prone to catastrophic
    /// overfitting).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub no_random_start: Option<bool>,
    /// Weight of the adversarial loss in `mixed` (default 1).
    #[arg(long)]
    pub lambda: Option<f32>,
    /// Weight of the KL term in `trades` and `mart` (default 6).
    #[arg(long)]
    pub beta: Option<f32>,
    /// Replays of each mini-batch in `free` (default 8; step size defaults to eps).
    #[arg(long)]
    pub replays: Option<usize>,
    /// Also run the health monitor every N batches inside an epoch (default: at epoch ends).
    #[arg(long)]
    pub monitor_every: Option<usize>,
    /// Alarm when validation PGD accuracy falls this many points below its best (default 20).
    #[arg(long)]
    pub alarm_pgd_drop: Option<f64>,
    /// Alarm when gradient alignment falls below this cosine (default 0.1)...
    #[arg(long)]
    pub alarm_alignment: Option<f64>,
    /// ...or below this fraction of its best value in the run (default 0: off).
    #[arg(long)]
    pub alarm_alignment_ratio: Option<f64>,
    /// On a collapse alarm: stop, rollback (restore the best checkpoint, shrink the attack
    /// step; default) or ignore.
    #[arg(long)]
    pub on_collapse: Option<String>,
    /// Factor the attack step is multiplied by at each rollback (default 0.75).
    #[arg(long)]
    pub rollback_step_factor: Option<f32>,
    /// Validation examples the monitor uses (default: the whole validation split).
    #[arg(long)]
    pub monitor_examples: Option<usize>,
    /// Checkpoint inside an epoch when this many minutes have passed (default 10; every
    /// epoch also ends with one).
    #[arg(long)]
    pub checkpoint_minutes: Option<f64>,
    /// Checkpoint inside an epoch every N batches.
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Held-out validation examples taken from the training set (default 1000).
    #[arg(long)]
    pub val_size: Option<usize>,
    /// PGD steps of the per-epoch validation attack (default 10).
    #[arg(long)]
    pub val_steps: Option<usize>,
    /// Use only the first N training and test examples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seeds the weights, shuffling, augmentation and attack starts (default 0; at most
    /// 9223372036854775807, the largest integer config.toml can hold).
    #[arg(long, value_parser = parse_seed)]
    pub seed: Option<u64>,
    /// Steps of the PGD run on the test set after training (default 20; 0 to skip).
    #[arg(long)]
    pub final_steps: Option<usize>,
    /// Restarts of that PGD (default 1).
    #[arg(long)]
    pub final_restarts: Option<usize>,
    /// image (default) or text; implied by the text data sets spam-assassin and
    /// prompt-injection. With text, --data may be a CSV/JSONL file of text,label rows.
    #[arg(long)]
    pub task: Option<String>,
    /// Text: attack used by --method adversarial: deepwordbug (default) or hotflip.
    #[arg(long)]
    pub attack: Option<String>,
    /// Text: edits per text allowed to the training and evaluation attacks (default 5).
    #[arg(long)]
    pub budget: Option<usize>,
    /// Text: share of the training set attacked afresh each adversarial epoch (default 0.5).
    #[arg(long)]
    pub adv_fraction: Option<f64>,
    /// Text: put input canonicalisation (NFKC, confusable mapping, invisible-character
    /// stripping) in front of the model, in training and at test time.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub canonicalize: Option<bool>,
    /// Text: attacks run on the test set after training, comma-separated (default
    /// deepwordbug; "none" to skip).
    #[arg(long)]
    pub eval_attacks: Option<String>,
    /// Text, two classes: the false-positive rate the end-of-training evasion evaluation
    /// sets the threshold at, on benign texts held out of the test (default 0.01).
    #[arg(long)]
    pub fpr: Option<f64>,
}

/// `--seed`: a `u64` that fits TOML's signed 64-bit integers, or the run's `config.toml`
/// could not be written (it failed after the data was loaded, as a TOML error).
fn parse_seed(s: &str) -> std::result::Result<u64, String> {
    let seed: u64 = s
        .parse()
        .map_err(|e| format!("'{s}' is not a seed (a whole number >= 0): {e}"))?;
    if seed > i64::MAX as u64 {
        return Err(format!("--seed must be at most {}", i64::MAX));
    }
    Ok(seed)
}

macro_rules! merge {
    ($flags:expr, $file:expr, $($field:ident),*) => {
        TrainFlags { $($field: $flags.$field.clone().or($file.$field.clone()),)* }
    };
}

impl TrainFlags {
    /// `checkpoint-minutes` (default 10; 0 turns time-based checkpoints off).
    pub fn checkpoint_minutes(&self) -> Option<f64> {
        self.checkpoint_minutes.or(Some(10.0)).filter(|m| *m > 0.0)
    }

    /// Refuses counts and intervals that cannot work, naming the flag, before anything is
    /// written (they used to be coerced silently: `--final-restarts 0` ran one restart,
    /// `--checkpoint-minutes NaN` turned checkpoints off).
    pub fn check_ranges(&self) -> Result<()> {
        let counts = [
            ("--batch-size", self.batch_size),
            ("--val-steps", self.val_steps),
            ("--final-restarts", self.final_restarts),
            ("--checkpoint-every", self.checkpoint_every),
            ("--epochs", self.epochs),
        ];
        for (flag, value) in counts {
            if value == Some(0) {
                bail!("{flag} must be at least 1, got 0");
            }
        }
        if let Some(m) = self.checkpoint_minutes {
            if !(m.is_finite() && m >= 0.0) {
                bail!("--checkpoint-minutes must be a number of minutes >= 0 (0: off), got {m}");
            }
        }
        Ok(())
    }

    fn merged_with(&self, file: &TrainFlags) -> TrainFlags {
        merge!(
            self,
            file,
            dataset,
            data,
            model,
            method,
            eps,
            norm,
            epochs,
            batch_size,
            lr,
            optimizer,
            momentum,
            weight_decay,
            schedule,
            eps_warmup,
            augment,
            attack_steps,
            step_size,
            alpha_factor,
            no_random_start,
            lambda,
            beta,
            replays,
            monitor_every,
            alarm_pgd_drop,
            alarm_alignment,
            alarm_alignment_ratio,
            on_collapse,
            rollback_step_factor,
            monitor_examples,
            checkpoint_minutes,
            checkpoint_every,
            val_size,
            val_steps,
            limit,
            seed,
            final_steps,
            final_restarts,
            task,
            attack,
            budget,
            adv_fraction,
            canonicalize,
            eval_attacks,
            fpr
        )
    }
}

/// `advtrain train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub settings: TrainFlags,
    /// TOML file with settings (flags win), or a run's own config.toml to train the same
    /// settings again.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue an interrupted run from its newest good checkpoint, with the run's own
    /// config.toml (give no other training settings).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "force"])]
    pub resume: Option<PathBuf>,
    /// Run directory to write (default: runs/<dataset>-<model>-<method>-eps<eps>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite an existing run directory.
    #[arg(long)]
    pub force: bool,
    /// Start from your own model, an ONNX file (instead of --model): every method fine-tunes
    /// its weights, batch norm in training mode; `advtrain export --run DIR --format onnx`
    /// hands the result back.
    #[arg(long, value_name = "FILE.onnx", conflicts_with_all = ["model", "resume"])]
    pub init: Option<PathBuf>,
    #[command(flatten)]
    pub input: ModelInputFlags,
    /// Train data-parallel on these devices instead of --device, e.g. cuda:0,cuda:1: each
    /// batch is split among them, every device attacks and computes the loss of its share,
    /// and the averaged gradients update the model (held on the first) once. Image models;
    /// not free AT. See docs/gpu.md.
    #[arg(long, value_name = "D1,D2,...", value_delimiter = ',')]
    pub devices: Vec<String>,
    #[command(flatten)]
    pub common: Common,
}

impl TrainArgs {
    /// The command line's settings over those of `--config FILE` (if any): a settings file,
    /// or a run's own `config.toml` (which trains what that run trained).
    pub fn load_settings(&self) -> Result<TrainFlags> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?;
                self.parse_config(&text)
                    .with_context(|| format!("{}: invalid config", path.display()))?
            }
            None => TrainFlags::default(),
        };
        Ok(self.settings.merged_with(&file))
    }

    /// A `--config` file's settings, whichever kind of file it is.
    fn parse_config(&self, text: &str) -> Result<TrainFlags> {
        match toml::from_str::<toml::Table>(text) {
            Ok(table) if run_config::is_run_config(&table) => {
                run_config::flags_from_run_config(text, self.init.is_some())
            }
            _ => Ok(toml::from_str::<TrainFlags>(text)?),
        }
    }

    /// An error if `--resume` comes with training settings: a resumed run continues with
    /// its own configuration, or it would not end where an uninterrupted one does.
    pub fn check_resume_alone(&self) -> Result<()> {
        if self.settings != TrainFlags::default() || self.config.is_some() || self.input.any() {
            bail!(
                "--resume continues with the run's own {}; give no other training settings",
                files::CONFIG
            );
        }
        Ok(())
    }
}
