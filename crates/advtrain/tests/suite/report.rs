//! The HTML report's data path: run records written with the real structs are read back,
//! and what each chart and table shows must equal what the files say. Runs lacking a record
//! get a one-line note instead of the section; corrupt records give errors naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use advtrain::eval::checks::{Check, Verdict};
use advtrain::eval::{Accuracy, CurvePoint};
use advtrain::report::{self, ReportData};
use advtrain::run::{ClassAccuracy, EvalRecord, PerExample, Summary};
use advtrain::threat::Norm;
use advtrain::train::{EpochMetrics, MonitorEvent};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advtrain-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn summary(clean: f64, robust: Option<f64>) -> Summary {
    Summary {
        method: "pgd-at".into(),
        model: "small-cnn".into(),
        dataset: "fashion-mnist".into(),
        norm: Norm::Linf,
        eps: 0.1,
        epochs: 3,
        train_seconds: 42.5,
        clean_accuracy: clean,
        clean_ci95: [clean - 0.01, clean + 0.01],
        robust_accuracy: robust,
        robust_ci95: robust.map(|r| [r - 0.02, r + 0.02]),
        robust_attack: robust.map(|_| "pgd-20x1 ce linf eps=0.1 alpha=0.0125".into()),
        robust_combined: vec!["eval-pgd.json".into()],
        robust_left_out: Vec::new(),
        n_test: 200,
        test_data_sha256: None,
        best_checkpoint: None,
        stopped_early: None,
        rollbacks: 1,
    }
}

fn epoch(e: usize, loss: f64, clean: f64, fgsm: f64, pgd: f64) -> EpochMetrics {
    EpochMetrics {
        epoch: e,
        train_loss: loss,
        train_accuracy: 0.5,
        lr: 0.05,
        eps: 0.1,
        val_clean_accuracy: Some(clean),
        val_robust_accuracy: Some(pgd),
        val_attack: Some("pgd-10x1 ce linf eps=0.1".into()),
        val_fgsm_accuracy: Some(fgsm),
        val_fgsm_pgd_gap: Some(fgsm - pgd),
        val_grad_alignment: Some(0.9),
        step_scale: 1.0,
        checks: Vec::new(),
        events: Vec::new(),
        best_epoch: Some(e.min(2)),
        epoch_seconds: 1.0,
        train_images_per_second: 100.0,
        extra: Default::default(),
    }
}

fn eval_record(clean: f64, robust: f64, curve: Option<Vec<(f32, usize)>>) -> EvalRecord {
    let n = 200;
    EvalRecord {
        attack: "pgd".into(),
        attack_description: "pgd-20x1 ce linf eps=0.1 alpha=0.0125".into(),
        norm: Norm::Linf,
        eps: 0.1,
        n,
        clean_accuracy: clean,
        clean_ci95: [clean - 0.01, clean + 0.01],
        robust_accuracy: robust,
        robust_ci95: [robust - 0.02, robust + 0.02],
        steps: Some(20),
        restarts: Some(1),
        seed: 0,
        seconds: 1.0,
        max_perturbation: 0.1,
        per_class: vec![
            ClassAccuracy {
                class: 0,
                name: "T-shirt/top".into(),
                clean: Accuracy::new(90, 100),
                robust: Accuracy::new(61, 100),
            },
            ClassAccuracy {
                class: 1,
                name: "Trouser".into(),
                clean: Accuracy::new(97, 100),
                robust: Accuracy::new(88, 100),
            },
        ],
        eps_curve: curve.map(|c| {
            c.into_iter()
                .map(|(eps, correct)| CurvePoint {
                    eps,
                    robust: Accuracy::new(correct, n),
                })
                .collect()
        }),
        per_example: PerExample {
            labels: vec![0; n],
            clean_correct: vec![1; n],
            robust_correct: vec![0; n],
            adv_pred: vec![1; n],
            clean_pred: vec![0; n],
        },
        stages: None,
        broken_by: None,
        test_data_sha256: None,
        model_sha256: None,
    }
}

