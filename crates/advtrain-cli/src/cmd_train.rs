//! `advtrain train`: train a model, write a run directory, evaluate it on the test set.

use std::path::{Path, PathBuf};

use advtrain::attack::Pgd;
use advtrain::data::{Augment, DatasetName, Split};
use advtrain::eval;
use advtrain::model::{self, ModelKind, ModelShape, Normalization, ZooModel};
use advtrain::progress::Progress;
use advtrain::run::{self, files, EvalRecord, RunConfig, Summary};
use advtrain::train::{
    self, EpochMetrics, EpochObserver, MethodConfig, OptimizerConfig, Schedule, TrainConfig,
};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;

use crate::common::{self, Common};
use crate::progress::Bars;

/// Training settings. Every one can also come from `--config FILE` (TOML, same names in
/// kebab-case); a flag given on the command line wins over the file.
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrainSettings {
    /// Data set: fashion-mnist, mnist or cifar10.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Directory holding the data set's files (default for fashion-mnist:
    /// /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model: small-cnn, madry-cnn, mlp, preact-resnet18.
    #[arg(long)]
    pub model: Option<String>,
    /// Method: standard, pgd-at, mixed, fgsm-rs, trades.
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
    /// Weight of the adversarial loss in `mixed` (default 1).
    #[arg(long)]
    pub lambda: Option<f32>,
    /// Weight of the KL term in `trades` (default 6).
    #[arg(long)]
    pub beta: Option<f32>,
    /// Held-out validation examples taken from the training set (default 1000).
    #[arg(long)]
    pub val_size: Option<usize>,
    /// PGD steps of the per-epoch validation attack (default 10).
    #[arg(long)]
    pub val_steps: Option<usize>,
    /// Use only the first N training and test examples.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Steps of the PGD run on the test set after training (default 20; 0 to skip).
    #[arg(long)]
    pub final_steps: Option<usize>,
    /// Restarts of that PGD (default 1).
    #[arg(long)]
    pub final_restarts: Option<usize>,
}

macro_rules! merge {
    ($flags:expr, $file:expr, $($field:ident),*) => {
        TrainSettings { $($field: $flags.$field.clone().or($file.$field.clone()),)* }
    };
}

impl TrainSettings {
    fn merged_with(&self, file: &TrainSettings) -> TrainSettings {
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
            lambda,
            beta,
            val_size,
            val_steps,
            limit,
            seed,
            final_steps,
            final_restarts
        )
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub settings: TrainSettings,
    /// TOML file with settings (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run directory to write (default: runs/<dataset>-<model>-<method>-eps<eps>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite an existing run directory.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub common: Common,
}

