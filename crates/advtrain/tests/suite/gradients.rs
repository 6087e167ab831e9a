//! Input gradients and losses checked against finite differences and direct formulas.

use crate::common;

use advtrain::attack::{cross_entropy, cw_margin, input_gradient, kl_from_logits, AttackLoss};
use advtrain::data::synthetic;
use advtrain::model::{Classifier, ModelKind};
use burn::module::Module;
use burn::prelude::*;

fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn losses_match_their_formulas() {
    let device = common::device();
    let logits = [[2.0f32, 0.5, -1.0], [0.1, 0.2, 3.0]];
    let labels = [0i64, 1];
    let z = Tensor::<2>::from_data(logits, &device);
    let y = Tensor::<1, Int>::from_data(labels, &device);
    let ce = host(cross_entropy(z.clone(), y.clone()));
    let cw = host(cw_margin(z.clone(), y.clone()));
    for (i, row) in logits.iter().enumerate() {
        let lse = row.iter().map(|v| v.exp()).sum::<f32>().ln();
        let want_ce = lse - row[labels[i] as usize];
        assert!(
            (ce[i] - want_ce).abs() < 1e-5,
            "ce {} vs {}",
            ce[i],
            want_ce
        );
        let other = row
            .iter()
            .enumerate()
            .filter(|(j, _)| *j as i64 != labels[i])
            .map(|(_, v)| *v)
            .fold(f32::NEG_INFINITY, f32::max);
        let want_cw = other - row[labels[i] as usize];
        assert!(
            (cw[i] - want_cw).abs() < 1e-5,
            "cw {} vs {}",
            cw[i],
            want_cw
        );
    }
    // KL of a distribution to itself is zero, and positive otherwise.
    let kl_same = host(kl_from_logits(z.clone(), z.clone()));
    assert!(kl_same.iter().all(|v| v.abs() < 1e-6));
    let kl = host(kl_from_logits(z.clone(), z.flip([1])));
    assert!(kl.iter().all(|v| *v > 0.01));
}

/// A smooth user-defined classifier: the "bring your own burn Module" path, and smooth so
/// that central differences are accurate to O(h²).
#[derive(Module, Debug)]
struct TanhNet {
    fc1: burn::nn::Linear,
    fc2: burn::nn::Linear,
}

impl Classifier for TanhNet {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = images.flatten(1, 3);
        self.fc2.forward(self.fc1.forward(x).tanh())
    }
}

fn objective_sum<M: Classifier>(
    model: &M,
    v: &[f32],
    dims: [usize; 4],
    y: &Tensor<1, Int>,
    loss: AttackLoss,
    targeted: bool,
) -> f64 {
    let device = common::device();
    let xt = Tensor::<4>::from_data(TensorData::new(v.to_vec(), dims), &device);
    let obj = loss.objective(model.logits(xt), y.clone(), targeted);
    host(obj).iter().map(|&o| o as f64).sum()
}

/// Per pixel, the attack gradient equals central finite differences of the objective.
fn check_pixel_gradients(loss: AttackLoss, targeted: bool) {
    let data = synthetic::templates(4, 3, 1, 6, 0.1, 7);
    let device = common::device();
    let model = advtrain::model::init_seeded(&device, 11, || {
        let net = TanhNet {
            fc1: burn::nn::LinearConfig::new(36, 16).init(&device),
            fc2: burn::nn::LinearConfig::new(16, 3).init(&device),
        };
        let _ = net.logits(Tensor::zeros([1, 1, 6, 6], &device));
        net
    })
    .valid();
    let (x, y) = data.batch(&[0, 1, 2, 3], &device);
    let g = input_gradient(&model, x.clone(), y.clone(), loss, targeted);
    let grad = g
        .grad
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let base = x.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let dims = [4, 1, 6, 6];
    let h = 1e-2f32;
    let mut max_err = 0.0f64;
    for i in 0..base.len() {
        let (mut plus, mut minus) = (base.clone(), base.clone());
        plus[i] += h;
        minus[i] -= h;
        let fd = (objective_sum(&model, &plus, dims, &y, loss, targeted)
            - objective_sum(&model, &minus, dims, &y, loss, targeted))
            / (2.0 * h as f64);
        let err = (fd - grad[i] as f64).abs() / (2e-3 + fd.abs());
        max_err = max_err.max(err);
    }
    assert!(
        max_err < 0.05,
        "{loss:?}: max relative error {max_err} between autodiff and finite differences"
    );
    assert!(
        grad.iter().any(|g| g.abs() > 1e-3),
        "gradient is trivially zero"
    );
}

#[test]
fn input_gradient_matches_finite_differences_ce() {
    check_pixel_gradients(AttackLoss::CrossEntropy, false);
}

#[test]
fn input_gradient_matches_finite_differences_cw_targeted() {
    check_pixel_gradients(AttackLoss::CwMargin, true);
}

/// On the ReLU zoo models (where a pixel-wise difference can straddle a kink), the
/// directional derivative along random directions matches `<grad, v>`.
fn check_directional(kind: ModelKind) {
    let data = synthetic::templates(4, 3, 1, 8, 0.1, 7);
    let model = common::fresh(kind, &data, 3).valid();
    let device = common::device();
    let (x, y) = data.batch(&[0, 1, 2, 3], &device);
    let g = input_gradient(
        &model,
        x.clone(),
        y.clone(),
        AttackLoss::CrossEntropy,
        false,
    );
    let grad = g
        .grad
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let base = x.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let dims = [4, 1, 8, 8];
    let mut rng = advtrain::rng::seeded(5);
    for _ in 0..3 {
        let v = advtrain::rng::normal_vec(&mut rng, base.len());
        let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        let v: Vec<f32> = v.iter().map(|a| a / norm).collect();
        let h = 1e-3f32;
        let shifted =
            |s: f32| -> Vec<f32> { base.iter().zip(&v).map(|(b, d)| b + s * d).collect() };
        let fd = (objective_sum(
            &model,
            &shifted(h),
            dims,
            &y,
            AttackLoss::CrossEntropy,
            false,
        ) - objective_sum(
            &model,
            &shifted(-h),
            dims,
            &y,
            AttackLoss::CrossEntropy,
            false,
        )) / (2.0 * h as f64);
        let analytic: f64 = grad
            .iter()
            .zip(&v)
            .map(|(g, d)| (*g as f64) * (*d as f64))
            .sum();
        let err = (fd - analytic).abs() / (1e-3 + analytic.abs());
        assert!(
            err < 0.05,
            "{kind:?}: directional derivative {fd} vs autodiff {analytic}"
        );
    }
}

#[test]
fn input_gradient_matches_directional_differences_small_cnn() {
    check_directional(ModelKind::SmallCnn);
}

#[test]
fn input_gradient_matches_directional_differences_madry_cnn() {
    check_directional(ModelKind::MadryCnn);
}

#[test]
fn attack_leaves_parameters_without_gradients() {
    // Crafting uses an evaluation copy: the training model's parameters must not be touched
    // and the evaluation copy must not track parameter gradients.
    let data = synthetic::templates(4, 3, 1, 6, 0.1, 7);
    let model = common::fresh(ModelKind::Mlp, &data, 3);
    let eval = model.valid();
    let mut any_tracked = false;
    struct V<'a>(&'a mut bool);
    impl burn::module::ModuleVisitor for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            *self.0 |= p.val().is_require_grad();
        }
    }
    eval.visit(&mut V(&mut any_tracked));
    assert!(
        !any_tracked,
        "evaluation copy still requires parameter gradients"
    );
}
