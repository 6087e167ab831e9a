//! Zoo models as PyTorch state dicts: SafeTensors files whose keys, shapes and dtypes are
//! those of `state_dict()` of the PyTorch modules in `scripts/torch_zoo.py`, so that
//! `module.load_state_dict(safetensors.torch.load_file(path), strict=True)` takes them, and
//! the other way round.
//!
//! # What changes between burn and PyTorch
//!
//! burn's store machinery does most of it ([`SafetensorsStore`] with
//! [`BurnToPyTorchAdapter`] / [`PyTorchToBurnAdapter`]):
//! - linear weights are `[in, out]` in burn and `[out, in]` in PyTorch (the adapters
//!   transpose them; convolution weights are `[out, in, kh, kw]` in both);
//! - batch norm's `gamma`/`beta` are PyTorch's `weight`/`bias` (the adapters rename them;
//!   `running_mean`/`running_var` keep their names);
//! - [`ZooModel`]'s variant (`SmallCnn.conv1.weight`) is not part of the PyTorch name
//!   (`skip_enum_variants`);
//! - the names: the small CNNs and the MLP keep burn's field names (`conv1`, `fc1`, ...);
//!   the pre-activation ResNet-18 takes the names of the adversarial-training literature's
//!   PyTorch code (Wong et al. 2020, Rice et al. 2020), so their checkpoints load too:
//!   `stem` → `conv1`, `blocks.{2i+j}` → `layer{i+1}.{j}`, a block's `shortcut` →
//!   `shortcut.0` (an `nn.Sequential`), `fc` → `linear` (key remapping, both ways).
//!
//! What the adapters cannot do is add a tensor the burn module does not have: PyTorch's
//! `BatchNorm2d` holds a `num_batches_tracked` counter (an int64 scalar) that a strict
//! `load_state_dict` requires. burn counts no batches, so the file burn writes is read back
//! with the `safetensors` crate and written again with `<layer>.num_batches_tracked = 0` beside
//! each batch norm's statistics. PyTorch reads that counter only for a batch norm built with
//! `momentum=None` (a cumulative average); the zoo's use momentum 0.1, as burn's do, so its
//! value changes nothing the module computes. On import the counter is required to be there
//! (with an integer dtype) and ignored.
//!
//! # Normalisation
//!
//! A zoo model's mean/std normalisation ([`Normalization`](super::Normalization)) is no
//! parameter, so no state dict holds it: the file has the same keys with or without one. The
//! PyTorch modules of `scripts/torch_zoo.py` apply it when it is passed to them,
//! `build(kind, channels, height, width, num_classes, mean=[...], std=[...])` (take the values
//! from the run's `config.toml`, `[model.normalization]`), as non-persistent buffers, so their
//! state dicts do not hold it either; without it they take their input as it is. On import,
//! the normalisation is the one of the `model` passed in.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::store::{
    BurnToPyTorchAdapter, FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot,
    PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::DType;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::{ModelKind, ZooModel};
use crate::error::{Error, Result};

/// The counter PyTorch's `BatchNorm2d` keeps beside its running statistics.
const BATCH_COUNTER: &str = "num_batches_tracked";

/// burn → PyTorch key patterns for `kind` (applied in order, after the adapter's renames).
fn export_patterns(kind: ModelKind) -> Vec<(String, String)> {
    match kind {
        ModelKind::PreactResnet18 => {
            let mut patterns = vec![(r"^stem\.".to_string(), "conv1.".to_string())];
            for block in 0..8 {
                patterns.push((
                    format!(r"^blocks\.{block}\."),
                    format!("layer{}.{}.", block / 2 + 1, block % 2),
                ));
            }
            patterns.push((
                r"^(layer[1-4]\.[01])\.shortcut\.weight$".into(),
                "${1}.shortcut.0.weight".into(),
            ));
            patterns.push((r"^fc\.".into(), "linear.".into()));
            patterns
        }
        ModelKind::SmallCnn | ModelKind::MadryCnn | ModelKind::Mlp => Vec::new(),
    }
}

/// PyTorch → burn key patterns for `kind`: the inverse of [`export_patterns`].
fn import_patterns(kind: ModelKind) -> Vec<(String, String)> {
    match kind {
        ModelKind::PreactResnet18 => {
            let mut patterns = vec![(r"^conv1\.".to_string(), "stem.".to_string())];
            for block in 0..8 {
                patterns.push((
                    format!(r"^layer{}\.{}\.", block / 2 + 1, block % 2),
                    format!("blocks.{block}."),
                ));
            }
            patterns.push((
                r"^(blocks\.[0-7])\.shortcut\.0\.weight$".into(),
                "${1}.shortcut.weight".into(),
            ));
            patterns.push((r"^linear\.".into(), "fc.".into()));
            patterns
        }
        ModelKind::SmallCnn | ModelKind::MadryCnn | ModelKind::Mlp => Vec::new(),
    }
}

