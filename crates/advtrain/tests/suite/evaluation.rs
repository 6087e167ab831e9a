//! Evaluation you can trust: APGD, the DLR fallback, the ensemble and the sanity checklist,
//! including on a deliberately gradient-masked model.

use crate::common::{self, partly_robust, split};

use advtrain::attack::{Apgd, ApgdLoss, ApgdTargeted, Attack, Pgd, Square};
use advtrain::data::synthetic;
use advtrain::eval::checks::{run_checks, ChecksConfig, Verdict};
use advtrain::eval::ensemble::{ensemble, EnsemblePreset};
use advtrain::eval::evaluate;
use advtrain::model::{Classifier, ModelKind, ZooModel};
use advtrain::progress::Silent;
use advtrain::threat::ThreatModel;
use advtrain::train::MethodConfig;
use burn::module::Module;
use burn::prelude::*;

#[test]
fn apgd_is_at_least_as_strong_as_pgd_with_the_same_budget() {
    let (model, test) = partly_robust();
    let threat = ThreatModel::linf(0.15);
    let mut rng = advtrain::rng::seeded(3);
    let pgd = evaluate(
        &model,
        &test,
        &Pgd::new(threat).steps(20),
        100,
        &mut rng,
        &Silent,
    )
    .unwrap();
    let apgd = evaluate(
        &model,
        &test,
        &Apgd::new(threat).steps(20),
        100,
        &mut rng,
        &Silent,
    )
    .unwrap();
    let apgd_t = evaluate(
        &model,
        &test,
        &ApgdTargeted::new(threat).steps(20).targets(3),
        100,
        &mut rng,
        &Silent,
    )
    .unwrap();
    eprintln!(
        "clean {} pgd {} apgd {} apgd-t {}",
        pgd.clean.value, pgd.robust.value, apgd.robust.value, apgd_t.robust.value
    );
    assert!(
        pgd.robust.value < pgd.clean.value,
        "PGD broke nothing: the test model is too robust"
    );
    assert!(
        pgd.robust.value > 0.05,
        "PGD broke everything: the test cannot compare strengths"
    );
    let slack = 2.0 / test.len() as f64;
    assert!(
        apgd.robust.value <= pgd.robust.value + slack,
        "APGD-CE {} weaker than PGD {}",
        apgd.robust.value,
        pgd.robust.value
    );
    assert!(apgd.max_perturbation <= 0.15 + 1e-6 && apgd_t.max_perturbation <= 0.15 + 1e-6);
}

#[test]
fn dlr_falls_back_on_a_two_class_model() {
    let (train, test) = split(synthetic::robust_vs_nonrobust(900, 4), 700);
    let model = common::quick_train(ModelKind::Mlp, &train, MethodConfig::Standard, 0.0, 3, 1);
    let threat = ThreatModel::linf(0.15);
    let mut rng = advtrain::rng::seeded(1);
    // Neither APGD-DLR nor APGD-T may crash with 2 classes; both still break a standard model.
    let clean = evaluate(
        &model,
        &test,
        &Pgd::new(threat).steps(1),
        100,
        &mut rng,
        &Silent,
    )
    .unwrap()
    .clean
    .value;
    for attack in [
        advtrain::attack::AnyAttack::Apgd(Apgd::new(threat).steps(20).loss(ApgdLoss::Dlr)),
        advtrain::attack::AnyAttack::ApgdTargeted(ApgdTargeted::new(threat).steps(20)),
    ] {
        let r = evaluate(&model, &test, &attack, 100, &mut rng, &Silent).unwrap();
        assert!(
            r.robust.value < clean - 0.3,
            "{}: robust {} vs clean {clean}",
            attack.name(),
            r.robust.value
        );
    }
}

