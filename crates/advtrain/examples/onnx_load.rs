//! How long an ONNX file takes to load and how much memory that holds: the wall time of
//! `OnnxModel::load` (decode, graph checks, constant folding, weights onto the device, the
//! probe batch) and the process's peak and current resident memory after it, beside the
//! file's size. For BENCHMARKS.md's large-model figure (`bench/make_resnet50_onnx.py`).
//!
//! `cargo run --release -p advtrain --example onnx_load FILE.onnx`

use std::time::Instant;

use advtrain::model::onnx::{OnnxModel, OnnxOptions};
use burn::prelude::Device;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A `/proc/self/status` field in MB (`VmHWM`: peak resident, `VmRSS`: current).
fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: onnx_load FILE.onnx");
        std::process::exit(2);
    };
    let path = std::path::PathBuf::from(path);
    let size_mb = std::fs::metadata(&path).map_or(0.0, |m| m.len() as f64 / 1e6);
    let before = status_mb("VmRSS:").unwrap_or(0.0);
    let device = Device::flex();
    let started = Instant::now();
    let model = match OnnxModel::load(&path, &OnnxOptions::default(), &device) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let params: usize = model
        .parameter_names()
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    println!(
        "{}: {size_mb:.1} MB, {params} trainable values ({:.1} MB as f32), opset {}, {:?}",
        path.display(),
        params as f64 * 4.0 / 1e6,
        model.opset(),
        model.shape()
    );
    println!("load:             {seconds:.2} s");
    println!(
        "resident memory:  {before:.0} MB before, {:.0} MB after, peak {:.0} MB",
        status_mb("VmRSS:").unwrap_or(0.0),
        status_mb("VmHWM:").unwrap_or(0.0)
    );
}