fn checks() -> Vec<Check> {
    let figs = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    vec![
        Check {
            id: 1,
            name: "accuracy does not increase with eps".into(),
            verdict: Verdict::Pass,
            detail: "robust accuracy falls monotonically".into(),
            figures: figs(&[
                ("accuracy_at_eps_0", 0.9),
                ("accuracy_at_eps_0.05", 0.7),
                ("accuracy_at_eps_0.1", 0.5),
                ("accuracy_at_eps_0.2", 0.1),
            ]),
        },
        Check {
            id: 4,
            name: "white-box at least as strong as black-box".into(),
            verdict: Verdict::Warn,
            detail: "the gradient-free Square attack broke 7 points that PGD could not".into(),
            figures: figs(&[("broken_only_by_square", 7.0), ("pgd", 0.5)]),
        },
    ]
}

/// A run with every record the report reads (no config.toml or model: no examples).
fn full_run(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    advtrain::io::write_json(&dir.join("summary.json"), &summary(0.835, Some(0.62))).unwrap();
    let mut lines = vec![
        epoch(1, 1.25, 0.70, 0.55, 0.45),
        epoch(2, 0.90, 0.80, 0.66, 0.58),
        epoch(3, 0.75, 0.82, 0.90, 0.05),
    ];
    lines[2].events = vec![
        MonitorEvent {
            epoch: 3,
            batch: Some(40),
            kind: "alarm".into(),
            message: "FGSM-PGD gap 85 points: catastrophic overfitting".into(),
        },
        MonitorEvent {
            epoch: 3,
            batch: Some(40),
            kind: "rollback".into(),
            message: "restored epoch 2; step size x0.5".into(),
        },
    ];
    for m in &lines {
        advtrain::io::append_jsonl(&dir.join("metrics.jsonl"), m).unwrap();
    }
    advtrain::io::write_json(
        &dir.join("eval-pgd.json"),
        &eval_record(0.835, 0.62, Some(vec![(0.0, 167), (0.05, 150), (0.1, 124)])),
    )
    .unwrap();
    advtrain::io::write_json(&dir.join("checks.json"), &checks()).unwrap();
    dir
}

