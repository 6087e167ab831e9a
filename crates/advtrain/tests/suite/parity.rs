//! Evaluation parity with the reference AutoAttack: the ensemble's members as the reference
//! configures them, robust accuracy aggregated per point, and resumable evaluations.

use crate::common::partly_robust;

use advtrain::attack::{AnyAttack, Attack};
use advtrain::error::Error;
use advtrain::eval::ensemble::EnsemblePreset;
use advtrain::eval::resume::EvalState;
use advtrain::eval::spec::{AttackKind, AttackSpec, Checkpoint, SpecResult};
use advtrain::eval::{Accuracy, RobustEval};
use advtrain::progress::Silent;
use advtrain::run::{worst_case, EvalFile, EvalRecord};
use advtrain::threat::{Norm, ThreatModel};

#[test]
fn the_standard_ensemble_is_the_reference_one() {
    let threat = ThreatModel::linf(0.1);
    let attacks = EnsemblePreset::Standard.attacks(threat);
    let names: Vec<String> = attacks.iter().map(Attack::name).collect();
    assert_eq!(attacks.len(), 4, "{names:?}");
    assert!(names[0].starts_with("apgd-ce-100x1"), "{names:?}");
    assert!(names[1].starts_with("apgd-t-100x9targets"), "{names:?}");
    assert!(matches!(attacks[2], AnyAttack::FabTargeted(_)), "{names:?}");
    match &attacks[3] {
        AnyAttack::Square(sq) => {
            assert_eq!(sq.queries, 5000);
            assert_eq!(sq.p_init, 0.8);
            assert!(
                !sq.rescale_schedule,
                "the reference ensemble runs Square without rescaling its schedule"
            );
        }
        other => panic!("fourth member is {}", other.name()),
    }
    let plus = EnsemblePreset::Plus.attacks(threat);
    assert_eq!(plus.len(), 6);
    assert!(plus[0].name().starts_with("apgd-ce-100x5"));
    assert!(plus[1].name().starts_with("apgd-dlr-100x5"));
    let rand = EnsemblePreset::Rand.attacks(threat);
    assert_eq!(rand.len(), 2);
    assert!(rand.iter().all(|a| a.name().contains("eot=20")));
}

/// A record of `robust` flags on four points (all correct clean).
fn record(attack: &str, robust: [u8; 4]) -> EvalFile {
    let n = robust.len();
    let correct = robust.iter().filter(|&&r| r == 1).count();
    let result = RobustEval {
        attack: attack.to_string(),
        threat: ThreatModel::linf(0.1),
        n,
        clean: Accuracy::new(n, n),
        robust: Accuracy::new(correct, n),
        clean_correct: vec![true; n],
        robust_correct: robust.iter().map(|&r| r == 1).collect(),
        labels: vec![0, 1, 0, 1],
        adv_pred: vec![0, 1, 0, 1],
        clean_pred: vec![0, 1, 0, 1],
        max_perturbation: 0.1,
        seconds: 1.0,
    };
    let names = vec!["a".to_string(), "b".to_string()];
    EvalFile {
        file: format!("eval-{attack}.json"),
        record: EvalRecord::from_eval(attack, &result, None, None, 0, &names),
    }
}

#[test]
fn robust_accuracy_is_the_per_point_worst_case_not_the_minimum_over_attacks() {
    // Each attack alone leaves 3 of 4 points robust, but they break different points: only
    // 2 survive both.
    let a = record("pgd", [1, 1, 1, 0]);
    let b = record("square", [0, 1, 1, 1]);
    let mut subset = record("apgd-ce", [0, 0, 0, 0]);
    subset.file = "eval-apgd-ce-n2.json".into();
    subset.record.n = 2;
    let evals = [a.clone(), b.clone(), subset];
    let worst = worst_case(&evals, &b.record);
    assert_eq!(worst.robust.correct, 2);
    assert_eq!(worst.combined, vec!["eval-pgd.json", "eval-square.json"]);
    assert_eq!(
        worst.left_out.len(),
        1,
        "the subset evaluation is named as left out"
    );
    assert!(worst.left_out[0].contains("n = 2"), "{:?}", worst.left_out);

    let mut other_model = record("fgsm", [1, 1, 1, 1]);
    other_model.record.per_example.clean_correct = vec![1, 1, 0, 1];
    let worst = worst_case(&[a, other_model], &b.record);
    assert_eq!(worst.combined, vec!["eval-pgd.json"]);
    assert!(worst.left_out[0].contains("another model"));
    let _ = Norm::Linf;
}

#[test]
fn the_worst_case_leaves_out_other_weights_and_other_test_data_by_their_hashes() {
    // Same labels and the same clean predictions: only the recorded hashes tell these apart.
    let stamp = |mut e: EvalFile, model: &str, data: &str| {
        e.record.model_sha256 = Some(model.into());
        e.record.test_data_sha256 = Some(data.into());
        e
    };
    let reference = stamp(record("pgd", [1, 1, 1, 0]), "m1", "d1");
    let same = stamp(record("square", [0, 1, 1, 1]), "m1", "d1");
    let mut earlier_model = stamp(record("apgd-ce", [0, 0, 0, 0]), "m0", "d1");
    earlier_model.file = "eval-apgd-ce.json".into();
    let mut foreign_data = stamp(record("fgsm", [0, 0, 0, 0]), "m1", "d2");
    foreign_data.file = "eval-fgsm.json".into();
    let evals = [reference.clone(), same, earlier_model, foreign_data];
    let worst = worst_case(&evals, &reference.record);
    assert_eq!(worst.combined, vec!["eval-pgd.json", "eval-square.json"]);
    assert_eq!(worst.robust.correct, 2);
    let reasons = worst.left_out.join("; ");
    assert!(
        reasons.contains("eval-apgd-ce.json: another model"),
        "{reasons}"
    );
    assert!(
        reasons.contains("eval-fgsm.json: other test data"),
        "{reasons}"
    );
}

