//! `advtrain bench`: throughput of inference, PGD-10 and adversarial training steps on
//! random inputs (Fashion-MNIST-shaped unless `--input-shape`), with achieved GFLOP/s beside
//! the CPU's estimated peak; the wall time of whole attacks (AutoAttack, Square, APGD-T) on
//! a trained run's test points (`--run`); with `--check-against`, first whether the device
//! computes what the reference device does. The measuring lives in [`advtrain::bench`] and
//! [`advtrain::device_check`].

use advtrain::bench::{
    self, AttackBenchConfig, AttackMeasurement, AttackWorkload, BenchConfig, BenchReport,
    Measurement,
};
use advtrain::device_check::{self, Agreement};
use advtrain::model::{ModelKind, ModelShape};
use advtrain::run::RunDir;
use anyhow::{bail, Context, Result};
use burn::prelude::Device;

use crate::args::BenchArgs;
use crate::common;

/// Images per batch of the device check (small: it checks values, not speed).
const CHECK_BATCH: usize = 8;

/// Measures what `args` ask for and prints a table or JSON.
pub fn run(args: &BenchArgs) -> Result<()> {
    let device = args.common.setup()?;
    let (onnx, zoo): (Vec<&String>, Vec<&String>) = args
        .models
        .iter()
        .partition(|m| m.trim().ends_with(".onnx"));
    let models = zoo
        .iter()
        .map(|m| m.trim().parse::<ModelKind>())
        .collect::<advtrain::Result<Vec<_>>>()?;
    let onnx = onnx.iter().map(|m| m.trim().into()).collect();
    let (workloads, attack_workloads) = split_workloads(&args.workloads)?;
    let throughput = !workloads.is_empty();
    let shape = args.shape()?;
    if let Some(reference) = &args.check_against {
        check_device(&models, &shape, &common::device(reference)?, &device, args)?;
    }
    let config = BenchConfig {
        models,
        onnx,
        shape,
        workloads,
        batch: args.batch,
        reps: args.reps,
        warmup: args.warmup,
        seed: 0,
    };
    if throughput {
        config.validate()?;
        config.check_memory(bench::available_memory())?;
    }
    let threads = Some(
        args.common
            .threads
            .unwrap_or_else(rayon::current_num_threads),
    );
    let table = !args.json;
    let verbose = !args.common.quiet;
    if !table && verbose {
        eprintln!("advtrain bench: measuring (results as JSON at the end)...");
    } else if table && throughput {
        println!(
            "advtrain {} bench: batch {}, {} warm-up + {} timed reps (median [min..max]), random {} inputs, 10 classes",
            advtrain::VERSION,
            config.batch,
            config.warmup,
            config.reps,
            bench::image_size(&config.shape)
        );
        println!(
            "{:<10} {:<13} {:>28} {:>11} {:>9}",
            "model", "workload", "images/s median [min..max]", "s/batch", "GFLOP/s"
        );
    }
    let mut on_done = |m: &Measurement| {
        if table {
            println!("{}", row(m));
        } else if verbose {
            eprintln!("  {}", row(m));
        }
    };
    let mut report = if throughput {
        common::on_pool_worker(|| bench::run(&config, &device, threads, &mut on_done))?
    } else {
        BenchReport::new(&config, threads, Vec::new())
    };
    if table && throughput {
        print_footer(&report);
    }
    if !attack_workloads.is_empty() {
        report.attacks =
            common::on_pool_worker(|| bench_attacks(args, attack_workloads, &device, table))?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.out {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
        if verbose {
            eprintln!("wrote {}", path.display());
        }
    } else if args.json {
        println!("{json}");
    }
    Ok(())
}

/// The throughput workloads and the attack workloads named by `--workloads`.
fn split_workloads(names: &[String]) -> Result<(Vec<bench::Workload>, Vec<AttackWorkload>)> {
    let (mut throughput, mut attacks) = (Vec::new(), Vec::new());
    for name in names.iter().map(|n| n.trim()) {
        if let Ok(w) = name.parse::<AttackWorkload>() {
            attacks.push(w);
        } else {
            throughput.push(name.parse::<bench::Workload>().map_err(|_| {
                anyhow::anyhow!(
                    "unknown workload '{name}': expected forward, pgd10, fgsm-rs-step, \
                     pgd-at-step, autoattack, square or apgd-t"
                )
            })?);
        }
    }
    Ok((throughput, attacks))
}

/// Times the attack workloads on the model of `--run` over its first `--limit` test points,
/// printing a line per attack (to stderr with --json).
fn bench_attacks(
    args: &BenchArgs,
    workloads: Vec<AttackWorkload>,
    device: &Device,
    table: bool,
) -> Result<Vec<AttackMeasurement>> {
    let Some(run) = &args.run else {
        bail!(
            "the attack workloads ({}) attack a trained model on its test points: pass --run DIR (a run of `advtrain train` or `advtrain eval --model`)",
            workloads.iter().map(|w| w.as_str()).collect::<Vec<_>>().join(", ")
        );
    };
    let dir = RunDir::open(run)?;
    let config = dir.config()?;
    let model = dir.load_model(&config, device)?;
    let data = config.test_set(None, Some(args.limit))?;
    let attack_config = AttackBenchConfig {
        workloads,
        threat: config.attack_threat(None, None)?,
        batch_size: args.attack_batch,
        reps: args.attack_reps,
        seed: 0,
    };
    let say = |line: String| {
        if table {
            println!("{line}");
        } else if !args.common.quiet {
            eprintln!("{line}");
        }
    };
    say(format!(
        "attacks on {} ({}), first {} test points, {}, batch {}, {} timed run(s) each (median [min..max]):",
        run.display(),
        config.model,
        data.len(),
        attack_config.threat.describe(),
        attack_config.batch_size,
        attack_config.reps
    ));
    let name = run.display().to_string();
    let mut on_done = |m: &AttackMeasurement| say(attack_row(m));
    Ok(bench::bench_attacks(
        &name,
        &model,
        &data,
        &attack_config,
        &mut on_done,
    )?)
}

/// One attack's line: time, points/s, clean and robust accuracy, and each stage's share.
fn attack_row(m: &AttackMeasurement) -> String {
    let stages: Vec<String> = m
        .stages
        .iter()
        .map(|s| {
            let name = s.attack.split_whitespace().next().unwrap_or_default();
            format!(
                "{name} {:.1} s ({} of {} broken)",
                s.seconds, s.broken, s.attacked
            )
        })
        .collect();
    format!(
        "  {:<11} {:>8.1} s [{:.1}..{:.1}] {:>7.1} points/s  clean {:.2}%  robust {:.2}%  | {}",
        m.workload,
        m.seconds_median,
        m.seconds_min,
        m.seconds_max,
        m.points_per_s_median,
        100.0 * m.clean_accuracy,
        100.0 * m.robust_accuracy,
        stages.join(", ")
    )
}

/// Compares `device` with `reference` on every zoo model, prints one line per quantity and
/// fails when any disagrees: timing a backend that computes something else means nothing.
fn check_device(
    models: &[ModelKind],
    shape: &ModelShape,
    reference: &Device,
    device: &Device,
    args: &BenchArgs,
) -> Result<()> {
    let reference_name = args.check_against.as_deref().unwrap_or_default();
    let say = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "device check: {} against {reference_name}, same weights and {CHECK_BATCH} random {} images",
        args.common.device,
        bench::image_size(shape)
    ));
    let mut failed: Vec<Agreement> = Vec::new();
    for &kind in models {
        let checks = device_check::compare_devices(kind, shape, CHECK_BATCH, 0, reference, device)
            .with_context(|| format!("device check of {kind}"))?;
        for c in checks {
            say(format!(
                "  {:<16} {:<26} max |diff| {:.3e} (scale {:.3e}, tolerance {:.0e} relative): {}",
                c.model,
                c.quantity,
                c.max_abs_diff,
                c.reference_scale,
                c.tolerance,
                if c.agrees { "ok" } else { "DISAGREES" }
            ));
            if !c.agrees {
                failed.push(c);
            }
        }
    }
    if let Some(first) = failed.first() {
        bail!(
            "{} computes differently from {reference_name}: {} of the checks disagree (first: {} {}, max |diff| {:.3e}); its timings would not be of the same computation",
            args.common.device,
            failed.len(),
            first.model,
            first.quantity,
            first.max_abs_diff
        );
    }
    Ok(())
}

