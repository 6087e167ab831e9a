//! Does a device compute what the CPU computes? The same weights and inputs on two devices,
//! compared on what adversarial training needs from a backend: the logits, the input
//! gradient every attack step takes, and the model after one training step.
//!
//! A GPU backend can be fast and wrong (a kernel compiled for the wrong architecture, a
//! reduction that drops a tile); figures from it mean nothing until it agrees with the
//! reference. `advtrain bench --device cuda --check-against flex` runs this before timing.
//!
//! Agreement is judged relative to the reference's largest magnitude, so the same tolerance
//! serves logits of any scale: `max |a − b| ≤ tol · max(1, max |a|)`. Float32 on two backends
//! differs by summation order (and, on GPUs, by fused multiply-adds or TF32 matrix units),
//! so the tolerances are those of float32 arithmetic, not bit equality.

use burn::module::Module;
use burn::prelude::{Device, Int, Tensor, TensorData};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::attack::input_gradient;
use crate::error::{Error, Result};
use crate::loss::AttackLoss;
use crate::model::{
    init_seeded, load_safetensors_bytes, safetensors_bytes, Classifier, ModelKind, ModelShape,
    ZooModel,
};
use crate::rng;
use crate::threat::ThreatModel;
use crate::train::{MethodConfig, OptimizerConfig, StepContext};

/// Relative tolerance of the logits (one forward pass).
pub const LOGITS_TOLERANCE: f64 = 1e-3;
/// Relative tolerance of the input gradient and of the logits after one training step
/// (a backward pass accumulates more rounding than a forward one).
pub const GRADIENT_TOLERANCE: f64 = 1e-2;

/// Learning rate of the training step: large enough that the step visibly moves the
/// logits, so a wrong weight update cannot hide below the tolerance.
const STEP_LR: f64 = 0.1;

/// One compared quantity of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// The model's CLI name.
    pub model: String,
    /// `logits`, `input gradient` or `logits after one SGD step`.
    pub quantity: String,
    /// Largest absolute difference between the two devices.
    pub max_abs_diff: f64,
    /// Largest magnitude on the reference device.
    pub reference_scale: f64,
    /// The relative tolerance applied.
    pub tolerance: f64,
    /// Whether `max_abs_diff ≤ tolerance · max(1, reference_scale)` (and everything finite).
    pub agrees: bool,
}

impl Agreement {
    /// Compares `device` values with `reference` ones of the same quantity.
    pub fn of(
        model: &str,
        quantity: &str,
        reference: &[f32],
        device: &[f32],
        tolerance: f64,
    ) -> Agreement {
        let reference_scale = reference
            .iter()
            .map(|v| f64::from(v.abs()))
            .fold(0.0, max_nan);
        let same_len = reference.len() == device.len();
        let max_abs_diff = if same_len {
            reference
                .iter()
                .zip(device)
                .map(|(a, b)| f64::from((a - b).abs()))
                .fold(0.0, max_nan)
        } else {
            f64::INFINITY
        };
        let agrees = max_abs_diff.is_finite()
            && reference_scale.is_finite()
            && max_abs_diff <= tolerance * reference_scale.max(1.0);
        Agreement {
            model: model.to_string(),
            quantity: quantity.to_string(),
            max_abs_diff,
            reference_scale,
            tolerance,
            agrees,
        }
    }
}

/// The larger of two values, NaN if either is (`f64::max` drops a NaN, which would let a
/// device that computes NaN agree).
fn max_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// What one device computed for one model: the three compared quantities, flattened.
struct Computed {
    logits: Vec<f32>,
    input_gradient: Vec<f32>,
    logits_after_step: Vec<f32>,
}

/// Compares `device` with `reference` on a `kind` model for `shape` images: weights
/// initialised with `seed` on the reference and copied (as SafeTensors, the way a trained
/// run's weights travel), the same `batch` random images and labels on both.
pub fn compare_devices(
    kind: ModelKind,
    shape: &ModelShape,
    batch: usize,
    seed: u64,
    reference: &Device,
    device: &Device,
) -> Result<Vec<Agreement>> {
    if batch < 2 {
        return Err(Error::config(
            "the device check needs a batch of at least 2 (batch norm in training mode)",
        ));
    }
    let model = init_seeded(reference, seed, || {
        ZooModel::new(kind, shape, None, reference)
    })?;
    let bytes = safetensors_bytes(&model).map_err(Error::config)?;
    let copy = load_safetensors_bytes(ZooModel::new(kind, shape, None, device)?, bytes)
        .map_err(|e| Error::config(format!("cannot copy the weights to the device: {e}")))?;
    let (images, labels) = random_inputs(shape, batch, seed);
    let on_reference = compute(model, shape, &images, &labels, reference)?;
    let on_device = compute(copy, shape, &images, &labels, device)?;
    let name = kind.as_str();
    Ok(vec![
        Agreement::of(
            name,
            "logits",
            &on_reference.logits,
            &on_device.logits,
            LOGITS_TOLERANCE,
        ),
        Agreement::of(
            name,
            "input gradient",
            &on_reference.input_gradient,
            &on_device.input_gradient,
            GRADIENT_TOLERANCE,
        ),
        Agreement::of(
            name,
            "logits after one SGD step",
            &on_reference.logits_after_step,
            &on_device.logits_after_step,
            GRADIENT_TOLERANCE,
        ),
    ])
}