/// The outcome of a spec, with wall-clock times zeroed (the only thing allowed to differ).
fn without_times(mut r: SpecResult) -> SpecResult {
    r.eval.seconds = 0.0;
    if let Some(ens) = &mut r.ensemble {
        ens.seconds = 0.0;
        for s in &mut ens.stages {
            s.seconds = 0.0;
        }
    }
    r
}

#[test]
fn a_killed_evaluation_resumes_to_exactly_the_uninterrupted_result() {
    let (model, test) = partly_robust();
    let test = test.take(150);
    let threat = ThreatModel::linf(0.15);
    let spec = AttackSpec::new(AttackKind::AutoAttackFast);
    let batch = 40;

    let mut rng = advtrain::rng::seeded(3);
    let whole = spec
        .run(&model, &test, threat, batch, &mut rng, &Silent)
        .unwrap();
    let rng_after_whole = advtrain::rng::RngState::of(&rng);
    let broken = whole
        .ensemble
        .as_ref()
        .unwrap()
        .stages
        .iter()
        .filter(|s| s.broken > 0)
        .count();
    assert!(broken >= 1, "the test needs an ensemble that breaks points");

    // Kill it at several points: right after the clean pass, inside the first stage, in a
    // later stage. What the last successful save held is what a killed process leaves.
    for kill_after in [1usize, 3, 7] {
        let mut rng = advtrain::rng::seeded(3);
        let mut last: Option<EvalState> = None;
        let mut saves = 0;
        let mut save = |s: &EvalState| {
            if saves == kill_after {
                return Err(Error::config("killed"));
            }
            saves += 1;
            last = Some(s.clone());
            Ok(())
        };
        let checkpoint = Checkpoint {
            saved: None,
            save: &mut save,
        };
        let err = spec
            .run_resumable(&model, &test, threat, batch, checkpoint, &mut rng, &Silent)
            .unwrap_err();
        assert!(err.to_string().contains("killed"));
        let saved = last.expect("a state was saved before the kill");
        assert!(!saved.finished());
        // Resume in a "new process": a generator at some other position.
        let mut rng = advtrain::rng::seeded(999);
        let mut keep = |_: &EvalState| Ok(());
        let checkpoint = Checkpoint {
            saved: Some(saved),
            save: &mut keep,
        };
        let resumed = spec
            .run_resumable(&model, &test, threat, batch, checkpoint, &mut rng, &Silent)
            .unwrap();
        let (a, b) = (without_times(whole.clone()), without_times(resumed));
        assert_eq!(a.eval, b.eval, "killed after {kill_after} saves");
        assert_eq!(a.ensemble, b.ensemble, "killed after {kill_after} saves");
        assert_eq!(advtrain::rng::RngState::of(&rng), rng_after_whole);
    }
}

#[test]
fn a_saved_state_resumes_only_its_own_evaluation() {
    let (model, test) = partly_robust();
    let test = test.take(60);
    let threat = ThreatModel::linf(0.15);
    let spec = AttackSpec::new(AttackKind::Pgd);
    let mut first: Option<EvalState> = None;
    let mut save = |s: &EvalState| {
        first.get_or_insert_with(|| s.clone());
        Ok(())
    };
    let mut rng = advtrain::rng::seeded(1);
    let checkpoint = Checkpoint {
        saved: None,
        save: &mut save,
    };
    spec.run_resumable(&model, &test, threat, 30, checkpoint, &mut rng, &Silent)
        .unwrap();
    let state = first.unwrap();
    let attempt = |spec: &AttackSpec, threat, batch, state: &EvalState| {
        let mut keep = |_: &EvalState| Ok(());
        let checkpoint = Checkpoint {
            saved: Some(state.clone()),
            save: &mut keep,
        };
        let mut rng = advtrain::rng::seeded(1);
        spec.run_resumable(&model, &test, threat, batch, checkpoint, &mut rng, &Silent)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let more_steps = AttackSpec {
        steps: 40,
        ..spec.clone()
    };
    assert!(attempt(&more_steps, threat, 30, &state).contains("another evaluation"));
    assert!(attempt(&spec, ThreatModel::linf(0.2), 30, &state).contains("eps=0.2"));
    assert!(attempt(&spec, threat, 20, &state).contains("batch size 30, now 20"));
    let mut other_model = state.clone();
    other_model.clean_correct[0] = !other_model.clean_correct[0];
    assert!(attempt(&spec, threat, 30, &other_model).contains("another model"));
}

#[test]
fn restarts_and_targets_attack_only_the_points_still_robust() {
    // Same budget, same result class: with restarts only on unbroken points, three restarts
    // are never weaker than one (a point broken once stays broken).
    let (model, test) = partly_robust();
    let test = test.take(200);
    let threat = ThreatModel::linf(0.15);
    let run = |spec: AttackSpec| {
        let mut rng = advtrain::rng::seeded(8);
        spec.run(&model, &test, threat, 100, &mut rng, &Silent)
            .unwrap()
            .eval
    };
    let one = run(AttackSpec {
        steps: 10,
        ..AttackSpec::new(AttackKind::Pgd)
    });
    let three = run(AttackSpec {
        steps: 10,
        restarts: 3,
        ..AttackSpec::new(AttackKind::Pgd)
    });
    // The first restart draws the same start as the single run, so every point it broke
    // stays broken.
    for i in 0..test.len() {
        assert!(
            !(one.clean_correct[i] && !one.robust_correct[i] && three.robust_correct[i]),
            "point {i} broken by one restart but not by three"
        );
    }
    assert!(three.robust.correct <= one.robust.correct);
}
