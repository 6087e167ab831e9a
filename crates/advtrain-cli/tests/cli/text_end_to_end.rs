//! The text verbs as a user runs them on a generated CSV of `text,label` rows:
//! train (adversarial) → eval (HotFlip) → attack (pairs with edits marked) → report, and the
//! errors a user meets.

use std::path::Path;

use crate::common::{bin, metrics_without, run_err, run_ok, scratch, tensors};

pub(crate) fn write_csv(path: &Path, n: usize) {
    let filler = [
        "meeting", "lunch", "report", "thanks", "review", "notes", "call", "team",
    ];
    let triggers = ["winner", "jackpot", "casino", "lottery"];
    let mut s = String::from("text,label\n");
    for i in 0..n {
        let mut words: Vec<&str> = (0..6)
            .map(|k| filler[(i * 7 + k * 3) % filler.len()])
            .collect();
        let label = if i % 2 == 1 {
            words[(i / 2) % 6] = triggers[(i / 2) % triggers.len()];
            "spam"
        } else {
            "ham"
        };
        // A quoted field with a comma, as spreadsheets write them.
        s.push_str(&format!("\"{}, ok\",{label}\n", words.join(" ")));
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn text_train_eval_attack_report() {
    let root = scratch("text-e2e");
    std::fs::create_dir_all(&root).unwrap();
    let csv = root.join("mail.csv");
    write_csv(&csv, 200);
    let run = root.join("run");
    let out = run_ok(
        bin()
            .args([
                "train",
                "--task",
                "text",
                "--model",
                "ngram-bag",
                "--method",
                "adversarial",
            ])
            .args([
                "--budget", "2", "--epochs", "3", "--lr", "0.02", "--seed", "1", "-q",
            ])
            .arg("--data")
            .arg(&csv)
            .arg("--out")
            .arg(&run),
    );
    assert!(out.contains("clean accuracy"), "{out}");
    // Two classes: evaluated for evasion at the default 1% FPR.
    assert!(out.contains("detection at 1.0% FPR"), "{out}");
    assert!(out.contains("deepwordbug (budget 2): TPR"), "{out}");
    for f in [
        "config.toml",
        "model.safetensors",
        "metrics.jsonl",
        "summary.json",
        "eval-clean.json",
        "evasion-clean-fpr0.01.json",
        "evasion-deepwordbug-b2-fpr0.01.json",
        "evasion-deepwordbug-b2-fpr0.01.jsonl",
        "report.html",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    // Epochs after the warm-up attack training texts.
    assert!(
        metrics.lines().nth(1).unwrap().contains("\"attacked\":"),
        "{metrics}"
    );

    let out = run_ok(
        bin()
            .args(["eval", "--attack", "hotflip", "--budget", "2", "-q"])
            .arg("--run")
            .arg(&run),
    );
    assert!(out.contains("hotflip (budget 2): TPR"), "{out}");
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("evasion-hotflip-b2-fpr0.01.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["budget"], 2);
    let tpr = |k: &str| rec[k]["value"].as_f64().unwrap();
    assert!(tpr("tpr_attacked") <= tpr("tpr_clean"));
    assert!(rec["threshold"]["val_fpr"].as_f64().unwrap() <= 0.01);
    // Only the malicious texts were attacked.
    let examples = std::fs::read_to_string(run.join("evasion-hotflip-b2-fpr0.01.jsonl")).unwrap();
    for line in examples.lines().skip(1) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["result"]["label"], 1, "{line}");
    }

    let adv = root.join("adv");
    let out = run_ok(
        bin()
            .args([
                "attack",
                "--attack",
                "deepwordbug",
                "--budget",
                "3",
                "-n",
                "10",
                "-q",
            ])
            .arg("--run")
            .arg(&run)
            .arg("--out")
            .arg(&adv),
    );
    assert!(out.contains("pairs:"), "{out}");
    let pairs = std::fs::read_to_string(adv.join("pairs.jsonl")).unwrap();
    assert_eq!(pairs.lines().count(), 10);
    for line in pairs.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["edits"].as_array().unwrap().len() <= 3);
    }
    let html = std::fs::read_to_string(adv.join("pairs.html")).unwrap();
    assert!(html.contains("<table>"));

    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(report.contains("Detection at a fixed false-positive rate"));
    assert!(report.contains("hotflip (budget 2)"));
    assert!(report.contains("deepwordbug (budget 2)"));
    assert!(report.contains("<polyline"), "ROC and PR curves are drawn");
}

