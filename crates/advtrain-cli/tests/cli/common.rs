//! Helpers shared by the CLI's integration tests: the binary, scratch directories and a tiny
//! generated data set in the Fashion-MNIST file layout.

use std::path::{Path, PathBuf};
use std::process::Command;

use advtrain::data::idx::{write_idx_images, write_idx_labels};
use advtrain::data::synthetic;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_advtrain"))
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advtrain-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a 28×28, 10-class template data set in the Fashion-MNIST file layout.
pub fn write_tiny_fashion(dir: &Path) {
    write_tiny_idx(dir, 28);
}

/// Writes a `side`×`side`, 10-class template data set in the Fashion-MNIST file layout.
pub fn write_tiny_idx(dir: &Path, side: usize) {
    for (split, n, seed) in [("train", 600, 1u64), ("t10k", 120, 2)] {
        // Same templates (seed 7) for both splits; the per-split seed only changes noise.
        let all = synthetic::templates(n + 600 * (seed as usize), 10, 1, side, 0.1, 7);
        let start = 600 * (seed as usize - 1);
        let data = all.subset(&(start..start + n).collect::<Vec<_>>());
        let pixels: Vec<u8> = data
            .images
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect();
        write_idx_images(
            &dir.join(format!("{split}-images-idx3-ubyte.gz")),
            n,
            side,
            side,
            &pixels,
            true,
        )
        .unwrap();
        write_idx_labels(
            &dir.join(format!("{split}-labels-idx1-ubyte")),
            &data.labels,
            false,
        )
        .unwrap();
    }
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("advtrain runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "command failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// Runs a command that must fail, and returns its stderr; a panic is not an acceptable failure.
pub fn run_err(cmd: &mut Command) -> String {
    let out = cmd.output().expect("advtrain runs");
    assert!(!out.status.success(), "command should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !stderr.contains("panicked"),
        "panic instead of an error: {stderr}"
    );
    stderr
}

/// The lines of a run's `metrics.jsonl`, without the wall-clock fields named in `times`
/// (they differ between two runs of the same seed).
pub fn metrics_without(run: &Path, times: &[&str]) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for t in times {
                o.remove(*t);
            }
            v
        })
        .collect()
}

/// Every tensor of a SafeTensors file by name, as raw bytes (the header's order is not
/// fixed, so whole files of equal weights can differ).
pub fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect()
}
