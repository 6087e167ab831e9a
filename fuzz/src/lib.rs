//! What each fuzz target does with its input, one function per target: every function
//! hands the bytes to advtrain's parser of that format (the same entry point a run uses,
//! or its in-memory twin) and ignores the `Ok`/`Err`. A panic, abort, hang or huge
//! allocation is the failure the fuzzer looks for.
//!
//! Shared, by path, with the replay test `crates/advtrain/tests/suite/
//! parser_fuzz_regressions.rs`, which runs every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` through [`run`]: CI covers the seeds and every crash found
//! without building the fuzzer. So this file uses only what that test crate has: advtrain,
//! burn, serde_json and crc32fast.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use advtrain::data::{cifar, folder, idx, npy, Split};
use advtrain::model::onnx::{OnnxModel, OnnxOptions};
use advtrain::model::{ModelKind, ModelShape, ZooModel};
use advtrain::train::checkpoint::Checkpoint;
use burn::prelude::{Device, Tensor, TensorData};

/// The fuzz targets, as named in `fuzz/Cargo.toml` and under `fuzz/corpus/`.
pub const TARGETS: [&str; 10] = [
    "idx",
    "cifar",
    "npy",
    "npz",
    "image",
    "safetensors",
    "checkpoint",
    "records",
    "text_files",
    "onnx",
];

/// Runs `target`'s function on `data`; false for an unknown target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "idx" => idx(data),
        "cifar" => cifar(data),
        "npy" => npy(data),
        "npz" => npz(data),
        "image" => image(data),
        "safetensors" => safetensors(data),
        "checkpoint" => checkpoint(data),
        "records" => records(data),
        "text_files" => text_files(data),
        "onnx" => onnx(data),
        _ => return false,
    }
    true
}

/// A directory that does not exist, so no parser finds a side file (`classes.txt`) there.
fn nowhere(name: &str) -> PathBuf {
    Path::new("/nonexistent-advtrain-fuzz").join(name)
}

/// IDX images and labels (MNIST's format), raw or gzipped.
pub fn idx(data: &[u8]) {
    let _ = idx::parse_idx_images(data, &nowhere("train-images-idx3-ubyte"));
    let _ = idx::parse_idx_labels(data, &nowhere("train-labels-idx1-ubyte"));
}

/// One CIFAR-10 binary batch.
pub fn cifar(data: &[u8]) {
    let _ = cifar::parse_cifar_batch(data, &nowhere("data_batch_1.bin"));
}

/// A pair of `.npy` files: the first two bytes (little-endian) say where the images file
/// ends and the labels file begins.
pub fn npy(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let cut = usize::from(u16::from_le_bytes(*head)).min(rest.len());
    let (x, y) = rest.split_at(cut);
    let _ = npy::parse_npy_pair(x, &nowhere("x_test.npy"), y, &nowhere("y_test.npy"));
}

/// An `.npz` archive.
pub fn npz(data: &[u8]) {
    let _ = npy::parse_npz(data, &nowhere("test.npz"), Split::Test);
}

/// One image of an image folder, decoded and brought to a small grey or RGB shape (odd
/// lengths RGB), as the folder loader does to each file.
pub fn image(data: &[u8]) {
    let channels = if data.len().is_multiple_of(2) { 1 } else { 3 };
    let _ = folder::decode_image(data, &nowhere("image.png"), (channels, 8, 8));
}

fn device() -> Device {
    Device::flex()
}

/// The model the safetensors target loads into: a small CNN for 1×4×4 images, 2 classes
/// (a few thousand weights, so seeds stay small), built once.
pub fn safetensors_model() -> &'static ZooModel {
    static MODEL: OnceLock<ZooModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let shape = ModelShape {
            channels: 1,
            height: 4,
            width: 4,
            num_classes: 2,
        };
        let device = device();
        advtrain::model::init_seeded(&device, 1, || {
            ZooModel::new(ModelKind::SmallCnn, &shape, None, &device).expect("a valid shape")
        })
    })
}

/// Model weights, as `model.safetensors` is loaded into the architecture a run records.
pub fn safetensors(data: &[u8]) {
    let model = safetensors_model().clone();
    let _ = advtrain::model::load_safetensors_bytes(model, data.to_vec());
}

/// A checkpoint: as it is, and with its last four bytes replaced by the right CRC-32 of
/// the rest, so mutations get past the checksum to the records behind it.
pub fn checkpoint(data: &[u8]) {
    let _ = Checkpoint::from_bytes(data);
    if let Some(body) = data.len().checked_sub(4).map(|n| &data[..n]) {
        let mut fixed = body.to_vec();
        fixed.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        let _ = Checkpoint::from_bytes(&fixed);
    }
}

/// A file holding `data`, unique to this call (tests replay in parallel threads), removed
/// when dropped: the record readers take paths.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, data: &[u8]) -> Option<TempFile> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = std::process::id();
        let path = std::env::temp_dir().join(format!("advtrain-fuzz-{id}-{n}-{name}"));
        std::fs::write(&path, data).ok()?;
        Some(TempFile(path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A run's records: `metrics.jsonl`, an `eval-*.json` and `summary.json`, through the
/// readers the report and `advtrain compare` use.
pub fn records(data: &[u8]) {
    use advtrain::io::{read_json, read_jsonl};
    let Some(file) = TempFile::new("record.json", data) else {
        return;
    };
    let _ = read_jsonl::<advtrain::train::EpochMetrics>(&file.0);
    let _ = read_json::<advtrain::run::EvalRecord>(&file.0);
    let _ = read_json::<advtrain::run::Summary>(&file.0);
}

/// A user's labelled texts, as CSV and as JSON Lines.
pub fn text_files(data: &[u8]) {
    use advtrain::text::data::parse_labelled_bytes;
    let _ = parse_labelled_bytes(data, &nowhere("texts.csv"));
    let _ = parse_labelled_bytes(data, &nowhere("texts.jsonl"));
}

/// Largest image (values) the ONNX target runs a forward pass on after loading.
const ONNX_FORWARD_MAX: usize = 4096;

/// An ONNX model: decoded, built and probed (loading runs a zero batch through the graph);
/// when that works and the images are small, a forward pass on one image made of the
/// input's bytes, to reach the executor with values that are not all zero.
pub fn onnx(data: &[u8]) {
    let device = device();
    let Ok(model) = OnnxModel::from_bytes(
        data,
        &nowhere("model.onnx"),
        &OnnxOptions::default(),
        &device,
    ) else {
        return;
    };
    let s = model.shape().clone();
    let len = s.channels * s.height * s.width;
    if len == 0 || len > ONNX_FORWARD_MAX || data.is_empty() {
        return;
    }
    let values: Vec<f32> = (0..len)
        .map(|i| f32::from(data[i % data.len()]) / 255.0)
        .collect();
    let x = Tensor::<4>::from_data(
        TensorData::new(values, [1, s.channels, s.height, s.width]),
        &device,
    );
    let _ = model.try_logits(x);
}
