//! Shared helpers for the integration tests: tiny models trained on generated data.

use advtrain::data::{synthetic, Dataset};
use advtrain::model::{Classifier, ModelKind, ModelShape, ZooModel};
use advtrain::progress::Silent;
use advtrain::train::{self, MethodConfig, NoObserver, OptimizerConfig, Schedule, TrainConfig};
use burn::prelude::*;

pub fn device() -> Device {
    Device::flex()
}

pub fn shape_of(data: &Dataset) -> ModelShape {
    ModelShape {
        channels: data.channels,
        height: data.height,
        width: data.width,
        num_classes: data.num_classes,
    }
}

/// A fresh zoo model with weights fixed by `seed` (seeded and initialised under the
/// library's one lock: tests run in parallel threads and burn's device seed is
/// process-wide).
pub fn fresh(kind: ModelKind, data: &Dataset, seed: u64) -> ZooModel {
    let device = device();
    let shape = shape_of(data);
    advtrain::model::init_seeded(&device, seed, || {
        let model = ZooModel::new(kind, &shape, None, &device).unwrap();
        // burn initialises parameters lazily, on first use: touch them all now.
        let probe = Tensor::<4>::zeros([1, shape.channels, shape.height, shape.width], &device);
        let _ = model.logits(probe);
        model
    })
}

/// Trains `kind` on `data` with `method` at L∞ radius `eps` (Adam, constant lr).
pub fn quick_train(
    kind: ModelKind,
    data: &Dataset,
    method: MethodConfig,
    eps: f32,
    epochs: usize,
    seed: u64,
) -> ZooModel {
    let mut config = TrainConfig::new(method, eps);
    config.epochs = epochs;
    config.batch_size = 64;
    config.lr = 3e-3;
    config.optimizer = OptimizerConfig::adam();
    config.schedule = Schedule::Constant;
    config.seed = seed;
    let model = fresh(kind, data, seed);
    let empty = data.take(0);
    train::train(
        model,
        data,
        &empty,
        &config,
        &device(),
        &Silent,
        &mut NoObserver,
    )
    .unwrap()
    .model
}

/// Every parameter tensor of `model` by name, as raw bytes: two models are bit-identical
/// when these are equal (the SafeTensors header's order is not fixed, so whole files are
/// not compared).
pub fn tensors_by_name<M: burn::module::Module>(
    model: &M,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = advtrain::model::safetensors_bytes(model).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect()
}

/// The metrics without their wall-clock times (which differ between identical runs).
pub fn without_times(
    history: &[advtrain::train::EpochMetrics],
) -> Vec<advtrain::train::EpochMetrics> {
    history
        .iter()
        .cloned()
        .map(|mut m| {
            m.epoch_seconds = 0.0;
            m.train_images_per_second = 0.0;
            m
        })
        .collect()
}

/// Shares class templates between train and test, no examples.
pub fn split(all: Dataset, n_train: usize) -> (Dataset, Dataset) {
    let n = all.len();
    (
        all.subset(&(0..n_train).collect::<Vec<_>>()),
        all.subset(&(n_train..n).collect::<Vec<_>>()),
    )
}

/// A partly robust model: attacks break some points but not all, so their strength shows.
pub fn partly_robust() -> (ZooModel, Dataset) {
    let (train, test) = split(synthetic::templates(1300, 5, 1, 8, 0.2, 11), 1000);
    let model = quick_train(
        ModelKind::Mlp,
        &train,
        MethodConfig::default_for("fgsm-rs").unwrap(),
        0.1,
        6,
        2,
    );
    (model, test)
}

/// A tensor's values as `f32`, in row-major order.
pub fn values<const D: usize>(t: burn::prelude::Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Largest difference relative to the largest reference magnitude.
pub fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    got.iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}
