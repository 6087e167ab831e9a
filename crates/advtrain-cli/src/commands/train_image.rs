//! `advtrain train` for image classifiers: settings → run directory → the shared training
//! loop → the end-of-training evaluation, all of it library calls; this file resolves the
//! settings' defaults and prints.

use std::path::{Path, PathBuf};

use advtrain::data::{self, Augment, DatasetName, Split};
use advtrain::model::{Classifier, ImageModel, ModelShape, Normalization};
use advtrain::progress::Progress;
use advtrain::run::{
    self, files, FinalEvaluation, LoadedOnnx, RunConfig, RunDir, RunModelKind, Task,
};
use advtrain::train::{
    self, CheckpointOptions, EpochMetrics, MethodConfig, OptimizerConfig, Schedule, TrainConfig,
};
use anyhow::{bail, Context, Result};
use burn::store::ModuleSnapshot;

use crate::args::{TrainArgs, TrainFlags};
use crate::common;
use crate::progress::Bars;

/// A new run from `settings` (already merged from the flags and `--config`).
pub fn run(args: &TrainArgs, settings: &TrainFlags) -> Result<()> {
    let devices = devices(args)?;
    let device = devices[0].clone();
    let init = match &args.init {
        Some(path) => Some(advtrain::run::read_onnx(
            path,
            &args.input.options()?,
            &device,
        )?),
        None => None,
    };
    let mut config = resolve(settings, args, init.as_ref())?;
    let t = &config.train;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "{}-{}-{}-eps{}",
            config.dataset, config.model, t.method, t.eps
        ))
    });
    let dir = RunDir::create(&out, Task::Image, args.force)?;
    let splits = config.load_splits()?;
    config.class_names = args.input.class_names(config.shape.num_classes)?;
    let model = match init {
        Some(loaded) => {
            advtrain::io::write_atomic(&dir.file(files::ONNX), &loaded.bytes)?;
            ImageModel::Onnx(loaded.model)
        }
        None => {
            device.seed(config.train.seed);
            dir.fresh_model(&config, &device)?
        }
    };
    dir.write_config(&config)?;
    let options = CheckpointOptions {
        checkpoint_dir: Some(dir.path()),
        checkpoint_minutes: settings.checkpoint_minutes(),
        checkpoint_batches: settings.checkpoint_every,
        resume: None,
    };
    let bars = Bars::new(args.common.quiet);
    train_and_evaluate(&dir, &config, model, splits, options, &devices, &bars)
}

/// `--resume DIR` on an image run: continue from the newest good checkpoint with the run's
/// own configuration.
pub fn resume(args: &TrainArgs, dir: RunDir) -> Result<()> {
    let devices = devices(args)?;
    let device = devices[0].clone();
    let bars = Bars::new(args.common.quiet);
    let config = dir.config()?;
    let (ckpt, path, warnings) = dir.latest_checkpoint()?;
    common::note_resume(
        &bars,
        dir.path(),
        (&ckpt, &path, &warnings),
        config.train.epochs,
    );
    // metrics.jsonl may hold epochs after the checkpoint: rewrite it from the checkpoint's
    // history so every line matches the weights we continue from.
    dir.rewrite_metrics(&ckpt.state.history)?;
    let splits = config.load_splits()?;
    let options = CheckpointOptions {
        checkpoint_dir: Some(dir.path()),
        checkpoint_minutes: TrainFlags::default().checkpoint_minutes(),
        checkpoint_batches: None,
        resume: Some(ckpt),
    };
    let model = dir.fresh_model(&config, &device)?;
    train_and_evaluate(&dir, &config, model, splits, options, &devices, &bars)
}

/// The devices to train on: `--device`, or the two or more of `--devices` (the model on the
/// first).
fn devices(args: &TrainArgs) -> Result<Vec<burn::prelude::Device>> {
    let device = args.common.setup()?;
    match args.devices.len() {
        0 => Ok(vec![device]),
        1 => bail!(
            "--devices {}: data-parallel training needs two or more devices (one is --device)",
            args.devices[0]
        ),
        _ => args
            .devices
            .iter()
            .map(|d| common::device(d.trim()))
            .collect(),
    }
}

