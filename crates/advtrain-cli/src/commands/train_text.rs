//! `advtrain train` for text classifiers (spam, prompt-injection or any `text,label` file):
//! settings → text run directory → the shared training loop (checkpoints, `--resume`, the
//! best checkpoint) → the end-of-training evaluation, all of it library calls; this file
//! resolves the settings' defaults and prints.

use std::path::PathBuf;

use advtrain::progress::Progress;
use advtrain::run::{RunDir, Task};
use advtrain::text::canon::Canonicalizer;
use advtrain::text::model::{TextModelConfig, TextModelKind};
use advtrain::text::run::{load_text_data, TextRun, TextRunConfig, TextSplits};
use advtrain::text::train::{
    text_monitor, train_text_with, TextAttackConfig, TextMethod, TextTrainConfig,
};
use advtrain::train::{CheckpointOptions, Schedule};
use anyhow::{bail, Result};
use burn::prelude::Device;

use crate::args::{TrainArgs, TrainFlags, DEFAULT_TEXT_BUDGET};
use crate::common;
use crate::progress::Bars;

/// An f32 flag as the f64 it was typed as (0.1f32 widened would read 0.10000000149).
fn widen(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

/// A new text run from `settings` (already merged from the flags and `--config`).
pub fn run(args: &TrainArgs, s: &TrainFlags) -> Result<()> {
    if !args.devices.is_empty() {
        bail!("--devices (data-parallel training) is for image models; text models train on one --device");
    }
    let device = args.common.setup()?;
    let bars = Bars::new(args.common.quiet);
    let (dataset, data_path) = common::text_data_source(s.dataset.as_deref(), s.data.clone())?;
    let seed = s.seed.unwrap_or(0);
    let kind: TextModelKind = s.model.as_deref().unwrap_or("ngram-bag").parse()?;
    let budget = s.budget.unwrap_or(DEFAULT_TEXT_BUDGET);
    let method = resolve_method(s, budget)?;
    let (all_train, test) = load_text_data(&dataset, &data_path, seed, s.limit)?;
    let fpr = s.fpr.unwrap_or(advtrain::text::evasion::DEFAULT_FPR);
    if !(0.0..1.0).contains(&fpr) {
        bail!("--fpr must be in [0, 1), got {fpr}");
    }
    let train = TextTrainConfig {
        model: TextModelConfig::new(kind, all_train.num_classes()),
        method,
        canonicalizer: if s.canonicalize.unwrap_or(false) {
            Canonicalizer::all()
        } else {
            Canonicalizer::none()
        },
        epochs: s.epochs.unwrap_or(10),
        batch_size: s.batch_size.unwrap_or(32),
        lr: s.lr.unwrap_or(match kind {
            TextModelKind::NgramBag => 0.01,
            TextModelKind::CharCnn => 0.003,
            TextModelKind::Transformer => 0.001,
        }),
        seed,
        schedule: Schedule::Constant,
        monitor: text_monitor(),
        fpr,
    };
    train.validate()?;
    let eval_attacks = parse_attacks(s.eval_attacks.as_deref().unwrap_or("deepwordbug"), budget)?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "{dataset}-{kind}-{}{}",
            train.method.name(),
            if train.canonicalizer.is_identity() {
                ""
            } else {
                "-canon"
            }
        ))
    });
    let config = TextRunConfig {
        task: Task::Text,
        advtrain_version: advtrain::VERSION.to_string(),
        dataset,
        data: data_path,
        data_seed: seed,
        limit: s.limit,
        train,
        eval_attacks,
    };
    let run = TextRun::create(&out, args.force, &config)?;
    let splits = TextSplits::new(all_train, test, seed);
    let options = CheckpointOptions {
        checkpoint_dir: Some(run.path()),
        checkpoint_minutes: s.checkpoint_minutes(),
        checkpoint_batches: s.checkpoint_every,
        resume: None,
    };
    train_and_evaluate(&run, &config, &splits, options, &device, &bars)
}

