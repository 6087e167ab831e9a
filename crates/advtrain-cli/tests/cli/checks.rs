//! `advtrain eval --checks`: the eleven checks, the transfer surrogate trained once and
//! cached in the run, `--transfer-from` another run, and its errors.

use crate::common::{bin, run_err, run_ok, scratch, write_tiny_fashion};

#[test]
fn checks_train_the_transfer_surrogate_once_and_take_another_run_on_request() {
    let root = scratch("checks");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let run = root.join("run");
    run_ok(
        bin()
            .args([
                "train",
                "--model",
                "mlp",
                "--epochs",
                "1",
                "--limit",
                "300",
                "--val-size",
                "50",
                "--eps",
                "0.1",
                "--final-steps",
                "2",
                "-q",
            ])
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&run),
    );
    let eval = |extra: &[&str]| {
        let mut c = bin();
        c.args([
            "eval", "--attack", "pgd", "--steps", "2", "--limit", "40", "--checks", "-q",
        ])
        .args(extra)
        .arg("--run")
        .arg(&run);
        c
    };
    let surrogate = run.join("surrogate-standard.safetensors");
    let out = run_ok(&mut eval(&[]));
    assert!(
        out.contains("transfer surrogate: standard mlp trained for 2 epochs"),
        "{out}"
    );
    assert!(surrogate.is_file(), "the surrogate was not cached");
    let checks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("checks.json")).unwrap()).unwrap();
    assert!(checks["model_sha256"].is_string(), "{checks}");
    assert_eq!(checks["n"].as_u64(), Some(40), "{checks}");
    let ids: Vec<u64> = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (1..=11).collect::<Vec<_>>());
    for id in 1..=11 {
        assert!(
            out.contains(&format!(" {id}. ")),
            "check {id} not printed: {out}"
        );
    }

    // The second evaluation reuses the cached surrogate, byte for byte.
    let before = std::fs::read(&surrogate).unwrap();
    let out = run_ok(&mut eval(&[]));
    assert!(
        out.contains("transfer surrogate: standard mlp (cached in"),
        "{out}"
    );
    assert_eq!(std::fs::read(&surrogate).unwrap(), before);

    // Another run's model instead (here: the run itself).
    let out = run_ok(eval(&[]).arg("--transfer-from").arg(&run));
    assert!(out.contains("transfer surrogate: mlp of run"), "{out}");

    // A run of another shape is refused, naming both. (Its config says 5 classes: the
    // shape check comes before its weights are read.)
    let other = root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("num_classes = 10"), "{config}");
    std::fs::write(
        other.join("config.toml"),
        config.replace("num_classes = 10", "num_classes = 5"),
    )
    .unwrap();
    let err = run_err(eval(&[]).arg("--transfer-from").arg(&other));
    assert!(
        err.contains("5 classes") && err.contains("1×28×28 in 10"),
        "{err}"
    );
    // --transfer-from means nothing without the checklist.
    let err = run_err(
        bin()
            .args(["eval", "-q", "--transfer-from"])
            .arg(&run)
            .arg("--run")
            .arg(&run),
    );
    assert!(err.contains("--checks"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
