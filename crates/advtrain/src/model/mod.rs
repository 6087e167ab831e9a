//! Models: the [`Classifier`] contract and a small zoo.
//!
//! A classifier takes images with pixel values in `[0, 1]` and returns logits. Input
//! normalisation (mean/std) is part of the model, so attacks and threat models always
//! work in pixel space and ε means the same thing for every model.

mod madry_cnn;
mod mlp;
pub mod onnx;
mod preact_resnet;
mod pytorch;
mod small_cnn;
pub mod window;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::module::Module;
use burn::prelude::{Device, Tensor, TensorData};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

pub use madry_cnn::{MadryCnn, MadryCnnConfig};
pub use mlp::{Mlp, MlpConfig};
pub use preact_resnet::{PreActBlock, PreActResNet18, PreActResNet18Config};
pub use pytorch::{load_pytorch_state_dict, save_pytorch_state_dict};
pub use small_cnn::{SmallCnn, SmallCnnConfig};

use crate::error::{Error, Result};

/// A burn module that classifies images.
///
/// Implement this for your own module to use advtrain's attacks, training and evaluation:
///
/// ```
/// use advtrain::model::Classifier;
/// use burn::prelude::*;
///
/// #[derive(Module, Debug)]
/// struct MyNet {
///     fc: burn::nn::Linear,
/// }
///
/// impl Classifier for MyNet {
///     fn logits(&self, images: Tensor<4>) -> Tensor<2> {
///         self.fc.forward(images.flatten(1, 3))
///     }
/// }
///
/// let device = Device::flex();
/// let net = MyNet { fc: burn::nn::LinearConfig::new(784, 10).init(&device) };
/// assert_eq!(net.logits(Tensor::zeros([2, 1, 28, 28], &device)).dims(), [2, 10]);
/// ```
pub trait Classifier: Module {
    /// Logits `[batch, classes]` for images `[batch, channels, height, width]` in `[0, 1]`.
    fn logits(&self, images: Tensor<4>) -> Tensor<2>;

    /// A faster way to score images `[channels, height, width]` that each differ from a
    /// known one in one window (see [`window`]), where the model has one. Square uses it
    /// for its queries. `None` (the default): every query is a full forward pass.
    fn window_scorer(&self, image: [usize; 3]) -> Option<Box<dyn window::WindowScorer>> {
        let _ = image;
        None
    }
}

/// What a model's input and output look like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    /// Colour channels of an input image (1 grey, 3 RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Classes the model scores (its number of logits; at least 2).
    pub num_classes: usize,
}

impl ModelShape {
    /// 1×28×28 images, 10 classes (MNIST, Fashion-MNIST).
    pub fn fashion_mnist() -> Self {
        Self {
            channels: 1,
            height: 28,
            width: 28,
            num_classes: 10,
        }
    }

    /// 3×32×32 images, 10 classes (CIFAR-10).
    pub fn cifar10() -> Self {
        Self {
            channels: 3,
            height: 32,
            width: 32,
            num_classes: 10,
        }
    }

    /// Pixels per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Per-channel mean/std normalisation applied inside the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Per-channel mean subtracted from `[0, 1]` pixels, one value per channel.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by (positive), one value per channel.
    pub std: Vec<f32>,
}

impl Normalization {
    /// The usual CIFAR-10 statistics.
    pub fn cifar10() -> Self {
        Self {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2471, 0.2435, 0.2616],
        }
    }

    /// Applies `(x - mean) / std` per channel.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let c = self.mean.len();
        let device = x.device();
        let mean =
            Tensor::<4>::from_data(TensorData::new(self.mean.clone(), [1, c, 1, 1]), &device);
        let inv_std: Vec<f32> = self.std.iter().map(|s| 1.0 / s).collect();
        let inv_std = Tensor::<4>::from_data(TensorData::new(inv_std, [1, c, 1, 1]), &device);
        (x - mean) * inv_std
    }
}