/// Turns settings into a fully resolved run configuration.
fn resolve(
    s: &TrainSettings,
    device: &str,
    threads: Option<usize>,
) -> Result<(RunConfig, usize, usize)> {
    let dataset: DatasetName = s.dataset.as_deref().unwrap_or("fashion-mnist").parse()?;
    let data_dir = common::data_dir(dataset, s.data.as_deref())?;
    let model: ModelKind = s.model.as_deref().unwrap_or("small-cnn").parse()?;
    let mut method = MethodConfig::default_for(s.method.as_deref().unwrap_or("fgsm-rs"))?;
    match &mut method {
        MethodConfig::Standard => {}
        MethodConfig::PgdAt { steps, step_size } => {
            *steps = s.attack_steps.unwrap_or(*steps);
            *step_size = s.step_size.or(*step_size);
        }
        MethodConfig::Mixed {
            lambda,
            steps,
            step_size,
        } => {
            *lambda = s.lambda.unwrap_or(*lambda);
            *steps = s.attack_steps.unwrap_or(*steps);
            *step_size = s.step_size.or(*step_size);
        }
        MethodConfig::FgsmRs { alpha_factor } => {
            *alpha_factor = s.alpha_factor.unwrap_or(*alpha_factor)
        }
        MethodConfig::Trades {
            beta,
            steps,
            step_size,
        } => {
            *beta = s.beta.unwrap_or(*beta);
            *steps = s.attack_steps.unwrap_or(*steps);
            *step_size = s.step_size.or(*step_size);
        }
    }
    let default_eps = if method.is_adversarial() { 0.1 } else { 0.0 };
    let eps = s.eps.unwrap_or(default_eps);
    let mut t = TrainConfig::new(method, eps);
    t.norm = s.norm.as_deref().unwrap_or("linf").parse()?;
    t.epochs = s.epochs.unwrap_or(t.epochs);
    t.batch_size = s.batch_size.unwrap_or(t.batch_size);
    match s.optimizer.as_deref().unwrap_or("sgd") {
        "sgd" => {
            t.optimizer = OptimizerConfig::Sgd {
                momentum: s.momentum.unwrap_or(0.9),
                weight_decay: s.weight_decay.unwrap_or(5e-4),
                nesterov: false,
            }
        }
        "adam" => {
            t.optimizer = OptimizerConfig::Adam {
                weight_decay: s.weight_decay.unwrap_or(0.0),
            };
            t.lr = 1e-3;
        }
        other => bail!("unknown optimizer '{other}': expected 'sgd' or 'adam'"),
    }
    t.lr = s.lr.unwrap_or(t.lr);
    if let Some(name) = s.schedule.as_deref() {
        t.schedule = match name {
            "constant" => Schedule::Constant,
            "piecewise" => Schedule::piecewise(),
            "one-cycle" => Schedule::one_cycle(),
            other => bail!("unknown schedule '{other}': expected constant, piecewise or one-cycle"),
        };
    }
    t.eps_warmup_epochs = s.eps_warmup.unwrap_or(0.0);
    let (c, h, w) = dataset.image_shape();
    if s.augment.unwrap_or(false) {
        t.augment = Augment::standard(h);
    }
    t.val_pgd_steps = s.val_steps.unwrap_or(10);
    t.seed = s.seed.unwrap_or(0);
    t.validate()?;
    let shape = ModelShape {
        channels: c,
        height: h,
        width: w,
        num_classes: dataset.num_classes(),
    };
    let normalization = (dataset == DatasetName::Cifar10).then(Normalization::cifar10);
    let config = RunConfig {
        advtrain_version: advtrain::VERSION.to_string(),
        dataset: dataset.as_str().to_string(),
        data_dir,
        limit: s.limit,
        val_size: s.val_size.unwrap_or(1000),
        model,
        shape,
        normalization,
        device: device.to_string(),
        threads,
        train: t,
    };
    Ok((
        config,
        s.final_steps.unwrap_or(20),
        s.final_restarts.unwrap_or(1).max(1),
    ))
}

/// Writes a metrics line and the latest model after each epoch, and prints the epoch.
struct RunWriter<'a> {
    dir: &'a Path,
    bars: &'a Bars,
}

