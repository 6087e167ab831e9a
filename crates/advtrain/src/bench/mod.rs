//! Throughput benchmarks: clean inference, PGD-10 attacks and adversarial training steps,
//! timed on random inputs, with achieved GFLOP/s beside an estimate of the CPU's peak; and
//! ([`attacks`]) the wall time of whole evaluations (AutoAttack, Square, APGD-T) of a trained
//! model on fixed test points, with the robust accuracy they reach.
//!
//! # Conventions
//!
//! * Inputs are uniform in `[0, 1]`, labels uniform over the classes; a fixed seed makes
//!   every run use the same data and weights.
//! * Each workload is run `warmup` times untimed, then `reps` times timed; the median,
//!   minimum and maximum images/s over the timed repetitions are reported. Every timed
//!   repetition reads a scalar back to the host (and synchronises the device after an
//!   optimiser step), so lazy execution is never mistaken for speed.
//! * FLOPs count only convolution and linear layers: 2 FLOPs per multiply-add
//!   ([`forward_macs`]). Activations, pooling, the loss and the optimiser are ignored.
//! * A forward pass plus the backward pass to the input (one attack step) counts as 2
//!   forwards; a forward pass plus the full backward pass (input and weight gradients: a
//!   training step's model update) counts as 3 forwards ([`Workload::forward_equivalents`]).
//! * The peak is `cores × clock × FLOPs/cycle/core`, with 32 f32 FLOPs per cycle for
//!   AVX2+FMA (two 8-wide FMA units), 64 for AVX-512F and 16 otherwise ([`PeakEstimate`]).

pub mod attacks;

use std::fmt;
use std::str::FromStr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use burn::prelude::{Device, Int, Tensor, TensorData};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::attack::{Attack, Pgd};
use crate::error::{Error, Result};
use crate::model::{Classifier, ModelKind, ModelShape, ZooModel};
use crate::rng;
use crate::threat::ThreatModel;
use crate::train::{MethodConfig, OptimizerConfig, StepContext};

pub use attacks::{bench_attacks, AttackBenchConfig, AttackMeasurement, AttackWorkload};

/// The L∞ radius used by every attack workload.
pub const BENCH_EPS: f32 = 0.1;

/// Learning rate of the benchmarked SGD step.
const BENCH_LR: f64 = 0.01;

/// The conventions, in one line, for tables and JSON.
pub const CONVENTIONS: &str = "FLOPs = 2 x conv/linear multiply-adds; forward+input-backward (attack step) = 2 forwards; forward+full backward (training) = 3 forwards; PGD-10 = 20 forwards; fgsm-rs step = 2+3 = 5; pgd-at step = 20+3 = 23";

/// One thing that is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Logits of a batch with the model in evaluation mode.
    Forward,
    /// L∞ PGD-10 (ε = 0.1, random start, step 2.5ε/10, last iterate) against the model.
    Pgd10,
    /// One fast-AT (FGSM with random start) training step: attack, loss, backward, SGD.
    FgsmRsStep,
    /// One PGD-AT (PGD-10) training step: attack, loss, backward, SGD.
    PgdAtStep,
}

impl Workload {
    /// Every workload, in the order [`bench_model`] runs and reports them.
    pub const ALL: [Workload; 4] = [
        Workload::Forward,
        Workload::Pgd10,
        Workload::FgsmRsStep,
        Workload::PgdAtStep,
    ];

