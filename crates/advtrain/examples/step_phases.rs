//! Where one `fgsm-rs` training step's time goes on `small-cnn` or the model named (batch 128): the attack
//! (random start, input gradient, the projected step), the training forward pass and loss,
//! the backward pass and the optimiser update; mean milliseconds over 200 steps (20 on larger models) after
//! 10 warm-up steps. Complements `kernel_bench` (single kernels) and `advtrain bench` (whole
//! steps): the difference between the phases and their kernels is the per-step overhead.
//!
//! `cargo run --release -p advtrain --example step_phases [model]`

use advtrain::attack::{cross_entropy, Attack, Fgsm};
use advtrain::model::{Classifier, ModelKind, ModelShape, ZooModel};
use advtrain::threat::ThreatModel;
use advtrain::train::OptimizerConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorData;
use std::time::Instant;

/// `small-cnn` unless the first argument names another model.
fn kind() -> ModelKind {
    std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("a model name"))
        .unwrap_or(ModelKind::SmallCnn)
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    attack_phases();
    let device = Device::flex().autodiff();
    let shape = ModelShape::fashion_mnist();
    let mut model = ZooModel::new(kind(), &shape, None, &device).unwrap();
    let data_device = device.clone().without_autodiff();
    let b = 128;
    let xs: Vec<f32> = (0..b * 784)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let ys: Vec<i64> = (0..b).map(|i| (i % 10) as i64).collect();
    let x = Tensor::<4>::from_data(TensorData::new(xs, [b, 1, 28, 28]), &data_device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(ys, [b]), &data_device);
    let threat = ThreatModel::linf(0.1);
    let mut opt = OptimizerConfig::sgd().build();
    let mut rng = advtrain::rng::seeded(0);
    let mut acc = [0.0f64; 6];
    let reps = if kind() == ModelKind::SmallCnn {
        200
    } else {
        20
    };
    for r in 0..reps + 10 {
        let t0 = Instant::now();
        let eval = model.valid();
        let attack = Fgsm::random_start(threat, 0.125);
        let x_adv = attack.perturb(&eval, x.clone(), y.clone(), &mut rng);
        let _ = x_adv.clone().sum().into_scalar::<f32>();
        let t1 = Instant::now();
        let logits = model.logits(x_adv);
        let loss = cross_entropy(logits, y.clone()).mean();
        let _v = loss.clone().into_scalar::<f32>();
        let t2 = Instant::now();
        let g = loss.backward();
        let t3 = Instant::now();
        let gp = GradientsParams::from_grads(g, &model);
        let t4 = Instant::now();
        model = opt.step(0.01, model.clone(), gp);
        let t5 = Instant::now();
        if r >= 10 {
            for (a, d) in acc
                .iter_mut()
                .zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0])
            {
                *a += d.as_secs_f64() * 1e3 / reps as f64;
            }
        }
    }
    println!(
        "training step: attack {:.2} fwd+loss {:.2} backward {:.2} grads {:.2} optim {:.2} total {:.2} ms",
        acc[0], acc[1], acc[2], acc[3], acc[4], acc[5]
    );
}

fn attack_phases() {
    let device = Device::flex().autodiff();
    let shape = ModelShape::fashion_mnist();
    let model = ZooModel::new(kind(), &shape, None, &device).unwrap();
    let data_device = device.clone().without_autodiff();
    let b = 128;
    let xs: Vec<f32> = (0..b * 784)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let ys: Vec<i64> = (0..b).map(|i| (i % 10) as i64).collect();
    let x = Tensor::<4>::from_data(TensorData::new(xs, [b, 1, 28, 28]), &data_device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(ys, [b]), &data_device);
    let threat = ThreatModel::linf(0.1);
    let mut rng = advtrain::rng::seeded(0);
    let eval = model.valid();
    let mut acc = [0.0f64; 4];
    let reps = if kind() == ModelKind::SmallCnn {
        300
    } else {
        30
    };
    for r in 0..reps + 10 {
        let t0 = Instant::now();
        let start = threat.random_start(&x, &mut rng);
        let _ = start
            .clone()
            .slice([0..1, 0..1, 0..1, 0..1])
            .into_scalar::<f32>();
        let t1 = Instant::now();
        let g = advtrain::attack::input_gradient(
            &eval,
            start.clone(),
            y.clone(),
            advtrain::attack::AttackLoss::CrossEntropy,
            false,
        );
        let _ = g
            .grad
            .clone()
            .slice([0..1, 0..1, 0..1, 0..1])
            .into_scalar::<f32>();
        let t2 = Instant::now();
        let out = threat.step(start, g.grad, 0.125, &x);
        let _ = out.slice([0..1, 0..1, 0..1, 0..1]).into_scalar::<f32>();
        let t3 = Instant::now();
        if r >= 10 {
            for (a, d) in acc.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t3 - t0]) {
                *a += d.as_secs_f64() * 1e3 / reps as f64;
            }
        }
    }
    println!(
        "attack: random start {:.3} input gradient {:.3} step+project {:.3} total {:.3} ms",
        acc[0], acc[1], acc[2], acc[3]
    );
}