impl EpochObserver<ZooModel> for RunWriter<'_> {
    fn on_epoch(&mut self, m: &EpochMetrics, model: &ZooModel) -> advtrain::Result<()> {
        run::append_jsonl(&self.dir.join(files::METRICS), m)?;
        model::save_safetensors(model, &self.dir.join(files::MODEL))?;
        let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v));
        self.bars.note(&format!(
            "epoch {:>3}  loss {:.4}  train acc {:.2}%  val clean {}  val robust {}  lr {:.4}  eps {:.3}  {:.0}s ({:.0} img/s)",
            m.epoch,
            m.train_loss,
            100.0 * m.train_accuracy,
            pct(m.val_clean_accuracy),
            pct(m.val_robust_accuracy),
            m.lr,
            m.eps,
            m.epoch_seconds,
            m.train_images_per_second
        ));
        Ok(())
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            toml::from_str::<TrainSettings>(&text)
                .with_context(|| format!("{}: invalid config", path.display()))?
        }
        None => TrainSettings::default(),
    };
    let settings = args.settings.merged_with(&file);
    let device = args.common.setup()?;
    let (config, final_steps, final_restarts) =
        resolve(&settings, &args.common.device, args.common.threads)?;
    let t = &config.train;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "{}-{}-{}-eps{}",
            config.dataset, config.model, t.method, t.eps
        ))
    });
    prepare_run_dir(&out, args.force)?;

    let bars = Bars::new(args.common.quiet);
    let dataset: DatasetName = config.dataset.parse()?;
    let full_train = common::load_split(dataset, &config.data_dir, Split::Train, config.limit)?;
    let test = common::load_split(dataset, &config.data_dir, Split::Test, config.limit)?;
    if config.val_size >= full_train.len() {
        bail!(
            "--val-size {} leaves no training data ({} examples; lower --val-size or raise --limit)",
            config.val_size,
            full_train.len()
        );
    }
    let (train_set, val_set) = full_train.split_validation(config.val_size, t.seed)?;
    run::write_toml(&out.join(files::CONFIG), &config)?;
    bars.note(&format!(
        "advtrain {}: {} on {} ({} train / {} val / {} test), {} {} eps={} for {} epochs -> {}",
        advtrain::VERSION,
        config.model,
        config.dataset,
        train_set.len(),
        val_set.len(),
        test.len(),
        t.method,
        t.norm,
        t.eps,
        t.epochs,
        out.display()
    ));

    device.seed(t.seed);
    let model = ZooModel::new(
        config.model,
        &config.shape,
        config.normalization.clone(),
        &device,
    )?;
    let mut writer = RunWriter {
        dir: &out,
        bars: &bars,
    };
    let trained = train::train(model, &train_set, &val_set, t, &device, &bars, &mut writer)?;
    model::save_safetensors(&trained.model, &out.join(files::MODEL))?;

    let batch = t.batch_size.max(256);
    let clean = eval::clean_accuracy(&trained.model, &test, batch, &bars);
    let mut summary = Summary {
        method: t.method.name().to_string(),
        model: config.model.to_string(),
        dataset: config.dataset.clone(),
        norm: t.norm,
        eps: t.eps,
        epochs: t.epochs,
        train_seconds: trained.seconds,
        clean_accuracy: clean.value,
        clean_ci95: clean.ci95,
        robust_accuracy: None,
        robust_ci95: None,
        robust_attack: None,
        n_test: test.len(),
    };
    println!("run directory:    {}", out.display());
    println!("training time:    {:.1} s", trained.seconds);
    println!(
        "clean accuracy:   {}  (test, n={})",
        clean.display(),
        test.len()
    );
    if final_steps > 0 && t.eps > 0.0 {
        let attack = Pgd::new(t.threat())
            .steps(final_steps)
            .restarts(final_restarts);
        let mut rng = advtrain::rng::derived(t.seed, 3);
        let result = eval::evaluate(&trained.model, &test, &attack, batch, &mut rng, &bars)?;
        let record = EvalRecord::from_eval(
            "pgd",
            &result,
            Some(final_steps),
            Some(final_restarts),
            t.seed,
            &dataset.class_names(),
        );
        run::write_json(&out.join(files::eval("pgd")), &record)?;
        summary.absorb(&record);
        println!(
            "robust accuracy:  {}  (PGD-{final_steps}, {} restart(s), {} eps={})",
            result.robust.display(),
            final_restarts,
            t.norm,
            t.eps
        );
    } else if t.eps == 0.0 {
        println!(
            "robust accuracy:  not measured (eps=0); run `advtrain eval --run {} --eps 0.1`",
            out.display()
        );
    }
    run::write_json(&out.join(files::SUMMARY), &summary)?;
    Ok(())
}

/// Creates the run directory; refuses to overwrite a finished run unless `--force`.
fn prepare_run_dir(out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        let has_run = out.join(files::CONFIG).exists() || out.join(files::MODEL).exists();
        if has_run && !force {
            bail!(
                "{} already holds a run; choose another --out or pass --force to overwrite it",
                out.display()
            );
        }
        if has_run {
            for f in [files::METRICS, files::SUMMARY] {
                let _ = std::fs::remove_file(out.join(f));
            }
            if let Ok(entries) = std::fs::read_dir(out) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with("eval-") {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create run directory", out.display()))
}