#[test]
fn chart_data_equals_the_records() {
    let root = scratch("full");
    let a = full_run(&root, "run-a");
    // A second run with only a summary and a checklist: its ε-curve comes from check 1.
    let b = root.join("run-b");
    std::fs::create_dir_all(&b).unwrap();
    advtrain::io::write_json(&b.join("summary.json"), &summary(0.91, Some(0.02))).unwrap();
    advtrain::io::write_json(&b.join("checks.json"), &checks()).unwrap();

    let mut data = ReportData::load(&[&a, &b]).unwrap();
    assert_eq!(data.runs[0].name, "run-a");
    let device = advtrain::prelude::Device::flex();
    for r in &mut data.runs {
        r.examples = report::report_examples(r, &device);
    }

    // Trade-off: summary.json's clean and robust accuracy, in %.
    let points = report::tradeoff_points(&data);
    assert_eq!(points.len(), 2);
    assert_eq!((points[0].run, points[0].name.as_str()), (0, "run-a"));
    assert!((points[0].clean_pct - 83.5).abs() < 1e-9);
    assert!((points[0].robust_pct - 62.0).abs() < 1e-9);
    assert!((points[1].clean_pct - 91.0).abs() < 1e-9);
    assert!((points[1].robust_pct - 2.0).abs() < 1e-9);

    // ε-curve: the eval record's stored curve; run-b's from check 1's figures.
    let curves = report::eps_curves(&data);
    assert_eq!(curves.len(), 2);
    let want_a = [(0.0, 83.5), (0.05, 75.0), (0.1, 62.0)];
    assert_eq!(curves[0].points.len(), 3);
    for (got, want) in curves[0].points.iter().zip(want_a) {
        assert!(
            (got.0 - want.0).abs() < 1e-6 && (got.1 - want.1).abs() < 1e-9,
            "{got:?} vs {want:?}"
        );
    }
    assert!(
        curves[0].source.contains("eval-pgd.json"),
        "{}",
        curves[0].source
    );
    assert_eq!(
        curves[1].points,
        vec![(0.0, 90.0), (0.05, 70.0), (0.1, 50.0), (0.2, 10.0)]
    );
    assert!(curves[1].source.contains("checks.json"));

    // Training curves: every line of metrics.jsonl, accuracies in %.
    let t = report::training_curves(&data.runs[0]).unwrap();
    assert_eq!(t.train_loss, vec![(1.0, 1.25), (2.0, 0.90), (3.0, 0.75)]);
    let pct = |v: &[(f64, f64)]| {
        v.iter()
            .map(|p| (p.0, (p.1 * 1e6).round() / 1e6))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pct(&t.val_clean),
        vec![(1.0, 70.0), (2.0, 80.0), (3.0, 82.0)]
    );
    assert_eq!(
        pct(&t.val_fgsm),
        vec![(1.0, 55.0), (2.0, 66.0), (3.0, 90.0)]
    );
    assert_eq!(pct(&t.val_pgd), vec![(1.0, 45.0), (2.0, 58.0), (3.0, 5.0)]);
    assert_eq!(t.best_epoch, Some(2));
    assert_eq!(t.epochs, 3);
    let kinds: Vec<&str> = t.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["alarm", "rollback"]);

    // Per-class table: the eval record's per_class, in %.
    let (source, rows) = report::per_class(&data.runs[0]).unwrap();
    assert!(source.contains("eval-pgd.json"));
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].name.as_str(), rows[0].n), ("T-shirt/top", 100));
    assert!((rows[0].clean_pct - 90.0).abs() < 1e-9 && (rows[0].robust_pct - 61.0).abs() < 1e-9);
    assert!((rows[1].clean_pct - 97.0).abs() < 1e-9 && (rows[1].robust_pct - 88.0).abs() < 1e-9);

    // Checklist verdict in the summary table.
    assert_eq!(data.runs[0].checklist_verdict().as_deref(), Some("warn: 4"));

    // The HTML: every section, charts as inline SVG, events listed, warnings in words.
    let html = report::render_html(&data);
    for id in [
        "summary",
        "tradeoff",
        "eps-curve",
        "training",
        "examples",
        "per-class",
        "checks",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "section {id} missing"
        );
    }
    // trade-off + ε-curve + two training charts for run-a.
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(html.contains("catastrophic overfitting"));
    assert!(html.contains("restored epoch 2; step size x0.5"));
    assert!(html.contains("warn: 4"));
    assert!(html.contains("the gradient-free Square attack broke 7 points"));
    assert!(html.contains("broken_only_by_square = 7"));
    assert!(html.contains("T-shirt/top"));
    assert!(!html.contains("<script"));
    // No config.toml or model: the examples section is a note, not an empty grid.
    assert!(html.contains("run-a: adversarial examples left out: no config.toml"));
    assert!(!html.contains("data:image/png"));
}

#[test]
fn missing_records_give_one_line_notes() {
    let root = scratch("missing");
    let full = full_run(&root, "full");
    let bare = root.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    advtrain::io::write_json(&bare.join("summary.json"), &summary(0.9, None)).unwrap();

    let data = ReportData::load(&[&full, &bare]).unwrap();
    let r = &data.runs[1];
    assert!(report::training_curves(r).is_none());
    assert!(report::per_class(r).is_none());
    assert!(report::eps_curve(1, r).is_none());
    assert_eq!(
        report::tradeoff_points(&data).len(),
        1,
        "no robust accuracy: no point"
    );

    let html = report::render_html(&data);
    for note in [
        "bare: no metrics.jsonl (or it is empty); training curves left out",
        "bare: no eval-*.json with per-class results; per-class accuracy left out",
        "bare: no checks.json",
        "bare: no ε-curve recorded",
        "bare: no robust accuracy in summary.json; not plotted",
    ] {
        assert_eq!(html.matches(note).count(), 1, "missing note: {note}");
    }
    // The bare run gets no heading (and so no empty section) in the per-run sections; the
    // full run does.
    assert!(!html.contains("</span>bare</h3>"));
    assert_eq!(html.matches("</span>full</h3>").count(), 3);
    // Only the full run's training charts, plus the two cross-run charts.
    assert_eq!(html.matches("<svg").count(), 4);

    // A single bare run: the cross-run charts become notes too.
    let html = report::render_html(&ReportData::load(&[&bare]).unwrap());
    assert_eq!(html.matches("<svg").count(), 0);
    assert!(html.contains("all runs: no run has a robust accuracy"));
}

