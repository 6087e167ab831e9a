//! Stored results are never overwritten by weaker or foreign ones, belong to the weights
//! they measured, and a run directory has one writer at a time (issue 21, defects 1-7, 13
//! and the read-only part of 16). Each test failed before its fix.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{bin, run_err, run_ok, scratch, write_tiny_fashion};
use crate::text_end_to_end::write_csv;

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A trained run (1 epoch of fgsm-rs on the tiny data, final PGD with 3 steps) and its data.
fn trained_run(root: &Path) -> (PathBuf, PathBuf) {
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let run = root.join("run");
    run_ok(train(&data, &run, "fgsm-rs").args(["--epochs", "1"]));
    (data, run)
}

fn train(data: &Path, run: &Path, method: &str) -> Command {
    let mut c = bin();
    c.args([
        "train",
        "--method",
        method,
        "--eps",
        "0.1",
        "--val-size",
        "50",
    ])
    .args(["--final-steps", "3", "--seed", "3", "-q", "--data"])
    .arg(data)
    .arg("--out")
    .arg(run);
    c
}

fn eval(run: &Path, args: &[&str]) -> Command {
    let mut c = bin();
    c.args(["eval", "-q"]).args(args).arg("--run").arg(run);
    c
}

#[test]
fn a_weaker_attack_gets_its_own_file_and_never_raises_the_summary() {
    let root = scratch("integrity-steps");
    let (_, run) = trained_run(&root);
    run_ok(&mut eval(&run, &["--attack", "pgd"]));
    let pgd20 = json(&run.join("eval-pgd.json"));
    let out = run_ok(&mut eval(&run, &["--attack", "pgd", "--steps", "1"]));
    assert!(out.contains("eval-pgd-steps1.json"), "{out}");
    assert_eq!(
        json(&run.join("eval-pgd.json")),
        pgd20,
        "--steps 1 replaced the PGD-20 record"
    );
    let summary = json(&run.join("summary.json"));
    let one = json(&run.join("eval-pgd-steps1.json"));
    let worst = summary["robust_accuracy"].as_f64().unwrap();
    assert!(worst <= pgd20["robust_accuracy"].as_f64().unwrap() + 1e-12);
    assert!(worst <= one["robust_accuracy"].as_f64().unwrap() + 1e-12);
    assert_eq!(pgd20["model_sha256"], one["model_sha256"]);
    assert!(pgd20["test_data_sha256"].is_string());
}