#[test]
fn text_errors_are_clear() {
    let root = scratch("text-errors");
    std::fs::create_dir_all(&root).unwrap();
    // A malformed CSV row: the error names the file and the line.
    let bad = root.join("bad.csv");
    std::fs::write(&bad, "text,label\nhello there,ham\n\"unterminated,spam\n").unwrap();
    let err = run_err(
        bin()
            .args(["train", "--task", "text", "-q"])
            .arg("--data")
            .arg(&bad)
            .arg("--out")
            .arg(root.join("r1")),
    );
    assert!(err.contains("bad.csv"), "{err}");
    assert!(err.contains("line"), "{err}");
    // A named data set whose directory is missing points at the fetch script.
    let err = run_err(
        bin()
            .args(["train", "--dataset", "spam-assassin", "-q"])
            .arg("--data")
            .arg(root.join("nowhere"))
            .arg("--out")
            .arg(root.join("r2")),
    );
    assert!(err.contains("fetch_text_data.sh"), "{err}");
    // Out-of-range settings.
    let csv = root.join("ok.csv");
    write_csv(&csv, 20);
    let err = run_err(
        bin()
            .args([
                "train",
                "--task",
                "text",
                "--method",
                "adversarial",
                "--budget",
                "0",
                "-q",
            ])
            .arg("--data")
            .arg(&csv)
            .arg("--out")
            .arg(root.join("r3")),
    );
    assert!(err.contains("budget"), "{err}");
    let err = run_err(
        bin()
            .args(["train", "--task", "text", "--model", "resnet", "-q"])
            .arg("--data")
            .arg(&csv)
            .arg("--out")
            .arg(root.join("r4")),
    );
    assert!(err.contains("unknown text model"), "{err}");
}

