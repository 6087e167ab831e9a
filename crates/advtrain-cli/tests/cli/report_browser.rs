//! The HTML report as a reader sees it: a tiny run is trained and evaluated with the CLI,
//! `advtrain report` writes the file, and headless Chromium renders it. The rendered DOM
//! must hold every section and the SVG charts, and the screenshot must not be blank.
//! A standard run is then trained beside it, both are audited (`eval --audit`), and their
//! report must render the section "What adversarial training bought and cost".
//!
//! Needs /usr/bin/chromium (`apt-get install -y chromium`); without it the test fails with
//! that instruction rather than passing silently.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, run_ok, scratch, write_tiny_fashion};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium on `url` with `extra` flags and a fresh profile; returns stdout.
/// Killed after two minutes so a hung browser fails the test instead of stalling it.
fn chromium(profile: &Path, extra: &[String], url: &str, stdout_file: &Path) -> String {
    let _ = std::fs::remove_dir_all(profile);
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::from(std::fs::File::create(stdout_file).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(stdout_file).unwrap_or_default()
}

#[test]
fn report_renders_in_chromium() {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "Chromium is not installed ({CHROMIUM} is missing); the report's browser test needs it. \
         Install it with: apt-get install -y chromium"
    );
    let root = scratch("report-browser");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_tiny_fashion(&data);
    let run = root.join("tiny-run");
    let out = run_ok(&mut train_tiny(&data, &run, "fgsm-rs"));
    let train_report = run.join("report.html");
    assert!(
        out.contains(&format!("report:           {}", train_report.display())),
        "train did not print the report path: {out}"
    );
    assert!(train_report.is_file());

    // An ε-curve and the checklist, so every section has data; eval refreshes the report.
    let out = run_ok(
        bin()
            .args([
                "eval",
                "--attack",
                "pgd",
                "--steps",
                "5",
                "--eps-curve",
                "0,0.05,0.1,0.2",
                "--checks",
                "-q",
            ])
            .arg("--run")
            .arg(&run),
    );
    assert!(out.contains("report:           "), "{out}");

    let report = root.join("out").join("report.html");
    let out = run_ok(bin().arg("report").arg(&run).arg("--out").arg(&report));
    assert_eq!(
        out.trim(),
        format!("report:           {}", report.display())
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        !html.contains("<script"),
        "the report must not need JavaScript"
    );
    assert!(html.contains("data:image/png;base64,"), "no example grid");

    let url = format!("file://{}", report.display());
    let dom = chromium(
        &root.join("profile-dom"),
        &["--dump-dom".to_string()],
        &url,
        &root.join("dom.html"),
    );
    for heading in [
        "1. Summary",
        "2. Robustness–accuracy trade-off",
        "3. Accuracy vs ε",
        "4. Training curves",
        "5. Adversarial examples",
        "6. Per-class accuracy",
        "7. Sanity checklist",
    ] {
        assert!(
            dom.contains(&format!("<h2>{heading}</h2>")),
            "rendered DOM lacks the heading '{heading}'"
        );
    }
    // Trade-off, ε-curve, training loss and validation accuracy.
    assert!(
        dom.matches("<svg").count() >= 4,
        "expected at least 4 SVG charts, found {}",
        dom.matches("<svg").count()
    );
    assert!(dom.contains("tiny-run"));
    assert!(
        !dom.contains("class=\"note\">tiny-run: no ") && !dom.contains("left out"),
        "a section was left out: {dom}"
    );

    let shot = root.join("report.png");
    chromium(
        &root.join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,4000".to_string(),
        ],
        &url,
        &root.join("shot.txt"),
    );
    let img = image::open(&shot)
        .unwrap_or_else(|e| panic!("{}: not a PNG screenshot: {e}", shot.display()))
        .to_rgb8();
    assert_eq!(img.width(), 1280);
    let mut colours = std::collections::HashSet::new();
    let (mut sum, mut sum2, mut non_white) = (0f64, 0f64, 0usize);
    for p in img.pixels() {
        colours.insert(p.0);
        let l = 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
        sum += l;
        sum2 += l * l;
        non_white += usize::from(p.0 != [255, 255, 255]);
    }
    let n = f64::from(img.width() * img.height());
    let variance = sum2 / n - (sum / n).powi(2);
    assert!(
        colours.len() >= 16,
        "screenshot has only {} colours",
        colours.len()
    );
    assert!(
        variance > 100.0,
        "screenshot is nearly uniform (variance {variance:.1})"
    );
    assert!(
        non_white as f64 / n > 0.02,
        "screenshot is almost blank ({non_white} non-white pixels)"
    );
    // The run's colour (the palette's first, #0072b2) is drawn somewhere: the charts rendered.
    assert!(
        img.pixels().any(|p| p.0 == [0, 114, 178]),
        "no pixel in the run's chart colour"
    );
    audit_section_renders(&root, &data, &run);
}

/// `advtrain train` of small-cnn with `method` on the tiny data: 2 epochs, quiet.
fn train_tiny(data: &Path, out: &Path, method: &str) -> std::process::Command {
    let mut c = bin();
    c.args([
        "train",
        "--dataset",
        "fashion-mnist",
        "--model",
        "small-cnn",
        "--method",
        method,
    ])
    .args([
        "--eps",
        "0.1",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--val-size",
        "100",
    ])
    .args([
        "--optimizer",
        "adam",
        "--lr",
        "0.003",
        "--schedule",
        "constant",
    ])
    .args(["--final-steps", "5", "-q", "--data"])
    .arg(data)
    .arg("--out")
    .arg(out);
    c
}

/// The section "What adversarial training bought and cost": a standard run is trained
/// beside the fgsm-rs one, both are audited with `eval --audit`, and their report must show
/// the section with a verdict per axis, its charts and the guide's name.
fn audit_section_renders(root: &Path, data: &Path, robust: &Path) {
    let standard = root.join("std-run");
    run_ok(&mut train_tiny(data, &standard, "standard"));
    run_ok(
        bin()
            .args(["eval", "--audit", "--steps", "5", "-q"])
            .arg("--run")
            .arg(robust)
            .arg("--run")
            .arg(&standard),
    );
    assert!(robust.join("audit.json").is_file() && standard.join("audit.json").is_file());
    let report = root.join("out").join("audit-report.html");
    run_ok(
        bin()
            .arg("report")
            .arg(robust)
            .arg(&standard)
            .arg("--out")
            .arg(&report),
    );
    let dom = chromium(
        &root.join("profile-audit"),
        &["--dump-dom".to_string()],
        &format!("file://{}", report.display()),
        &root.join("audit-dom.html"),
    );
    assert!(
        dom.contains("<h2>8. What adversarial training bought and cost</h2>"),
        "rendered DOM lacks the audit section"
    );
    assert!(
        dom.contains("Baseline: <b>") && dom.contains("std-run (std)"),
        "the standard run is not named as the baseline"
    );
    assert!(dom.contains("tiny-run (fgsm-rs)"));
    let verdicts = ["better", "worse", "no difference"]
        .iter()
        .map(|w| dom.matches(&format!("\">{w}</span>")).count())
        .sum::<usize>();
    assert!(
        verdicts >= 20,
        "only {verdicts} verdicts in the audit table"
    );
    assert!(dom.contains("Which classes adversarial training lost most on"));
    assert!(dom.contains("docs/guide.md"));
    // The main report's 4 charts (2 training charts per run), plus severity and reliability.
    let svgs = dom.matches("<svg").count();
    assert!(svgs >= 9, "expected at least 9 SVG charts, found {svgs}");
}
