//! What the commands share that is the CLI's own business: the device and threads, and the
//! lines several commands print the same way. Not a command module: commands import it,
//! never each other.

use std::path::{Path, PathBuf};

use advtrain::progress::Progress;
use advtrain::text::eval::TextEvalRecord;
use advtrain::train::Checkpoint;
use anyhow::{bail, Context, Result};
use burn::prelude::Device;

use crate::args::Common;
use crate::progress::Bars;

impl Common {
    /// Sets the thread count and returns the device.
    pub fn setup(&self) -> Result<Device> {
        if let Some(n) = self.threads {
            if n == 0 {
                bail!("--threads must be at least 1");
            }
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .context("could not set the thread count")?;
        }
        device(&self.device)
    }
}

/// Parses `--device`.
pub fn device(name: &str) -> Result<Device> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        "cuda" => cuda_device(),
        other => bail!("unknown device '{other}': expected 'flex' or 'cuda'"),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    bail!("this build of advtrain has no CUDA support; rebuild with: cargo build --release --features cuda")
}

/// Prints where the refreshed report is; a report that could not be written is a warning,
/// never a failed command (the records it reads are already safe on disk).
pub fn print_report(written: advtrain::Result<PathBuf>) {
    match written {
        Ok(path) => println!("report:           {}", path.display()),
        Err(e) => eprintln!("warning: could not write the report: {e}"),
    }
}

/// Notes what a resume continues from: the damaged checkpoints passed over, then the
/// position, or that training had already finished.
pub fn note_resume(
    bars: &Bars,
    dir: &Path,
    (ckpt, path, warnings): (&Checkpoint, &Path, &[String]),
    epochs: usize,
) {
    for w in warnings {
        bars.note(&format!("warning: {w}"));
    }
    if ckpt.state.epoch >= epochs || ckpt.state.stopped.is_some() {
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
            epochs
        ));
    }
}

/// One text evaluation in one line.
pub fn print_text_record(r: &TextEvalRecord) {
    if r.attack == "none" {
        println!(
            "clean accuracy:   {:.2}% on {} texts",
            100.0 * r.clean_accuracy,
            r.examples
        );
    } else {
        println!(
            "{} (budget {}): accuracy {:.2}% (clean {:.2}%), success rate {:.1}%, mean edits {:.2}, {:.0} queries/text, {:.1} s",
            r.attack,
            r.budget,
            100.0 * r.robust_accuracy,
            100.0 * r.clean_accuracy,
            100.0 * r.attack_success_rate,
            r.mean_edits,
            r.mean_queries,
            r.seconds
        );
    }
}
