//! `advtrain eval` on a text run: clean accuracy or accuracy under a character attack on the
//! run's test texts, recorded beside the others and printed in one line.

use advtrain::run::RunDir;
use advtrain::text::eval::evaluate_text;
use advtrain::text::run::TextRun;
use anyhow::{bail, Context, Result};

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
    let (_, test) = config.load_data(args.data.as_deref())?;
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