/// Declares a zoo architecture's `XConfig { shape, normalization }` with `init(&device)`,
/// burn's convention (`LinearConfig::new(..).init(&device)`), defaults written once, on the
/// field.
macro_rules! zoo_config {
    ($config:ident, $model:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(burn::config::Config, Debug)]
        pub struct $config {
            /// Input images and number of classes.
            pub shape: ModelShape,
            /// Per-channel normalisation applied inside the model (`None`: the model sees
            /// the `[0, 1]` pixels as they are).
            #[config(default = "None")]
            pub normalization: Option<Normalization>,
        }

        impl $config {
            /// A freshly initialised network; seed the device first (or build it inside
            /// [`init_seeded`](crate::model::init_seeded)) for reproducible weights.
            pub fn init(&self, device: &Device) -> $model {
                $model::build(&self.shape, device).with_normalization(self.normalization.clone())
            }
        }
    };
}
pub(crate) use zoo_config;

/// Applies an optional normalisation (the zoo models' first step).
pub(crate) fn normalize(norm: &Option<Normalization>, x: Tensor<4>) -> Tensor<4> {
    match norm {
        Some(n) => n.apply(x),
        None => x,
    }
}

/// The architectures in the zoo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Conv16 4×4/2 → Conv32 4×4/2 → FC100 → FC(classes) (Wong et al. 2020, MNIST).
    SmallCnn,
    /// Conv32 5×5 → pool → Conv64 5×5 → pool → FC1024 → FC(classes) (Madry et al. 2018).
    MadryCnn,
    /// Two hidden layers of 256 units.
    Mlp,
    /// Pre-activation ResNet-18 (He et al. 2016) for 32×32 colour images; meant for GPUs.
    PreactResnet18,
}

impl ModelKind {
    /// Every kind, for help texts.
    pub const ALL: [ModelKind; 4] = [
        ModelKind::SmallCnn,
        ModelKind::MadryCnn,
        ModelKind::Mlp,
        ModelKind::PreactResnet18,
    ];

