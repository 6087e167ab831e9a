//! What a person sees: adversarial-example grids and the HTML report that gathers a run's
//! (or several runs') records into one self-contained file.

mod adversarial;
mod audit;
mod charts;
mod data;
mod examples;
mod html;
mod text;
mod text_detection;

use std::path::{Path, PathBuf};

use burn::prelude::Device;

use crate::run::{RunDir, Task};

pub use adversarial::{
    craft_examples, report_examples, CRAFT_BATCH, REPORT_EXAMPLES, REPORT_PGD_STEPS,
};
pub use audit::{
    accuracy_difference, audited_runs, axis_rows, baseline, class_changes, ece_difference,
    mean_accuracy, mean_difference, noise_confidence_difference, reliability_lines, render_audit,
    severity_lines, spread_difference, AuditedRun, AxisRow, Better, Cell, Change, ClassChanges,
    Difference, ECE_DRAWS,
};
pub use charts::{
    eps_chart, reliability_chart, run_colour_css, severity_chart, tradeoff_chart, training_charts,
    RunLine,
};
pub use data::{
    eps_curve, eps_curves, per_class, tradeoff_points, training_curves, ClassRow, EpsCurve,
    EvalFile, ReportData, RunReport, TradeoffPoint, TrainingCurves, CHECKS,
};
pub use examples::{
    adversarial_grid, load_examples, save_examples, AdversarialExamples, GRID_MAX_ROWS,
};
pub(crate) use html::STYLE;
pub use html::{escape, note, render_html};
pub use text::{write_attack_pairs, write_text_report, PAIRS_HTML, PAIRS_JSONL};

/// The report's file name inside a run directory.
pub const REPORT: &str = crate::run::files::REPORT;

/// Where a report goes by default: inside the run for one run, else the current directory.
pub fn default_report_path<P: AsRef<Path>>(dirs: &[P]) -> PathBuf {
    match dirs {
        [one] => one.as_ref().join(REPORT),
        _ => PathBuf::from(REPORT),
    }
}

/// Reads the runs, attacks a few test images of each when `device` is given (and the run's
/// model and data are readable), and writes the report to `out` (default:
/// [`default_report_path`]). Returns the path written.
pub fn write_report<P: AsRef<Path>>(
    dirs: &[P],
    out: Option<&Path>,
    device: Option<&Device>,
) -> crate::error::Result<PathBuf> {
    let mut data = ReportData::load(dirs)?;
    if let Some(device) = device {
        for run in &mut data.runs {
            run.examples = report_examples(run, device);
        }
    }
    let path = out.map_or_else(|| default_report_path(dirs), Path::to_path_buf);
    crate::io::write_atomic(&path, render_html(&data).as_bytes())?;
    Ok(path)
}

/// Writes one report for `dirs`, whichever their task: the image report
/// ([`write_report`]) or the text report ([`text::write_text_report`]).
/// Image and text runs measure different things, so one report cannot hold both: mixing
/// them is an error. A directory without `config.toml` counts as an image run, as the
/// image report accepts hand-made runs. Returns the path written.
pub fn write_reports<P: AsRef<Path>>(
    dirs: &[P],
    out: Option<&Path>,
    device: Option<&Device>,
) -> crate::error::Result<PathBuf> {
    let mut text = 0;
    for dir in dirs {
        if RunDir::task_of(dir.as_ref())? == Some(Task::Text) {
            text += 1;
        }
    }
    if text == 0 {
        return write_report(dirs, out, device);
    }
    if text < dirs.len() {
        return Err(crate::error::Error::config(
            "cannot mix text and image runs in one report",
        ));
    }
    let path = out.map_or_else(|| default_report_path(dirs), Path::to_path_buf);
    text::write_text_report(dirs, &path)
}

/// Writes or refreshes `report.html` inside one run directory, as `train` and `eval` do
/// after recording something, so the report a person opens is never behind the records.
/// `device` runs the image report's example attack. Returns the path written.
pub fn refresh_run(dir: &Path, device: &Device) -> crate::error::Result<PathBuf> {
    write_reports(&[dir], None, Some(device))
}
