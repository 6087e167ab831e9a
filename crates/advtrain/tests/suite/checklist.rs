//! The sanity checklist against planted models: each model below hides one evaluation bug
//! (batch statistics at inference, dropout or noise at inference, probabilities for logits,
//! a non-differentiable input layer, gradient masking) and the checklist must flag it, while
//! honest models (with and without burn's own BatchNorm) pass.

use crate::common;

use advtrain::data::{synthetic, Dataset};
use advtrain::eval::checks::{run_checks, run_checks_with_surrogate, Check, ChecksConfig, Verdict};
use advtrain::model::{Classifier, ModelKind, ZooModel};
use advtrain::progress::Silent;
use advtrain::threat::ThreatModel;
use advtrain::train::{self, MethodConfig, NoObserver, OptimizerConfig, Schedule, TrainConfig};
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

/// 4 classes of 1×8×8 templates; train and test share the templates.
fn data() -> (Dataset, Dataset) {
    let all = synthetic::templates(800, 4, 1, 8, 0.15, 5);
    (
        all.subset(&(0..600).collect::<Vec<_>>()),
        all.subset(&(600..800).collect::<Vec<_>>()),
    )
}

fn config() -> ChecksConfig {
    config_at(0.1)
}

/// At ε = 0.3 an honest model of [`data`] loses most points to PGD (at 0.1 it loses none).
fn config_at(eps: f32) -> ChecksConfig {
    let mut cfg = ChecksConfig::new(ThreatModel::linf(eps));
    cfg.steps = 5;
    cfg.square_queries = 100;
    cfg.batch_size = 100;
    cfg
}

fn honest_mlp(train: &Dataset, seed: u64) -> ZooModel {
    common::quick_train(ModelKind::Mlp, train, MethodConfig::Standard, 0.0, 3, seed)
}

fn by_id(checks: &[Check], id: usize) -> &Check {
    checks.iter().find(|c| c.id == id).unwrap()
}

fn warned(checks: &[Check]) -> Vec<usize> {
    checks
        .iter()
        .filter(|c| c.verdict == Verdict::Warn)
        .map(|c| c.id)
        .collect()
}

fn assert_warns(checks: &[Check], id: usize, what: &str) {
    let c = by_id(checks, id);
    assert_eq!(
        c.verdict,
        Verdict::Warn,
        "{what}: check {id} did not warn: {}\n{checks:#?}",
        c.detail
    );
}

fn checks_of<M: Classifier>(model: &M, test: &Dataset) -> Vec<Check> {
    checks_at(model, test, &config())
}

fn checks_at<M: Classifier>(model: &M, test: &Dataset, cfg: &ChecksConfig) -> Vec<Check> {
    run_checks(model, test, cfg, &mut advtrain::rng::seeded(1), &Silent).unwrap()
}

/// Trains a custom classifier like `common::quick_train` does a zoo one.
fn train_custom<M: Classifier + 'static>(model: M, data: &Dataset, seed: u64) -> M {
    let mut config = TrainConfig::new(MethodConfig::Standard, 0.0);
    config.epochs = 3;
    config.batch_size = 64;
    config.lr = 3e-3;
    config.optimizer = OptimizerConfig::adam();
    config.schedule = Schedule::Constant;
    config.seed = seed;
    let empty = data.take(0);
    train::train(
        model,
        data,
        &empty,
        &config,
        &common::device(),
        &Silent,
        &mut NoObserver,
    )
    .unwrap()
    .model
}

/// Linear → batch norm → ReLU → Linear, where the batch norm is either burn's (running
/// statistics at inference) or an imported one that always normalises with the statistics
/// of the batch it is given.
#[derive(Module, Debug)]
struct NormMlp {
    fc1: Linear,
    bn: Option<BatchNorm>,
    fc2: Linear,
}

impl NormMlp {
    fn new(burn_bn: bool, seed: u64) -> Self {
        let device = common::device();
        advtrain::model::init_seeded(&device, seed, || {
            let m = Self {
                fc1: LinearConfig::new(64, 32).init(&device),
                bn: burn_bn.then(|| BatchNormConfig::new(32).init(&device)),
                fc2: LinearConfig::new(32, 4).init(&device),
            };
            let _ = m.logits(Tensor::zeros([2, 1, 8, 8], &device));
            m
        })
    }
}

