//! What the commands share: devices, threads, data sets and run directories.

use std::path::{Path, PathBuf};

use advtrain::data::{self, Dataset, DatasetName, Split};
use advtrain::model::{self, ZooModel};
use advtrain::run::{files, RunConfig};
use anyhow::{bail, Context, Result};
use burn::prelude::Device;
use clap::Args;

/// Flags every command takes.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Compute device: flex (CPU, default) or cuda (needs a build with --features cuda).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// CPU threads for the flex backend (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Hide progress bars (results and warnings are still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

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

/// Where a data set lives: `--data` if given, else its default directory.
pub fn data_dir(name: DatasetName, data: Option<&Path>) -> Result<PathBuf> {
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

/// Loads a split, keeping only the first `limit` examples if asked.
pub fn load_split(
    name: DatasetName,
    dir: &Path,
    split: Split,
    limit: Option<usize>,
) -> Result<Dataset> {
    let data = data::load(name, dir, split)?;
    Ok(match limit {
        Some(n) => data.take(n),
        None => data,
    })
}

/// A trained run: its configuration and model.
pub struct LoadedRun {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub model: ZooModel,
    pub dataset: DatasetName,
}

/// Opens a run directory written by `advtrain train`.
pub fn load_run(dir: &Path, device: &Device) -> Result<LoadedRun> {
    if !dir.is_dir() {
        bail!("{}: no such run directory", dir.display());
    }
    let config: RunConfig = advtrain::io::read_toml(&dir.join(files::CONFIG))?;
    let dataset: DatasetName = config
        .dataset
        .parse()
        .with_context(|| format!("{}: bad dataset", dir.join(files::CONFIG).display()))?;
    let fresh = ZooModel::new(
        config.model,
        &config.shape,
        config.normalization.clone(),
        device,
    )?;
    let model = model::load_safetensors(fresh, &dir.join(files::MODEL))?;
    Ok(LoadedRun {
        dir: dir.to_path_buf(),
        config,
        model,
        dataset,
    })
}

/// The test split of a run's data set (honouring the run's `--limit` unless overridden).
pub fn run_test_set(run: &LoadedRun, data: Option<&Path>, limit: Option<usize>) -> Result<Dataset> {
    let dir = match data {
        Some(d) => d.to_path_buf(),
        None => run.config.data_dir.clone(),
    };
    load_split(run.dataset, &dir, Split::Test, limit.or(run.config.limit))
}

/// Parses a comma-separated list of radii.
pub fn parse_eps_list(s: &str) -> Result<Vec<f32>> {
    s.split(',')
        .map(|v| {
            let e: f32 = v
                .trim()
                .parse()
                .with_context(|| format!("bad eps '{v}' in --eps-curve"))?;
            if !e.is_finite() || e < 0.0 {
                bail!("eps {e} in --eps-curve must be finite and >= 0");
            }
            Ok(e)
        })
        .collect()
}