#[test]
fn other_test_data_of_the_same_size_never_changes_the_summary() {
    let root = scratch("integrity-data");
    let (data, run) = trained_run(&root);
    // The same files with every test image inverted: same count, same labels.
    let other = root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    for f in std::fs::read_dir(&data).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, other.join(f.file_name().unwrap())).unwrap();
    }
    let (n, h, w, pixels) =
        advtrain::data::idx::read_idx_images(&data.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let inverted: Vec<u8> = pixels.iter().map(|p| 255 - p).collect();
    advtrain::data::idx::write_idx_images(
        &other.join("t10k-images-idx3-ubyte.gz"),
        n,
        h,
        w,
        &inverted,
        true,
    )
    .unwrap();
    let summary = std::fs::read(run.join("summary.json")).unwrap();
    let own = std::fs::read(run.join("eval-pgd-steps3.json")).unwrap();
    let other_arg = other.to_str().unwrap();
    let out = run_ok(&mut eval(
        &run,
        &["--attack", "pgd", "--steps", "3", "--data", other_arg],
    ));
    assert!(
        out.contains("unchanged (it is on other test data)"),
        "{out}"
    );
    assert_eq!(std::fs::read(run.join("summary.json")).unwrap(), summary);
    assert_eq!(
        std::fs::read(run.join("eval-pgd-steps3.json")).unwrap(),
        own,
        "the record on the run's own data was replaced"
    );
    let name = out
        .lines()
        .find_map(|l| l.strip_prefix("written:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(name.contains("-data"), "{name}");
}

#[test]
fn resuming_a_finished_run_keeps_the_stronger_attacks_evaluated_since() {
    let root = scratch("integrity-resume");
    let (_, run) = trained_run(&root);
    run_ok(&mut eval(&run, &["--attack", "apgd-ce", "--steps", "10"]));
    let before = json(&run.join("summary.json"));
    assert!(
        before["robust_combined"].as_array().unwrap().len() == 2,
        "{before}"
    );
    run_ok(bin().args(["train", "-q", "--resume"]).arg(&run));
    let after = json(&run.join("summary.json"));
    assert_eq!(after["robust_accuracy"], before["robust_accuracy"]);
    assert_eq!(after["robust_combined"], before["robust_combined"]);
}

#[test]
fn results_belong_to_the_weights_they_measured() {
    let root = scratch("integrity-force");
    let (data, run) = trained_run(&root);
    run_ok(&mut eval(
        &run,
        &["--attack", "fgsm", "--checks", "--limit", "30"],
    ));
    assert!(run.join("checks.json").is_file());
    // Zero points is an error and leaves the checklist alone.
    let checks = std::fs::read(run.join("checks.json")).unwrap();
    let err = run_err(&mut eval(&run, &["--checks", "--limit", "0"]));
    assert!(err.contains("no test points"), "{err}");
    assert_eq!(std::fs::read(run.join("checks.json")).unwrap(), checks);
    // Fewer points never replace more: the smaller checklist goes beside it.
    let out = run_ok(&mut eval(
        &run,
        &["--attack", "fgsm", "--checks", "--limit", "20"],
    ));
    assert!(out.contains("checks-n20.json"), "{out}");
    assert_eq!(std::fs::read(run.join("checks.json")).unwrap(), checks);

    // New weights without --force's clean-up (more epochs of the same settings as a new run
    // writing over model.safetensors): the report shows none of the old model's results.
    let old_fgsm = json(&run.join("eval-fgsm-n30.json"));
    let other = root.join("other-run");
    run_ok(train(&data, &other, "fgsm-rs").args(["--epochs", "2"]));
    std::fs::copy(
        other.join("model.safetensors"),
        run.join("model.safetensors"),
    )
    .unwrap();
    let html = root.join("report.html");
    run_ok(
        bin()
            .args(["report", "--no-examples", "--out"])
            .arg(&html)
            .arg(&run),
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(old_fgsm["model_sha256"].is_string());
    assert!(
        !page.contains("eval-fgsm-n30.json"),
        "the previous weights' evaluation is shown as this model's"
    );
    assert!(
        page.contains("no checks.json"),
        "the previous weights' checklist is shown as this model's"
    );
}

#[test]
fn nan_weights_are_an_error_naming_the_tensor_and_the_file() {
    let root = scratch("integrity-nan");
    let (_, run) = trained_run(&root);
    let path = run.join("model.safetensors");
    let good = std::fs::read(&path).unwrap();
    let header = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    // Finite but huge weights: the logits overflow, and the error names the file.
    let mut huge = good.clone();
    for b in huge[8 + header..].chunks_exact_mut(4) {
        b.copy_from_slice(&3.0e38f32.to_le_bytes());
    }
    std::fs::write(&path, &huge).unwrap();
    let err = run_err(&mut eval(&run, &["--attack", "fgsm"]));
    assert!(
        err.contains("although every weight in") && err.contains("model.safetensors"),
        "{err}"
    );
    let mut bytes = good;
    // The first float of the data section, whichever tensor it belongs to.
    bytes[8 + header..8 + header + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    for args in [
        &["--attack", "fgsm"][..],
        &["--attack", "pgd", "--steps", "2"],
    ] {
        let err = run_err(&mut eval(&run, args));
        assert!(
            err.contains("model.safetensors") && err.contains("NaN") && err.contains("tensor '"),
            "{err}"
        );
    }
}

#[test]
fn a_run_directory_has_one_writer_at_a_time() {
    let root = scratch("integrity-lock");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let run = root.join("run");
    let mut first = train(&data, &run, "pgd-at")
        .args(["--epochs", "30", "--attack-steps", "5"])
        .spawn()
        .unwrap();
    // Wait until the first writer holds the directory.
    let lock = run.join(advtrain::run::LOCK_FILE);
    let start = std::time::Instant::now();
    while !(lock.is_file() && run.join("config.toml").is_file()) {
        assert!(
            start.elapsed().as_secs() < 60,
            "the first run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let config = std::fs::read(run.join("config.toml")).unwrap();
    let err = run_err(train(&data, &run, "fgsm-rs").args(["--epochs", "1", "--force"]));
    assert!(err.contains("is in use") && err.contains("train"), "{err}");
    let err = run_err(&mut eval(&run, &["--attack", "fgsm"]));
    assert!(err.contains("is in use"), "{err}");
    assert_eq!(std::fs::read(run.join("config.toml")).unwrap(), config);
    first.kill().unwrap();
    first.wait().unwrap();
    // The OS releases a killed writer's lock: the directory can be written again.
    run_ok(train(&data, &run, "fgsm-rs").args(["--epochs", "1", "--force"]));
    run_ok(&mut eval(&run, &["--attack", "fgsm"]));
}

#[test]
fn resuming_on_other_data_is_refused() {
    let root = scratch("integrity-resume-data");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let run = root.join("run");
    run_ok(train(&data, &run, "standard").args(["--epochs", "1"]));
    // A changed split: the checkpoint's data fingerprint no longer matches.
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("val_size = 50"), "{config}");
    std::fs::write(
        run.join("config.toml"),
        config.replace("val_size = 50", "val_size = 60"),
    )
    .unwrap();
    let err = run_err(bin().args(["train", "-q", "--resume"]).arg(&run));
    assert!(err.contains("other training data"), "{err}");
}

#[test]
fn results_are_printed_before_a_failed_write() {
    let root = scratch("integrity-unwritable");
    let (_, run) = trained_run(&root);
    // Root ignores read-only permissions: a directory where the record goes makes the
    // write fail the same way for every user.
    std::fs::create_dir_all(run.join("eval-fgsm.json")).unwrap();
    let out = eval(&run, &["--attack", "fgsm"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stdout.contains("robust accuracy:"), "{stdout}");
    assert!(
        stderr.contains("the result above was not written") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn a_text_subset_evaluation_never_replaces_the_full_one() {
    let root = scratch("integrity-text");
    let csv = root.join("mail.csv");
    write_csv(&csv, 120);
    let run = root.join("run");
    run_ok(
        bin()
            .args([
                "train",
                "--task",
                "text",
                "--model",
                "ngram-bag",
                "--epochs",
                "1",
                "-q",
            ])
            .arg("--data")
            .arg(&csv)
            .arg("--out")
            .arg(&run),
    );
    // The default text attack, DeepWordBug at budget 5, ran on the full test set at the end
    // (a two-class filter: evasion at the default 1% FPR).
    let files = [
        "evasion-deepwordbug-b5-fpr0.01.json",
        "evasion-deepwordbug-b5-fpr0.01.jsonl",
    ];
    let full: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(run.join(f)).unwrap())
        .collect();
    let out = run_ok(&mut eval(&run, &["--limit", "5"]));
    assert!(
        out.contains("evasion-deepwordbug-b5-fpr0.01-n5.json"),
        "{out}"
    );
    for (f, bytes) in files.iter().zip(&full) {
        assert_eq!(
            &std::fs::read(run.join(f)).unwrap(),
            bytes,
            "{f} was replaced"
        );
    }
    let err = run_err(&mut eval(&run, &["--limit", "0"]));
    assert!(err.contains("empty"), "{err}");
    // Other texts of the same size get files of their own.
    let other = root.join("other.csv");
    write_csv(&other, 130);
    let out = run_ok(&mut eval(&run, &["--data", other.to_str().unwrap()]));
    assert!(out.contains("evasion-deepwordbug-b5-fpr0.01-data"), "{out}");
    for (f, bytes) in files.iter().zip(&full) {
        assert_eq!(
            &std::fs::read(run.join(f)).unwrap(),
            bytes,
            "{f} was replaced"
        );
    }
}