    /// The name used on the command line and in records.
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelKind::SmallCnn => "small-cnn",
            ModelKind::MadryCnn => "madry-cnn",
            ModelKind::Mlp => "mlp",
            ModelKind::PreactResnet18 => "preact-resnet18",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ModelKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ModelKind::ALL.iter().map(|k| k.as_str()).collect();
                Error::config(format!(
                    "unknown model '{s}': expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// Any model of the zoo, chosen at run time (what the CLI trains and loads).
#[derive(Module, Debug)]
pub enum ZooModel {
    /// [`ModelKind::SmallCnn`].
    SmallCnn(SmallCnn),
    /// [`ModelKind::MadryCnn`].
    MadryCnn(MadryCnn),
    /// [`ModelKind::Mlp`].
    Mlp(Mlp),
    /// [`ModelKind::PreactResnet18`].
    PreactResnet18(PreActResNet18),
}

/// How to build a [`ZooModel`]: which architecture, for which input/output shape, with which
/// normalisation (what a run's `config.toml` records).
#[derive(burn::config::Config, Debug)]
pub struct ZooModelConfig {
    /// The architecture.
    pub kind: ModelKind,
    /// Input images and number of classes.
    pub shape: ModelShape,
    /// Per-channel normalisation applied inside the model (`None`: the model sees the
    /// `[0, 1]` pixels as they are).
    #[config(default = "None")]
    pub normalization: Option<Normalization>,
}

impl ZooModelConfig {
    /// A freshly initialised model, after checking the shape and normalisation make sense.
    /// Seed the device first (or build it inside [`init_seeded`]) for reproducible weights.
    pub fn init(&self, device: &Device) -> Result<ZooModel> {
        let (shape, normalization) = (&self.shape, &self.normalization);
        if shape.channels == 0 || shape.height == 0 || shape.width == 0 || shape.num_classes < 2 {
            return Err(Error::config(format!(
                "invalid model shape {shape:?}: need a non-empty image and at least 2 classes"
            )));
        }
        if let Some(n) = normalization {
            if n.mean.len() != shape.channels || n.std.len() != shape.channels {
                return Err(Error::config(format!(
                    "normalisation has {} means and {} stds for {} channels",
                    n.mean.len(),
                    n.std.len(),
                    shape.channels
                )));
            }
            if n.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(Error::config("normalisation std must be positive"));
            }
        }
        let (shape, normalization) = (shape.clone(), normalization.clone());
        Ok(match self.kind {
            ModelKind::SmallCnn => ZooModel::SmallCnn(
                SmallCnnConfig::new(shape)
                    .with_normalization(normalization)
                    .init(device),
            ),
            ModelKind::MadryCnn => ZooModel::MadryCnn(
                MadryCnnConfig::new(shape)
                    .with_normalization(normalization)
                    .init(device),
            ),
            ModelKind::Mlp => ZooModel::Mlp(
                MlpConfig::new(shape)
                    .with_normalization(normalization)
                    .init(device),
            ),
            ModelKind::PreactResnet18 => ZooModel::PreactResnet18(
                PreActResNet18Config::new(shape)
                    .with_normalization(normalization)
                    .init(device),
            ),
        })
    }
}

impl ZooModel {
    /// A freshly initialised model of `kind`: shorthand for
    /// `ZooModelConfig::new(kind, shape.clone()).with_normalization(normalization).init(device)`.
    pub fn new(
        kind: ModelKind,
        shape: &ModelShape,
        normalization: Option<Normalization>,
        device: &Device,
    ) -> Result<Self> {
        ZooModelConfig::new(kind, shape.clone())
            .with_normalization(normalization)
            .init(device)
    }

    /// Which architecture this is.
    pub fn kind(&self) -> ModelKind {
        match self {
            ZooModel::SmallCnn(_) => ModelKind::SmallCnn,
            ZooModel::MadryCnn(_) => ModelKind::MadryCnn,
            ZooModel::Mlp(_) => ModelKind::Mlp,
            ZooModel::PreactResnet18(_) => ModelKind::PreactResnet18,
        }
    }
}

impl Classifier for ZooModel {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            ZooModel::SmallCnn(m) => m.logits(images),
            ZooModel::MadryCnn(m) => m.logits(images),
            ZooModel::Mlp(m) => m.logits(images),
            ZooModel::PreactResnet18(m) => m.logits(images),
        }
    }

    fn window_scorer(&self, image: [usize; 3]) -> Option<Box<dyn window::WindowScorer>> {
        match self {
            ZooModel::SmallCnn(m) => m.window_scorer(image),
            ZooModel::MadryCnn(m) => m.window_scorer(image),
            ZooModel::Mlp(m) => m.window_scorer(image),
            ZooModel::PreactResnet18(m) => m.window_scorer(image),
        }
    }
}

/// A zoo network or an imported ONNX one: the model an image run trains and evaluates,
/// chosen by its `config.toml`.
// One model per run, moved rarely: the zoo variant's inline layers cost nothing worth a
// box (and burn's Module derive takes the modules as they are).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ImageModel {
    /// One of advtrain's own architectures.
    Zoo(ZooModel),
    /// A user's model, imported from an ONNX file.
    Onnx(onnx::OnnxModel),
}

impl Classifier for ImageModel {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            ImageModel::Zoo(m) => m.logits(images),
            ImageModel::Onnx(m) => m.logits(images),
        }
    }

    fn window_scorer(&self, image: [usize; 3]) -> Option<Box<dyn window::WindowScorer>> {
        match self {
            ImageModel::Zoo(m) => m.window_scorer(image),
            ImageModel::Onnx(m) => m.window_scorer(image),
        }
    }
}

/// Builds a model with weights fixed by `seed`: `build` must create it and touch every
/// parameter (burn initialises them lazily, on first use).
///
/// burn's device seed is process-wide, so seeding and initialising must not interleave with
/// another thread doing the same: every seeded construction in advtrain (the text models,
/// the tests' models) goes through this one lock.
pub fn init_seeded<T>(device: &Device, seed: u64, build: impl FnOnce() -> T) -> T {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    build()
}

