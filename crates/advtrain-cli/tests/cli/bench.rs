//! `advtrain bench` runs end to end and its JSON has the documented shape.

use std::process::Output;

use crate::common::bin;

/// `advtrain bench --reps 1 --warmup 0 --models small-cnn --json -q` plus `extra`.
fn bench(extra: &[&str]) -> Output {
    bin()
        .args([
            "bench",
            "--reps",
            "1",
            "--warmup",
            "0",
            "--models",
            "small-cnn",
        ])
        .args(extra)
        .args(["--json", "-q"])
        .output()
        .expect("advtrain runs")
}

#[test]
fn bench_json_has_expected_keys_and_positive_numbers() {
    let out = bench(&["--batch", "8"]);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    for key in [
        "date",
        "machine",
        "advtrain_version",
        "batch",
        "reps",
        "peak",
        "results",
    ] {
        assert!(v.get(key).is_some(), "missing key {key}");
    }
    assert!(v["date"].as_str().unwrap().ends_with('Z'));
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(v["machine"]["threads"].as_u64().unwrap() >= 1);
    assert!(v["machine"]["cpu"].is_string());
    assert_eq!(v["batch"], 8);
    assert_eq!(v["reps"], 1);
    let results = v["results"].as_array().unwrap();
    let workloads: Vec<&str> = results
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    assert_eq!(
        workloads,
        ["forward", "pgd10", "fgsm-rs-step", "pgd-at-step"]
    );
    for r in results {
        assert_eq!(r["model"], "small-cnn");
        for key in [
            "images_per_s_median",
            "images_per_s_min",
            "images_per_s_max",
            "seconds_per_batch_median",
            "gflops_median",
            "flops_per_image",
        ] {
            let x = r[key].as_f64().unwrap_or(f64::NAN);
            assert!(x.is_finite() && x > 0.0, "{key} = {x} in {r}");
        }
    }
}

#[test]
fn bench_workloads_filter_keeps_the_canonical_order_and_rejects_unknown_names() {
    let run = |workloads: &str| bench(&["--batch", "4", "--workloads", workloads]);
    let out = run("fgsm-rs-step,forward");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let workloads: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    assert_eq!(workloads, ["forward", "fgsm-rs-step"]);

    let bad = run("forward,pgd-100");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("unknown workload 'pgd-100'") && err.contains("pgd-at-step"),
        "{err}"
    );
}

#[test]
fn bench_takes_cifar_sized_inputs_and_checks_a_device_against_another() {
    let out = bin()
        .args([
            "bench",
            "--reps",
            "1",
            "--warmup",
            "0",
            "--models",
            "preact-resnet18",
            "--json",
            "-q",
            "--input-shape",
            "3,32,32",
            "--workloads",
            "forward",
            "--batch",
            "2",
            "--check-against",
            "flex",
        ])
        .output()
        .expect("advtrain runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The check's lines go to stderr with --json: three quantities, all in agreement.
    assert!(err.contains("device check: flex against flex"), "{err}");
    for quantity in ["logits", "input gradient", "logits after one SGD step"] {
        assert!(
            err.lines().any(|l| l.contains("preact-resnet18")
                && l.contains(quantity)
                && l.ends_with(": ok")),
            "{quantity} not checked: {err}"
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["input"], "3x32x32");
    let r = &v["results"][0];
    assert_eq!(r["model"], "preact-resnet18");
    // 555.4M multiply-adds per image, 2 FLOPs each.
    assert_eq!(r["flops_per_image"].as_f64().unwrap(), 2.0 * 555_422_720.0);
}

#[test]
fn bench_refuses_a_malformed_input_shape() {
    let out = bench(&["--input-shape", "3,32"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--input-shape '3,32'") && err.contains("C,H,W"),
        "{err}"
    );
}

/// A one-epoch `mlp` run on the tiny generated data set, for the attack workloads.
fn tiny_trained_run(root: &std::path::Path) -> std::path::PathBuf {
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    crate::common::write_tiny_fashion(&data);
    let run = root.join("run");
    crate::common::run_ok(
        bin()
            .args([
                "train", "--model", "mlp", "--method", "fgsm-rs", "--eps", "0.1",
            ])
            .args(["--epochs", "1", "--val-size", "50", "--final-steps", "3"])
            .args(["--seed", "3", "-q", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&run),
    );
    run
}

#[test]
fn attack_workloads_time_whole_attacks_of_a_trained_run_with_their_robust_accuracy() {
    let root = crate::common::scratch("bench-attacks");
    let run = tiny_trained_run(&root);
    let out = bin()
        .args(["bench", "--run"])
        .arg(&run)
        .args(["--limit", "8", "--attack-batch", "4", "--attack-reps", "2"])
        .args(["--workloads", "apgd-t,square", "--json", "-q"])
        .output()
        .expect("advtrain runs");
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["results"].as_array().unwrap().len(),
        0,
        "no throughput workload asked"
    );
    let attacks = v["attacks"].as_array().unwrap();
    let names: Vec<&str> = attacks
        .iter()
        .map(|a| a["workload"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["square", "apgd-t"],
        "reported in the canonical order"
    );
    for a in attacks {
        assert_eq!(a["points"], 8);
        let (min, med, max) = (
            a["seconds_min"].as_f64().unwrap(),
            a["seconds_median"].as_f64().unwrap(),
            a["seconds_max"].as_f64().unwrap(),
        );
        assert!(0.0 < min && min <= med && med <= max, "{a}");
        let clean = a["clean_accuracy"].as_f64().unwrap();
        let robust = a["robust_accuracy"].as_f64().unwrap();
        assert!((0.0..=clean).contains(&robust), "{a}");
        let stages = a["stages"].as_array().unwrap();
        assert_eq!(stages.len(), 1, "one attack, one stage: {a}");
        let attacked = stages[0]["attacked"].as_u64().unwrap();
        assert_eq!(
            attacked as f64,
            (clean * 8.0).round(),
            "only the clean-correct points are attacked: {a}"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn attack_workloads_need_a_run_and_unknown_workloads_list_both_kinds() {
    let err = crate::common::run_err(bin().args(["bench", "--workloads", "square", "-q"]));
    assert!(err.contains("pass --run DIR"), "{err}");
    let err = crate::common::run_err(bin().args(["bench", "--workloads", "fab", "-q"]));
    assert!(
        err.contains("unknown workload 'fab'") && err.contains("apgd-t") && err.contains("pgd10"),
        "{err}"
    );
    let root = crate::common::scratch("bench-attacks-norun");
    let err = crate::common::run_err(
        bin()
            .args(["bench", "--workloads", "autoattack", "-q", "--run"])
            .arg(root.join("missing")),
    );
    assert!(err.contains("missing"), "names the directory: {err}");
    let _ = std::fs::remove_dir_all(&root);
}
