//! `advtrain`: attack, adversarially train and evaluate image classifiers from the shell.
//!
//! The binary parses (`args`), dispatches on the command and the run's task (here), runs
//! one command module per command and modality (`commands`), and prints; every algorithm
//! and all run logic live in the `advtrain` library.

mod args;
mod commands;
mod common;
mod progress;
mod terminal;

use advtrain::run::{RunDir, Task};
use anyhow::Result;
use clap::Parser;

use args::{Cli, Command, TrainArgs};
use commands::{
    attack_image, attack_text, audit, bench, eval_filter, eval_image, eval_text, export, report,
    train_image, train_text,
};

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
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Dispatches on the command, then on the modality: the run directory's task for commands
/// that read a run, the settings for a new one.
fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train(&a),
        Command::Eval(a) if a.model.is_some() => eval_image::run_import(&a),
        Command::Eval(a) if a.filter.has_target() => eval_filter::run(&a),
        Command::Eval(a) if a.audit => audit::run(&a),
        Command::Eval(a) => {
            a.check_run_flags()?;
            let dir = RunDir::open_for_writing(a.run_dir()?, "eval")?;
            match dir.task() {
                Task::Image => eval_image::run(&a, dir),
                Task::Text => eval_text::run(&a, dir),
            }
        }
        Command::Attack(a) => {
            // Locked too: an attack during training would attack intermediate weights.
            let dir = RunDir::open_for_writing(&a.run, "attack")?;
            match dir.task() {
                Task::Image => attack_image::run(&a, dir),
                Task::Text => attack_text::run(&a, dir),
            }
        }
        Command::Report(a) => report::run(&a),
        Command::Export(a) => export::run(&a),
        Command::Bench(a) => bench::run(&a),
    }
}

/// `advtrain train`: a resumed run continues as its directory's task says; a new one is
/// text when `--task text` or a text data set says so.
fn train(args: &TrainArgs) -> Result<()> {
    if let Some(path) = &args.resume {
        args.check_resume_alone()?;
        let dir = RunDir::open_for_writing(path, "train --resume")?;
        return match dir.task() {
            Task::Image => train_image::resume(args, dir),
            Task::Text => train_text::resume(args, dir),
        };
    }
    let settings = args.load_settings()?;
    settings.check_ranges()?;
    match Task::infer(settings.task.as_deref(), settings.dataset.as_deref())? {
        Task::Image => train_image::run(args, &settings),
        Task::Text => train_text::run(args, &settings),
    }
}