/// Saves a module's parameters as SafeTensors, atomically (temporary file, then rename), so
/// a crash never leaves a half-written model where a good one was.
pub fn save_safetensors<M: Module + ModuleSnapshot>(model: &M, path: &Path) -> Result<()> {
    let bytes = safetensors_bytes(model).map_err(|message| Error::ModelFile {
        path: path.to_path_buf(),
        message,
    })?;
    crate::io::write_atomic(path, &bytes)
}

/// A module's parameters as SafeTensors bytes (for checkpoints and in-memory snapshots).
pub fn safetensors_bytes<M: Module + ModuleSnapshot>(
    model: &M,
) -> std::result::Result<Vec<u8>, String> {
    let mut store = SafetensorsStore::from_bytes(None);
    model.save_into(&mut store).map_err(|e| e.to_string())?;
    store.get_bytes().map_err(|e| e.to_string())
}

/// Loads parameters from SafeTensors bytes made by [`safetensors_bytes`] into `model`.
/// Every tensor must be present with the right shape.
pub fn load_safetensors_bytes<M: Module + ModuleSnapshot>(
    mut model: M,
    bytes: Vec<u8>,
) -> std::result::Result<M, String> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .validate(true)
        .allow_partial(false);
    let result = model.load_from(&mut store).map_err(|e| e.to_string())?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(format!(
            "does not match the model: missing {:?}, errors {:?}",
            result.missing, result.errors
        ));
    }
    Ok(model)
}

/// Loads parameters saved by [`save_safetensors`] into `model` (which fixes the architecture).
/// Every tensor must be present with the right shape; when they are not, the error says
/// what the file holds (another zoo architecture's weights, or the same one's for other
/// images or classes) instead of burn's store diagnostics.
pub fn load_safetensors<M: Module + ModuleSnapshot>(mut model: M, path: &Path) -> Result<M> {
    if !path.exists() {
        return Err(Error::ModelFile {
            path: path.to_path_buf(),
            message: "file not found".into(),
        });
    }
    let mut store = SafetensorsStore::from_file(path.to_path_buf())
        .validate(true)
        .allow_partial(false);
    let loaded = match model.load_from(&mut store) {
        Ok(r) if r.errors.is_empty() && r.missing.is_empty() => return Ok(model),
        Ok(r) => format!("missing {:?}, errors {:?}", r.missing, r.errors),
        Err(e) => e.to_string(),
    };
    Err(Error::ModelFile {
        path: path.to_path_buf(),
        message: mismatch_message(&tensor_shapes(&model), path, &loaded),
    })
}

/// Tensor names and shapes, sorted by name.
type Shapes = Vec<(String, Vec<usize>)>;

/// A module's tensors as [`Shapes`].
fn tensor_shapes<M: ModuleSnapshot>(model: &M) -> Shapes {
    let mut shapes: Shapes = model
        .collect(None, None, false)
        .into_iter()
        .map(|t| (t.name, t.shape.to_vec()))
        .collect();
    shapes.sort();
    shapes
}

/// The tensors a safetensors file holds, from its header.
fn file_shapes(path: &Path) -> std::result::Result<Shapes, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| e.to_string())?;
    let mut shapes: Shapes = meta
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, info.shape.clone()))
        .collect();
    shapes.sort();
    Ok(shapes)
}

/// The zoo architecture whose tensor names are exactly those of `shapes` (the names do
/// not depend on the input size or class count; the shapes do).
fn zoo_kind_of(shapes: &Shapes) -> Option<ModelKind> {
    let names: Vec<&str> = shapes.iter().map(|(n, _)| n.as_str()).collect();
    let device = Device::flex();
    ModelKind::ALL.into_iter().find(|&kind| {
        ZooModel::new(kind, &ModelShape::fashion_mnist(), None, &device).is_ok_and(|m| {
            let theirs = tensor_shapes(&m);
            theirs.len() == names.len() && theirs.iter().zip(&names).all(|((a, _), b)| a == b)
        })
    })
}

