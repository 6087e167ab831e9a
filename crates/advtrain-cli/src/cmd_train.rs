//! `advtrain train`: train a model, write a run directory, evaluate it on the test set.

use std::path::{Path, PathBuf};

use advtrain::attack::Pgd;
use advtrain::data::{Augment, DatasetName, Split};
use advtrain::eval;
use advtrain::model::{self, ModelKind, ModelShape, Normalization, ZooModel};
use advtrain::progress::Progress;
use advtrain::run::{files, BestCheckpoint, EvalRecord, RunConfig, Summary};
use advtrain::train::{
    self, checkpoint, EpochMetrics, EpochObserver, MethodConfig, OptimizerConfig, Schedule,
    TrainConfig, TrainOptions, BEST_MODEL,
};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;

use crate::common::{self, Common};
use crate::progress::Bars;

/// Training settings. Every one can also come from `--config FILE` (TOML, same names in
/// kebab-case); a flag given on the command line wins over the file.
#[derive(Args, Clone, Debug, Default, Deserialize, PartialEq)]
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
    #[arg(long)]
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
}

macro_rules! merge {
    ($flags:expr, $file:expr, $($field:ident),*) => {
        TrainSettings { $($field: $flags.$field.clone().or($file.$field.clone()),)* }
    };
}

/// The command line's settings over those of `--config FILE` (if any).
pub(crate) fn load_settings(args: &TrainArgs) -> Result<TrainSettings> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            toml::from_str::<TrainSettings>(&text)
                .with_context(|| format!("{}: invalid config", path.display()))?
        }
        None => TrainSettings::default(),
    };
    Ok(args.settings.merged_with(&file))
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
            eval_attacks
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
    #[command(flatten)]
    pub common: Common,
}

/// Turns settings into a fully resolved run configuration.
fn resolve(s: &TrainSettings, device: &str, threads: Option<usize>) -> Result<RunConfig> {
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
        MethodConfig::FgsmRs {
            alpha_factor,
            random_start,
        } => {
            *alpha_factor = s.alpha_factor.unwrap_or(*alpha_factor);
            *random_start = !s.no_random_start.unwrap_or(false);
        }
        MethodConfig::Trades {
            beta,
            steps,
            step_size,
        }
        | MethodConfig::Mart {
            beta,
            steps,
            step_size,
        } => {
            *beta = s.beta.unwrap_or(*beta);
            *steps = s.attack_steps.unwrap_or(*steps);
            *step_size = s.step_size.or(*step_size);
        }
        MethodConfig::Free { replays, step_size } => {
            *replays = s.replays.unwrap_or(*replays);
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
    t.monitor.every_batches = s.monitor_every;
    if let Some(points) = s.alarm_pgd_drop {
        t.monitor.max_pgd_drop = points / 100.0;
    }
    t.monitor.min_alignment = s.alarm_alignment.unwrap_or(t.monitor.min_alignment);
    t.monitor.alignment_ratio = s.alarm_alignment_ratio.unwrap_or(t.monitor.alignment_ratio);
    if let Some(p) = s.on_collapse.as_deref() {
        t.monitor.on_collapse = p.parse()?;
    }
    t.monitor.rollback_step_factor = s
        .rollback_step_factor
        .unwrap_or(t.monitor.rollback_step_factor);
    t.monitor.max_examples = s.monitor_examples;
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
        final_steps: s.final_steps.unwrap_or(20),
        final_restarts: s.final_restarts.unwrap_or(1).max(1),
    };
    Ok(config)
}

/// Writes a metrics line and the latest model after each epoch, and prints the epoch.
struct RunWriter<'a> {
    dir: &'a Path,
    bars: &'a Bars,
}