#[test]
fn corrupt_or_missing_records_name_the_file() {
    let root = scratch("corrupt");
    let dir = full_run(&root, "run");
    let metrics = dir.join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics).unwrap();
    text.push_str("{\"epoch\": 4, \"train_loss\": \n");
    std::fs::write(&metrics, text).unwrap();
    let e = ReportData::load(&[&dir]).unwrap_err().to_string();
    assert!(e.contains("metrics.jsonl") && e.contains("line 4"), "{e}");

    let dir = full_run(&root, "run2");
    std::fs::write(dir.join("eval-pgd.json"), "{ not json").unwrap();
    let e = ReportData::load(&[&dir]).unwrap_err().to_string();
    assert!(e.contains("eval-pgd.json"), "{e}");

    let dir = full_run(&root, "run3");
    std::fs::write(dir.join("checks.json"), "[{\"id\": \"one\"}]").unwrap();
    let e = ReportData::load(&[&dir]).unwrap_err().to_string();
    assert!(e.contains("checks.json"), "{e}");

    let not_run = root.join("not-a-run");
    std::fs::create_dir_all(&not_run).unwrap();
    let e = ReportData::load(&[&not_run]).unwrap_err().to_string();
    assert!(
        e.contains("not-a-run") && e.contains("not a run directory"),
        "{e}"
    );
    let e = ReportData::load(&[root.join("nowhere")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nowhere") && e.contains("no such directory"),
        "{e}"
    );
}

#[test]
fn write_report_defaults_to_the_run_directory() {
    let root = scratch("write");
    let a = full_run(&root, "a");
    let b = full_run(&root, "b");
    let path = report::write_report(&[&a], None, None).unwrap();
    assert_eq!(path, a.join("report.html"));
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(!html.contains("http://") || html.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));

    let out = root.join("both.html");
    let path = report::write_report(&[&a, &b], Some(&out), None).unwrap();
    assert_eq!(path, out);
    assert_eq!(
        report::default_report_path(&[&a, &b]),
        PathBuf::from("report.html")
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("2 run(s): a, b"));
}

/// `advtrain attack -n N` goes through `craft_examples`: more examples than one batch holds
/// are attacked a batch at a time (memory bounded whatever N), with the same outcome per
/// example as when attacked alone (FGSM draws no randomness).
#[test]
fn crafting_more_examples_than_a_batch_attacks_them_in_batches() {
    use advtrain::attack::Fgsm;
    use advtrain::data::synthetic;
    use advtrain::model::ModelKind;
    use advtrain::report::{craft_examples, CRAFT_BATCH};
    use advtrain::threat::ThreatModel;
    use advtrain::train::MethodConfig;

    let n = CRAFT_BATCH + 44;
    let data = synthetic::templates(n, 3, 1, 6, 0.2, 9);
    let model =
        crate::common::quick_train(ModelKind::Mlp, &data, MethodConfig::Standard, 0.0, 1, 2);
    let device = burn::prelude::Device::flex();
    let fgsm = Fgsm::new(ThreatModel::linf(0.1));
    let all: Vec<usize> = (0..n).collect();
    let mut rng = advtrain::rng::seeded(0);
    let many = craft_examples(&model, &data, &all, &fgsm, &mut rng, &device);
    assert_eq!(many.len(), n);
    assert_eq!(many.clean.len(), n * 36);
    let tail: Vec<usize> = (n - 5..n).collect();
    let few = craft_examples(&model, &data, &tail, &fgsm, &mut rng, &device);
    assert_eq!(few.labels[..], many.labels[n - 5..]);
    assert_eq!(few.adv_pred[..], many.adv_pred[n - 5..]);
    let close = few
        .adversarial
        .iter()
        .zip(&many.adversarial[(n - 5) * 36..])
        .all(|(a, b)| (a - b).abs() < 1e-5);
    assert!(close, "a batch boundary changed the adversarial images");
}