/// Trains `model` (or continues), evaluates on the test set, writes the records and prints
/// them. Each kind of model trains as itself, so its weight files keep its own names.
fn train_and_evaluate(
    dir: &RunDir,
    config: &RunConfig,
    model: ImageModel,
    splits: run::ImageSplits,
    options: CheckpointOptions<'_>,
    devices: &[burn::prelude::Device],
    bars: &Bars,
) -> Result<()> {
    match model {
        ImageModel::Zoo(m) => train_model(dir, config, m, splits, options, devices, bars),
        ImageModel::Onnx(m) => train_model(dir, config, m, splits, options, devices, bars),
    }
}

/// [`train_and_evaluate`] for one kind of model.
fn train_model<M: Classifier + ModuleSnapshot + 'static>(
    dir: &RunDir,
    config: &RunConfig,
    model: M,
    splits: run::ImageSplits,
    options: CheckpointOptions<'_>,
    devices: &[burn::prelude::Device],
    bars: &Bars,
) -> Result<()> {
    let t = &config.train;
    let device = &devices[0];
    bars.note(&format!(
        "advtrain {}: {} on {} ({} train / {} val / {} test), {} {} eps={} for {} epochs -> {}",
        advtrain::VERSION,
        config.model_name(),
        config.dataset,
        splits.train.len(),
        splits.val.len(),
        splits.test.len(),
        t.method,
        t.norm,
        t.eps,
        t.epochs,
        dir.path().display()
    ));
    let mut recorder = dir.recorder(|m| bars.note(&epoch_line(m)));
    let (train_set, val_set) = (&splits.train, &splits.val);
    let trained = if devices.len() > 1 {
        train::train_data_parallel(
            model,
            train_set,
            val_set,
            t,
            options,
            devices,
            bars,
            &mut recorder,
        )
    } else {
        train::train_with(
            model,
            train_set,
            val_set,
            t,
            options,
            device,
            bars,
            &mut recorder,
        )
    }
    .map_err(|e| match e {
        advtrain::Error::Diverged(_) => anyhow::anyhow!("{e}\n{}", diverged_note(dir)),
        other => other.into(),
    })?;
    dir.save_model(&trained.model)?;
    let fin = run::final_evaluation(config, &trained, &splits.test, bars)?;
    dir.write_final(&fin)?;
    print_final(dir.path(), config, &trained, &fin);
    common::print_report(advtrain::report::refresh_run(dir.path(), device));
    Ok(())
}

/// What a diverged run leaves to look at, naming only the files that exist (a run that
/// diverges in its first epoch has no checkpoint yet).
fn diverged_note(dir: &RunDir) -> String {
    let kept: Vec<&str> = [
        files::METRICS,
        advtrain::train::checkpoint::CHECKPOINT,
        advtrain::train::checkpoint::PREVIOUS,
    ]
    .into_iter()
    .filter(|f| dir.file(f).exists())
    .collect();
    if kept.is_empty() {
        format!(
            "it diverged before its first epoch ended and before any checkpoint, so {} holds \
             no trained weights; try a lower --lr",
            dir.path().display()
        )
    } else {
        format!(
            "{} in {} keep the work done before it",
            kept.join(", "),
            dir.path().display()
        )
    }
}

/// One line per finished epoch.
fn epoch_line(m: &EpochMetrics) -> String {
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
    line
}

/// The end-of-training figures, as `scripts/demo.sh` and the README show them.
fn print_final<M>(
    out: &Path,
    config: &RunConfig,
    trained: &train::Trained<M>,
    fin: &FinalEvaluation,
) {
    let t = &config.train;
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
        fin.clean.display(),
        fin.summary.n_test
    );
    if let Some(result) = &fin.robust {
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
    let Some(best) = &fin.best else { return };
    if best.is_final {
        println!(
            "best checkpoint:  epoch {} (the last one)",
            best.record.epoch
        );
    } else if let Some(clean) = &best.clean {
        println!(
            "best checkpoint:  epoch {} ({}): clean {}{}  -> {}",
            best.record.epoch,
            best.record.why,
            clean.display(),
            best.robust.as_ref().map_or(String::new(), |r| format!(
                ", robust {}",
                r.robust.display()
            )),
            out.join(files::BEST_MODEL).display()
        );
    }
}