/// `kill -9` inside the second epoch of adversarial text training, then `train --resume`:
/// the run ends with the same metrics and weights as one never interrupted (the texts the
/// epoch had attacked come back from the checkpoint, not from a new attack).
#[test]
fn killed_text_run_resumes_to_the_same_result() {
    let root = scratch("text-kill");
    let csv = root.join("mail.csv");
    write_csv(&csv, 600);
    let args = |out: &Path| {
        let mut c = bin();
        c.args([
            "train",
            "--task",
            "text",
            "--model",
            "char-cnn",
            "--method",
            "adversarial",
            "--budget",
            "2",
            "--epochs",
            "4",
            "--batch-size",
            "8",
            "--seed",
            "1",
            "--checkpoint-every",
            "2",
            "-q",
        ])
        .arg("--data")
        .arg(&csv)
        .arg("--out")
        .arg(out);
        c
    };
    let whole = root.join("whole");
    run_ok(&mut args(&whole));
    assert!(whole.join("model-best.safetensors").is_file());

    let killed = root.join("killed");
    let mut child = args(&killed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for a checkpoint taken inside epoch 2 or later (every 2 batches), then kill.
    let start = std::time::Instant::now();
    let ckpt = killed.join("checkpoint.ckpt");
    loop {
        let position = advtrain::train::checkpoint::read(&ckpt).map(|c| c.position());
        if position.is_ok_and(|(epoch, batch)| epoch >= 1 && batch > 0) {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 300,
            "no checkpoint inside epoch 2 in 5 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(!killed.join("summary.json").exists(), "killed too late");

    let out = bin()
        .arg("train")
        .arg("--resume")
        .arg(&killed)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");

    assert_eq!(
        metrics_without(&killed, &["seconds", "attack_seconds"]),
        metrics_without(&whole, &["seconds", "attack_seconds"])
    );
    assert!(
        tensors(&whole.join("model.safetensors")) == tensors(&killed.join("model.safetensors"))
    );
    assert!(
        tensors(&whole.join("model-best.safetensors"))
            == tensors(&killed.join("model-best.safetensors"))
    );
    let summary = |run: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
    };
    for key in ["clean_test_accuracy", "epochs_completed"] {
        assert_eq!(summary(&whole)[key], summary(&killed)[key], "{key}");
    }

    // --resume takes no other settings, as for image runs.
    let err = run_err(
        bin()
            .arg("train")
            .arg("--resume")
            .arg(&killed)
            .args(["--epochs", "9"]),
    );
    assert!(err.contains("--resume"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

/// Image attack flags on a text run are refused by name instead of silently running
/// DeepWordBug (`--attack pgd` used to), and `--budget` on an image run likewise.
#[test]
fn flags_of_the_other_modality_are_refused() {
    let root = scratch("text-flags");
    let csv = root.join("mail.csv");
    write_csv(&csv, 60);
    let run = root.join("run");
    run_ok(
        bin()
            .args([
                "train",
                "--task",
                "text",
                "--epochs",
                "1",
                "--eval-attacks",
                "none",
            ])
            .args(["-q", "--data"])
            .arg(&csv)
            .arg("--out")
            .arg(&run),
    );
    for (flags, needle) in [
        (vec!["--attack", "pgd"], "unknown text attack 'pgd'"),
        (vec!["--eps", "0.1"], "--eps applies to image runs only"),
        (
            vec!["--steps", "5", "--loss", "cw"],
            "--steps, --loss apply to image runs only",
        ),
        (
            vec!["--eps-curve", "0,0.1"],
            "--eps-curve and --checks apply to image runs only",
        ),
    ] {
        let err = run_err(bin().args(["eval", "-q", "--run"]).arg(&run).args(&flags));
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
    let err = run_err(
        bin()
            .args(["attack", "-q", "--target", "1", "--run"])
            .arg(&run)
            .arg("--out")
            .arg(root.join("pairs")),
    );
    assert!(err.contains("--target applies to image runs only"), "{err}");
    // The text default still works with no attack flags.
    let out = run_ok(
        bin()
            .args(["eval", "-q", "--budget", "1", "--run"])
            .arg(&run),
    );
    assert!(out.contains("deepwordbug (budget 1)"), "{out}");
    let _ = std::fs::remove_dir_all(&root);
}

/// The toy filter of the library's tests: a text containing "winner" is spam.
fn keyword_filter(mode: &str) -> String {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../advtrain/tests/fixtures/filters/keyword.sh");
    format!("sh {} {mode}", script.display())
}

#[test]
fn a_filter_behind_a_command_is_evaded_and_its_failures_are_named() {
    let root = scratch("text-filter");
    std::fs::create_dir_all(&root).unwrap();
    let csv = root.join("mail.csv");
    write_csv(&csv, 120);
    let out = root.join("filter");
    let eval = |mode: &str, out: &Path| {
        let mut c = bin();
        c.args([
            "eval",
            "--attack",
            "deepwordbug",
            "--budget",
            "2",
            "--fpr",
            "0.1",
        ])
        .arg("--target-cmd")
        .arg(keyword_filter(mode))
        .arg("--data")
        .arg(&csv)
        .arg("--out")
        .arg(out);
        c
    };
    let printed = run_ok(&mut eval("scores", &out));
    assert!(printed.contains("detection at 10.0% FPR"), "{printed}");
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("evasion-deepwordbug-b2-fpr0.1.json")).unwrap(),
    )
    .unwrap();
    // Only a quarter of the spam says "winner" (the other triggers pass the filter anyway);
    // every detected one is evaded by two edits, in a bounded number of queries.
    assert_eq!(record["tpr_clean"]["value"], 0.25, "{record}");
    assert_eq!(record["tpr_attacked"]["value"], 0.0, "{record}");
    let q = record["mean_queries_per_success"].as_f64().unwrap();
    assert!(q > 0.0 && q < 100.0, "{record}");
    let target: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("target.json")).unwrap()).unwrap();
    assert!(
        target["target"].as_str().unwrap().contains("keyword.sh"),
        "{target}"
    );
    // A filter that dies mid-run, with no retries (a retry's fresh process would count its
    // requests from 1 again and get through): the error names it and the text.
    let err = run_err(eval("exit 30", &root.join("dies")).args(["--target-retries", "0"]));
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("giving up at request 30"), "{err}");
    assert!(err.contains("text q"), "{err}");
}