impl Classifier for NormMlp {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let h = self.fc1.forward(images.flatten(1, 3));
        let h = match &self.bn {
            Some(bn) => bn.forward(h),
            None => {
                let device = h.device();
                burn::tensor::module::batch_norm_train(
                    h,
                    Tensor::ones([32], &device),
                    Tensor::zeros([32], &device),
                    1e-5,
                )
                .output
            }
        };
        self.fc2.forward(burn::tensor::activation::relu(h))
    }
}

/// Dropout left on at inference: a fresh random mask on the input at every call (burn's
/// random tensors, from the device's generator, which advances with each draw).
#[derive(Module, Debug)]
struct InferenceDropout {
    inner: ZooModel,
}

impl Classifier for InferenceDropout {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let mask = Tensor::<4>::random(
            images.dims(),
            Distribution::Bernoulli(0.8),
            &images.device(),
        );
        self.inner.logits((images * mask).div_scalar(0.8))
    }
}

/// A randomized defence: Gaussian noise added to the input in the forward pass.
#[derive(Module, Debug)]
struct NoisyInput {
    inner: ZooModel,
}

impl Classifier for NoisyInput {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let noise = Tensor::<4>::random(
            images.dims(),
            Distribution::Normal(0.0, 0.05),
            &images.device(),
        );
        self.inner.logits(images + noise)
    }
}

/// Probabilities where logits belong: a softmax at the end of the forward pass.
#[derive(Module, Debug)]
struct Probabilities {
    inner: ZooModel,
}

impl Classifier for Probabilities {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        burn::tensor::activation::softmax(self.inner.logits(images), 1)
    }
}

/// Input quantised to 1/8 steps: rounding has a zero gradient almost everywhere.
#[derive(Module, Debug)]
struct Rounded {
    inner: ZooModel,
}

impl Classifier for Rounded {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.inner
            .logits(images.mul_scalar(8.0).round().div_scalar(8.0))
    }
}

/// Defensive-distillation-style masking: logits scaled by 10^4 saturate the softmax, so the
/// cross-entropy gradient is exactly zero on confidently classified inputs.
#[derive(Module, Debug)]
struct Saturated {
    inner: ZooModel,
}

impl Classifier for Saturated {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.inner.logits(images).mul_scalar(1e4)
    }
}

#[test]
fn checklist_flags_batch_norm_that_always_uses_batch_statistics() {
    let (train, test) = data();
    let model = train_custom(NormMlp::new(false, 3), &train, 3);
    let checks = checks_of(&model, &test);
    assert_warns(&checks, 7, "batch statistics at inference");
    // Identical calls on the same batch agree: this is not randomness.
    assert_eq!(by_id(&checks, 8).verdict, Verdict::Pass);
}

#[test]
fn checklist_flags_dropout_at_inference_as_a_random_model() {
    let (train, test) = data();
    let model = InferenceDropout {
        inner: honest_mlp(&train, 4),
    };
    let checks = checks_of(&model, &test);
    assert_warns(&checks, 8, "dropout at inference");
    let c8 = by_id(&checks, 8);
    assert!(c8.detail.contains("--version rand"), "{}", c8.detail);
    assert!(c8.figures["max_normalised_difference"] > 1e-4);
    // Batch composition cannot be judged on a random model: said, not guessed.
    let c7 = by_id(&checks, 7);
    assert_eq!(c7.verdict, Verdict::Skip, "{}", c7.detail);
    assert!(c7.detail.starts_with("not run"), "{}", c7.detail);
}

#[test]
fn checklist_flags_noise_added_to_the_input() {
    let (train, test) = data();
    let model = NoisyInput {
        inner: honest_mlp(&train, 5),
    };
    assert_warns(&checks_of(&model, &test), 8, "randomized input");
}

#[test]
fn checklist_flags_probability_outputs() {
    let (train, test) = data();
    let model = Probabilities {
        inner: honest_mlp(&train, 6),
    };
    let checks = checks_of(&model, &test);
    assert_warns(&checks, 9, "softmax in the forward pass");
    assert!(by_id(&checks, 9).detail.contains("sums to 1"));
}