/// One table row; an ONNX model's FLOPs are not counted, so its GFLOP/s shows as "-".
fn row(m: &Measurement) -> String {
    let gflops = if m.gflops_median > 0.0 {
        format!("{:.2}", m.gflops_median)
    } else {
        "-".into()
    };
    format!(
        "{:<10} {:<13} {:>9.1} [{:>8.1}..{:>8.1}] {:>11.4} {:>9}",
        m.model,
        m.workload,
        m.images_per_s_median,
        m.images_per_s_min,
        m.images_per_s_max,
        m.seconds_per_batch_median,
        gflops
    )
}

fn print_footer(report: &BenchReport) {
    let p = &report.peak;
    println!();
    println!(
        "machine: {} ({} cores, {} threads used)",
        report.machine.cpu, report.machine.cores, report.machine.threads
    );
    match (p.gflops, p.mhz) {
        (Some(g), Some(mhz)) => println!(
            "peak estimate: {:.1} GFLOP/s = {} cores x {:.0} MHz x {} FLOPs/cycle ({})",
            g, p.cores, mhz, p.flops_per_cycle, p.assumption
        ),
        _ => println!(
            "peak estimate: unknown (no clock in /proc/cpuinfo; {})",
            p.assumption
        ),
    }
    if let Some(best) = report
        .results
        .iter()
        .map(|m| m.gflops_median)
        .fold(None, |a: Option<f64>, g| Some(a.map_or(g, |a| a.max(g))))
    {
        if let Some(peak) = p.gflops {
            println!(
                "best achieved: {:.2} GFLOP/s = {:.1}% of the estimated peak",
                best,
                100.0 * best / peak
            );
        }
    }
    println!("conventions: {}", bench::CONVENTIONS);
    println!("timing: every repetition reads a scalar back (and syncs after the SGD step), so lazy execution is included");
}
