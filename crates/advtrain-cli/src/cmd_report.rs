//! `advtrain report`: one self-contained HTML file gathering one or more runs' records. All
//! the work is in `advtrain::report`; this file parses arguments and prints the path.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::common::Common;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run directories written by `advtrain train`.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Output file (default: report.html inside the run for one run, else in the current
    /// directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Leave out the adversarial-example grids (no model loading, no attack).
    #[arg(long)]
    pub no_examples: bool,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: ReportArgs) -> Result<()> {
    if crate::cmd_text::all_text_runs(&args.runs)? {
        return crate::cmd_text::report(&args.runs, args.out.as_deref());
    }
    let device = args.common.setup()?;
    let device = (!args.no_examples).then_some(&device);
    let path = advtrain::report::write_report(&args.runs, args.out.as_deref(), device)?;
    println!("report:           {}", path.display());
    Ok(())
}

/// Writes or refreshes `report.html` in a run directory after `train` or `eval` and prints
/// its path; a report that cannot be written is a warning, never a failed command.
pub fn refresh(run: &std::path::Path, device: &burn::prelude::Device) {
    match advtrain::report::write_report(&[run], None, Some(device)) {
        Ok(path) => println!("report:           {}", path.display()),
        Err(e) => eprintln!("warning: could not write the report: {e}"),
    }
}
