//! Issue 21's resource bounds and messages, as a user meets them: thread and batch limits,
//! a capped attack grid, a thinned report, each cause printed once, clear refusals
//! (mismatched weights, `--eps 0`, huge seeds, overwriting files), a run's own config.toml
//! as `--config`, terminal-safe texts, and divergence naming only files that exist.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::{bin, metrics_without, run_err, run_ok, scratch, write_tiny_fashion};

/// Tiny generated data and one trained run (small-cnn, fgsm-rs, eps 0.1, one epoch), made
/// once for every test here; tests that change a run work on a copy.
struct Fixture {
    data: PathBuf,
    run: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = scratch("resources-fixture");
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        write_tiny_fashion(&data);
        let run = root.join("small");
        run_ok(train(&data, &run).args(["--model", "small-cnn", "--method", "fgsm-rs"]));
        Fixture { data, run }
    })
}

/// `advtrain train` on `data` for one quick epoch into `out`.
fn train(data: &Path, out: &Path) -> Command {
    let mut c = bin();
    c.args([
        "train",
        "--epochs",
        "1",
        "--val-size",
        "100",
        "--final-steps",
        "0",
        "--eps",
        "0.1",
        "-q",
    ])
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out);
    c
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A copy of the fixture's run in a scratch directory of its own.
fn run_copy(name: &str) -> (PathBuf, PathBuf) {
    let root = scratch(name);
    let run = root.join("run");
    copy_dir(&fixture().run, &run);
    (root, run)
}

#[test]
fn threads_far_above_the_cores_are_refused_naming_both() {
    let err = run_err(bin().args(["bench", "--threads", "1000", "--reps", "1"]));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        err.contains("--threads 1000") && err.contains(&format!("the {cores} core")),
        "{err}"
    );
}

#[test]
fn bench_refuses_a_batch_the_memory_cannot_hold() {
    if !std::fs::read_to_string("/proc/meminfo").is_ok_and(|m| m.contains("MemAvailable")) {
        return; // no MemAvailable: the check is skipped by design
    }
    let err = run_err(bin().args(["bench", "--batch", "10000000", "--reps", "1"]));
    assert!(
        err.contains("--batch 10000000 needs at least") && err.contains(" GB"),
        "{err}"
    );
}

