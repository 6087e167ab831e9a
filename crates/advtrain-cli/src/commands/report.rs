//! `advtrain report`: one self-contained HTML file gathering one or more runs' records
//! (image or text runs, not both). All the work is in `advtrain::report`; this file checks
//! where it goes and prints the path.

use advtrain::report::write_reports;
use anyhow::Result;

use crate::args::ReportArgs;
use crate::common::check_overwrite;

/// Writes the report `args` ask for. An explicit `--out` must not name an existing file
/// (unless `--force`) nor a run's own file; the default, `report.html` in the run, is the
/// report `train` and `eval` refresh themselves, so rewriting it loses nothing.
pub fn run(args: &ReportArgs) -> Result<()> {
    if let Some(out) = &args.out {
        check_overwrite(out, args.force, "--out")?;
    }
    let device = args.common.setup()?;
    let device = (!args.no_examples).then_some(&device);
    let path = write_reports(&args.runs, args.out.as_deref(), device)?;
    println!("report:           {}", path.display());
    Ok(())
}
