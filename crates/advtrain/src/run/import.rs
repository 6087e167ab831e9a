//! A run directory for a user's ONNX model: `advtrain eval --model net.onnx` needs no
//! training run, so the import makes one (the file copied in, its hash recorded), and every
//! evaluation, the checklist and the report then work on it as on a trained run.

use std::path::{Path, PathBuf};

use burn::prelude::Device;

use super::{files, OnnxImport, RunConfig, RunDir, RunModelKind, Task};
use crate::data::DatasetName;
use crate::error::{Error, Result};
use crate::model::onnx::{OnnxModel, OnnxOptions};
use crate::threat::ThreatModel;
use crate::train::{MethodConfig, TrainConfig};

/// What an import needs: the file, how to feed it, the data it is evaluated on.
#[derive(Clone, Debug)]
pub struct ImportRequest {
    /// The ONNX file.
    pub onnx: PathBuf,
    /// Input range, normalisation and (for a flat input) the image shape.
    pub options: OnnxOptions,
    /// The data set it is evaluated on...
    pub dataset: DatasetName,
    /// ...and where its files are.
    pub data_dir: PathBuf,
    /// The threat model its headline robust accuracy is at.
    pub threat: ThreatModel,
    /// Class names over the data set's own (`--class-names`).
    pub class_names: Option<Vec<String>>,
    /// The device the run records.
    pub device: String,
}

pub use crate::io::sha256_hex;

/// An ONNX file read once: its bytes (to copy into a run), what a run records of it, and
/// the model.
pub struct LoadedOnnx {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Its record in `config.toml`.
    pub import: OnnxImport,
    /// The model, with the file's weights.
    pub model: OnnxModel,
}

/// Reads and loads an ONNX file fed as `options` say.
pub fn read_onnx(path: &Path, options: &OnnxOptions, device: &Device) -> Result<LoadedOnnx> {
    if !path.is_file() {
        return Err(Error::Onnx {
            path: path.to_path_buf(),
            message: "file not found".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let sha256 = sha256_hex(&bytes);
    let model = OnnxModel::from_bytes(&bytes, path, options, device)?;
    let import = OnnxImport {
        source: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        sha256,
        opset: model.opset(),
        input_range: options.input_range,
        image_shape: options.image_shape,
    };
    Ok(LoadedOnnx {
        bytes,
        import,
        model,
    })
}

/// Loads `request.onnx`, and makes (or reopens) the run directory `out` for it.
///
/// A directory that already holds an import of the same file (same hash) with the same
/// inputs is reopened, so later evaluations add to it; one that holds anything else is
/// refused unless `force`. The file is read once, before anything is removed, so `--force`
/// on the directory the file itself sits in loses nothing.
pub fn import_onnx(
    out: &Path,
    request: &ImportRequest,
    force: bool,
    device: &Device,
) -> Result<(RunDir, RunConfig, OnnxModel)> {
    let loaded = read_onnx(&request.onnx, &request.options, device)?;
    let config = import_config(request, &loaded);
    if let Some(dir) = reopen(out, &config, force)? {
        return Ok((dir, config, loaded.model));
    }
    let dir = RunDir::create(out, Task::Image, force)?;
    crate::io::write_atomic(&dir.file(files::ONNX), &loaded.bytes)?;
    dir.write_config(&config)?;
    Ok((dir, config, loaded.model))
}

/// The directory's run if it is this very import (same file, inputs and data).
fn reopen(out: &Path, config: &RunConfig, force: bool) -> Result<Option<RunDir>> {
    if force || !RunDir::holds_run(out) {
        return Ok(None);
    }
    let dir = RunDir::open_for_writing(out, "eval")?;
    let same = dir.task() == Task::Image
        && dir.config().is_ok_and(|c| {
            c.onnx == config.onnx
                && c.normalization == config.normalization
                && c.dataset == config.dataset
                && c.data_dir == config.data_dir
                && c.is_import_only()
        })
        && dir.file(files::ONNX).is_file();
    if same {
        return Ok(Some(dir));
    }
    Err(Error::Record {
        path: out.to_path_buf(),
        message: "already holds another run (a different model, data or settings); choose \
                  another --out or pass --force to overwrite it"
            .into(),
    })
}

/// The configuration of an import-only run: no training (`epochs = 0`), the threat model
/// the evaluation asked for as its headline.
fn import_config(request: &ImportRequest, loaded: &LoadedOnnx) -> RunConfig {
    let mut train = TrainConfig::new(MethodConfig::Standard, request.threat.eps);
    train.norm = request.threat.norm;
    train.epochs = 0;
    RunConfig {
        task: Task::Image,
        advtrain_version: crate::VERSION.to_string(),
        dataset: request.dataset.as_str().to_string(),
        data_dir: request.data_dir.clone(),
        limit: None,
        val_size: 0,
        model: RunModelKind::Onnx,
        onnx: Some(loaded.import.clone()),
        class_names: request.class_names.clone(),
        shape: loaded.model.shape().clone(),
        normalization: request.options.normalization.clone(),
        device: request.device.clone(),
        threads: None,
        train,
        final_steps: 0,
        final_restarts: 1,
    }
}
