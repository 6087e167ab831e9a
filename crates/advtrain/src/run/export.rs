//! Handing a run's model back: an imported model as its own ONNX graph with the trained
//! weights and batch-norm statistics, a zoo model as a PyTorch state dict.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::prelude::Device;

use super::{files, RunDir};
use crate::error::{Error, Result};
use crate::model::{self, ImageModel};

/// The file formats `advtrain export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// The imported ONNX graph with the run's weights (runs started from an ONNX file).
    Onnx,
    /// A safetensors state dict with PyTorch's names and layouts (zoo models).
    Pytorch,
}

impl FromStr for ExportFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "onnx" => Ok(ExportFormat::Onnx),
            "pytorch" | "torch" => Ok(ExportFormat::Pytorch),
            _ => Err(Error::config(format!(
                "export format '{s}': expected onnx or pytorch"
            ))),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Onnx => "onnx",
            ExportFormat::Pytorch => "pytorch",
        })
    }
}

/// Which of a run's weights to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportWeights {
    /// `model.safetensors`: the final model.
    Final,
    /// `model-best.safetensors`: the best checkpoint by validation.
    Best,
}

impl ExportWeights {
    /// The weights' file in the run directory.
    pub fn file(self) -> &'static str {
        match self {
            ExportWeights::Final => files::MODEL,
            ExportWeights::Best => files::BEST_MODEL,
        }
    }
}

/// Writes the run's model (its `weights`) to `dest` as `format`, atomically.
///
/// An imported model goes back as ONNX only (advtrain does not know its PyTorch module); a
/// zoo model as a PyTorch state dict only (it has no ONNX graph to fill in). An imported
/// model that was never trained exports its file unchanged.
pub fn export_run(
    dir: &RunDir,
    format: ExportFormat,
    weights: ExportWeights,
    dest: &Path,
    device: &Device,
) -> Result<()> {
    let config = dir.config()?;
    let model = dir.load_model_from(&config, weights.file(), device)?;
    match (model, format) {
        (ImageModel::Onnx(m), ExportFormat::Onnx) => m.write_onnx(&dir.file(files::ONNX), dest),
        (ImageModel::Zoo(m), ExportFormat::Pytorch) => model::save_pytorch_state_dict(&m, dest),
        (ImageModel::Onnx(_), ExportFormat::Pytorch) => Err(Error::config(format!(
            "{}: the run's model was imported from ONNX; it goes back as --format onnx",
            dir.path().display()
        ))),
        (ImageModel::Zoo(m), ExportFormat::Onnx) => Err(Error::config(format!(
            "{}: the run's {} is one of advtrain's own architectures, with no ONNX graph to \
             fill in; export it with --format pytorch (a state dict for the module in \
             scripts/torch_zoo.py)",
            dir.path().display(),
            m.kind()
        ))),
    }
}