#[test]
fn io_errors_name_their_cause_once() {
    let root = scratch("io-cause");
    let data = root.join("data");
    for f in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::create_dir_all(data.join(f)).unwrap();
    }
    let err = run_err(&mut train(&data, &root.join("run")));
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    assert_eq!(
        err.matches("os error").count(),
        1,
        "cause printed twice: {err}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn attack_grid_draws_at_most_64_images_and_says_so() {
    let (root, run) = run_copy("attack-grid");
    let attack = |n: &str, out: &Path| {
        run_ok(
            bin()
                .args(["attack", "--attack", "fgsm", "-q", "-n", n, "--run"])
                .arg(&run)
                .arg("--out")
                .arg(out),
        )
    };
    let out = attack("100", &root.join("many"));
    assert!(out.contains("only the first 64 of the 100 images"), "{out}");
    attack("64", &root.join("cap"));
    let many = image::open(root.join("many/grid.png")).unwrap();
    let cap = image::open(root.join("cap/grid.png")).unwrap();
    assert_eq!(many.height(), cap.height(), "the grid grew past 64 rows");
    let ex = advtrain::report::load_examples(&root.join("many/adversarial.safetensors")).unwrap();
    assert_eq!(ex.len(), 100, "every example is still saved");
    let help = run_ok(bin().args(["attack", "--help"]));
    assert!(help.contains("only the first 64"), "{help}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn long_histories_are_thinned_in_the_report() {
    let (root, run) = run_copy("report-thin");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let mut line: serde_json::Value =
        serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    let epochs = 20_000;
    let mut long = String::new();
    for epoch in 1..=epochs {
        line["epoch"] = epoch.into();
        line["train_loss"] = (1.0 + (epoch % 7) as f64 / 10.0).into();
        long.push_str(&line.to_string());
        long.push('\n');
    }
    std::fs::write(run.join("metrics.jsonl"), long).unwrap();
    let html = root.join("report.html");
    run_ok(
        bin()
            .args(["report", "--no-examples", "--out"])
            .arg(&html)
            .arg(&run),
    );
    let size = std::fs::metadata(&html).unwrap().len();
    assert!(
        size < 3_000_000,
        "report of {size} bytes for {epochs} epochs"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("showing 2000 of 20000 epochs"),
        "no note on the thinning"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn mismatched_weights_name_the_architecture() {
    let (root, run) = run_copy("weights-mismatch");
    let mlp = root.join("mlp");
    run_ok(train(&fixture().data, &mlp).args(["--model", "mlp", "--method", "standard"]));
    std::fs::copy(mlp.join("model.safetensors"), run.join("model.safetensors")).unwrap();
    let err = run_err(
        bin()
            .args(["eval", "-q", "--limit", "10", "--run"])
            .arg(&run),
    );
    assert!(
        err.contains("this file holds mlp weights, but the run's model is small-cnn"),
        "{err}"
    );
    assert!(
        !err.contains("allow_partial") && !err.contains("Hint"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn eval_at_eps_zero_is_refused_plainly() {
    let err = run_err(
        bin()
            .args(["eval", "-q", "--eps", "0", "--run"])
            .arg(&fixture().run),
    );
    assert!(err.contains("--eps must be > 0"), "{err}");
    assert!(!err.contains("trained without"), "{err}");
}

/// Every run file the divergence message names must exist, with and without a checkpoint.
#[test]
fn divergence_names_only_files_that_exist() {
    let root = scratch("diverge");
    for (name, extra) in [("none", vec![]), ("ckpt", vec!["--checkpoint-every", "1"])] {
        let out = root.join(name);
        let err = run_err(
            train(&fixture().data, &out)
                .args(["--method", "standard", "--lr", "1e30"])
                .args(&extra),
        );
        assert!(err.contains("training diverged"), "{err}");
        for file in [
            "checkpoint.ckpt",
            "checkpoint.prev.ckpt",
            "metrics.jsonl",
            "model.safetensors",
            "model-best.safetensors",
        ] {
            if err.contains(file) {
                assert!(
                    out.join(file).is_file(),
                    "{name}: names missing {file}: {err}"
                );
            }
        }
        if name == "ckpt" {
            assert!(err.contains("checkpoint.ckpt"), "{err}");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_runs_config_toml_trains_the_same_settings() {
    let root = scratch("config-again");
    let first = root.join("first");
    run_ok(train(&fixture().data, &first).args([
        "--method",
        "pgd-at",
        "--attack-steps",
        "2",
        "--optimizer",
        "adam",
        "--lr",
        "0.002",
        "--schedule",
        "constant",
        "--seed",
        "7",
        "--limit",
        "300",
        "--batch-size",
        "100",
        "--val-steps",
        "2",
        "--alarm-pgd-drop",
        "30",
    ]));
    let second = root.join("second");
    run_ok(
        bin()
            .args(["train", "-q", "--config"])
            .arg(first.join("config.toml"))
            .arg("--out")
            .arg(&second),
    );
    let config = |run: &Path| std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert_eq!(config(&first), config(&second));
    let times = ["epoch_seconds", "train_images_per_second", "val_seconds"];
    assert_eq!(
        metrics_without(&first, &times),
        metrics_without(&second, &times)
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn seeds_beyond_toml_integers_are_refused_at_the_flag() {
    let root = scratch("big-seed");
    let out = root.join("run");
    let err = run_err(train(&fixture().data, &out).args(["--seed", "9223372036854775808"]));
    assert!(
        err.contains("--seed must be at most 9223372036854775807"),
        "{err}"
    );
    assert!(!out.exists(), "a refused run left a directory");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn outputs_are_not_overwritten_without_force_and_run_files_never() {
    let (root, run) = run_copy("overwrite");
    let html = root.join("report.html");
    std::fs::write(&html, "mine").unwrap();
    let report = |out: &Path, force: bool| {
        let mut c = bin();
        c.args(["report", "--no-examples", "--out"])
            .arg(out)
            .arg(&run);
        if force {
            c.arg("--force");
        }
        c
    };
    let err = run_err(&mut report(&html, false));
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&html).unwrap(), "mine");
    run_ok(&mut report(&html, true));
    let model = std::fs::read(run.join("model.safetensors")).unwrap();
    let err = run_err(&mut report(&run.join("model.safetensors"), true));
    assert!(err.contains("run directory's own file"), "{err}");
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), model);

    let adv = root.join("adv");
    let attack = |force: bool| {
        let mut c = bin();
        c.args(["attack", "--attack", "fgsm", "-q", "-n", "2", "--run"])
            .arg(&run)
            .arg("--out")
            .arg(&adv);
        if force {
            c.arg("--force");
        }
        c
    };
    run_ok(&mut attack(false));
    let err = run_err(&mut attack(false));
    assert!(err.contains("grid") || err.contains("adversarial"), "{err}");
    assert!(err.contains("--force"), "{err}");
    run_ok(&mut attack(true));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn attack_escapes_control_characters_in_texts() {
    let root = scratch("text-escape");
    let csv = root.join("mail.csv");
    let mut s = String::from("text,label\n");
    let filler = ["meeting", "lunch", "report", "thanks", "review", "notes"];
    for i in 0..120 {
        let label = if i % 2 == 1 { "spam" } else { "ham" };
        let word = if i % 2 == 1 { "winner" } else { filler[i % 6] };
        s.push_str(&format!(
            "\"{} {word} \u{1b}]0;pwned\u{7}\u{1b}[2J {}\",{label}\n",
            filler[(i / 2) % 6],
            filler[(i / 3) % 6]
        ));
    }
    std::fs::write(&csv, s).unwrap();
    let run = root.join("run");
    run_ok(
        bin()
            .args(["train", "--task", "text", "--epochs", "2", "-q"])
            .args(["--eval-attacks", "none", "--data"])
            .arg(&csv)
            .arg("--out")
            .arg(&run),
    );
    let out = run_ok(
        bin()
            .args(["attack", "-q", "--budget", "5", "-n", "60", "--run"])
            .arg(&run)
            .arg("--out")
            .arg(root.join("pairs")),
    );
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("\\u{1b}"), "no example printed: {out}");
    let _ = std::fs::remove_dir_all(&root);
}

/// One optimiser step under one-cycle (the whole training set in one batch, one epoch)
/// must have a positive learning rate: it used to be read at progress 0, where the cycle
/// starts at 0, so the weights never changed.
#[test]
fn one_cycle_with_a_single_step_has_a_positive_rate() {
    let root = scratch("one-cycle");
    let run = root.join("run");
    run_ok(train(&fixture().data, &run).args([
        "--method",
        "standard",
        "--limit",
        "600",
        "--batch-size",
        "600",
        "--schedule",
        "one-cycle",
    ]));
    let metrics = metrics_without(&run, &[]);
    let lr = metrics[0]["lr"].as_f64().unwrap();
    assert!(lr > 0.0, "lr {lr}: the one step changed nothing");
    let _ = std::fs::remove_dir_all(&root);
}