/// `--resume DIR` on a text run: continue from the newest good checkpoint with the run's
/// own configuration, so the run ends as if it had never been interrupted.
pub fn resume(args: &TrainArgs, dir: RunDir) -> Result<()> {
    if !args.devices.is_empty() {
        bail!("--devices (data-parallel training) is for image models; text models train on one --device");
    }
    let device = args.common.setup()?;
    let bars = Bars::new(args.common.quiet);
    let (run, config) = TextRun::open(dir.path())?;
    let (ckpt, path, warnings) = run.dir().latest_checkpoint()?;
    common::note_resume(
        &bars,
        run.path(),
        (&ckpt, &path, &warnings),
        config.train.epochs,
    );
    // metrics.jsonl may hold epochs after the checkpoint: rewrite it from the checkpoint's
    // history so every line matches the weights we continue from.
    run.rewrite_epochs(&ckpt.state.history)?;
    let splits = config.splits()?;
    let options = CheckpointOptions {
        checkpoint_dir: Some(run.path()),
        checkpoint_minutes: TrainFlags::default().checkpoint_minutes(),
        checkpoint_batches: None,
        resume: Some(ckpt),
    };
    train_and_evaluate(&run, &config, &splits, options, &device, &bars)
}

/// Trains (or continues), evaluates on the test texts, writes the records and prints them.
fn train_and_evaluate(
    run: &TextRun,
    config: &TextRunConfig,
    splits: &TextSplits,
    options: CheckpointOptions<'_>,
    device: &Device,
    bars: &Bars,
) -> Result<()> {
    let t = &config.train;
    bars.note(&format!(
        "advtrain {}: {} on {} ({} train / {} val / {} test), {}{} for {} epochs -> {}",
        advtrain::VERSION,
        t.model.kind,
        config.dataset,
        splits.train.len(),
        splits.val.len(),
        splits.test.len(),
        t.method.name(),
        if t.canonicalizer.is_identity() {
            ""
        } else {
            " + canonicalisation"
        },
        t.epochs,
        run.path().display()
    ));
    let trained = train_text_with(
        t,
        &splits.train,
        Some(&splits.val),
        options,
        device,
        bars,
        &mut |rec, net| {
            run.append_epoch(rec)?;
            run.save_model(net)?;
            println!(
                "epoch {:>3}: loss {:.4}  train {:.2}%  val {}{}  ({:.1} s)",
                rec.epoch,
                rec.loss,
                100.0 * rec.train_accuracy,
                rec.val_accuracy
                    .map_or("-".into(), |v| format!("{:.2}%", 100.0 * v)),
                rec.attack_success_rate.map_or(String::new(), |r| format!(
                    "  attack success on train {:.1}%",
                    100.0 * r
                )),
                rec.seconds
            );
            Ok(())
        },
    )?;
    run.save_model(&trained.net)?;
    let fin = run.final_evaluation(config, &trained, splits, device, bars)?;
    println!("trained in {:.1} s", trained.train_seconds);
    common::print_text_record(&fin.clean);
    for record in &fin.attacked {
        common::print_text_record(record);
    }
    for (k, record) in fin.evasion.iter().enumerate() {
        if k == 0 {
            common::print_evasion_record(record);
        } else {
            common::print_evasion_attack(record);
        }
    }
    common::print_report(advtrain::report::refresh_run(run.path(), device));
    Ok(())
}

/// The training method with the settings' overrides of its defaults.
fn resolve_method(s: &TrainFlags, budget: usize) -> Result<TextMethod> {
    Ok(match s.method.as_deref().unwrap_or("standard") {
        "standard" => TextMethod::Standard,
        "adversarial" | "adv" => TextMethod::Adversarial {
            attack: TextAttackConfig::from_name(
                s.attack.as_deref().unwrap_or("deepwordbug"),
                budget,
            )?,
            lambda: s.lambda.map_or(1.0, widen),
            fraction: s.adv_fraction.unwrap_or(0.5),
            warmup_epochs: 1,
        },
        "embedding-at" => TextMethod::EmbeddingAt {
            eps: s.eps.map_or(0.5, widen),
            steps: s.attack_steps.unwrap_or(3),
            lambda: s.lambda.map_or(1.0, widen),
        },
        other => bail!(
            "unknown text training method '{other}': expected standard, adversarial or embedding-at"
        ),
    })
}

/// `--eval-attacks`: comma-separated names, `none` for no attack.
fn parse_attacks(list: &str, budget: usize) -> Result<Vec<TextAttackConfig>> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name == "none" {
            continue;
        }
        out.push(TextAttackConfig::from_name(name, budget)?);
    }
    Ok(out)
}