#[test]
fn ensemble_is_never_above_its_members() {
    let (model, test) = partly_robust();
    let threat = ThreatModel::linf(0.15);
    let mut rng = advtrain::rng::seeded(5);
    let attacks = EnsemblePreset::Fast.attacks(threat);
    let ens = ensemble(
        "autoattack-fast",
        &model,
        &test,
        &attacks,
        100,
        &mut rng,
        &Silent,
    )
    .unwrap();
    assert_eq!(ens.stages.len(), 4);
    // Structural: robust points are exactly those no stage broke.
    let broken = ens.broken_by.iter().filter(|b| b.is_some()).count();
    let clean = ens.clean_correct.iter().filter(|&&c| c).count();
    assert_eq!(ens.robust.correct, clean - broken);
    for attack in &attacks {
        let single = evaluate(&model, &test, attack, 100, &mut rng, &Silent).unwrap();
        // Another random start can break a point or two differently; never more.
        assert!(
            ens.robust.value <= single.robust.value + 2.0 / test.len() as f64,
            "ensemble {} above {} alone {}",
            ens.robust.value,
            attack.name(),
            single.robust.value
        );
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
fn checklist_flags_a_gradient_masked_model_that_square_still_breaks() {
    let (train, test) = split(synthetic::templates(1100, 4, 1, 8, 0.15, 1), 800);
    let inner = common::quick_train(ModelKind::Mlp, &train, MethodConfig::Standard, 0.0, 6, 3);
    let masked = Saturated {
        inner: inner.clone(),
    };
    let threat = ThreatModel::linf(0.3);
    let mut rng = advtrain::rng::seeded(2);

    let pgd = evaluate(
        &masked,
        &test,
        &Pgd::new(threat).steps(20),
        100,
        &mut rng,
        &Silent,
    )
    .unwrap();
    let square = evaluate(
        &masked,
        &test,
        &Square::new(threat).queries(500),
        100,
        &mut rng,
        &Silent,
    )
    .unwrap();
    let honest = evaluate(
        &inner,
        &test,
        &Pgd::new(threat).steps(20),
        100,
        &mut rng,
        &Silent,
    )
    .unwrap();
    eprintln!(
        "masked: pgd {} square {}; unmasked pgd {}",
        pgd.robust.value, square.robust.value, honest.robust.value
    );
    assert!(
        pgd.robust.value > honest.robust.value + 0.3,
        "masking did not fool PGD: the test is void"
    );
    assert!(
        square.robust.value < pgd.robust.value - 0.3,
        "Square did not see through the masking"
    );

    let mut cfg = ChecksConfig::new(threat);
    cfg.square_queries = 500;
    cfg.batch_size = 100;
    let masked_checks = run_checks(&masked, &test, &cfg, &mut rng, &Silent).unwrap();
    let warned: Vec<usize> = masked_checks
        .iter()
        .filter(|c| c.verdict == Verdict::Warn)
        .map(|c| c.id)
        .collect();
    assert!(
        warned.contains(&6),
        "zero gradients not flagged: {masked_checks:#?}"
    );
    assert!(
        warned.contains(&4),
        "black-box beating white-box not flagged: {masked_checks:#?}"
    );

    // The honest model passes the gradient and batch checks.
    let honest_checks = run_checks(&inner, &test, &cfg, &mut rng, &Silent).unwrap();
    for id in [2, 6, 7] {
        let c = honest_checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(
            c.verdict,
            Verdict::Pass,
            "honest model failed check {id}: {}",
            c.detail
        );
    }
}

#[test]
fn checklist_flags_a_model_left_in_training_mode() {
    // Dropout active at evaluation: a classic evaluation bug. Modelled by a classifier whose
    // logits depend on the rest of the batch (batch-statistics normalisation).
    #[derive(Module, Debug)]
    struct BatchDependent {
        inner: ZooModel,
    }
    impl Classifier for BatchDependent {
        fn logits(&self, images: Tensor<4>) -> Tensor<2> {
            let mean = images.clone().mean();
            let b = images.dims()[0];
            self.inner
                .logits(images - mean.reshape([1, 1, 1, 1]).expand([b, 1, 8, 8]))
        }
    }
    let data = synthetic::templates(200, 3, 1, 8, 0.2, 9);
    let inner = common::quick_train(ModelKind::Mlp, &data, MethodConfig::Standard, 0.0, 2, 3);
    let model = BatchDependent { inner };
    let mut cfg = ChecksConfig::new(ThreatModel::linf(0.1));
    cfg.square_queries = 50;
    cfg.steps = 5;
    let checks = run_checks(
        &model,
        &data.take(100),
        &cfg,
        &mut advtrain::rng::seeded(1),
        &Silent,
    )
    .unwrap();
    let c7 = checks.iter().find(|c| c.id == 7).unwrap();
    assert_eq!(c7.verdict, Verdict::Warn, "{}", c7.detail);
}
