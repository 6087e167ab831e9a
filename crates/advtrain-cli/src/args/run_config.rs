//! A run's own `config.toml` as `train --config`: the fully resolved settings written back
//! into the flags that produce them, so `train --config runs/X/config.toml --out Y` trains
//! what X trained (it used to fail on the unknown field `advtrain_version`).

use advtrain::data::Augment;
use advtrain::run::{RunConfig, RunModelKind};
use advtrain::train::{MethodConfig, MonitorConfig, OptimizerConfig, Schedule};
use anyhow::{bail, Context, Result};

use super::TrainFlags;

/// Whether a parsed `--config` file is a run's `config.toml` (every run records the
/// advtrain that wrote it; a settings file has no such key).
pub fn is_run_config(table: &toml::Table) -> bool {
    table.contains_key("advtrain_version")
}

/// The flags that resolve to `text`, a run's `config.toml`. `has_init`: whether `--init`
/// was given (an imported model's run needs its ONNX file again). Settings no flag can
/// express (a hand-edited schedule, say) are refused rather than silently changed.
pub fn flags_from_run_config(text: &str, has_init: bool) -> Result<TrainFlags> {
    let table: toml::Table = toml::from_str(text)?;
    if table.get("task").and_then(|t| t.as_str()) == Some("text") {
        bail!(
            "this is a text run's config.toml; --config reads an image run's or a settings \
             file: give the text run's settings as flags (or continue it with --resume)"
        );
    }
    let config: RunConfig = toml::from_str(text).context("not a readable run config.toml")?;
    if config.model == RunModelKind::Onnx && !has_init {
        bail!("this run started from an ONNX model: give --init FILE.onnx as well");
    }
    flags_from(&config)
}

/// `config` as flags; see [`flags_from_run_config`].
fn flags_from(config: &RunConfig) -> Result<TrainFlags> {
    let t = &config.train;
    let mut flags = TrainFlags {
        task: Some("image".into()),
        dataset: Some(config.dataset.clone()),
        data: Some(config.data_dir.clone()),
        model: config.model.zoo().map(|k| k.to_string()),
        method: Some(t.method.name().to_string()),
        eps: Some(t.eps),
        norm: Some(t.norm.to_string()),
        epochs: Some(t.epochs),
        batch_size: Some(t.batch_size),
        lr: Some(t.lr),
        schedule: Some(schedule_name(&t.schedule)?.to_string()),
        eps_warmup: Some(t.eps_warmup_epochs),
        augment: Some(augments(t.augment.clone(), config.shape.height)?),
        val_size: Some(config.val_size),
        val_steps: Some(t.val_pgd_steps),
        limit: config.limit,
        seed: Some(t.seed),
        final_steps: Some(config.final_steps),
        final_restarts: Some(config.final_restarts),
        ..TrainFlags::default()
    };
    set_optimizer(&mut flags, &t.optimizer)?;
    set_method(&mut flags, &t.method);
    set_monitor(&mut flags, &t.monitor);
    Ok(flags)
}

/// The `--schedule` name of a schedule the flags can make (their defaults).
fn schedule_name(schedule: &Schedule) -> Result<&'static str> {
    let expressible = [
        Schedule::Constant,
        Schedule::piecewise(),
        Schedule::one_cycle(),
    ];
    if !expressible.contains(schedule) {
        bail!("the run's schedule {schedule:?} has no --schedule flag");
    }
    Ok(schedule.name())
}

/// `--augment`: on for the standard recipe, off for none.
fn augments(augment: Augment, height: usize) -> Result<bool> {
    if augment == Augment::none() {
        Ok(false)
    } else if augment == Augment::standard(height) {
        Ok(true)
    } else {
        bail!("the run's augmentation {augment:?} has no --augment flag")
    }
}

fn set_optimizer(flags: &mut TrainFlags, optimizer: &OptimizerConfig) -> Result<()> {
    flags.optimizer = Some(optimizer.name().to_string());
    match *optimizer {
        OptimizerConfig::Sgd {
            momentum,
            weight_decay,
            nesterov,
        } => {
            if nesterov {
                bail!("the run used Nesterov momentum, which no flag selects");
            }
            flags.momentum = Some(momentum);
            flags.weight_decay = Some(weight_decay);
        }
        OptimizerConfig::Adam { weight_decay } => flags.weight_decay = Some(weight_decay),
    }
    Ok(())
}

fn set_method(flags: &mut TrainFlags, method: &MethodConfig) {
    match *method {
        MethodConfig::Standard => {}
        MethodConfig::PgdAt { steps, step_size } => {
            flags.attack_steps = Some(steps);
            flags.step_size = step_size;
        }
        MethodConfig::Mixed {
            lambda,
            steps,
            step_size,
        } => {
            flags.lambda = Some(lambda);
            flags.attack_steps = Some(steps);
            flags.step_size = step_size;
        }
        MethodConfig::FgsmRs {
            alpha_factor,
            random_start,
        } => {
            flags.alpha_factor = Some(alpha_factor);
            flags.no_random_start = Some(!random_start);
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
            flags.beta = Some(beta);
            flags.attack_steps = Some(steps);
            flags.step_size = step_size;
        }
        MethodConfig::Free { replays, step_size } => {
            flags.replays = Some(replays);
            flags.step_size = step_size;
        }
    }
}

fn set_monitor(flags: &mut TrainFlags, m: &MonitorConfig) {
    flags.monitor_every = m.every_batches;
    // The flag is in points, the record a fraction: the default is left to the default so
    // that 0.2 does not come back as 0.2 · 100 / 100 = 0.20000000000000004.
    if m.max_pgd_drop != MonitorConfig::default().max_pgd_drop {
        flags.alarm_pgd_drop = Some((m.max_pgd_drop * 100.0 * 1e9).round() / 1e9);
    }
    flags.alarm_alignment = Some(m.min_alignment);
    flags.alarm_alignment_ratio = Some(m.alignment_ratio);
    flags.on_collapse = Some(m.on_collapse.as_str().to_string());
    flags.rollback_step_factor = Some(m.rollback_step_factor);
    flags.monitor_examples = m.max_examples;
}
