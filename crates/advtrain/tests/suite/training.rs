//! Training methods on generated data: adversarial training buys robustness that standard
//! training does not have, and runs are reproducible from their seed.

use crate::common;

use advtrain::attack::Pgd;
use advtrain::data::synthetic;
use advtrain::eval::evaluate;
use advtrain::model::ModelKind;
use advtrain::progress::Silent;
use advtrain::threat::ThreatModel;
use advtrain::train::{self, MethodConfig, NoObserver, TrainConfig};

const EPS: f32 = 0.15;

fn robust_accuracy(method: MethodConfig) -> (f64, f64) {
    let all = synthetic::robust_vs_nonrobust(2600, 21);
    let train = all.subset(&(0..2000).collect::<Vec<_>>());
    let test = all.subset(&(2000..2600).collect::<Vec<_>>());
    let model = common::quick_train(ModelKind::Mlp, &train, method, EPS, 4, 5);
    let mut rng = advtrain::rng::seeded(1);
    let pgd = Pgd::new(ThreatModel::linf(EPS)).steps(20).restarts(2);
    let r = evaluate(&model, &test, &pgd, 256, &mut rng, &Silent).unwrap();
    (r.clean.value, r.robust.value)
}

#[test]
fn adversarial_methods_beat_standard_under_pgd() {
    let (std_clean, std_robust) = robust_accuracy(MethodConfig::Standard);
    assert!(
        std_clean > 0.95,
        "standard model did not learn: {std_clean}"
    );
    assert!(
        std_robust < 0.4,
        "standard model unexpectedly robust: {std_robust}"
    );
    for name in ["pgd-at", "fgsm-rs", "mixed", "trades", "free", "mart"] {
        let mut method = MethodConfig::default_for(name).unwrap();
        if let MethodConfig::Trades { beta, .. } | MethodConfig::Mart { beta, .. } = &mut method {
            *beta = 3.0;
        }
        let (clean, robust) = robust_accuracy(method);
        assert!(
            robust >= std_robust + 0.3,
            "{name}: robust {robust:.3} (clean {clean:.3}) not clearly above standard's {std_robust:.3}"
        );
        assert!(clean > 0.75, "{name}: clean accuracy collapsed to {clean}");
    }
}

#[test]
fn same_seed_gives_same_metrics() {
    let data = synthetic::templates(300, 3, 1, 8, 0.2, 2);
    let val = data.take(100);
    let run = || {
        let mut config = TrainConfig::new(MethodConfig::default_for("fgsm-rs").unwrap(), 0.1);
        config.epochs = 2;
        config.batch_size = 50;
        config.seed = 42;
        let model = common::fresh(ModelKind::SmallCnn, &data, 42);
        train::train(
            model,
            &data,
            &val,
            &config,
            &common::device(),
            &Silent,
            &mut NoObserver,
        )
        .unwrap()
        .history
    };
    let a = run();
    let b = run();
    assert_eq!(a.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.train_loss, y.train_loss);
        assert_eq!(x.val_clean_accuracy, y.val_clean_accuracy);
        assert_eq!(x.val_robust_accuracy, y.val_robust_accuracy);
    }
}

#[test]
fn invalid_settings_are_refused_with_a_named_reason() {
    let data = synthetic::templates(20, 2, 1, 8, 0.2, 2);
    let model = common::fresh(ModelKind::Mlp, &data, 1);
    let mut config = TrainConfig::new(MethodConfig::default_for("pgd-at").unwrap(), -0.1);
    let err = train::train(
        model,
        &data,
        &data.take(0),
        &config,
        &common::device(),
        &Silent,
        &mut NoObserver,
    )
    .err()
    .expect("negative eps must be refused");
    assert!(err.to_string().contains("eps"), "{err}");
    config.eps = f32::NAN;
    assert!(config.validate().unwrap_err().to_string().contains("eps"));
    config.eps = 0.0;
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("eps > 0"));
    config.eps = 0.1;
    config.lr = f64::NAN;
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("learning rate"));
}

/// ε warm-up starts every method at radius 0 (the random starts of fgsm-rs and PGD draw
/// from an empty range there, which used to panic) and reaches the full ε by its end.
#[test]
fn eps_warmup_trains_every_method_from_a_zero_radius() {
    let data = synthetic::templates(200, 3, 1, 8, 0.2, 3);
    let (train_set, val) = data.split_validation(40, 1).unwrap();
    for name in MethodConfig::NAMES {
        if name == "standard" {
            continue;
        }
        let mut config = TrainConfig::new(MethodConfig::default_for(name).unwrap(), 0.1);
        config.epochs = 2;
        config.batch_size = 40;
        config.eps_warmup_epochs = 1.0;
        let trained = train::train(
            common::fresh(ModelKind::Mlp, &train_set, 1),
            &train_set,
            &val,
            &config,
            &common::device(),
            &Silent,
            &mut NoObserver,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let eps: Vec<f32> = trained.history.iter().map(|m| m.eps).collect();
        assert!(
            eps[0] < 0.1 && eps[1] == 0.1,
            "{name}: eps per epoch {eps:?}"
        );
    }
}