    /// Kebab-case name as used by `--workloads`, in tables and in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Workload::Forward => "forward",
            Workload::Pgd10 => "pgd10",
            Workload::FgsmRsStep => "fgsm-rs-step",
            Workload::PgdAtStep => "pgd-at-step",
        }
    }

    /// How many forward passes' worth of FLOPs one image costs: an attack step (forward +
    /// backward to the input) counts 2, a training forward + full backward counts 3.
    pub fn forward_equivalents(&self) -> f64 {
        match self {
            Workload::Forward => 1.0,
            Workload::Pgd10 => 10.0 * 2.0,
            Workload::FgsmRsStep => 2.0 + 3.0,
            Workload::PgdAtStep => 10.0 * 2.0 + 3.0,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Multiply-adds of a convolution producing a `cout × out_h × out_w` map with a `k × k`
/// kernel over `cin` channels.
pub fn conv_macs(cin: usize, cout: usize, k: usize, out_h: usize, out_w: usize) -> u64 {
    (cin * k * k * cout * out_h * out_w) as u64
}

/// Multiply-adds of a linear layer.
pub fn linear_macs(inputs: usize, outputs: usize) -> u64 {
    (inputs * outputs) as u64
}

/// Convolution and linear multiply-adds of one forward pass of one image (biases,
/// activations and pooling not counted). Mirrors the layer shapes of
/// [`crate::model::SmallCnn`], [`crate::model::MadryCnn`] and [`crate::model::Mlp`].
pub fn forward_macs(kind: ModelKind, shape: &ModelShape) -> Result<u64> {
    let (c, h, w, k) = (shape.channels, shape.height, shape.width, shape.num_classes);
    Ok(match kind {
        ModelKind::SmallCnn => {
            // 4×4 kernels, stride 2, padding 1.
            let down = |n: usize| (n + 2 - 4) / 2 + 1;
            let (h1, w1) = (down(h), down(w));
            let (h2, w2) = (down(h1), down(w1));
            conv_macs(c, 16, 4, h1, w1)
                + conv_macs(16, 32, 4, h2, w2)
                + linear_macs(32 * h2 * w2, 100)
                + linear_macs(100, k)
        }
        ModelKind::MadryCnn => {
            // 5×5 "same" convolutions, each followed by a 2×2 max-pool.
            conv_macs(c, 32, 5, h, w)
                + conv_macs(32, 64, 5, h / 2, w / 2)
                + linear_macs(64 * (h / 4) * (w / 4), 1024)
                + linear_macs(1024, k)
        }
        ModelKind::Mlp => linear_macs(c * h * w, 256) + linear_macs(256, 256) + linear_macs(256, k),
        ModelKind::PreactResnet18 => {
            preact_convs(c, h, w)
                .iter()
                .map(|l| conv_macs(l.cin, l.cout, l.k, l.out_h, l.out_w))
                .sum::<u64>()
                + linear_macs(512, k)
        }
    })
}

/// One convolution of [`crate::model::PreActResNet18`]: channels in and out, kernel size and
/// output size.
struct ConvLayer {
    cin: usize,
    cout: usize,
    k: usize,
    out_h: usize,
    out_w: usize,
}

/// The convolutions of [`crate::model::PreActResNet18`] on a `c × h × w` input, in order:
/// the 3×3 stem, then per block two 3×3 convolutions (the first strided at the start of
/// stages 2–4) and a strided 1×1 shortcut where the shape changes.
fn preact_convs(c: usize, h: usize, w: usize) -> Vec<ConvLayer> {
    let out = |n: usize, stride: usize| (n - 1) / stride + 1;
    let mut layers = vec![ConvLayer {
        cin: c,
        cout: 64,
        k: 3,
        out_h: h,
        out_w: w,
    }];
    let (mut cin, mut h, mut w) = (64, h, w);
    for (stage, &cout) in [64, 128, 256, 512].iter().enumerate() {
        for block in 0..2 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let (oh, ow) = (out(h, stride), out(w, stride));
            layers.push(ConvLayer {
                cin,
                cout,
                k: 3,
                out_h: oh,
                out_w: ow,
            });
            layers.push(ConvLayer {
                cin: cout,
                cout,
                k: 3,
                out_h: oh,
                out_w: ow,
            });
            if stride != 1 || cin != cout {
                layers.push(ConvLayer {
                    cin,
                    cout,
                    k: 1,
                    out_h: oh,
                    out_w: ow,
                });
            }
            (cin, h, w) = (cout, oh, ow);
        }
    }
    layers
}

/// Floats one image's forward pass produces, input included: every layer's output (and the
/// activation's copy of it) for [`crate::model::SmallCnn`], [`crate::model::MadryCnn`] and
/// [`crate::model::Mlp`], from the same layer shapes as [`forward_macs`]; the input alone for
/// models without a count (an ONNX file), so their estimate is a lower bound.
pub fn forward_floats(kind: Option<ModelKind>, shape: &ModelShape) -> u64 {
    let (c, h, w, k) = (shape.channels, shape.height, shape.width, shape.num_classes);
    let input = c * h * w;
    let layers = match kind {
        Some(ModelKind::SmallCnn) => {
            let down = |n: usize| (n + 2 - 4) / 2 + 1;
            let (h1, w1) = (down(h), down(w));
            let (h2, w2) = (down(h1), down(w1));
            2 * (16 * h1 * w1 + 32 * h2 * w2 + 100) + k
        }
        Some(ModelKind::MadryCnn) => {
            2 * 32 * h * w
                + 32 * (h / 2) * (w / 2)
                + 2 * 64 * (h / 2) * (w / 2)
                + 64 * (h / 4) * (w / 4)
                + 2 * 1024
                + k
        }
        Some(ModelKind::Mlp) => 2 * (256 + 256) + k,
        // Each convolution's output, and the batch norm and ReLU that follow it.
        Some(ModelKind::PreactResnet18) => {
            preact_convs(c, h, w)
                .iter()
                .map(|l| 3 * l.cout * l.out_h * l.out_w)
                .sum::<usize>()
                + 512
                + k
        }
        None => 0,
    };
    (input + layers) as u64
}

/// Copies of the input batch a workload holds at once: the batch, the adversarial batch,
/// the perturbation and its gradient (one for a plain forward pass).
const INPUT_COPIES: u64 = 4;

/// Bytes a batch of `batch` images of `kind` needs at least: the activations of one forward
/// pass, twice over when a workload also runs backward (their gradients), plus the input
/// copies. Weights and allocator slack are left out, so the real peak is higher.
pub fn batch_bytes(
    kind: Option<ModelKind>,
    shape: &ModelShape,
    batch: usize,
    workloads: &[Workload],
) -> u64 {
    let backward = workloads.iter().any(|w| *w != Workload::Forward);
    let activations = forward_floats(kind, shape) - shape.image_len() as u64;
    let per_image = shape.image_len() as u64 * if backward { INPUT_COPIES } else { 1 }
        + activations * if backward { 2 } else { 1 };
    4 * per_image * batch as u64
}

/// `MemAvailable` of `/proc/meminfo`, in bytes: what can be allocated without swapping
/// (`None` where the file or the field is absent, e.g. off Linux).
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_available(&meminfo)
}