/// Where a data set lives: `--data` if given, else its default directory.
fn data_dir(name: DatasetName, data: Option<&Path>) -> Result<PathBuf> {
    match data {
        Some(d) => Ok(d.to_path_buf()),
        None => name.default_dir().with_context(|| {
            format!(
                "{name} has no default location: pass --data DIR ({})",
                name.missing_hint()
            )
        }),
    }
}

/// The model's input and classes: an imported model's own, a named data set's, or those of
/// the user's data (an image folder is resized to `--input-shape`).
fn resolve_shape(
    dataset: DatasetName,
    data_dir: &Path,
    args: &TrainArgs,
    init: Option<&LoadedOnnx>,
) -> Result<ModelShape> {
    if let Some(loaded) = init {
        return Ok(loaded.model.shape().clone());
    }
    if let (Some((c, h, w)), Some(k)) = (dataset.image_shape(), dataset.num_classes()) {
        return Ok(ModelShape {
            channels: c,
            height: h,
            width: w,
            num_classes: k,
        });
    }
    let size = match (dataset, args.input.options()?.image_shape) {
        (_, Some([c, h, w])) => Some((c, h, w)),
        (DatasetName::ImageFolder, None) => {
            bail!("--dataset image-folder with a zoo --model needs --input-shape C,H,W (the size its images are resized to)")
        }
        _ => None,
    };
    let data = data::load_sized(dataset, data_dir, Split::Train, size)?;
    Ok(ModelShape {
        channels: data.channels,
        height: data.height,
        width: data.width,
        num_classes: data.num_classes.max(2),
    })
}

/// Turns settings into a fully resolved run configuration.
fn resolve(s: &TrainFlags, args: &TrainArgs, init: Option<&LoadedOnnx>) -> Result<RunConfig> {
    let dataset: DatasetName = s.dataset.as_deref().unwrap_or("fashion-mnist").parse()?;
    let data_dir = data_dir(dataset, s.data.as_deref())?;
    let model: RunModelKind = match init {
        Some(_) => RunModelKind::Onnx,
        None => RunModelKind::Zoo(s.model.as_deref().unwrap_or("small-cnn").parse()?),
    };
    let shape = resolve_shape(dataset, &data_dir, args, init)?;
    let method = resolve_method(s)?;
    let t = resolve_train(s, method, shape.height)?;
    let normalization = match init {
        Some(_) => args.input.options()?.normalization,
        None => (dataset == DatasetName::Cifar10).then(Normalization::cifar10),
    };
    let config = RunConfig {
        task: Task::Image,
        advtrain_version: advtrain::VERSION.to_string(),
        dataset: dataset.as_str().to_string(),
        data_dir,
        limit: s.limit,
        val_size: s.val_size.unwrap_or(1000),
        model,
        onnx: init.map(|l| l.import.clone()),
        class_names: None,
        shape,
        normalization,
        device: args.common.device.clone(),
        threads: args.common.threads,
        train: t,
        final_steps: s.final_steps.unwrap_or(20),
        final_restarts: s.final_restarts.unwrap_or(1),
    };
    Ok(config)
}

/// The training method with the settings' overrides of its published defaults.
fn resolve_method(s: &TrainFlags) -> Result<MethodConfig> {
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
    Ok(method)
}

/// The training settings proper, for `method` on images `height` pixels high (the
/// augmentation's crop).
fn resolve_train(s: &TrainFlags, method: MethodConfig, height: usize) -> Result<TrainConfig> {
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
    if s.augment.unwrap_or(false) {
        t.augment = Augment::standard(height);
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
    Ok(t)
}