/// Host-side random images in `[0, 1]` and labels, identical for both devices.
fn random_inputs(shape: &ModelShape, batch: usize, seed: u64) -> (Vec<f32>, Vec<i64>) {
    let mut rng = rng::seeded(seed ^ 0xdecc);
    let images = rng::uniform_vec(&mut rng, batch * shape.image_len(), 0.0, 1.0);
    let labels = (0..batch)
        .map(|_| rng.random_range(0..shape.num_classes as i64))
        .collect();
    (images, labels)
}

fn compute(
    model: ZooModel,
    shape: &ModelShape,
    images: &[f32],
    labels: &[i64],
    device: &Device,
) -> Result<Computed> {
    let data_device = device.clone().without_autodiff();
    let batch = labels.len();
    let x = Tensor::<4>::from_data(
        TensorData::new(
            images.to_vec(),
            [batch, shape.channels, shape.height, shape.width],
        ),
        &data_device,
    );
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [batch]), &data_device);
    let eval = model.valid();
    let logits = host(eval.logits(x.clone()))?;
    let grad = input_gradient(&eval, x.clone(), y.clone(), AttackLoss::CrossEntropy, false).grad;
    let input_gradient = host(grad)?;

    let mut step = MethodConfig::Standard.image_step::<ZooModel>();
    let mut optimizer = OptimizerConfig::sgd().build();
    let mut step_rng = rng::seeded(0);
    let mut ctx = StepContext {
        optimizer: &mut optimizer,
        lr: STEP_LR,
        threat: ThreatModel::linf(0.0),
        step_scale: 1.0,
        rng: &mut step_rng,
        device: &data_device,
        epoch: 0,
        batch: 0,
        kept: "",
    };
    let trained = step.step(model.train(), (x.clone(), y), &mut ctx)?.model;
    let logits_after_step = host(trained.valid().logits(x))?;
    Ok(Computed {
        logits,
        input_gradient,
        logits_after_step,
    })
}

/// A tensor's values on the host, or the device's error.
fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::config(format!("cannot read a result back from the device: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_agree_and_a_difference_past_the_tolerance_does_not() {
        let a = [1.0, -20.0, 3.0];
        assert!(Agreement::of("m", "q", &a, &a, 1e-3).agrees);
        // Scale 20: a difference of 0.01 is within 1e-3·20 = 0.02, 0.05 is not.
        assert!(Agreement::of("m", "q", &a, &[1.01, -20.0, 3.0], 1e-3).agrees);
        let off = Agreement::of("m", "q", &a, &[1.05, -20.0, 3.0], 1e-3);
        assert!(!off.agrees);
        assert!((off.max_abs_diff - 0.05).abs() < 1e-6, "{off:?}");
    }

    #[test]
    fn nan_or_a_missing_value_never_agrees() {
        let a = [1.0, 2.0];
        assert!(!Agreement::of("m", "q", &a, &[1.0, f32::NAN], 1.0).agrees);
        assert!(!Agreement::of("m", "q", &a, &[1.0], 1.0).agrees);
        assert!(!Agreement::of("m", "q", &[f32::NAN, 1.0], &[f32::NAN, 1.0], 1.0).agrees);
    }

    #[test]
    fn the_cpu_agrees_with_itself_on_every_quantity_and_the_step_moves_the_logits() {
        let device = Device::flex();
        let shape = ModelShape::fashion_mnist();
        let checks = compare_devices(ModelKind::SmallCnn, &shape, 4, 3, &device, &device).unwrap();
        assert_eq!(checks.len(), 3);
        for c in &checks {
            assert!(c.agrees && c.max_abs_diff < 1e-5, "{c:?}");
            assert!(c.reference_scale > 0.0, "{c:?}");
        }
        // The training step must change the model, or comparing after it tests nothing.
        let before = compute_for_test(&device, &shape);
        assert!(
            before
                .logits
                .iter()
                .zip(&before.logits_after_step)
                .any(|(a, b)| (a - b).abs() > 1e-3),
            "one SGD step at lr {STEP_LR} left the logits unchanged"
        );
    }

    fn compute_for_test(device: &Device, shape: &ModelShape) -> Computed {
        let model = init_seeded(device, 3, || {
            ZooModel::new(ModelKind::SmallCnn, shape, None, device)
        })
        .unwrap();
        let (x, y) = random_inputs(shape, 4, 3);
        compute(model, shape, &x, &y, device).unwrap()
    }
}