#[test]
fn checklist_flags_rounded_input_as_zero_gradients() {
    let (train, test) = data();
    let model = Rounded {
        inner: honest_mlp(&train, 7),
    };
    let checks = checks_at(&model, &test, &config_at(0.3));
    assert_warns(&checks, 6, "quantised input");
    assert_eq!(by_id(&checks, 6).figures["zero_fraction"], 1.0);
    // PGD cannot move (zero gradients): it stays at its random start.
    eprintln!("{}", by_id(&checks, 10).detail);
}

#[test]
fn honest_models_pass_every_check() {
    let (train, test) = data();
    let mlp = honest_mlp(&train, 8);
    let with_bn = train_custom(NormMlp::new(true, 9), &train, 9);
    let surrogate = honest_mlp(&train, 10);
    let cfg = config();
    for (name, checks) in [
        (
            "mlp",
            run_checks_with_surrogate(
                &mlp,
                &surrogate,
                &test,
                &cfg,
                &mut advtrain::rng::seeded(1),
                &Silent,
            )
            .unwrap(),
        ),
        (
            "mlp with burn BatchNorm",
            run_checks_with_surrogate(
                &with_bn,
                &surrogate,
                &test,
                &cfg,
                &mut advtrain::rng::seeded(1),
                &Silent,
            )
            .unwrap(),
        ),
    ] {
        assert_eq!(
            checks.iter().map(|c| c.id).collect::<Vec<_>>(),
            (1..=11).collect::<Vec<_>>()
        );
        assert!(
            warned(&checks).is_empty(),
            "honest {name} warned: {checks:#?}"
        );
        assert!(
            checks.iter().all(|c| c.verdict == Verdict::Pass),
            "{name}: {checks:#?}"
        );
    }
}

#[test]
fn the_transfer_check_is_skipped_without_a_surrogate_and_flags_masking_with_one() {
    let (train, test) = data();
    let masked = Saturated {
        inner: honest_mlp(&train, 11),
    };
    let cfg = config_at(0.3);
    let c11 = by_id(&checks_at(&masked, &test, &cfg), 11).clone();
    assert_eq!(c11.verdict, Verdict::Skip);
    assert!(c11.detail.starts_with("not run"), "{}", c11.detail);

    let surrogate = honest_mlp(&train, 12);
    let checks = run_checks_with_surrogate(
        &masked,
        &surrogate,
        &test,
        &cfg,
        &mut advtrain::rng::seeded(1),
        &Silent,
    )
    .unwrap();
    let c11 = by_id(&checks, 11);
    eprintln!("{}", c11.detail);
    assert_warns(&checks, 11, "black-box transfer beating white-box PGD");
    assert!(c11.figures["broken_only_by_transfer"] >= 10.0, "{c11:#?}");
}

#[test]
fn doubling_the_budget_is_judged_point_by_point_with_the_sample_size() {
    // 60 points: a point is 1.7% of them, so another random start alone can move the
    // accuracy by more than the 1 point a fixed threshold allowed. PGD-10 has converged on
    // this MLP, so a move is noise, and the sign test must say so.
    let (train, test) = data();
    let model = honest_mlp(&train, 13);
    let test = test.take(60);
    let mut moved_somewhere = false;
    for eps in [0.15, 0.2, 0.25, 0.3] {
        let mut cfg = config_at(eps);
        cfg.steps = 10;
        let checks = checks_at(&model, &test, &cfg);
        let c5 = by_id(&checks, 5);
        let f = &c5.figures;
        let moved = (f["pgd"] - f["pgd_double_steps"])
            .abs()
            .max((f["pgd"] - f["pgd_double_restarts"]).abs());
        eprintln!("eps {eps}: moved {moved}: {}", c5.detail);
        if moved >= 0.01 {
            // The fixed 1-point rule warned here.
            moved_somewhere = true;
            assert_eq!(c5.verdict, Verdict::Pass, "eps {eps}: {}", c5.detail);
        }
    }
    assert!(moved_somewhere, "the runs always agreed: the test is void");
}
