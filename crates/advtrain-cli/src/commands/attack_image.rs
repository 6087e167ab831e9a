//! `advtrain attack` on an image run: adversarial examples for a few test images, saved as
//! tensors and as a PNG grid a person can look at.

use advtrain::attack::Attack;
use advtrain::report::{self, craft_examples, GRID_MAX_ROWS};
use advtrain::run::RunDir;
use anyhow::{bail, Context, Result};

use crate::args::AttackArgs;
use crate::common::check_overwrite;

/// Attacks the test images `args` select on the image run `dir` and writes what it made.
pub fn run(args: &AttackArgs, dir: RunDir) -> Result<()> {
    let device = args.common.setup()?;
    let config = dir.config()?;
    let model = dir.load_model(&config, &device)?;
    let threat = args.spec.threat(&config)?;
    let spec = args.spec.image_spec()?;
    spec.check_classes(config.shape.num_classes)?;
    let attack = spec.build(threat)?;
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let test = config.test_set(args.data.as_deref(), None)?;
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
    let tensors = args.out.join("adversarial.safetensors");
    let grid_path = args.out.join("grid.png");
    for path in [&tensors, &grid_path] {
        check_overwrite(path, args.force, "--out")?;
    }
    let mut rng = advtrain::rng::seeded(args.seed);
    let ex = craft_examples(&model, &test, &idx, &attack, &mut rng, &device);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    report::save_examples(&tensors, &ex)?;
    let grid = report::adversarial_grid(&ex, &config.class_names_or(&test));
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
    if n > GRID_MAX_ROWS {
        println!(
            "grid:             shows only the first {GRID_MAX_ROWS} of the {n} images (all {n} are in {})",
            tensors.display()
        );
    }
    Ok(())
}
