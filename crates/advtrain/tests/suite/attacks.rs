//! Attack invariants (property tests) and attack strength on trained models.

use crate::common;

use advtrain::attack::{Apgd, Attack, AttackLoss, Fgsm, Pgd, TargetMode};
use advtrain::data::synthetic;
use advtrain::eval::evaluate;
use advtrain::model::{Classifier, ModelKind};
use advtrain::progress::Silent;
use advtrain::threat::{Norm, ThreatModel};
use advtrain::train::MethodConfig;
use burn::module::Module;
use burn::prelude::*;
use proptest::prelude::*;

fn check_inside(
    threat: ThreatModel,
    x: &Tensor<4>,
    x_adv: &Tensor<4>,
) -> Result<(), TestCaseError> {
    let pert = threat.max_perturbation(x_adv, x);
    prop_assert!(
        pert <= threat.eps * (1.0 + 1e-5) + 1e-6,
        "{}: perturbation {pert} outside the ball",
        threat.describe()
    );
    let lo = x_adv.clone().min().into_scalar::<f32>();
    let hi = x_adv.clone().max().into_scalar::<f32>();
    prop_assert!(lo >= 0.0 && hi <= 1.0, "left [0,1]: min {lo} max {hi}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, .. ProptestConfig::default() })]

    /// Every attack's output stays inside the ε-ball and the [0,1] box, for both norms,
    /// random shapes, radii, step sizes and seeds.
    #[test]
    fn attacks_stay_in_ball_and_box(
        batch in 1usize..5,
        channels in prop_oneof![Just(1usize), Just(3usize)],
        size in 4usize..9,
        eps in 0.0f32..0.6,
        l2 in any::<bool>(),
        which in 0usize..6,
        alpha_scale in 0.1f32..4.0,
        seed in 0u64..1000,
    ) {
        let data = synthetic::templates(batch, 3, channels, size, 0.3, seed);
        let model = common::fresh(ModelKind::Mlp, &data, seed);
        let device = common::device();
        let idx: Vec<usize> = (0..batch).collect();
        let (x, y) = data.batch(&idx, &device);
        // L2 radii are larger in practice: scale with the image size.
        let threat = if l2 {
            ThreatModel { norm: Norm::L2, eps: eps * (data.image_len() as f32).sqrt() / 2.0 }
        } else {
            ThreatModel::linf(eps)
        };
        let mut rng = advtrain::rng::seeded(seed);
        let alpha = alpha_scale * threat.eps;
        let x_adv = match which {
            0 => Fgsm::new(threat).perturb(&model, x.clone(), y, &mut rng),
            1 => Fgsm::random_start(threat, alpha).perturb(&model, x.clone(), y, &mut rng),
            2 => Pgd::new(threat).steps(3).step_size(alpha).perturb(&model, x.clone(), y, &mut rng),
            3 => Pgd::new(threat).steps(3).restarts(2).loss(AttackLoss::CwMargin)
                .perturb(&model, x.clone(), y, &mut rng),
            4 => Pgd::new(threat).steps(3).targeted(TargetMode::Random).keep_best(false)
                .perturb(&model, x.clone(), y, &mut rng),
            _ => Pgd::new(threat).steps(2).random_start(false).targeted(TargetMode::LeastLikely)
                .perturb(&model, x.clone(), y, &mut rng),
        };
        prop_assert_eq!(x_adv.dims(), x.dims());
        check_inside(threat, &x, &x_adv)?;
    }

    /// Projection is idempotent and a point already inside is left alone.
    #[test]
    fn projection_is_idempotent(eps in 0.0f32..0.5, l2 in any::<bool>(), seed in 0u64..500) {
        let device = common::device();
        let mut rng = advtrain::rng::seeded(seed);
        let x = Tensor::<4>::from_data(
            TensorData::new(advtrain::rng::uniform_vec(&mut rng, 2 * 16, 0.0, 1.0), [2, 1, 4, 4]), &device);
        let far = Tensor::<4>::from_data(
            TensorData::new(advtrain::rng::uniform_vec(&mut rng, 2 * 16, -1.0, 2.0), [2, 1, 4, 4]), &device);
        let threat = if l2 { ThreatModel::l2(eps) } else { ThreatModel::linf(eps) };
        let once = threat.project(far, &x);
        check_inside(threat, &x, &once)?;
        let twice = threat.project(once.clone(), &x);
        let diff = (twice - once).abs().max().into_scalar::<f32>();
        prop_assert!(diff <= 1e-6, "projection moved an inside point by {diff}");
    }
}

/// A small MLP trained normally on 4-class template images: accurate and not robust.
fn trained_undefended() -> (advtrain::model::ZooModel, advtrain::data::Dataset) {
    // One draw, split, so that train and test share the class templates but no examples.
    let all = synthetic::templates(1100, 4, 1, 8, 0.15, 1);
    let train = all.subset(&(0..800).collect::<Vec<_>>());
    let test = all.subset(&(800..1100).collect::<Vec<_>>());
    let model = common::quick_train(ModelKind::Mlp, &train, MethodConfig::Standard, 0.0, 6, 3);
    (model, test)
}

#[test]
fn attacks_on_a_trained_model_behave_as_theory_says() {
    let (model, test) = trained_undefended();
    let mut rng = advtrain::rng::seeded(9);
    let eps = 0.15;
    let fgsm = evaluate(
        &model,
        &test,
        &Fgsm::new(ThreatModel::linf(eps)),
        128,
        &mut rng,
        &Silent,
    )
    .unwrap();
    assert!(
        fgsm.clean.value > 0.95,
        "model did not learn: clean {}",
        fgsm.clean.value
    );
    let pgd = evaluate(
        &model,
        &test,
        &Pgd::new(ThreatModel::linf(eps)).steps(20),
        128,
        &mut rng,
        &Silent,
    )
    .unwrap();
    // Iterative attacks are at least as strong as single-step ones.
    assert!(
        pgd.robust.value <= fgsm.robust.value,
        "PGD robust {} > FGSM robust {}",
        pgd.robust.value,
        fgsm.robust.value
    );
    assert!(
        pgd.robust.value < pgd.clean.value - 0.2,
        "PGD barely changed anything: clean {} fgsm {} pgd {}",
        pgd.clean.value,
        fgsm.robust.value,
        pgd.robust.value
    );

    // With an unbounded budget PGD drives accuracy to ~0, in both norms.
    let big = evaluate(
        &model,
        &test,
        &Pgd::new(ThreatModel::linf(1.0)).steps(20),
        128,
        &mut rng,
        &Silent,
    )
    .unwrap();
    assert!(
        big.robust.value <= 0.02,
        "eps=1 PGD leaves {} accuracy",
        big.robust.value
    );
    let big_l2 = evaluate(
        &model,
        &test,
        &Pgd::new(ThreatModel::l2(8.0)).steps(30),
        128,
        &mut rng,
        &Silent,
    )
    .unwrap();
    assert!(
        big_l2.robust.value <= 0.02,
        "large L2 PGD leaves {} accuracy",
        big_l2.robust.value
    );
}

#[test]
fn targeted_pgd_reaches_its_target() {
    let (model, test) = trained_undefended();
    let model = model.valid();
    let device = common::device();
    let idx: Vec<usize> = (0..200).collect();
    let (x, y) = test.batch(&idx, &device);
    let labels = y
        .clone()
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    let targets: Vec<i64> = labels.iter().map(|l| (l + 1) % 4).collect();
    let t = Tensor::<1, Int>::from_data(TensorData::new(targets.clone(), [200]), &device);
    let mut rng = advtrain::rng::seeded(4);
    let pgd = Pgd::new(ThreatModel::linf(0.3)).steps(30);
    let x_adv = pgd.perturb_towards(&model, x, y, t, &mut rng);
    let pred = model.logits(x_adv).argmax(1).reshape([200]);
    let pred = pred
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    let hit = pred.iter().zip(&targets).filter(|(p, t)| p == t).count();
    assert!(
        hit as f64 / 200.0 >= 0.9,
        "targeted PGD reached its target on only {hit}/200"
    );
}

/// A radius that `ThreatModel::validate` refuses still does not panic inside APGD when a
/// library caller skips the check: the fused L∞ step (whose `f32::clamp` panics on a NaN
/// bound) is only taken for a radius `>= 0`, and a NaN radius keeps the tensor form's NaNs.
#[test]
fn apgd_with_a_nan_radius_does_not_panic() {
    let data = synthetic::templates(3, 3, 1, 6, 0.3, 5);
    let model = common::fresh(ModelKind::Mlp, &data, 5);
    let device = common::device();
    let (x, y) = data.batch(&[0, 1, 2], &device);
    let mut rng = advtrain::rng::seeded(5);
    let threat = ThreatModel::linf(f32::NAN);
    assert!(threat.validate().is_err());
    let x_adv = Apgd::new(threat)
        .steps(3)
        .perturb(&model, x.clone(), y, &mut rng);
    assert_eq!(x_adv.dims(), x.dims());
}
