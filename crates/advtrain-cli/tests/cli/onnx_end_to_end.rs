//! A user's ONNX model through the CLI: `eval --model` with no training run, `eval --run`,
//! `report` and `attack` on the run it makes, `train --init` fine-tuning, `export` back to
//! ONNX and the exported file evaluated again, and the errors of each.

use std::path::{Path, PathBuf};

use crate::common::{bin, run_err, run_ok, scratch, write_tiny_fashion};

/// The committed CNN-with-batch-norm fixture (1×28×28 images, 10 classes, from PyTorch).
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../advtrain/tests/fixtures/onnx/cnn_bn.onnx")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn toml_of(path: &Path) -> toml::Value {
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn an_onnx_model_is_evaluated_fine_tuned_and_exported() {
    let root = scratch("onnx");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let run = root.join("imported");
    let eval = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.args(["eval", "-q"])
            .args(extra)
            .arg("--data")
            .arg(&data);
        cmd
    };

    // eval --model: a run directory made for the file, its hash recorded, the file copied.
    let out = run_ok(
        eval(&["--eps", "0.1", "--attack", "pgd", "--steps", "3"])
            .arg("--model")
            .arg(fixture())
            .arg("--out")
            .arg(&run),
    );
    assert!(
        out.contains("robust accuracy:") && out.contains("sha256"),
        "{out}"
    );
    let config = toml_of(&run.join("config.toml"));
    assert_eq!(config["model"].as_str(), Some("onnx"));
    let bytes = std::fs::read(fixture()).unwrap();
    assert_eq!(
        config["onnx"]["sha256"].as_str(),
        Some(advtrain::run::sha256_hex(&bytes).as_str())
    );
    assert_eq!(std::fs::read(run.join("model.onnx")).unwrap(), bytes);
    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["epochs"], 0);
    assert_eq!(summary["n_test"], 120);
    let pgd = json(&run.join("eval-pgd-steps3.json"));
    assert_eq!(summary["clean_accuracy"], pgd["clean_accuracy"]);
    assert_eq!(summary["robust_accuracy"], pgd["robust_accuracy"]);

    // The same file again adds to the run; --run works on it as on a trained run.
    run_ok(
        eval(&["--eps", "0.1", "--attack", "fgsm"])
            .arg("--model")
            .arg(fixture())
            .arg("--out")
            .arg(&run),
    );
    run_ok(
        eval(&["--attack", "apgd-ce", "--steps", "3"])
            .arg("--run")
            .arg(&run),
    );
    // The checklist too: its transfer surrogate is a standard small-cnn (advtrain cannot
    // initialise an imported architecture afresh).
    let out = run_ok(
        eval(&[
            "--attack", "pgd", "--steps", "2", "--checks", "--limit", "30",
        ])
        .arg("--run")
        .arg(&run),
    );
    assert!(out.contains("standard small-cnn"), "{out}");
    for f in [
        "eval-pgd-steps3.json",
        "eval-pgd-steps2-n30.json",
        "eval-fgsm.json",
        "eval-apgd-ce-steps3.json",
        "checks.json",
        "report.html",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let adv = root.join("adv");
    run_ok(
        bin()
            .args(["attack", "-q", "-n", "4", "--steps", "3", "--run"])
            .arg(&run)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&adv),
    );
    assert!(adv.join("grid.png").is_file());

    // train --init: adversarial fine-tuning of the imported weights.
    let tuned = root.join("tuned");
    let out = run_ok(
        bin()
            .args([
                "train",
                "-q",
                "--method",
                "pgd-at",
                "--attack-steps",
                "2",
                "--eps",
                "0.1",
                "--epochs",
                "1",
                "--batch-size",
                "50",
                "--val-size",
                "100",
                "--final-steps",
                "3",
            ])
            .arg("--init")
            .arg(fixture())
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&tuned),
    );
    assert!(out.contains("clean accuracy:"), "{out}");
    assert!(tuned.join("model.onnx").is_file() && tuned.join("model.safetensors").is_file());
    let tuned_summary = json(&tuned.join("summary.json"));
    assert!(tuned_summary["model"]
        .as_str()
        .unwrap()
        .starts_with("onnx:"));

    // export: the graph with the fine-tuned weights; evaluated again, it gives the clean
    // accuracy the run measured, and its weights differ from the original file's.
    let exported = root.join("tuned.onnx");
    run_ok(
        bin()
            .args(["export", "--run"])
            .arg(&tuned)
            .arg("--out")
            .arg(&exported),
    );
    assert_ne!(std::fs::read(&exported).unwrap(), bytes);
    let again = root.join("again");
    run_ok(
        eval(&["--eps", "0.1", "--attack", "fgsm"])
            .arg("--model")
            .arg(&exported)
            .arg("--out")
            .arg(&again),
    );
    assert_eq!(
        json(&again.join("summary.json"))["clean_accuracy"],
        tuned_summary["clean_accuracy"]
    );

    // A zoo-model export to ONNX is refused with the way out.
    let err = run_err(
        bin()
            .args(["export", "--format", "pytorch", "--run"])
            .arg(&tuned),
    );
    assert!(err.contains("--format onnx"), "{err}");
}

