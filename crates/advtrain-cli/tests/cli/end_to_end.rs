//! The CLI as a user runs it, on a tiny generated IDX data set: train → eval → attack, then
//! the run directory's files and the errors a user meets.

use std::path::Path;

use crate::common::{
    bin, metrics_without, run_err, run_ok, scratch, tensors, write_tiny_fashion, write_tiny_idx,
};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn train_eval_attack_on_generated_data() {
    let root = scratch("e2e");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let run = root.join("run");
    let config = root.join("train.toml");
    // Settings from a file; the --epochs flag must win over the file's value.
    std::fs::write(&config, "method = \"fgsm-rs\"\nepochs = 5\nbatch-size = 50\nval-size = 100\noptimizer = \"adam\"\nlr = 0.003\nschedule = \"constant\"\n").unwrap();
    let out = run_ok(
        bin()
            .args([
                "train",
                "--dataset",
                "fashion-mnist",
                "--model",
                "small-cnn",
                "--eps",
                "0.1",
                "--epochs",
                "3",
                "--final-steps",
                "5",
                "-q",
                "--seed",
                "3",
            ])
            .arg("--data")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&run),
    );
    assert!(
        out.contains("clean accuracy:") && out.contains("robust accuracy:"),
        "{out}"
    );

    for f in [
        "config.toml",
        "metrics.jsonl",
        "model.safetensors",
        "summary.json",
        // The final PGD ran 5 steps, not the reference 20: its file says so.
        "eval-pgd-steps5.json",
    ] {
        assert!(run.join(f).is_file(), "run directory lacks {f}");
    }
    let config_text = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config_text.contains("seed = 3") && config_text.contains("advtrain_version"),
        "{config_text}"
    );
    assert!(
        config_text.contains("epochs = 3"),
        "the flag did not win over the file: {config_text}"
    );
    assert!(
        config_text.contains("batch_size = 50"),
        "the file's setting was lost: {config_text}"
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for key in [
        "epoch",
        "train_loss",
        "val_clean_accuracy",
        "val_robust_accuracy",
        "epoch_seconds",
    ] {
        assert!(!first[key].is_null(), "metrics line lacks {key}: {first}");
    }
    let summary = json(&run.join("summary.json"));
    for key in [
        "method",
        "eps",
        "epochs",
        "train_seconds",
        "clean_accuracy",
        "robust_accuracy",
    ] {
        assert!(!summary[key].is_null(), "summary lacks {key}: {summary}");
    }
    assert_eq!(summary["method"], "fgsm-rs");
    // Chance is 10%.
    assert!(
        summary["clean_accuracy"].as_f64().unwrap() > 0.5,
        "did not learn: {summary}"
    );

    // eval: FGSM with an eps curve.
    let out = run_ok(
        bin()
            .args(["eval", "--attack", "fgsm", "--eps-curve", "0,0.1,0.3", "-q"])
            .arg("--run")
            .arg(&run),
    );
    assert!(out.contains("accuracy vs eps"), "{out}");
    let fgsm = json(&run.join("eval-fgsm.json"));
    for key in [
        "attack",
        "norm",
        "eps",
        "n",
        "clean_accuracy",
        "robust_accuracy",
    ] {
        assert!(!fgsm[key].is_null(), "eval record lacks {key}");
    }
    assert_eq!(fgsm["n"], 120);
    assert_eq!(
        fgsm["per_example"]["robust_correct"]
            .as_array()
            .unwrap()
            .len(),
        120
    );
    let curve = fgsm["eps_curve"].as_array().unwrap();
    let accs: Vec<f64> = curve
        .iter()
        .map(|p| p["robust"]["value"].as_f64().unwrap())
        .collect();
    assert!(accs[0] >= accs[2], "accuracy rose with eps: {accs:?}");

    // attack: examples and a PNG grid.
    let adv = root.join("adv");
    run_ok(
        bin()
            .args(["attack", "--attack", "pgd", "--steps", "5", "-n", "6", "-q"])
            .arg("--run")
            .arg(&run)
            .arg("--out")
            .arg(&adv),
    );
    let grid = image::open(adv.join("grid.png")).expect("grid.png is a PNG");
    assert!(grid.width() > 3 * 28 && grid.height() > 6 * 28);
    let ex = advtrain::report::load_examples(&adv.join("adversarial.safetensors")).unwrap();
    assert_eq!(ex.len(), 6);
    let max_delta = ex
        .clean
        .iter()
        .zip(&ex.adversarial)
        .map(|(c, a)| (a - c).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_delta <= 0.1 + 1e-6,
        "saved examples leave the ball: {max_delta}"
    );

    // A second train into the same directory is refused and loses nothing.
    let before = std::fs::read(run.join("model.safetensors")).unwrap();
    let err = run_err(
        bin()
            .args(["train", "--epochs", "1", "-q"])
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&run),
    );
    assert!(err.contains("already holds a run"), "{err}");
    assert_eq!(
        before,
        std::fs::read(run.join("model.safetensors")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_input_gives_clear_errors() {
    let root = scratch("errors");
    // Missing data directory: names it and says how to install.
    let err = run_err(
        bin()
            .args(["train", "--data", "/nonexistent/fm", "-q"])
            .arg("--out")
            .arg(root.join("r1")),
    );
    assert!(
        err.contains("/nonexistent/fm") && err.contains("apt-get install"),
        "{err}"
    );
    // Corrupt file: names the file and the problem.
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    std::fs::write(
        data.join("t10k-labels-idx1-ubyte"),
        [0u8, 0, 8, 1, 0, 0, 0, 120, 1, 2],
    )
    .unwrap();
    let err = run_err(
        bin()
            .args(["train", "-q"])
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(root.join("r2")),
    );
    assert!(
        err.contains("t10k-labels-idx1-ubyte") && err.contains("truncated"),
        "{err}"
    );
    // Out-of-range and non-numeric settings.
    for (flags, needle) in [
        (vec!["--eps", "-0.1"], "eps"),
        (vec!["--eps", "NaN"], "eps"),
        (vec!["--eps", "2"], "eps"),
        (vec!["--method", "magic"], "unknown method"),
        (vec!["--model", "vgg99"], "unknown model"),
        (vec!["--lr", "0"], "learning rate"),
        (
            vec!["--final-restarts", "0"],
            "--final-restarts must be at least 1",
        ),
        (vec!["--val-steps", "0"], "--val-steps must be at least 1"),
        (vec!["--batch-size", "0"], "--batch-size must be at least 1"),
        (
            vec!["--checkpoint-minutes", "NaN"],
            "--checkpoint-minutes must be",
        ),
        (
            vec!["--checkpoint-minutes", "-1"],
            "--checkpoint-minutes must be",
        ),
    ] {
        let err = run_err(
            bin()
                .arg("train")
                .args(&flags)
                .arg("--data")
                .arg(&data)
                .arg("--out")
                .arg(root.join("r3")),
        );
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
    // eval on something that is not a run.
    let err = run_err(bin().args(["eval", "--run"]).arg(root.join("nope")));
    assert!(err.contains("no such run directory"), "{err}");
    // A corrupt model file (on repaired data).
    write_tiny_fashion(&data);
    let run = root.join("r4");
    std::fs::create_dir_all(&run).unwrap();
    run_ok(
        bin()
            .args([
                "train",
                "--epochs",
                "1",
                "--limit",
                "300",
                "--val-size",
                "50",
                "--final-steps",
                "0",
                "-q",
            ])
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&run),
    );
    // Settings of an evaluation that used to be coerced silently.
    for (flags, needle) in [
        (vec!["--batch-size", "0"], "--batch-size must be at least 1"),
        (
            vec!["--eps", "0.1", "--eps-curve", "0,0.1,0.1"],
            "eps 0.1 appears twice",
        ),
    ] {
        let err = run_err(bin().args(["eval", "-q", "--run"]).arg(&run).args(&flags));
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
    std::fs::write(run.join("model.safetensors"), b"not a model").unwrap();
    let err = run_err(bin().args(["eval", "-q", "--run"]).arg(&run));
    assert!(err.contains("model.safetensors"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

/// `kill -9` in the middle of an epoch, then `train --resume`: the run ends with the same
/// metrics, weights and test accuracies as one never interrupted.
#[test]
fn killed_run_resumes_to_the_same_result() {
    let root = scratch("kill");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let args = |out: &Path| {
        let mut c = bin();
        c.args([
            "train",
            "--method",
            "pgd-at",
            "--eps",
            "0.1",
            "--epochs",
            "4",
            "--batch-size",
            "20",
            "--val-size",
            "100",
            "--optimizer",
            "adam",
            "--schedule",
            "constant",
            "--final-steps",
            "5",
            "--checkpoint-every",
            "2",
            "--seed",
            "5",
            "-q",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(out);
        c
    };
    let whole = root.join("whole");
    run_ok(&mut args(&whole));

    let killed = root.join("killed");
    let mut child = args(&killed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first epoch's line, then a little more: the kill lands mid-epoch 2.
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(killed.join("metrics.jsonl")).is_ok_and(|t| !t.is_empty()) {
        assert!(
            start.elapsed().as_secs() < 300,
            "no epoch finished in 5 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(!killed.join("summary.json").exists(), "killed too late");

    let mut resume = bin();
    resume.arg("train").arg("--resume").arg(&killed);
    let out = resume.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");

    assert_eq!(
        metrics_without(&killed, &["epoch_seconds", "train_images_per_second"]),
        metrics_without(&whole, &["epoch_seconds", "train_images_per_second"])
    );
    let (a, b) = (
        json(&whole.join("summary.json")),
        json(&killed.join("summary.json")),
    );
    for key in ["clean_accuracy", "robust_accuracy", "epochs"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert!(
        tensors(&whole.join("model.safetensors")) == tensors(&killed.join("model.safetensors"))
    );

    // --resume takes no other settings, and a missing checkpoint is named.
    let err = run_err(
        bin()
            .arg("train")
            .arg("--resume")
            .arg(&killed)
            .args(["--epochs", "9"]),
    );
    assert!(err.contains("--resume"), "{err}");
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(killed.join("config.toml"), empty.join("config.toml")).unwrap();
    let err = run_err(bin().arg("train").arg("--resume").arg(&empty));
    assert!(err.contains("no checkpoint"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

/// A run directory written before config.toml had a `task` key is an image run: it opens
/// as one, and eval and report work on it. A directory holding a run is never overwritten
/// without force.
#[test]
fn old_run_directories_open_as_image_runs() {
    use advtrain::run::{RunDir, Task};

    let root = scratch("old-run");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let run = root.join("run");
    run_ok(
        bin()
            .args([
                "train",
                "--epochs",
                "1",
                "--limit",
                "300",
                "--val-size",
                "50",
                "--final-steps",
                "0",
                "-q",
            ])
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&run),
    );
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("task = \"image\""), "{config}");
    let old: String = config
        .lines()
        .filter(|l| !l.starts_with("task = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(run.join("config.toml"), old).unwrap();

    let dir = RunDir::open(&run).unwrap();
    assert_eq!(dir.task(), Task::Image);
    assert_eq!(dir.config().unwrap().task, Task::Image);
    assert_eq!(dir.metrics().unwrap().len(), 1);
    let out = run_ok(
        bin()
            .args(["eval", "--attack", "fgsm", "--limit", "40", "-q"])
            .arg("--run")
            .arg(&run),
    );
    assert!(out.contains("robust accuracy:"), "{out}");
    assert!(run.join("eval-fgsm-n40.json").is_file());
    let out = run_ok(bin().args(["report", "--no-examples"]).arg(&run));
    assert!(out.contains("report:"), "{out}");

    let before = std::fs::read(run.join("model.safetensors")).unwrap();
    let err = RunDir::create(&run, Task::Image, false).unwrap_err();
    assert!(err.to_string().contains("already holds a run"), "{err}");
    assert_eq!(
        before,
        std::fs::read(run.join("model.safetensors")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Inputs that used to panic deep inside burn or the random generator: images of another
/// size than the model's, a target class the model does not have, and ε warm-up (whose
/// first batches have a zero radius). Each is now refused with a message naming the problem,
/// or (warm-up) simply works.
#[test]
fn wrong_shapes_targets_and_warmup_are_handled() {
    let root = scratch("shapes");
    let (data, small) = (root.join("data"), root.join("data16"));
    for (dir, side) in [(&data, 28), (&small, 16)] {
        std::fs::create_dir_all(dir).unwrap();
        write_tiny_idx(dir, side);
    }
    let quick = ["--epochs", "1", "--limit", "300", "--val-size", "50", "-q"];
    // Training on 16×16 IDX files for a Fashion-MNIST (28×28) model.
    let err = run_err(
        bin()
            .arg("train")
            .args(quick)
            .arg("--data")
            .arg(&small)
            .arg("--out")
            .arg(root.join("r16")),
    );
    assert!(
        err.contains("16×16") && err.contains("expects 1×28×28"),
        "{err}"
    );
    // ε warm-up from a zero radius, for both methods that start at a random point.
    let run = root.join("run");
    for method in ["pgd-at", "fgsm-rs"] {
        run_ok(
            bin()
                .arg("train")
                .args(quick)
                .args([
                    "--method",
                    method,
                    "--eps-warmup",
                    "1",
                    "--attack-steps",
                    "2",
                ])
                .args(["--final-steps", "2", "--force"])
                .arg("--data")
                .arg(&data)
                .arg("--out")
                .arg(&run),
        );
    }
    // Evaluating the 28×28 model on 16×16 test images.
    let err = run_err(
        bin()
            .args(["eval", "-q", "--run"])
            .arg(&run)
            .arg("--data")
            .arg(&small),
    );
    assert!(err.contains("16×16"), "{err}");
    // A target class the 10-class model does not have.
    for cmd in ["eval", "attack"] {
        let mut c = bin();
        c.args([
            cmd, "-q", "--attack", "pgd", "--steps", "2", "--target", "10", "--run",
        ])
        .arg(&run);
        if cmd == "attack" {
            c.arg("--out").arg(root.join("adv"));
        }
        let err = run_err(&mut c);
        assert!(err.contains("--target 10 is not a class"), "{cmd}: {err}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Each attack runs with its own reference defaults when no flag says otherwise (APGD 100
/// iterations as in AutoAttack, PGD 20), shown in `--help` and recorded in the eval file;
/// `--budget` (a text flag) is refused on an image run.
#[test]
fn each_attack_has_its_own_defaults() {
    let help = run_ok(bin().args(["eval", "--help"]));
    assert!(
        help.contains("100 for apgd-ce, apgd-dlr, apgd-t, fab and fab-t"),
        "{help}"
    );
    assert!(help.contains("square (black-box, linf and l2)"), "{help}");
    assert!(help.contains("--version"), "{help}");
    let root = scratch("defaults");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let run = root.join("run");
    run_ok(
        bin()
            .args([
                "train",
                "--epochs",
                "1",
                "--limit",
                "300",
                "--val-size",
                "50",
            ])
            .args(["--final-steps", "0", "-q", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&run),
    );
    let steps_of = |attack: &str| {
        run_ok(
            bin()
                .args(["eval", "-q", "--limit", "16", "--attack", attack, "--run"])
                .arg(&run),
        );
        let file = std::fs::read_dir(&run)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with(&format!("eval-{attack}")) && name.ends_with(".json")
            })
            .unwrap_or_else(|| panic!("no eval file for {attack}"));
        json(&file)["steps"].as_u64()
    };
    assert_eq!(steps_of("apgd-ce"), Some(100));
    assert_eq!(steps_of("pgd"), Some(20));
    let err = run_err(
        bin()
            .args(["eval", "-q", "--budget", "3", "--run"])
            .arg(&run),
    );
    assert!(err.contains("--budget applies to text runs only"), "{err}");
    let refused = |args: &[&str], expect: &str| {
        let err = run_err(
            bin()
                .args(["eval", "-q", "--limit", "8"])
                .args(args)
                .arg("--run")
                .arg(&run),
        );
        assert!(err.contains(expect), "{args:?}: {err}");
    };
    refused(
        &["--attack", "pgd", "--version", "plus"],
        "--version applies to --attack autoattack only",
    );
    refused(
        &["--attack", "autoattack", "--version", "deluxe"],
        "unknown AutoAttack version 'deluxe'",
    );
    refused(
        &["--attack", "square", "--eot", "4"],
        "--eot applies to the gradient attacks",
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// `eval` keeps its progress in partial-eval-<tag>.json while it runs and removes it once
/// the record is written; a damaged state is refused with what to do, and --fresh starts
/// over. (That a killed evaluation resumes to exactly the uninterrupted result is tested
/// in the library suite, `parity::a_killed_evaluation_resumes_to_exactly_the_uninterrupted_result`.)
#[test]
fn evaluation_state_is_kept_while_running_and_checked_on_resume() {
    let root = scratch("eval-state");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let run = root.join("run");
    run_ok(
        bin()
            .args([
                "train",
                "--epochs",
                "1",
                "--limit",
                "300",
                "--val-size",
                "50",
            ])
            .args(["--final-steps", "0", "-q", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&run),
    );
    let eval = |extra: &[&str]| {
        let mut c = bin();
        c.args([
            "eval", "-q", "--limit", "40", "--attack", "pgd", "--steps", "3",
        ])
        .args(extra)
        .arg("--run")
        .arg(&run);
        c
    };
    run_ok(&mut eval(&[]));
    let state = run.join("partial-eval-pgd-steps3-n40.json");
    assert!(run.join("eval-pgd-steps3-n40.json").is_file());
    assert!(
        !state.exists(),
        "the state is removed once the record is written"
    );

    std::fs::write(&state, b"{ not json").unwrap();
    let err = run_err(&mut eval(&[]));
    assert!(
        err.contains("cannot resume from") && err.contains("--fresh"),
        "{err}"
    );
    let out = run_ok(&mut eval(&["--fresh"]));
    assert!(!out.contains("resuming"), "{out}");
    assert!(!state.exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn data_parallel_training_runs_end_to_end_and_refuses_what_it_cannot_do() {
    let root = scratch("data-parallel");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let train = |run: &str, extra: &[&str]| {
        let mut cmd = bin();
        cmd.args([
            "train",
            "--model",
            "small-cnn",
            "--eps",
            "0.1",
            "--epochs",
            "1",
        ])
        .args([
            "--final-steps",
            "2",
            "--batch-size",
            "32",
            "--val-size",
            "100",
            "-q",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(root.join(run))
        .args(extra);
        cmd
    };
    // Two ranks on the CPU: the batch split, per-rank attacks and averaged gradients.
    let out = run_ok(&mut train(
        "two",
        &["--method", "fgsm-rs", "--devices", "flex,flex"],
    ));
    assert!(out.contains("robust accuracy:"), "{out}");
    assert!(root.join("two/model.safetensors").is_file());

    let one = run_err(&mut train("one", &["--devices", "flex"]));
    assert!(one.contains("two or more devices"), "{one}");
    let free = run_err(&mut train(
        "free",
        &["--method", "free", "--devices", "flex,flex"],
    ));
    assert!(free.contains("cannot run data-parallel"), "{free}");
    let bad = run_err(&mut train("bad", &["--devices", "flex,tpu"]));
    assert!(bad.contains("unknown device 'tpu'"), "{bad}");
}