fn meminfo_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// `C×H×W`, as tables and errors print an input size.
pub fn image_size(shape: &ModelShape) -> String {
    format!("{}x{}x{}", shape.channels, shape.height, shape.width)
}

/// FLOPs (2 per multiply-add) of one forward pass of one image.
pub fn forward_flops(kind: ModelKind, shape: &ModelShape) -> Result<u64> {
    Ok(2 * forward_macs(kind, shape)?)
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Models to benchmark, each built for `shape`; only those with a FLOP count
    /// ([`forward_macs`]) are accepted.
    pub models: Vec<ModelKind>,
    /// ONNX files to benchmark beside them (taking `shape`; no FLOP count, so no GFLOP/s),
    /// to compare an imported model with its zoo equivalent.
    pub onnx: Vec<std::path::PathBuf>,
    /// The random inputs' shape and the number of classes (default Fashion-MNIST's
    /// 1×28×28 in 10 classes; 3×32×32 for CIFAR-sized models such as `preact-resnet18`).
    pub shape: ModelShape,
    /// Which workloads to time, in [`Workload::ALL`] order whatever the order given.
    pub workloads: Vec<Workload>,
    /// Images per timed batch (default 128); must be at least 1.
    pub batch: usize,
    /// Timed repetitions per workload (default 5); must be at least 1.
    pub reps: usize,
    /// Untimed repetitions before the timed ones (default 1), to warm caches and allocators.
    pub warmup: usize,
    /// Seeds the weights, the random inputs and the attacks' randomness.
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            models: vec![ModelKind::SmallCnn, ModelKind::MadryCnn],
            onnx: Vec::new(),
            shape: ModelShape::fashion_mnist(),
            workloads: Workload::ALL.to_vec(),
            batch: 128,
            reps: 5,
            warmup: 1,
            seed: 0,
        }
    }
}

