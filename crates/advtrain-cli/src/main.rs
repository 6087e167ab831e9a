//! `advtrain`: attack, adversarially train and evaluate image classifiers from the shell.
//!
//! Argument parsing, progress bars and run directories live here; every algorithm lives in
//! the `advtrain` library.

mod cmd_attack;
mod cmd_bench;
mod cmd_eval;
mod cmd_report;
mod cmd_text;
mod cmd_train;
mod common;
mod progress;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "advtrain",
    version,
    about = "Adversarial attacks, adversarial training and robust evaluation for image classifiers",
    long_about = "Adversarial attacks, adversarial training and robust evaluation for image classifiers.\n\n\
        Quick start:\n  advtrain train --dataset fashion-mnist --model small-cnn --method fgsm-rs --eps 0.1 --epochs 5 --out runs/demo\n  \
        advtrain eval --run runs/demo --attack pgd --steps 20 --restarts 1 --eps-curve 0,0.05,0.1,0.15,0.2\n  \
        advtrain attack --run runs/demo --attack pgd --out adv/\n  \
        advtrain report runs/demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
// Each command takes negative numbers as values, so "--eps -0.1" reaches validation
// ("eps must be >= 0") instead of confusing the parser.
enum Command {
    /// Train a model (standard or adversarial) and write a run directory.
    #[command(allow_negative_numbers = true)]
    Train(Box<cmd_train::TrainArgs>),
    /// Measure clean and robust accuracy of a run's model on the test set.
    #[command(allow_negative_numbers = true)]
    Eval(Box<cmd_eval::EvalArgs>),
    /// Write adversarial examples and a PNG grid for a few test images.
    #[command(allow_negative_numbers = true)]
    Attack(Box<cmd_attack::AttackArgs>),
    /// Write one self-contained HTML report (charts, tables, checklist) for one or more runs.
    Report(Box<cmd_report::ReportArgs>),
    /// Measure throughput (images/s, GFLOP/s) of inference, PGD-10 and adversarial training steps.
    Bench(Box<cmd_bench::BenchArgs>),
}

/// mimalloc instead of the system allocator: the training and attack loops allocate and
/// free many megabyte-sized tensors, and glibc returns those to the kernel each time
/// (munmap, page faults, TLB shootdowns), which cost up to half the run time on a VM.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (its index in `mi_option_e`, mimalloc v3).
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// Keep freed memory for 10 s before returning it to the kernel (mimalloc's default is
/// 1 s, and its huge blocks went back sooner): every training step frees and re-allocates
/// the same multi-megabyte buffers, and re-faulting them cost about a sixth of a
/// `madry-cnn` step (9,700 page faults against 460 in `advtrain bench`). An explicit
/// `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called once at the start of main, before any other thread exists.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10_000) };
    }
}

fn main() {
    tune_allocator();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => cmd_train::run(*a),
        Command::Eval(a) => cmd_eval::run(*a),
        Command::Attack(a) => cmd_attack::run(*a),
        Command::Report(a) => cmd_report::run(*a),
        Command::Bench(a) => cmd_bench::run(*a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