/// Why the file at `path` does not fit a model with tensors `expected`; `burn` is the
/// store's own message, kept only when the header says nothing better.
fn mismatch_message(expected: &Shapes, path: &Path, burn: &str) -> String {
    let found = match file_shapes(path) {
        Ok(f) => f,
        Err(e) => return format!("not a readable safetensors file: {e}"),
    };
    if &found == expected {
        return format!(
            "could not be loaded: {}",
            burn.lines().next().unwrap_or(burn)
        );
    }
    let (theirs, ours) = (zoo_kind_of(&found), zoo_kind_of(expected));
    let model = ours.map_or("this model".to_string(), |k| format!("{k}"));
    match theirs {
        Some(t) if Some(t) != ours => format!(
            "this file holds {t} weights, but the run's model is {model} (was it copied from \
             another run?)"
        ),
        Some(t) => format!(
            "this file holds {t} weights for other images or another number of classes \
             than the run's: {}",
            shape_differences(&found, expected)
        ),
        None => format!(
            "its tensors are not those of {model} (nor of any zoo architecture): {}",
            shape_differences(&found, expected)
        ),
    }
}

/// The first few tensors missing from the file, unexpected in it, or shaped differently.
fn shape_differences(found: &Shapes, expected: &Shapes) -> String {
    const SHOWN: usize = 3;
    let lookup =
        |set: &Shapes, name: &str| set.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone());
    let mut parts = Vec::new();
    let missing: Vec<&str> = expected
        .iter()
        .filter(|(n, _)| lookup(found, n).is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let unexpected: Vec<&str> = found
        .iter()
        .filter(|(n, _)| lookup(expected, n).is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let reshaped: Vec<String> = expected
        .iter()
        .filter_map(|(n, want)| {
            let have = lookup(found, n)?;
            (&have != want).then(|| format!("{n} is {have:?} in the file, {want:?} in the model"))
        })
        .collect();
    let list = |what: &str, items: Vec<String>| {
        let more = items.len().saturating_sub(SHOWN);
        let mut text = format!("{what} {}", items[..items.len().min(SHOWN)].join(", "));
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text
    };
    if !missing.is_empty() {
        parts.push(list(
            "missing",
            missing.iter().map(|s| s.to_string()).collect(),
        ));
    }
    if !unexpected.is_empty() {
        parts.push(list(
            "unexpected",
            unexpected.iter().map(|s| s.to_string()).collect(),
        ));
    }
    if !reshaped.is_empty() {
        parts.push(list("", reshaped).trim_start().to_string());
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(kind: ModelKind, shape: &ModelShape, name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("advtrain-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let m = ZooModel::new(kind, shape, None, &Device::flex()).unwrap();
        save_safetensors(&m, &path).unwrap();
        path
    }

    fn fresh(kind: ModelKind, shape: &ModelShape) -> ZooModel {
        ZooModel::new(kind, shape, None, &Device::flex()).unwrap()
    }

    #[test]
    fn another_architectures_weights_are_named() {
        let shape = ModelShape::fashion_mnist();
        let path = saved(ModelKind::MadryCnn, &shape, "madry.safetensors");
        let e = load_safetensors(fresh(ModelKind::SmallCnn, &shape), &path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("this file holds madry-cnn weights, but the run's model is small-cnn"),
            "{e}"
        );
        assert!(!e.contains("allow_partial") && !e.contains('┌'), "{e}");
        assert!(load_safetensors(fresh(ModelKind::MadryCnn, &shape), &path).is_ok());
    }

    #[test]
    fn the_same_architecture_for_other_images_names_the_shapes() {
        let path = saved(
            ModelKind::Mlp,
            &ModelShape::cifar10(),
            "mlp-cifar.safetensors",
        );
        let e = load_safetensors(fresh(ModelKind::Mlp, &ModelShape::fashion_mnist()), &path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds mlp weights for other images"), "{e}");
        assert!(
            e.contains("Mlp.fc1.weight is [3072, 256] in the file"),
            "{e}"
        );
    }
}
