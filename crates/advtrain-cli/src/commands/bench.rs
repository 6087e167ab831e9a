//! `advtrain bench`: throughput of inference, PGD-10 and adversarial training steps on
//! random Fashion-MNIST-shaped inputs, with achieved GFLOP/s beside the CPU's estimated peak.
//! The measuring lives in [`advtrain::bench`].

use advtrain::bench::{self, BenchConfig, BenchReport, Measurement};
use advtrain::model::ModelKind;
use anyhow::{Context, Result};

use crate::args::BenchArgs;

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
    let workloads = args
        .workloads
        .iter()
        .map(|w| w.trim().parse::<bench::Workload>())
        .collect::<advtrain::Result<Vec<_>>>()?;
    let config = BenchConfig {
        models,
        onnx,
        workloads,
        batch: args.batch,
        reps: args.reps,
        warmup: args.warmup,
        seed: 0,
    };
    config.validate()?;
    config.check_memory(bench::available_memory())?;
    let threads = Some(
        args.common
            .threads
            .unwrap_or_else(rayon::current_num_threads),
    );
    let table = !args.json;
    let verbose = !args.common.quiet;
    if table {
        println!(
            "advtrain {} bench: batch {}, {} warm-up + {} timed reps (median [min..max]), random 1x28x28 inputs, 10 classes",
            advtrain::VERSION,
            config.batch,
            config.warmup,
            config.reps
        );
        println!(
            "{:<10} {:<13} {:>28} {:>11} {:>9}",
            "model", "workload", "images/s median [min..max]", "s/batch", "GFLOP/s"
        );
    } else if verbose {
        eprintln!("advtrain bench: measuring (results as JSON at the end)...");
    }
    let mut on_done = |m: &Measurement| {
        if table {
            println!("{}", row(m));
        } else if verbose {
            eprintln!("  {}", row(m));
        }
    };
    let report = bench::run(&config, &device, threads, &mut on_done)?;
    if table {
        print_footer(&report);
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