impl BenchConfig {
    /// Checks that batch and reps are positive, that there is something to run and that
    /// every model has a FLOP count.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::config("--batch must be >= 1"));
        }
        if self.reps == 0 {
            return Err(Error::config("--reps must be >= 1"));
        }
        if self.models.is_empty() && self.onnx.is_empty() {
            return Err(Error::config("--models must name at least one model"));
        }
        if self.workloads.is_empty() {
            return Err(Error::config("--workloads must name at least one workload"));
        }
        if self.shape.image_len() == 0 || self.shape.num_classes < 2 {
            return Err(Error::config(format!(
                "bench needs non-empty images and at least 2 classes, not {:?}",
                self.shape
            )));
        }
        for &m in &self.models {
            forward_macs(m, &self.shape)?;
        }
        Ok(())
    }

    /// Refuses a batch whose workloads need more memory than `available` bytes (see
    /// [`batch_bytes`]; the models run one after the other, so the largest counts), naming
    /// both figures in GB and the batch that would fit; `None` (unknown) passes. Without it,
    /// `--batch 10000000` allocated until the kernel killed the process.
    pub fn check_memory(&self, available: Option<u64>) -> Result<()> {
        let Some(available) = available else {
            return Ok(());
        };
        let kinds = self
            .models
            .iter()
            .map(|&k| Some(k))
            .chain(self.onnx.iter().map(|_| None));
        let Some((kind, need)) = kinds
            .map(|k| (k, batch_bytes(k, &self.shape, self.batch, &self.workloads)))
            .max_by_key(|&(_, b)| b)
        else {
            return Ok(());
        };
        if need <= available {
            return Ok(());
        }
        let per_image = batch_bytes(kind, &self.shape, 1, &self.workloads).max(1);
        Err(Error::config(format!(
            "--batch {} needs at least {} ({} for {} images of {} KB each: inputs and \
             activations) but {} is available (MemAvailable); use --batch {} or less",
            self.batch,
            gb(need),
            kind.map_or("an ONNX model".to_string(), |k| k.to_string()),
            self.batch,
            per_image / 1000,
            gb(available),
            available / per_image
        )))
    }
}

/// The timing of one (model, workload) pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The model's CLI name ([`ModelKind::as_str`]).
    pub model: String,
    /// The workload's name ([`Workload::as_str`]).
    pub workload: String,
    /// Images per timed batch.
    pub batch: usize,
    /// Images per second at the median repetition.
    pub images_per_s_median: f64,
    /// Images per second of the slowest repetition.
    pub images_per_s_min: f64,
    /// Images per second of the fastest repetition.
    pub images_per_s_max: f64,
    /// Seconds per batch at the median repetition.
    pub seconds_per_batch_median: f64,
    /// Seconds per batch of the fastest repetition.
    pub seconds_per_batch_min: f64,
    /// Seconds per batch of the slowest repetition.
    pub seconds_per_batch_max: f64,
    /// Counted FLOPs per image (see the module's conventions).
    pub flops_per_image: f64,
    /// Achieved GFLOP/s at the median.
    pub gflops_median: f64,
}

impl Measurement {
    /// Summarises per-repetition batch times (seconds).
    pub fn from_times(
        model: &str,
        workload: Workload,
        batch: usize,
        flops_per_image: f64,
        times: &[f64],
    ) -> Self {
        let (median, fastest, slowest) = median_min_max(times);
        let ips = |s: f64| batch as f64 / s;
        Self {
            model: model.to_string(),
            workload: workload.as_str().to_string(),
            batch,
            images_per_s_median: ips(median),
            images_per_s_min: ips(slowest),
            images_per_s_max: ips(fastest),
            seconds_per_batch_median: median,
            seconds_per_batch_min: fastest,
            seconds_per_batch_max: slowest,
            flops_per_image,
            gflops_median: ips(median) * flops_per_image / 1e9,
        }
    }
}

/// Median, minimum and maximum of a list of times (all NaN for an empty list).
fn median_min_max(times: &[f64]) -> (f64, f64, f64) {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    let n = t.len();
    let median = match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => t[n / 2],
        _ => (t[n / 2 - 1] + t[n / 2]) / 2.0,
    };
    let first = t.first().copied().unwrap_or(f64::NAN);
    let last = t.last().copied().unwrap_or(f64::NAN);
    (median, first, last)
}

