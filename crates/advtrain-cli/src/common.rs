//! What the commands share that is the CLI's own business: the device and threads, and the
//! lines several commands print the same way. Not a command module: commands import it,
//! never each other.

use std::path::{Path, PathBuf};

use advtrain::data::Dataset;
use advtrain::progress::Progress;
use advtrain::run::{files, RunConfig, RunDir};
use advtrain::text::data::KNOWN_DATASETS;
use advtrain::text::eval::TextEvalRecord;
use advtrain::text::evasion::EvasionRecord;
use advtrain::train::Checkpoint;
use anyhow::{bail, Context, Result};
use burn::prelude::Device;

use crate::args::{Common, EvalArgs};
use crate::progress::Bars;

impl Common {
    /// Sets the thread count and returns the device.
    pub fn setup(&self) -> Result<Device> {
        if let Some(n) = self.threads {
            check_threads(n, available_cores())?;
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .context("could not set the thread count")?;
        }
        device(&self.device)
    }
}

/// Runs `work` on one of the thread pool's workers instead of the calling thread.
///
/// The kernels fork a parallel loop per layer from the thread that runs the attack.
/// Forked from the main thread, each loop is handed to the pool while the main thread
/// sleeps, and a worker wakes it when the loop is done: a context switch per layer,
/// several percent of an attack's samples in the scheduler on 2 cores. Forked from a
/// worker, the loop starts on its own half at once and the other worker steals the
/// rest. `advtrain bench --run runs/fgsm-rs --workloads square --limit 500`, 3
/// alternating pairs: wall ratio 0.90; `--workloads apgd-t`: 0.92.
///
/// Only for work that starts no OS threads of its own that wait on the pool (training
/// across devices does): with `--threads 1` the one worker would wait for itself.
pub fn on_pool_worker<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// How many times the available parallelism `--threads` may ask for: a few more threads
/// than cores can hide stalls, far more only adds contention (`--threads 1000` on a
/// 2-core machine ran so slowly it looked hung).
pub const MAX_THREADS_PER_CORE: usize = 4;

/// The cores the OS lets this process use (1 when it cannot say).
fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Refuses a thread count of 0, or one above [`MAX_THREADS_PER_CORE`] times `cores`, naming
/// both numbers.
pub fn check_threads(n: usize, cores: usize) -> Result<()> {
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    let max = MAX_THREADS_PER_CORE * cores;
    if n > max {
        bail!(
            "--threads {n} is more than {MAX_THREADS_PER_CORE}× the {cores} core(s) available \
             here (at most {max}); leave it out to use one thread per core"
        );
    }
    Ok(())
}

/// Refuses to write `path` when it is one of a run directory's own files (even with
/// `--force`: overwriting `model.safetensors` with a report would lose the trained model),
/// or when it exists and `force` is not given. `flag` names the option that chose it.
pub fn check_overwrite(path: &Path, force: bool, flag: &str) -> Result<()> {
    if is_run_file(path) {
        bail!(
            "{flag} {}: that is a run directory's own file; choose another path",
            path.display()
        );
    }
    if path.is_dir() {
        bail!(
            "{flag} {}: is a directory; give a file name",
            path.display()
        );
    }
    if path.exists() && !force {
        bail!(
            "{flag} {}: the file exists; pass --force to overwrite it",
            path.display()
        );
    }
    Ok(())
}

/// Whether `path` names one of the files `advtrain train` and `eval` keep in a run
/// directory (the directory holding it has a `config.toml`, or the name is the config
/// itself next to a summary).
pub fn is_run_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let in_run = dir.join(files::CONFIG).is_file() || dir.join(files::SUMMARY).is_file();
    in_run && is_run_file_name(name)
}

/// The names of a run's own records and weights.
fn is_run_file_name(name: &str) -> bool {
    const EXACT: [&str; 8] = [
        files::CONFIG,
        files::MODEL,
        files::BEST_MODEL,
        files::SUMMARY,
        files::METRICS,
        files::CHECKS,
        files::SURROGATE,
        files::ONNX,
    ];
    EXACT.contains(&name)
        || name.starts_with("checkpoint")
        || (name.starts_with("eval-") && name.ends_with(".json"))
        || (name.starts_with("partial-eval-") && name.ends_with(".json"))
        || (name.starts_with("checks-") && name.ends_with(".json"))
        || (name.starts_with("examples-") && name.ends_with(".jsonl"))
}

/// Parses `--device`.
pub fn device(name: &str) -> Result<Device> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        "cuda" => cuda_device(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => cuda_device(index),
            _ => bail!("unknown device '{other}': expected 'flex', 'cuda' or 'cuda:N'"),
        },
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<Device> {
    check_cuda(index)?;
    Ok(Device::cuda(index))
}

