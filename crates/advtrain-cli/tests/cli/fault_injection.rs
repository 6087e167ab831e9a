//! A kill at every file write (`ADVTRAIN_FAULT_AT_WRITE`: the N-th atomic rename or JSONL
//! append aborts the process just before it happens) of `train` and of `eval`: the run
//! always resumes to exactly the uninterrupted result, or refuses clearly, and no stored
//! result is ever replaced by a weaker one (issue 21).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use advtrain::io::FAULT_AT_WRITE;

use crate::common::{bin, scratch, tensors, write_tiny_fashion};

/// Writes beyond this many mean the hook never fired: the loop would not end.
const MAX_WRITES: usize = 200;

fn train(data: &Path, run: &Path) -> Command {
    let mut c = bin();
    c.args([
        "train", "--method", "fgsm-rs", "--eps", "0.1", "--epochs", "2",
    ])
    .args(["--val-size", "50", "--final-steps", "2", "--seed", "5"])
    .args(["--checkpoint-every", "4", "-q", "--data"])
    .arg(data)
    .arg("--out")
    .arg(run);
    c
}

fn eval(run: &Path) -> Command {
    let mut c = bin();
    c.args([
        "eval",
        "-q",
        "--attack",
        "pgd",
        "--steps",
        "3",
        "--batch-size",
        "30",
    ])
    .arg("--run")
    .arg(run);
    c
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fields of a summary that do not depend on wall-clock time.
fn figures(summary: &serde_json::Value) -> Vec<serde_json::Value> {
    [
        "clean_accuracy",
        "robust_accuracy",
        "robust_combined",
        "n_test",
    ]
    .iter()
    .map(|k| summary[k].clone())
    .collect()
}

/// Whether `out` is the abort the hook causes (a kill, not an error exit).
fn was_aborted(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stderr).contains(FAULT_AT_WRITE)
}

/// A clear refusal: a non-zero exit with an `error:` line and no panic.
fn assert_clear_refusal(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error:") && !stderr.contains("panicked"),
        "{what}: neither resumed nor refused clearly:\n{stderr}"
    );
}

#[test]
fn a_train_killed_at_any_write_resumes_to_the_uninterrupted_result() {
    let root = scratch("fault-train");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let reference = root.join("reference");
    assert!(train(&data, &reference).output().unwrap().status.success());
    let want_model = tensors(&reference.join("model.safetensors"));
    let want = figures(&json(&reference.join("summary.json")));
    let mut kills = 0;
    for n in 1..MAX_WRITES {
        let run: PathBuf = root.join(format!("kill-{n}"));
        let out = train(&data, &run)
            .env(FAULT_AT_WRITE, n.to_string())
            .output()
            .unwrap();
        if !was_aborted(&out) {
            assert!(out.status.success(), "write {n}: {out:?}");
            break;
        }
        kills += 1;
        let resumed = bin()
            .args(["train", "-q", "--resume"])
            .arg(&run)
            .output()
            .unwrap();
        if !resumed.status.success() {
            // Killed before the first checkpoint: nothing to resume, said plainly; starting
            // over must work.
            assert_clear_refusal(&resumed, &format!("write {n}"));
            assert!(
                !run.join("checkpoint.ckpt").exists(),
                "write {n}: a run with a checkpoint refused to resume"
            );
            let again = train(&data, &run).arg("--force").output().unwrap();
            assert!(again.status.success(), "write {n}: {again:?}");
        }
        assert_eq!(
            tensors(&run.join("model.safetensors")),
            want_model,
            "write {n}: the resumed model differs from the uninterrupted one"
        );
        assert_eq!(figures(&json(&run.join("summary.json"))), want, "write {n}");
    }
    assert!(kills >= 8, "the fault hook fired only {kills} times");
}

#[test]
fn an_eval_killed_at_any_write_never_leaves_a_weaker_or_partial_result() {
    let root = scratch("fault-eval");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let trained = root.join("trained");
    assert!(train(&data, &trained).output().unwrap().status.success());
    let before = json(&trained.join("summary.json"));
    let reference = root.join("reference");
    copy_dir(&trained, &reference);
    assert!(eval(&reference).output().unwrap().status.success());
    let want_record = json(&reference.join("eval-pgd-steps3.json"))["per_example"].clone();
    let after = json(&reference.join("summary.json"));
    let mut kills = 0;
    for n in 1..MAX_WRITES {
        let run = root.join(format!("kill-{n}"));
        copy_dir(&trained, &run);
        let out = eval(&run)
            .env(FAULT_AT_WRITE, n.to_string())
            .output()
            .unwrap();
        if !was_aborted(&out) {
            assert!(out.status.success(), "write {n}: {out:?}");
            break;
        }
        kills += 1;
        // At the moment of the kill: the summary is the old one or the new one, and an
        // evaluation record present is the complete one.
        let summary = json(&run.join("summary.json"));
        assert!(
            figures(&summary) == figures(&before) || figures(&summary) == figures(&after),
            "write {n}: summary.json is neither before nor after: {summary}"
        );
        let record = run.join("eval-pgd-steps3.json");
        if record.exists() {
            assert_eq!(json(&record)["per_example"], want_record, "write {n}");
        }
        // Run again: it resumes from its saved state to the uninterrupted result.
        let again = eval(&run).output().unwrap();
        assert!(again.status.success(), "write {n}: {again:?}");
        assert_eq!(json(&record)["per_example"], want_record, "write {n}");
        assert_eq!(figures(&json(&run.join("summary.json"))), figures(&after));
    }
    assert!(kills >= 3, "the fault hook fired only {kills} times");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}