/// The machine the benchmark ran on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model from `/proc/cpuinfo` ("unknown" elsewhere).
    pub cpu: String,
    /// Logical cores the OS offers (`available_parallelism`).
    pub cores: usize,
    /// Threads the benchmark used.
    pub threads: usize,
}

impl Machine {
    /// Reads this machine's CPU model and core count; `threads` is the thread count the
    /// caller set, `None` meaning one per logical core.
    pub fn detect(threads: Option<usize>) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo_field(&cpuinfo, "model name")
            .next()
            .unwrap_or("unknown")
            .to_string();
        Self {
            cpu,
            cores,
            threads: threads.unwrap_or(cores),
        }
    }
}

fn cpuinfo_field<'a>(cpuinfo: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    cpuinfo.lines().filter_map(move |line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// A rough peak: `cores × clock × FLOPs/cycle/core`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeakEstimate {
    /// Cores counted (the threads used).
    pub cores: usize,
    /// Highest "cpu MHz" in `/proc/cpuinfo` (the current clock, a proxy for the maximum);
    /// `None` where unknown.
    pub mhz: Option<f64>,
    /// f32 FLOPs per cycle per core assumed.
    pub flops_per_cycle: u32,
    /// Why that many FLOPs per cycle.
    pub assumption: String,
    /// GFLOP/s; `None` without a clock.
    pub gflops: Option<f64>,
}

impl PeakEstimate {
    /// Estimates the peak of `cores` cores of this CPU from `/proc/cpuinfo`'s clock and the
    /// SIMD features detected at run time.
    pub fn detect(cores: usize) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let mhz = cpuinfo_field(&cpuinfo, "cpu MHz")
            .filter_map(|v| v.parse::<f64>().ok())
            .fold(None, |best: Option<f64>, v| {
                Some(best.map_or(v, |b| b.max(v)))
            });
        let zen4 = cpuinfo_field(&cpuinfo, "vendor_id").next() == Some("AuthenticAMD")
            && cpuinfo_field(&cpuinfo, "cpu family").next() == Some("25");
        let (flops_per_cycle, assumption) = simd_flops_per_cycle(zen4);
        Self {
            cores,
            mhz,
            flops_per_cycle,
            assumption: assumption.to_string(),
            gflops: mhz.map(|m| cores as f64 * m * 1e-3 * flops_per_cycle as f64),
        }
    }
}

/// `zen4`: an AMD family-25h CPU, whose AVX-512 runs each 512-bit FMA as two 256-bit
/// halves, so it peaks at the AVX2 rate.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn simd_flops_per_cycle(zen4: bool) -> (u32, &'static str) {
    if is_x86_feature_detected!("avx512f") && zen4 {
        (
            32,
            "AVX-512F on AMD Zen 4: 32 f32 FLOPs/cycle/core (512-bit FMAs run as 2 x 256-bit)",
        )
    } else if is_x86_feature_detected!("avx512f") {
        (64, "AVX-512F: 64 f32 FLOPs/cycle/core (2 x 16-wide FMA)")
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        (32, "AVX2+FMA: 32 f32 FLOPs/cycle/core (2 x 8-wide FMA)")
    } else {
        (16, "no AVX2+FMA: 16 f32 FLOPs/cycle/core")
    }
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
fn simd_flops_per_cycle(_zen4: bool) -> (u32, &'static str) {
    (16, "non-x86 CPU: 16 f32 FLOPs/cycle/core assumed")
}