/// Whether CUDA device `index` can be used: the driver and NVRTC libraries load and the
/// driver counts enough devices. burn's CUDA runtime would otherwise panic in a worker
/// thread on the first operation, with nothing that says why.
#[cfg(feature = "cuda")]
fn check_cuda(index: usize) -> Result<()> {
    // SAFETY: both only try to open the shared library (libloading) and call nothing in it.
    let (driver, nvrtc) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
        )
    };
    if !driver {
        bail!("--device cuda: no NVIDIA driver here (libcuda.so does not load); use --device flex");
    }
    if !nvrtc {
        bail!(
            "--device cuda: NVRTC (libnvrtc.so) does not load; advtrain compiles its GPU kernels \
             with it: put the CUDA toolkit's lib64 (or PyTorch's nvidia/cuda_nvrtc/lib) on \
             LD_LIBRARY_PATH"
        );
    }
    let count = cudarc::driver::CudaContext::device_count()
        .map_err(|e| anyhow::anyhow!("--device cuda: the CUDA driver did not start: {e:?}"))?;
    if index >= count.max(0) as usize {
        bail!("--device cuda:{index}: this machine has {count} CUDA device(s)");
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize) -> Result<Device> {
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
            "clean accuracy:   {:.2}% on {} texts (the most probable class)",
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

/// One evasion record in one line: the detection rate at the operating point, clean or
/// under the attack, with what the attack cost.
pub fn print_evasion_record(r: &EvasionRecord) {
    let t = &r.threshold;
    println!(
        "detection at {:.1}% FPR: TPR {} of {} {} texts; test FPR {} of {} benign; ROC AUC {:.4}, PR AUC {:.4}; accuracy at the threshold {}",
        100.0 * t.target_fpr,
        r.tpr_clean.display(),
        r.malicious,
        r.positive_class,
        r.test_fpr.display(),
        r.benign,
        r.roc_clean.auc,
        r.pr_clean.auc,
        r.accuracy_clean.display(),
    );
    println!(
        "threshold:        {} ({} benign texts of {}, FPR {:.2}% there{})",
        t.threshold,
        t.val_benign,
        if t.chosen_on.is_empty() {
            "the validation split"
        } else {
            &t.chosen_on
        },
        100.0 * t.val_fpr,
        if t.hard_label {
            "; labels only, so the threshold is the filter's own"
        } else {
            ""
        }
    );
    print_evasion_attack(r);
}

/// The attack's line of an evasion record (nothing for a clean one).
pub fn print_evasion_attack(r: &EvasionRecord) {
    if r.attack != "none" {
        let cost = if r.attack_success_rate.value > 0.0 {
            format!(
                "{:.2} edits and {:.0} queries per success",
                r.mean_edits, r.mean_queries_per_success
            )
        } else {
            "no successes".to_string()
        };
        println!(
            "{} (budget {}): TPR {}, evaded {} of the detected, {cost} (ROC AUC {:.4}, PR AUC {:.4}), {:.1} s",
            r.attack,
            r.budget,
            r.tpr_attacked.display(),
            r.attack_success_rate.display(),
            r.roc_attacked.auc,
            r.pr_attacked.auc,
            r.seconds
        );
    }
}

/// Where `scripts/fetch_text_data.sh` puts the named text data sets.
pub const DEFAULT_TEXT_DIR: &str = "data/text";

/// The text data set's name and where it lives: a named data set (under `data`, default
/// `data/text`), or `file` for `--data FILE.csv|FILE.jsonl`.
pub fn text_data_source(dataset: Option<&str>, data: Option<PathBuf>) -> Result<(String, PathBuf)> {
    Ok(match (dataset, data) {
        (Some(name), dir) if KNOWN_DATASETS.contains(&name) => (
            name.to_string(),
            dir.unwrap_or_else(|| PathBuf::from(DEFAULT_TEXT_DIR)),
        ),
        (None | Some("file"), Some(file)) => ("file".to_string(), file),
        (Some(other), _) => bail!(
            "unknown text data set '{other}': expected {} (or --data FILE.csv|FILE.jsonl with --task text)",
            KNOWN_DATASETS.join(", ")
        ),
        (None, None) => bail!(
            "text needs --dataset ({}) or --data FILE (CSV or JSONL of text,label)",
            KNOWN_DATASETS.join(", ")
        ),
    })
}

/// Whether the test data read (all of it, whatever `--limit` took) is the run's own: its
/// fingerprint is the summary's, or, for a summary older than the fingerprint, `--data` is
/// absent or the run's own directory.
pub fn is_own_test_data(
    dir: &RunDir,
    config: &RunConfig,
    args: &EvalArgs,
    test: &Dataset,
) -> Result<bool> {
    if let Some(known) = dir.summary()?.and_then(|s| s.test_data_sha256) {
        let fingerprint = match args.limit {
            None => test.fingerprint(),
            Some(_) => config.test_set(args.data.as_deref(), None)?.fingerprint(),
        };
        return Ok(known == fingerprint);
    }
    Ok(match args.data.as_deref() {
        None => true,
        Some(d) => {
            let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
            canon(d) == canon(&config.data_dir)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_far_above_the_cores_are_refused_naming_both() {
        assert!(check_threads(8, 2).is_ok());
        let e = check_threads(1000, 2).unwrap_err().to_string();
        assert!(
            e.contains("1000") && e.contains("2 core") && e.contains("8"),
            "{e}"
        );
        assert!(check_threads(0, 2).is_err());
    }

    #[test]
    fn run_files_are_recognised_by_name() {
        for name in [
            "config.toml",
            "model.safetensors",
            "checkpoint.ckpt",
            "checkpoint.prev.ckpt",
            "eval-pgd.json",
            "summary.json",
            "metrics.jsonl",
        ] {
            assert!(is_run_file_name(name), "{name}");
        }
        for name in [
            "report.html",
            "grid.png",
            "adversarial.safetensors",
            "my.json",
        ] {
            assert!(!is_run_file_name(name), "{name}");
        }
    }
}