#[test]
fn onnx_model_errors_name_the_problem() {
    let root = scratch("onnx-errors");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let missing = root.join("missing.onnx");
    let err = run_err(
        bin()
            .args(["eval", "--eps", "0.1", "--model"])
            .arg(&missing)
            .arg("--data")
            .arg(&data),
    );
    assert!(
        err.contains("missing.onnx") && err.contains("not found"),
        "{err}"
    );
    let err = run_err(
        bin()
            .arg("eval")
            .arg("--model")
            .arg(fixture())
            .arg("--data")
            .arg(&data),
    );
    assert!(err.contains("--eps"), "{err}");
    let err = run_err(
        bin()
            .args([
                "eval", "--eps", "0.1", "--mean", "0.5", "--std", "0", "--model",
            ])
            .arg(fixture())
            .arg("--data")
            .arg(&data),
    );
    assert!(err.contains("--std"), "{err}");
    let err = run_err(
        bin()
            .args(["eval", "--eps", "0.1", "--input-range", "0,2", "--model"])
            .arg(fixture())
            .arg("--data")
            .arg(&data),
    );
    assert!(err.contains("0,255"), "{err}");
    let names = root.join("names.txt");
    std::fs::write(&names, "a\nb\n").unwrap();
    let err = run_err(
        bin()
            .args(["eval", "--eps", "0.1", "--class-names"])
            .arg(&names)
            .arg("--model")
            .arg(fixture())
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(root.join("r")),
    );
    assert!(
        err.contains("2 names") && err.contains("10 classes"),
        "{err}"
    );
    // 32×32 images do not fit a 28×28 model: the error names both shapes.
    let wide = root.join("wide");
    std::fs::create_dir_all(&wide).unwrap();
    crate::common::write_tiny_idx(&wide, 32);
    let err = run_err(
        bin()
            .args(["eval", "--eps", "0.1", "--model"])
            .arg(fixture())
            .arg("--data")
            .arg(&wide)
            .arg("--out")
            .arg(root.join("w")),
    );
    assert!(err.contains("32") && err.contains("28"), "{err}");
    // A zoo run exports to PyTorch, not ONNX.
    let zoo = root.join("zoo");
    run_ok(
        bin()
            .args([
                "train",
                "-q",
                "--method",
                "standard",
                "--epochs",
                "1",
                "--model",
                "mlp",
                "--val-size",
                "100",
                "--final-steps",
                "0",
            ])
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&zoo),
    );
    let err = run_err(
        bin()
            .args(["export", "--format", "onnx", "--run"])
            .arg(&zoo),
    );
    assert!(err.contains("--format pytorch"), "{err}");
    run_ok(bin().args(["export", "--run"]).arg(&zoo));
    assert!(zoo.join("model-pytorch.safetensors").is_file());
    let err = run_err(
        bin()
            .args(["eval", "--mean", "0.5", "--std", "0.5", "--run"])
            .arg(&zoo),
    );
    assert!(err.contains("--model"), "{err}");
}

/// Every training method fine-tunes an imported model, and an image folder feeds one.
#[test]
fn every_method_fine_tunes_an_onnx_model_and_an_image_folder_feeds_it() {
    let root = scratch("onnx-methods");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    for method in [
        "standard", "pgd-at", "mixed", "fgsm-rs", "trades", "free", "mart",
    ] {
        let out = root.join(method);
        run_ok(
            bin()
                .args([
                    "train",
                    "-q",
                    "--method",
                    method,
                    "--eps",
                    "0.1",
                    "--epochs",
                    "1",
                    "--limit",
                    "150",
                    "--batch-size",
                    "50",
                    "--val-size",
                    "50",
                    "--attack-steps",
                    "1",
                    "--val-steps",
                    "1",
                    "--final-steps",
                    "0",
                ])
                .arg("--init")
                .arg(fixture())
                .arg("--data")
                .arg(&data)
                .arg("--out")
                .arg(&out),
        );
        let before = advtrain::run::sha256_hex(&std::fs::read(out.join("model.onnx")).unwrap());
        let exported = out.join("tuned.onnx");
        run_ok(
            bin()
                .args(["export", "--run"])
                .arg(&out)
                .arg("--out")
                .arg(&exported),
        );
        let after = advtrain::run::sha256_hex(&std::fs::read(&exported).unwrap());
        assert_ne!(
            before, after,
            "{method}: the exported weights did not change"
        );
    }

    // A test set as class folders of PNG files (grey, 30×30: resized and cropped to 28×28).
    let folder = root.join("folder");
    for (class, shade) in [("boot", 40u8), ("shirt", 200u8)] {
        std::fs::create_dir_all(folder.join(class)).unwrap();
        for i in 0..3u8 {
            let img = image::GrayImage::from_pixel(30, 30, image::Luma([shade + i]));
            img.save(folder.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let names = root.join("names.txt");
    std::fs::write(
        &names,
        (0..10).map(|c| format!("class {c}\n")).collect::<String>(),
    )
    .unwrap();
    let run = root.join("folder-run");
    let out = run_ok(
        bin()
            .args([
                "eval",
                "-q",
                "--eps",
                "0.1",
                "--attack",
                "fgsm",
                "--dataset",
                "image-folder",
            ])
            .arg("--class-names")
            .arg(&names)
            .arg("--model")
            .arg(fixture())
            .arg("--data")
            .arg(&folder)
            .arg("--out")
            .arg(&run),
    );
    assert!(out.contains("examples:         6"), "{out}");
    let record = json(&run.join("eval-fgsm.json"));
    assert_eq!(record["per_class"][0]["name"], "class 0");
}