/// A whole benchmark run, as written with `--json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// RFC 3339, UTC.
    pub date: String,
    /// The CPU and thread count the benchmark ran with.
    pub machine: Machine,
    /// Which implementation measured this ("advtrain" or a peer such as "pytorch").
    pub framework: String,
    /// The crate version that produced the report (`CARGO_PKG_VERSION`).
    pub advtrain_version: String,
    /// Images per timed batch ([`BenchConfig::batch`]).
    pub batch: usize,
    /// The inputs' size, `C×H×W` ([`BenchConfig::shape`]; absent in reports written before
    /// it was configurable, which were all 1x28x28).
    #[serde(default)]
    pub input: String,
    /// Timed repetitions per workload ([`BenchConfig::reps`]).
    pub reps: usize,
    /// Untimed repetitions per workload ([`BenchConfig::warmup`]).
    pub warmup: usize,
    /// The counting conventions the numbers follow ([`CONVENTIONS`]).
    pub conventions: String,
    /// The estimated peak the achieved GFLOP/s compare against.
    pub peak: PeakEstimate,
    /// One measurement per (model, workload) pair, models in configured order, workloads
    /// in [`Workload::ALL`] order.
    pub results: Vec<Measurement>,
    /// Whole attacks of a trained model on fixed points ([`bench_attacks`]); absent when
    /// none was asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attacks: Vec<AttackMeasurement>,
}

impl BenchReport {
    /// A report of `results` measured under `config` on this machine with `threads`.
    pub fn new(config: &BenchConfig, threads: Option<usize>, results: Vec<Measurement>) -> Self {
        let machine = Machine::detect(threads);
        let peak = PeakEstimate::detect(machine.threads);
        BenchReport {
            date: rfc3339_utc(SystemTime::now()),
            machine,
            framework: "advtrain".to_string(),
            advtrain_version: crate::VERSION.to_string(),
            batch: config.batch,
            input: image_size(&config.shape),
            reps: config.reps,
            warmup: config.warmup,
            conventions: CONVENTIONS.to_string(),
            peak,
            results,
            attacks: Vec::new(),
        }
    }
}

/// `time` as RFC 3339 in UTC, whole seconds (`1970-01-01T00:00:00Z`).
pub fn rfc3339_utc(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Random Fashion-MNIST-shaped inputs in `[0, 1]` and labels, without autodiff.
fn random_batch(
    batch: usize,
    shape: &ModelShape,
    rng: &mut rng::AdvRng,
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let n = batch * shape.channels * shape.height * shape.width;
    let x = Tensor::<4>::from_data(
        TensorData::new(
            rng::uniform_vec(rng, n, 0.0, 1.0),
            [batch, shape.channels, shape.height, shape.width],
        ),
        device,
    );
    let labels: Vec<i64> = (0..batch)
        .map(|_| rng.random_range(0..shape.num_classes as i64))
        .collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), device);
    (x, y)
}

/// Runs `f` `warmup` times, then times it `reps` times (seconds each).
fn time_reps(warmup: usize, reps: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect()
}

/// Times every workload for one model. `device` is the device models are created on (as
/// `advtrain train` gets it); inputs are created on it without autodiff and the training
/// steps run on `model.train()`, as in [`crate::train::train_with`]. `on_done` is called
/// after each workload.
pub fn bench_model(
    kind: ModelKind,
    config: &BenchConfig,
    device: &Device,
    on_done: &mut dyn FnMut(&Measurement),
) -> Result<Vec<Measurement>> {
    let flops = forward_flops(kind, &config.shape)? as f64;
    device.seed(config.seed);
    let model = ZooModel::new(kind, &config.shape, None, device)?;
    bench_classifier(kind.as_str(), model, flops, config, device, on_done)
}

/// Times every workload for an ONNX file (its FLOPs are not counted: `gflops_median` is 0).
pub fn bench_onnx(
    path: &std::path::Path,
    config: &BenchConfig,
    device: &Device,
    on_done: &mut dyn FnMut(&Measurement),
) -> Result<Vec<Measurement>> {
    let model = crate::model::onnx::OnnxModel::load(path, &Default::default(), device)?;
    if model.shape() != &config.shape {
        return Err(Error::config(format!(
            "{}: bench feeds {} images in {} classes (--input-shape); the model takes {:?}",
            path.display(),
            image_size(&config.shape),
            config.shape.num_classes,
            model.shape()
        )));
    }
    let name = format!(
        "onnx:{}",
        path.file_name().map_or("".into(), |n| n.to_string_lossy())
    );
    bench_classifier(&name, model, 0.0, config, device, on_done)
}