fn remapped(mut store: SafetensorsStore, patterns: Vec<(String, String)>) -> SafetensorsStore {
    for (from, to) in patterns {
        store = store.with_key_remapping(from, to);
    }
    store
}

/// What a tensor of the state dict holds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Held {
    /// A float parameter or statistic (written as f32).
    Float,
    /// A batch norm's batch counter (an int64 scalar).
    Counter,
}

/// The PyTorch state dict of `model`: key → (shape, what it holds), without drawing any
/// tensor's data.
fn expected_state_dict(model: &ZooModel) -> BTreeMap<String, (Vec<usize>, Held)> {
    let adapter: Box<dyn ModuleAdapter> = Box::new(BurnToPyTorchAdapter);
    let tensors = model.collect(None, Some(adapter), true);
    let (tensors, _) = KeyRemapper::from_patterns(export_patterns(model.kind()))
        .expect("the zoo's key patterns are valid regexes")
        .remap(tensors);
    let mut out = BTreeMap::new();
    for t in tensors {
        if let Some(layer) = t.name.strip_suffix(".running_var") {
            out.insert(
                format!("{layer}.{BATCH_COUNTER}"),
                (Vec::new(), Held::Counter),
            );
        }
        out.insert(t.name.clone(), (t.shape.to_vec(), Held::Float));
    }
    out
}

/// Writes `model`'s weights as a PyTorch state dict: a SafeTensors file, written atomically,
/// whose keys are exactly `state_dict()`'s of the module that `scripts/torch_zoo.py`'s
/// `build` makes for the same kind and shape, float32, linear weights `[out, in]`, with an
/// int64 `num_batches_tracked = 0` beside each batch norm.
///
/// burn's [`BurnToPyTorchAdapter`] transposes the linear weights and renames batch norm's
/// `gamma`/`beta` to `weight`/`bias`; the small CNNs and the MLP keep burn's field names
/// (`conv1.weight`, `fc1.bias`, ...) and the pre-activation ResNet-18 takes those of the
/// adversarial-training literature's PyTorch code (`conv1`, `layer1.0.bn1`, ...,
/// `layer2.0.shortcut.0`, `bn`, `linear`), so its checkpoints load both ways. burn counts no
/// batches, so the counters PyTorch's strict load requires are written as 0 (PyTorch reads
/// them only for `momentum=None`; the zoo's batch norms use 0.1).
///
/// The model's normalisation is no parameter and is not in the file: build the PyTorch
/// module with the same `mean`/`std` (`build(..., mean=[...], std=[...])`, from the run's
/// `config.toml`), and it normalises its input first, as advtrain does.
///
/// The file's metadata says `format = pt`, `producer = advtrain <version>` and
/// `advtrain.model = <kind>`.
///
/// ```no_run
/// use advtrain::model::{save_pytorch_state_dict, ModelKind, ModelShape, ZooModel};
/// use burn::prelude::Device;
///
/// let device = Device::flex();
/// let model = ZooModel::new(ModelKind::SmallCnn, &ModelShape::fashion_mnist(), None, &device)?;
/// save_pytorch_state_dict(&model, "small-cnn.pt.safetensors".as_ref())?;
/// // Python: net = torch_zoo.build("small-cnn", 1, 28, 28, 10)
/// //         net.load_state_dict(safetensors.torch.load_file("small-cnn.pt.safetensors"))
/// # Ok::<(), advtrain::error::Error>(())
/// ```
pub fn save_pytorch_state_dict(model: &ZooModel, path: &Path) -> Result<()> {
    let bytes = state_dict_bytes(model).map_err(|message| Error::ModelFile {
        path: path.to_path_buf(),
        message,
    })?;
    crate::io::write_atomic(path, &bytes)
}

