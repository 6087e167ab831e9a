//! `advtrain eval --audit` as a user runs it: the audit of a trained run is printed,
//! recorded in `audit.json` with the weights it measured, kept apart when it ran on fewer
//! points, dropped by a retraining, and refused with flags that do not apply.

use std::path::Path;

use crate::common::{bin, run_err, run_ok, scratch, write_tiny_fashion};

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn train(data: &Path, run: &Path, extra: &[&str]) -> String {
    run_ok(
        bin()
            .args([
                "train", "--method", "fgsm-rs", "--eps", "0.1", "--epochs", "1",
            ])
            .args([
                "--val-size",
                "50",
                "--final-steps",
                "2",
                "--seed",
                "3",
                "-q",
            ])
            .args(extra)
            .arg("--data")
            .arg(data)
            .arg("--out")
            .arg(run),
    )
}

fn audit(run: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = bin();
    c.args(["eval", "-q", "--audit", "--steps", "2"])
        .args(extra)
        .arg("--run")
        .arg(run);
    c
}

#[test]
fn an_audit_is_printed_recorded_and_belongs_to_the_weights_it_measured() {
    let root = scratch("audit");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let run = root.join("run");
    train(&data, &run, &[]);

    let out = run_ok(&mut audit(&run, &["--limit", "30"]));
    for line in [
        "clean accuracy",
        "other-norm",
        "twice-eps",
        "spatial",
        "corruptions",
        "calibration (ECE)",
        "noise confidence",
    ] {
        assert!(out.contains(line), "no '{line}' in:\n{out}");
    }
    assert!(out.contains("audit-n30.json"), "{out}");
    assert!(
        !run.join("audit.json").exists(),
        "a 30-point audit took the run's own file"
    );
    let small = json(&run.join("audit-n30.json"));
    assert_eq!(small["audit"]["n"], 30);
    assert_eq!(small["audit"]["corruptions"].as_array().unwrap().len(), 14);

    run_ok(&mut audit(&run, &[]));
    let full = json(&run.join("audit.json"));
    assert_eq!(full["audit"]["n"], 120);
    assert!(full["model_sha256"].is_string() && full["test_data_sha256"].is_string());
    assert_eq!(full["audit"]["threat_models"][0]["name"], "other-norm");
    // The L2 radius of an L-inf 0.1 run on 28x28 images: 0.1 * 28 / 4.
    let described = full["audit"]["threat_models"][0]["description"]
        .as_str()
        .unwrap();
    assert!(described.contains("0.7"), "{described}");

    // A retraining removes the audit of the old weights.
    train(&data, &run, &["--force"]);
    assert!(
        !run.join("audit.json").exists(),
        "train --force kept the old model's audit"
    );
}

#[test]
fn flags_that_do_not_apply_to_an_audit_are_refused() {
    let root = scratch("audit-flags");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let run = root.join("run");
    train(&data, &run, &[]);
    let err = run_err(&mut audit(&run, &["--checks"]));
    assert!(err.contains("--checks") && err.contains("--audit"), "{err}");
    let err = run_err(&mut audit(&run, &["--attack", "fgsm"]));
    assert!(err.contains("--attack"), "{err}");
    let err = run_err(
        bin()
            .args(["eval", "-q", "--run"])
            .arg(&run)
            .arg("--run")
            .arg(&run),
    );
    assert!(err.contains("only with --audit"), "{err}");
    assert!(!run.join("audit.json").exists());
}