/// Times every workload for `model` (named `name`, `flops` per forward image).
fn bench_classifier<M: Classifier + 'static>(
    name: &str,
    model: M,
    flops: f64,
    config: &BenchConfig,
    device: &Device,
    on_done: &mut dyn FnMut(&Measurement),
) -> Result<Vec<Measurement>> {
    let data_device = device.clone().without_autodiff();
    let mut rng = rng::seeded(config.seed);
    let (x, y) = random_batch(config.batch, &config.shape, &mut rng, &data_device);
    let threat = ThreatModel::linf(BENCH_EPS);
    let sync = |d: &Device| {
        d.sync()
            .map_err(|e| Error::config(format!("device error: {e:?}")))
    };

    let mut out = Vec::new();
    for workload in Workload::ALL {
        if !config.workloads.contains(&workload) {
            continue;
        }
        let times = match workload {
            Workload::Forward => {
                let eval = model.valid();
                time_reps(config.warmup, config.reps, || {
                    let s = eval.logits(x.clone()).sum().into_scalar::<f32>();
                    std::hint::black_box(s);
                })
            }
            Workload::Pgd10 => {
                // The last iterate, as torchattacks' PGD returns (the evaluation default
                // also keeps each example's best point, one more forward per step).
                let pgd = Pgd::new(threat).steps(10).keep_best(false);
                time_reps(config.warmup, config.reps, || {
                    let adv = pgd.perturb(&model, x.clone(), y.clone(), &mut rng);
                    std::hint::black_box(adv.sum().into_scalar::<f32>());
                })
            }
            Workload::FgsmRsStep | Workload::PgdAtStep => {
                let method = MethodConfig::default_for(if workload == Workload::FgsmRsStep {
                    "fgsm-rs"
                } else {
                    "pgd-at"
                })?;
                let mut step = method.image_step::<M>();
                let mut live = Some(model.clone().train());
                let mut optimizer = OptimizerConfig::sgd().build();
                let mut failed = None;
                let times = time_reps(config.warmup, config.reps, || {
                    let Some(current) = live.take() else { return };
                    let mut ctx = StepContext {
                        optimizer: &mut optimizer,
                        lr: BENCH_LR,
                        threat,
                        step_scale: 1.0,
                        rng: &mut rng,
                        device: &data_device,
                        epoch: 0,
                        batch: 0,
                        kept: "",
                    };
                    match step.step(current, (x.clone(), y.clone()), &mut ctx) {
                        Ok(out) => {
                            std::hint::black_box(out.loss);
                            live = Some(out.model);
                        }
                        Err(e) => failed = Some(e),
                    }
                    if let Err(e) = sync(device) {
                        failed = Some(e);
                    }
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                times
            }
        };
        let m = Measurement::from_times(
            name,
            workload,
            config.batch,
            flops * workload.forward_equivalents(),
            &times,
        );
        on_done(&m);
        out.push(m);
    }
    Ok(out)
}

/// Runs every configured model; `threads` is what the caller set (for the report).
pub fn run(
    config: &BenchConfig,
    device: &Device,
    threads: Option<usize>,
    on_done: &mut dyn FnMut(&Measurement),
) -> Result<BenchReport> {
    config.validate()?;
    config.check_memory(available_memory())?;
    let mut results = Vec::new();
    for &kind in &config.models {
        results.extend(bench_model(kind, config, device, on_done)?);
    }
    for path in &config.onnx {
        results.extend(bench_onnx(path, config, device, on_done)?);
    }
    Ok(BenchReport::new(config, threads, results))
}

impl FromStr for Workload {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Workload::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Workload::ALL.iter().map(|w| w.as_str()).collect();
                Error::config(format!(
                    "unknown workload '{s}' (expected one of: {})",
                    known.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preact_resnet18_flops_match_a_hand_count() {
        // CIFAR-10 (3×32×32): stem 3→64 at 32×32: 32·32·64·27 = 1_769_472; stage 1, four
        // 64→64 3×3 at 32×32: 4 · 37_748_736; stages 2–4 each: the strided first conv
        // (18_874_368), three more 3×3 (3 · 37_748_736) and the 1×1 shortcut (2_097_152);
        // fc 512→10: 5_120. 555.4M MACs, the figure usually quoted for this network.
        let stage = 18_874_368 + 3 * 37_748_736 + 2_097_152;
        let expected = 1_769_472 + 4 * 37_748_736 + 3 * stage + 5_120;
        let macs = forward_macs(ModelKind::PreactResnet18, &ModelShape::cifar10()).unwrap();
        assert_eq!(macs, expected);
        assert_eq!(macs, 555_422_720);
    }

    #[test]
    fn small_cnn_flops_match_a_hand_count() {
        // conv1: 1→16, 4×4, 28→14: 14·14·16·(1·4·4) = 50_176 MACs
        // conv2: 16→32, 4×4, 14→7: 7·7·32·(16·4·4) = 401_408 MACs
        // fc1: 32·7·7 = 1568 → 100: 156_800 MACs; fc2: 100 → 10: 1_000 MACs
        let shape = ModelShape::fashion_mnist();
        assert_eq!(
            forward_macs(ModelKind::SmallCnn, &shape).unwrap(),
            50_176 + 401_408 + 156_800 + 1_000
        );
        assert_eq!(
            forward_flops(ModelKind::SmallCnn, &shape).unwrap(),
            1_218_768
        );
    }

    #[test]
    fn madry_cnn_flops_match_a_hand_count() {
        // conv1: 28·28·32·25 = 627_200; conv2: 14·14·64·(32·25) = 10_035_200;
        // fc1: 3136·1024 = 3_211_264; fc2: 10_240.
        let shape = ModelShape::fashion_mnist();
        assert_eq!(
            forward_macs(ModelKind::MadryCnn, &shape).unwrap(),
            627_200 + 10_035_200 + 3_211_264 + 10_240
        );
    }

    #[test]
    fn median_min_max_of_times() {
        let m = Measurement::from_times("m", Workload::Forward, 10, 1e9, &[2.0, 1.0, 4.0]);
        assert_eq!(m.seconds_per_batch_median, 2.0);
        assert_eq!(m.images_per_s_median, 5.0);
        assert_eq!(m.images_per_s_max, 10.0);
        assert_eq!(m.images_per_s_min, 2.5);
        assert_eq!(m.gflops_median, 5.0);
        assert_eq!(median_min_max(&[4.0, 1.0]), (2.5, 1.0, 4.0));
        let (median, min, max) = median_min_max(&[]);
        assert!(median.is_nan() && min.is_nan() && max.is_nan());
    }

    #[test]
    fn a_batch_beyond_the_memory_is_refused_in_gb() {
        let config = BenchConfig {
            batch: 10_000_000,
            ..BenchConfig::default()
        };
        let e = config
            .check_memory(Some(16_000_000_000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--batch 10000000 needs at least"), "{e}");
        assert!(
            e.contains("GB") && e.contains("16.0 GB is available"),
            "{e}"
        );
        assert!(
            config.check_memory(None).is_ok(),
            "unknown memory must not refuse"
        );
        let small = BenchConfig::default();
        assert!(small.check_memory(Some(16_000_000_000)).is_ok());
    }

    #[test]
    fn the_estimate_grows_with_the_model_and_the_backward_pass() {
        let all = Workload::ALL;
        let fwd = [Workload::Forward];
        let fm = ModelShape::fashion_mnist();
        let small = batch_bytes(Some(ModelKind::SmallCnn), &fm, 1, &all);
        let madry = batch_bytes(Some(ModelKind::MadryCnn), &fm, 1, &all);
        assert!(madry > 5 * small, "{madry} vs {small}");
        assert!(batch_bytes(Some(ModelKind::MadryCnn), &fm, 1, &fwd) < madry);
        let resnet = batch_bytes(
            Some(ModelKind::PreactResnet18),
            &ModelShape::cifar10(),
            1,
            &all,
        );
        assert!(resnet > madry, "{resnet} vs {madry}");
        assert_eq!(
            batch_bytes(Some(ModelKind::Mlp), &fm, 10, &all),
            10 * batch_bytes(Some(ModelKind::Mlp), &fm, 1, &all)
        );
    }

    #[test]
    fn meminfo_available_is_read_in_bytes() {
        let text = "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:   8000000 kB\n";
        assert_eq!(meminfo_available(text), Some(8_192_000_000));
        assert_eq!(meminfo_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400 + 3661);
        assert_eq!(rfc3339_utc(t), "2000-02-29T01:01:01Z");
    }
}