impl EpochObserver<ZooModel> for RunWriter<'_> {
    fn on_epoch(&mut self, m: &EpochMetrics, model: &ZooModel) -> advtrain::Result<()> {
        advtrain::io::append_jsonl(&self.dir.join(files::METRICS), m)?;
        model::save_safetensors(model, &self.dir.join(files::MODEL))?;
        let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v));
        let mut line = format!(
            "epoch {:>3}  loss {:.4}  train acc {:.2}%  val clean {}  val PGD {}",
            m.epoch,
            m.train_loss,
            100.0 * m.train_accuracy,
            pct(m.val_clean_accuracy),
            pct(m.val_robust_accuracy),
        );
        if let Some(f) = m.val_fgsm_accuracy {
            line.push_str(&format!("  FGSM {:.2}%", 100.0 * f));
        }
        if let Some(a) = m.val_grad_alignment {
            line.push_str(&format!("  align {a:.2}"));
        }
        line.push_str(&format!(
            "  lr {:.4}  eps {:.3}  {:.0}s ({:.0} img/s)",
            m.lr, m.eps, m.epoch_seconds, m.train_images_per_second
        ));
        if m.best_epoch == Some(m.epoch) {
            line.push_str("  *best");
        }
        self.bars.note(&line);
        Ok(())
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    if args.resume.is_none() {
        let settings = load_settings(&args)?;
        if crate::cmd_text::is_text_task(&settings)? {
            return crate::cmd_text::train(args, settings);
        }
    }
    let device = args.common.setup()?;
    let bars = Bars::new(args.common.quiet);
    let (config, out, resume) = match &args.resume {
        Some(dir) => {
            if args.settings != TrainSettings::default() || args.config.is_some() {
                bail!(
                    "--resume continues with the run's own {}; give no other training settings",
                    files::CONFIG
                );
            }
            let config: RunConfig = advtrain::io::read_toml(&dir.join(files::CONFIG))?;
            let (ckpt, path, warnings) = checkpoint::load_latest(dir)?;
            for w in warnings {
                bars.note(&format!("warning: {w}"));
            }
            if ckpt.state.epoch >= config.train.epochs || ckpt.state.stopped.is_some() {
                bars.note(&format!(
                    "{}: training had already finished; evaluating it again",
                    dir.display()
                ));
            } else {
                bars.note(&format!(
                    "resuming {} from {} (epoch {}, batch {} of {} epochs)",
                    dir.display(),
                    path.display(),
                    ckpt.state.epoch + 1,
                    ckpt.state.batch,
                    config.train.epochs
                ));
            }
            // metrics.jsonl may hold epochs after the checkpoint: rewrite it from the
            // checkpoint's history so every line matches the weights we continue from.
            let mut text = String::new();
            for m in &ckpt.state.history {
                text.push_str(&serde_json::to_string(m)?);
                text.push('\n');
            }
            advtrain::io::write_atomic(&dir.join(files::METRICS), text.as_bytes())?;
            (config, dir.clone(), Some(ckpt))
        }
        None => {
            let settings = load_settings(&args)?;
            let config = resolve(&settings, &args.common.device, args.common.threads)?;
            let t = &config.train;
            let out = args.out.clone().unwrap_or_else(|| {
                PathBuf::from("runs").join(format!(
                    "{}-{}-{}-eps{}",
                    config.dataset, config.model, t.method, t.eps
                ))
            });
            prepare_run_dir(&out, args.force)?;
            (config, out, None)
        }
    };
    let options_minutes = args
        .settings
        .checkpoint_minutes
        .or(Some(10.0))
        .filter(|m| *m > 0.0);
    let t = &config.train;

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
    if resume.is_none() {
        advtrain::io::write_toml(&out.join(files::CONFIG), &config)?;
    }
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
    let options = TrainOptions {
        checkpoint_dir: Some(&out),
        checkpoint_minutes: options_minutes,
        checkpoint_batches: args.settings.checkpoint_every,
        resume,
    };
    let trained = train::train_with(
        model,
        &train_set,
        &val_set,
        t,
        options,
        &device,
        &bars,
        &mut writer,
    )
    .map_err(|e| match e {
        advtrain::Error::Diverged(_) => anyhow::anyhow!(
            "{e}\nmetrics.jsonl and the checkpoints in {} keep the work done before it",
            out.display()
        ),
        other => other.into(),
    })?;
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
        best_checkpoint: None,
        stopped_early: trained.stopped.clone(),
        rollbacks: trained.rollbacks,
    };
    println!("run directory:    {}", out.display());
    println!("training time:    {:.1} s", trained.seconds);
    if let Some(reason) = &trained.stopped {
        println!("stopped early:    {reason} (the final model is the best checkpoint)");
    }
    if trained.rollbacks > 0 {
        println!(
            "rollbacks:        {} (see the events in metrics.jsonl)",
            trained.rollbacks
        );
    }
    println!(
        "clean accuracy:   {}  (test, n={})",
        clean.display(),
        test.len()
    );
    let final_pgd = |m: &ZooModel, bars: &Bars| -> Result<Option<eval::RobustEval>> {
        if config.final_steps == 0 || t.eps <= 0.0 {
            return Ok(None);
        }
        let attack = Pgd::new(t.threat())
            .steps(config.final_steps)
            .restarts(config.final_restarts);
        let mut rng = advtrain::rng::derived(t.seed, 3);
        Ok(Some(eval::evaluate(
            m, &test, &attack, batch, &mut rng, bars,
        )?))
    };
    if let Some(result) = final_pgd(&trained.model, &bars)? {
        let record = EvalRecord::from_eval(
            "pgd",
            &result,
            Some(config.final_steps),
            Some(config.final_restarts),
            t.seed,
            &dataset.class_names(),
        );
        advtrain::io::write_json(&out.join(files::eval("pgd")), &record)?;
        summary.absorb(&record);
        println!(
            "robust accuracy:  {}  (PGD-{}, {} restart(s), {} eps={})",
            result.robust.display(),
            config.final_steps,
            config.final_restarts,
            t.norm,
            t.eps
        );
    } else if t.eps == 0.0 {
        println!(
            "robust accuracy:  not measured (eps=0); run `advtrain eval --run {} --eps 0.1`",
            out.display()
        );
    }
    if let Some(best) = &trained.best {
        let last = trained.history.last();
        let last_value = last.and_then(|m| {
            if best.criterion.contains("PGD") {
                m.val_robust_accuracy
            } else {
                m.val_clean_accuracy
            }
        });
        let mut record = BestCheckpoint {
            epoch: best.epoch,
            file: BEST_MODEL.to_string(),
            why: format!(
                "highest {} ({:.2}%) over {} epochs",
                best.criterion,
                100.0 * best.value,
                trained.history.len()
            ),
            criterion: best.criterion.clone(),
            val_value: best.value,
            last_epoch_val_value: last_value,
            test_clean_accuracy: None,
            test_robust_accuracy: None,
            test_robust_ci95: None,
        };
        let same_as_final = last.is_some_and(|m| m.epoch == best.epoch)
            && trained.stopped.is_none()
            && trained.rollbacks == 0;
        if same_as_final {
            record.test_clean_accuracy = Some(clean.value);
            record.test_robust_accuracy = summary.robust_accuracy;
            record.test_robust_ci95 = summary.robust_ci95;
            println!("best checkpoint:  epoch {} (the last one)", best.epoch);
        } else if let Some(best_model) = &trained.best_model {
            let best_clean = eval::clean_accuracy(best_model, &test, batch, &bars);
            record.test_clean_accuracy = Some(best_clean.value);
            let robust = final_pgd(best_model, &bars)?;
            if let Some(r) = &robust {
                record.test_robust_accuracy = Some(r.robust.value);
                record.test_robust_ci95 = Some(r.robust.ci95);
            }
            println!(
                "best checkpoint:  epoch {} ({}): clean {}{}  -> {}",
                best.epoch,
                record.why,
                best_clean.display(),
                robust.as_ref().map_or(String::new(), |r| format!(
                    ", robust {}",
                    r.robust.display()
                )),
                out.join(BEST_MODEL).display()
            );
        }
        summary.best_checkpoint = Some(record);
    }
    advtrain::io::write_json(&out.join(files::SUMMARY), &summary)?;
    crate::cmd_report::refresh(&out, &device);
    Ok(())
}

/// Creates the run directory; refuses to overwrite a finished run unless `--force`.
pub(crate) fn prepare_run_dir(out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        let has_run = out.join(files::CONFIG).exists() || out.join(files::MODEL).exists();
        if has_run && !force {
            bail!(
                "{} already holds a run; choose another --out or pass --force to overwrite it",
                out.display()
            );
        }
        if has_run {
            for f in [
                files::METRICS,
                files::SUMMARY,
                checkpoint::CHECKPOINT,
                checkpoint::PREVIOUS,
                BEST_MODEL,
            ] {
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
