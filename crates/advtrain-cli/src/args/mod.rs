//! Every flag of every command, parsed in one place: the commands receive typed arguments
//! and never look at the command line themselves.

mod attack;
mod model_input;
mod run_config;
mod train;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use attack::{AttackArgs, EvalArgs, DEFAULT_TEXT_BUDGET};
pub use model_input::ModelInputFlags;
pub use train::{TrainArgs, TrainFlags};

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "advtrain",
    version,
    about = "Adversarial attacks, adversarial training and robust evaluation for image classifiers",
    long_about = "Adversarial attacks, adversarial training and robust evaluation for image classifiers.\n\n\
        Quick start:\n  advtrain train --dataset fashion-mnist --model small-cnn --method fgsm-rs --eps 0.1 --epochs 5 --out runs/demo\n  \
        advtrain eval --run runs/demo --attack pgd --steps 20 --restarts 1 --eps-curve 0,0.05,0.1,0.15,0.2\n  \
        advtrain attack --run runs/demo --attack pgd --out adv/\n  \
        advtrain report runs/demo"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
// Each command takes negative numbers as values, so "--eps -0.1" reaches validation
// ("eps must be >= 0") instead of confusing the parser.
pub enum Command {
    /// Train a model (standard or adversarial) and write a run directory.
    #[command(allow_negative_numbers = true)]
    Train(Box<TrainArgs>),
    /// Measure clean and robust accuracy of a run's model on the test set.
    #[command(allow_negative_numbers = true)]
    Eval(Box<EvalArgs>),
    /// Write adversarial examples and a PNG grid for a few test images.
    #[command(allow_negative_numbers = true)]
    Attack(Box<AttackArgs>),
    /// Write one self-contained HTML report (charts, tables, checklist) for one or more runs.
    Report(Box<ReportArgs>),
    /// Write a run's model for another framework: an imported model as ONNX with the
    /// trained weights, a zoo model as a PyTorch state dict (safetensors).
    Export(Box<ExportArgs>),
    /// Measure throughput (images/s, GFLOP/s) of inference, PGD-10 and adversarial training steps.
    Bench(Box<BenchArgs>),
}

/// Flags every command takes.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Compute device: flex (CPU, default) or cuda (needs a build with --features cuda).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// CPU threads for the flex backend (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Hide progress bars (results and warnings are still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

/// `advtrain report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run directories written by `advtrain train`.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Output file (default: report.html inside the run for one run, else in the current
    /// directory). An existing file is refused unless --force; a run's own files
    /// (config.toml, model.safetensors, ...) always are.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite the --out file if it exists.
    #[arg(long, requires = "out")]
    pub force: bool,
    /// Leave out the adversarial-example grids (no model loading, no attack).
    #[arg(long)]
    pub no_examples: bool,
    #[command(flatten)]
    pub common: Common,
}

/// `advtrain export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Run directory written by `advtrain train` (or `eval --model`).
    #[arg(long)]
    pub run: PathBuf,
    /// onnx (runs started from an ONNX file; the default for them) or pytorch (zoo models;
    /// their default): a safetensors state dict for the modules in scripts/torch_zoo.py.
    #[arg(long)]
    pub format: Option<String>,
    /// Output file (default: model-export.onnx or model-pytorch.safetensors in the run).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Export the best checkpoint (model-best.safetensors) instead of the final weights.
    #[arg(long)]
    pub best: bool,
    #[command(flatten)]
    pub common: Common,
}

/// `advtrain bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Timed repetitions per workload (the median, min and max are reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Untimed repetitions before timing.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Comma-separated models to measure: zoo names, or ONNX files (FILE.onnx, taking
    /// 1×28×28 images) to compare an imported model with its zoo equivalent.
    #[arg(long, default_value = "small-cnn,madry-cnn", value_delimiter = ',')]
    pub models: Vec<String>,
    /// Comma-separated workloads to measure: forward, pgd10, fgsm-rs-step, pgd-at-step (on
    /// random weights and inputs), and autoattack, square, apgd-t (whole attacks of the
    /// trained model of --run on its first --limit test points).
    #[arg(
        long,
        default_value = "forward,pgd10,fgsm-rs-step,pgd-at-step",
        value_delimiter = ','
    )]
    pub workloads: Vec<String>,
    /// Size C,H,W of the random input images (10 classes): 1,28,28 is Fashion-MNIST's,
    /// 3,32,32 CIFAR-10's (for preact-resnet18).
    #[arg(long, value_name = "C,H,W", default_value = "1,28,28")]
    pub input_shape: String,
    /// Before timing, check that --device computes what this device computes (logits,
    /// input gradient, one SGD step on the same weights and inputs, to float32 tolerance)
    /// and stop with an error if it does not, e.g. --device cuda --check-against flex.
    #[arg(long, value_name = "DEVICE")]
    pub check_against: Option<String>,
    /// The trained run the attack workloads (autoattack, square, apgd-t) attack, at its
    /// training threat model.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: Option<PathBuf>,
    /// Test points the attack workloads attack: the first N of the run's test set.
    #[arg(long, default_value_t = 500)]
    pub limit: usize,
    /// Timed runs of each attack workload (each is a whole evaluation).
    #[arg(long, default_value_t = 1)]
    pub attack_reps: usize,
    /// Points per attacked batch in the attack workloads (as `eval --batch-size`).
    #[arg(long, default_value_t = 256)]
    pub attack_batch: usize,
    /// Print the results as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write the JSON object to this file (the table is still printed unless --json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

impl BenchArgs {
    /// The random inputs' shape (`--input-shape`), in 10 classes.
    pub fn shape(&self) -> anyhow::Result<advtrain::model::ModelShape> {
        let [channels, height, width] = model_input::parse_shape(&self.input_shape)?;
        Ok(advtrain::model::ModelShape {
            channels,
            height,
            width,
            num_classes: 10,
        })
    }
}