fn state_dict_bytes(model: &ZooModel) -> std::result::Result<Vec<u8>, String> {
    let store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true);
    let mut store = remapped(store, export_patterns(model.kind()));
    model.save_into(&mut store).map_err(|e| e.to_string())?;
    let burn_bytes = store.get_bytes().map_err(|e| e.to_string())?;

    // Add the batch counters burn has no tensor for (see the module docs).
    let burn_file = SafeTensors::deserialize(&burn_bytes).map_err(|e| e.to_string())?;
    let zero = 0i64.to_le_bytes();
    let mut tensors = burn_file.tensors();
    let counters: Vec<String> = tensors
        .iter()
        .filter_map(|(name, _)| name.strip_suffix(".running_var"))
        .map(|layer| format!("{layer}.{BATCH_COUNTER}"))
        .collect();
    for name in counters {
        let counter = TensorView::new(Dtype::I64, Vec::new(), &zero).map_err(|e| e.to_string())?;
        tensors.push((name, counter));
    }
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            "producer".to_string(),
            format!("advtrain {}", env!("CARGO_PKG_VERSION")),
        ),
        ("advtrain.model".to_string(), model.kind().to_string()),
    ]);
    safetensors::serialize(tensors, Some(metadata)).map_err(|e| e.to_string())
}

/// Loads a PyTorch state dict (a SafeTensors file as `safetensors.torch.save_file` writes
/// `module.state_dict()`) of the module `scripts/torch_zoo.py` builds for `model`'s kind and
/// shape into `model`, which fixes the architecture, the shape and the normalisation: the
/// inverse of [`save_pytorch_state_dict`]. Float tensors may be f16, bf16, f32 or f64 (they
/// become f32); the batch norms' `num_batches_tracked` must be there and is ignored.
///
/// Like PyTorch's strict `load_state_dict`, every key must be there with the right shape
/// and no other: the error names the missing keys, the unexpected ones and the shape
/// mismatches, all of them at once.
pub fn load_pytorch_state_dict(mut model: ZooModel, path: &Path) -> Result<ZooModel> {
    let fail = |message: String| Error::ModelFile {
        path: path.to_path_buf(),
        message,
    };
    if !path.exists() {
        return Err(fail("file not found".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    check_state_dict(&model, &bytes).map_err(fail)?;

    let store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
        .skip_enum_variants(true)
        .validate(true)
        .allow_partial(false);
    let mut store = remapped(store, import_patterns(model.kind()));
    let result = model
        .load_from(&mut store)
        .map_err(|e| fail(e.to_string()))?;
    // Checked above already; a second net under burn's own matching.
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(fail(format!(
            "does not match the {}: missing {:?}, errors {:?}",
            model.kind(),
            result.missing,
            result.errors
        )));
    }
    Ok(model)
}

/// Compares the file's keys, shapes and dtypes with `model`'s PyTorch state dict, and says
/// everything that differs.
fn check_state_dict(model: &ZooModel, bytes: &[u8]) -> std::result::Result<(), String> {
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("not a SafeTensors file: {e}"))?;
    let found: BTreeMap<String, (Vec<usize>, Dtype)> = header
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, (info.shape.clone(), info.dtype)))
        .collect();
    let expected = expected_state_dict(model);

    let missing: Vec<&str> = expected
        .keys()
        .filter(|k| !found.contains_key(*k))
        .map(String::as_str)
        .collect();
    let unexpected: Vec<&str> = found
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .map(String::as_str)
        .collect();
    let mut mismatches = Vec::new();
    for (key, (shape, held)) in &expected {
        let Some((file_shape, dtype)) = found.get(key) else {
            continue;
        };
        if file_shape != shape {
            mismatches.push(format!(
                "{key} has shape {file_shape:?} in the file, {shape:?} in the model"
            ));
        }
        let dtype_fits = match held {
            Held::Float => matches!(dtype, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64),
            Held::Counter => matches!(
                dtype,
                Dtype::I64 | Dtype::I32 | Dtype::I16 | Dtype::I8 | Dtype::U8
            ),
        };
        if !dtype_fits {
            let want = match held {
                Held::Float => "a float dtype",
                Held::Counter => "an integer dtype",
            };
            mismatches.push(format!("{key} is {dtype:?} in the file, not {want}"));
        }
    }
    if missing.is_empty() && unexpected.is_empty() && mismatches.is_empty() {
        return Ok(());
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing keys: {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        problems.push(format!("unexpected keys: {}", unexpected.join(", ")));
    }
    if !mismatches.is_empty() {
        problems.push(format!("mismatches: {}", mismatches.join("; ")));
    }
    Err(format!(
        "not a PyTorch state dict of this {} ({} tensors expected, {} in the file): {}",
        model.kind(),
        expected.len(),
        found.len(),
        problems.join("; ")
    ))
}
