//! The side-effects audit end to end on a small trained model: every part present, every
//! accuracy bounded by what it must be below, and the same seed gives the same audit.

use crate::common;

use advtrain::data::corrupt::Corruption;
use advtrain::data::synthetic;
use advtrain::eval::audit::{audit, AuditConfig};
use advtrain::eval::spatial::SpatialGrid;
use advtrain::model::ModelKind;
use advtrain::progress::Silent;
use advtrain::threat::{Norm, ThreatModel};
use advtrain::train::MethodConfig;

#[test]
fn an_audit_measures_every_axis_and_is_reproducible() {
    let all = synthetic::templates(500, 4, 1, 8, 0.15, 5);
    let train = all.subset(&(0..400).collect::<Vec<_>>());
    let test = all.subset(&(400..500).collect::<Vec<_>>());
    let model = common::quick_train(ModelKind::Mlp, &train, MethodConfig::Standard, 0.0, 3, 1);
    let mut config = AuditConfig::new(ThreatModel::linf(0.1));
    config.steps = 3;
    config.corruptions = vec![Corruption::GaussianNoise, Corruption::Contrast];
    config.grid =
        SpatialGrid::new(vec![-10.0, 0.0, 10.0], vec![-1.0, 0.0, 1.0], vec![0.0]).unwrap();
    config.noise_examples = 50;
    let a = audit(&model, &test, &config, &Silent).unwrap();
    assert_eq!(a.n, 100);
    assert!(
        a.clean.value > 0.5,
        "the model did not learn: {:?}",
        a.clean
    );
    assert!(a.robust.correct <= a.clean.correct);
    assert_eq!(a.corruptions.len(), 2);
    assert!(a.corruptions.iter().all(|c| c.by_severity.len() == 5));
    let names: Vec<&str> = a.threat_models.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["other-norm", "twice-eps", "spatial"]);
    assert!(
        a.threat_models[0].description.contains("l2"),
        "{:?}",
        a.threat_models[0]
    );
    for t in &a.threat_models {
        assert!(t.robust.correct <= a.clean.correct, "{t:?}");
    }
    assert_eq!(a.per_class.len(), 4);
    let per_class_clean: usize = a.per_class.iter().map(|r| r.clean.correct).sum();
    assert_eq!(per_class_clean, a.clean.correct);
    assert!(a.robust_disparity.worst.value <= a.clean_disparity.best.value);
    assert_eq!(a.calibration_clean.n, 100);
    assert!((0.0..=1.0).contains(&a.calibration_attacked.ece));
    assert!((0.0..=1.0).contains(&a.noise_confidence));
    assert_eq!(a.config.threat.norm, Norm::Linf);
    let b = audit(&model, &test, &config, &Silent).unwrap();
    assert_eq!(
        serde_json::to_value(&a.corruptions).unwrap(),
        serde_json::to_value(&b.corruptions).unwrap()
    );
    assert_eq!(a.robust, b.robust);
    assert_eq!(a.threat_models, b.threat_models);
}
