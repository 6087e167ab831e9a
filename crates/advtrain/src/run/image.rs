//! What an image run's configuration implies: its data splits and the threat model an
//! evaluation defaults to. Written once here so training, evaluation and attacks read the
//! same examples.

use std::path::Path;

use super::RunConfig;
use crate::data::{self, Dataset, DatasetName, Split};
use crate::error::{Error, Result};
use crate::threat::{Norm, ThreatModel};

/// The three splits a training run uses.
pub struct ImageSplits {
    /// The training examples (the training split less the validation ones).
    pub train: Dataset,
    /// The validation examples the monitor and the best checkpoint use.
    pub val: Dataset,
    /// The test split, for the end-of-training evaluation.
    pub test: Dataset,
}

/// Loads `split`, keeping only the first `limit` examples if asked.
/// Image folders are resized to `shape`.
fn load(
    name: DatasetName,
    dir: &Path,
    split: Split,
    limit: Option<usize>,
    shape: (usize, usize, usize),
) -> Result<Dataset> {
    let data = data::load_sized(name, dir, split, Some(shape))?;
    Ok(match limit {
        Some(n) => data.take(n),
        None => data,
    })
}

impl RunConfig {
    /// The data set, parsed from its recorded name.
    pub fn dataset_name(&self) -> Result<DatasetName> {
        self.dataset
            .parse()
            .map_err(|e: crate::data::UnknownDataset| Error::config(format!("config.toml: {e}")))
    }

    /// Training, validation and test examples as the run's settings say (`limit`,
    /// `val_size`, the seed of the validation split).
    pub fn load_splits(&self) -> Result<ImageSplits> {
        let name = self.dataset_name()?;
        let shape = self.image_dims();
        let full = load(name, &self.data_dir, Split::Train, self.limit, shape)?;
        let test = load(name, &self.data_dir, Split::Test, self.limit, shape)?;
        if self.val_size >= full.len() {
            return Err(Error::config(format!(
                "--val-size {} leaves no training data ({} examples; lower --val-size or raise --limit)",
                self.val_size,
                full.len()
            )));
        }
        self.check_shape(&full, "training")?;
        self.check_shape(&test, "test")?;
        let (train, val) = full.split_validation(self.val_size, self.train.seed)?;
        Ok(ImageSplits { train, val, test })
    }

    /// `(channels, height, width)` of the model's input.
    pub fn image_dims(&self) -> (usize, usize, usize) {
        (self.shape.channels, self.shape.height, self.shape.width)
    }

    /// Refuses data whose images or classes do not fit the run's model, naming both shapes
    /// (a linear layer would otherwise fail deep inside burn on the first batch).
    pub fn check_shape(&self, data: &Dataset, which: &str) -> Result<()> {
        let s = &self.shape;
        let fits = (data.channels, data.height, data.width) == (s.channels, s.height, s.width);
        if !fits || data.num_classes > s.num_classes {
            return Err(Error::config(format!(
                "{}: the {which} images are {}×{}×{} in {} classes, but the run's {} expects {}×{}×{} in {} classes",
                self.data_dir.display(),
                data.channels,
                data.height,
                data.width,
                data.num_classes,
                self.model_name(),
                s.channels,
                s.height,
                s.width,
                s.num_classes
            )));
        }
        Ok(())
    }

    /// The test split, read from `data` instead of the recorded directory if given, and
    /// cut to `limit` (default: the run's own limit).
    pub fn test_set(&self, data: Option<&Path>, limit: Option<usize>) -> Result<Dataset> {
        let dir = data.unwrap_or(&self.data_dir);
        let name = self.dataset_name()?;
        let test = load(
            name,
            dir,
            Split::Test,
            limit.or(self.limit),
            self.image_dims(),
        )?;
        self.check_shape(&test, "test")?;
        Ok(test)
    }

    /// The threat model an evaluation of this run uses: the training one, with `norm` and
    /// `eps` overriding it. A run trained without an attack has no radius to default to.
    pub fn attack_threat(&self, norm: Option<Norm>, eps: Option<f32>) -> Result<ThreatModel> {
        let threat = ThreatModel {
            norm: norm.unwrap_or(self.train.norm),
            eps: eps.unwrap_or(self.train.eps),
        };
        threat.validate()?;
        if threat.eps == 0.0 {
            return Err(Error::config(
                "the run was trained without an attack (eps=0): pass --eps to choose a radius",
            ));
        }
        Ok(threat)
    }
}
