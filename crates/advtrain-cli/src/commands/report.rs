//! `advtrain report`: one self-contained HTML file gathering one or more runs' records
//! (image or text runs, not both). All the work is in `advtrain::report`; this file prints
//! the path.

use advtrain::report::write_reports;
use anyhow::Result;

use crate::args::ReportArgs;

/// Writes the report `args` ask for.
pub fn run(args: &ReportArgs) -> Result<()> {
    let device = args.common.setup()?;
    let device = (!args.no_examples).then_some(&device);
    let path = write_reports(&args.runs, args.out.as_deref(), device)?;
    println!("report:           {}", path.display());
    Ok(())
}
