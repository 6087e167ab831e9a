//! `advtrain attack`: craft adversarial examples for a few test images and write them with
//! a PNG grid a person can look at.

use std::path::PathBuf;

use advtrain::attack::Attack;
use advtrain::model::Classifier;
use advtrain::report::{self, AdversarialExamples};
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use clap::Args;

use crate::cmd_eval::{build_attack, AttackSpec};
use crate::common::{self, Common};

#[derive(Args, Debug)]
pub struct AttackArgs {
    /// Run directory written by `advtrain train`.
    #[arg(long)]
    pub run: PathBuf,
    #[command(flatten)]
    pub spec: AttackSpec,
    /// Output directory for adversarial.safetensors and grid.png.
    #[arg(long, default_value = "adv")]
    pub out: PathBuf,
    /// How many test images to attack.
    #[arg(long, short = 'n', default_value_t = 16)]
    pub count: usize,
    /// Index of the first test image.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Override the data directory recorded in the run.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub common: Common,
}

fn to_u8(t: Tensor<1, Int>) -> Vec<u8> {
    t.into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap_or_default()
        .into_iter()
        .map(|v| v as u8)
        .collect()
}

fn to_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

pub fn run(args: AttackArgs) -> Result<()> {
    if advtrain::text::run::is_text_run(&args.run) {
        return crate::cmd_text::attack(args);
    }
    let device = args.common.setup()?;
    let loaded = common::load_run(&args.run, &device)?;
    let threat = args.spec.threat(&loaded)?;
    let attack = build_attack(&args.spec, threat)?;
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let test = common::run_test_set(&loaded, args.data.as_deref(), None)?;
    if args.offset >= test.len() {
        bail!(
            "--offset {} is past the end of the test set ({} images)",
            args.offset,
            test.len()
        );
    }
    let end = (args.offset + args.count).min(test.len());
    let idx: Vec<usize> = (args.offset..end).collect();
    let n = idx.len();
    let (x, y) = test.batch(&idx, &device);
    let model = loaded.model.valid();
    let mut rng = advtrain::rng::seeded(args.seed);
    let x_adv = attack.perturb(&model, x.clone(), y.clone(), &mut rng);
    let clean_pred = model.logits(x.clone()).argmax(1).reshape([n]);
    let probs = softmax(model.logits(x_adv.clone()), 1);
    let (conf, adv_pred) = probs.max_dim_with_indices(1);
    let ex = AdversarialExamples {
        channels: test.channels,
        height: test.height,
        width: test.width,
        clean: to_f32(x),
        adversarial: to_f32(x_adv),
        labels: to_u8(y),
        clean_pred: to_u8(clean_pred),
        adv_pred: to_u8(adv_pred.reshape([n])),
        adv_confidence: to_f32(conf.reshape([n])),
        eps: threat.eps,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    let tensors = args.out.join("adversarial.safetensors");
    report::save_examples(&tensors, &ex)?;
    let grid_path = args.out.join("grid.png");
    let grid = report::adversarial_grid(&ex, &loaded.dataset.class_names());
    grid.save(&grid_path)
        .with_context(|| format!("{}: cannot write PNG", grid_path.display()))?;
    let clean_ok = (0..n).filter(|&i| ex.clean_pred[i] == ex.labels[i]).count();
    let fooled = (0..n)
        .filter(|&i| ex.clean_pred[i] == ex.labels[i] && ex.adv_pred[i] != ex.labels[i])
        .count();
    println!("attack:           {}", attack.name());
    println!("images:           {n} (test {}..{})", args.offset, end);
    println!("correct when clean: {clean_ok}/{n}; fooled by the attack: {fooled}/{clean_ok}");
    println!(
        "written:          {} and {}",
        tensors.display(),
        grid_path.display()
    );
    Ok(())
}
