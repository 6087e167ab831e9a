//! `advtrain eval` on a text run. A two-class filter is evaluated for evasion: its malicious
//! test texts attacked, detection rate at the threshold chosen at `--fpr`
//! on the benign calibration texts ([`TextSplits::calibration`]); a data set
//! of more classes gets accuracy under attack over all texts. Either is recorded beside the
//! others and printed.

use advtrain::run::RunDir;
use advtrain::text::attack::TextAttackConfig;
use advtrain::text::eval::evaluate_text;
use advtrain::text::evasion_files::evaluate_streamed;
use advtrain::text::run::{TextRun, TextRunConfig, TextSplits};
use advtrain::text::TextDataset;
use anyhow::{bail, Context, Result};
use burn::prelude::Device;

use crate::args::EvalArgs;
use crate::common;

/// Runs the evaluation `args` ask for on the text run `dir`.
pub fn run(args: &EvalArgs, dir: RunDir) -> Result<()> {
    if args.eps_curve.is_some() || args.checks {
        bail!("--eps-curve and --checks apply to image runs only");
    }
    let attack = args.spec.text_attack()?;
    let device = args.common.setup()?;
    let (run, config) = TextRun::open(dir.path())?;
    let (all_train, test) = config.load_data(args.data.as_deref())?;
    if test.num_classes() == 2 {
        return evasion(
            args,
            &run,
            &config,
            all_train,
            test,
            attack.as_ref(),
            &device,
        );
    }
    if args.filter.fpr.is_some() {
        bail!(
            "--fpr applies to two-class filters; this run has {} classes",
            test.num_classes()
        );
    }
    let full = test.len();
    let test = match args.limit {
        Some(n) => test.take(n),
        None => test,
    };
    let model = run.load_model(&config, &device)?;
    let (record, results) = evaluate_text(&model, &test, attack.as_ref(), args.seed)?;
    // Printed first: a run directory that cannot be written must not cost the numbers.
    common::print_text_record(&record);
    let path = run
        .write_eval(&record, &results, test.len() < full)
        .with_context(|| {
            format!(
                "the result above was not written to {}",
                run.path().display()
            )
        })?;
    println!("written:          {}", path.display());
    common::print_report(advtrain::report::refresh_run(run.path(), &device));
    Ok(())
}

/// Evasion of the run's filter: the threshold at `--fpr` on the benign calibration texts,
/// the malicious test texts attacked chunk by chunk, each chunk streamed to the run.
fn evasion(
    args: &EvalArgs,
    run: &TextRun,
    config: &TextRunConfig,
    all_train: TextDataset,
    test: TextDataset,
    attack: Option<&TextAttackConfig>,
    device: &Device,
) -> Result<()> {
    let fpr = args.filter.fpr()?;
    let splits = TextSplits::new(all_train, test, config.data_seed);
    let suffix = run.evasion_suffix(&splits.test, args.limit)?;
    let test = match args.limit {
        Some(n) => splits.test.clone().take(n),
        None => splits.test.clone(),
    };
    let model = run.load_model(config, device)?;
    let mut evasion = run.evasion_run(&model, &splits.calibration, fpr, args.seed)?;
    if let Some(chunk) = args.filter.chunk {
        evasion.chunk = chunk;
    }
    let sha = run.dir().model_sha256()?;
    let (record, path) = evaluate_streamed(run.path(), &evasion, &test, attack, sha, &suffix)
        .with_context(|| format!("evaluating {}", run.path().display()))?;
    common::print_evasion_record(&record);
    println!("written:          {}", path.display());
    common::print_report(advtrain::report::refresh_run(run.path(), device));
    Ok(())
}
