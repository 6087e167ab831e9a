//! Everything the HTML report shows, read from run directories into plain structs, and the
//! chart data derived from them. Kept apart from rendering so tests can check that what a
//! chart plots is exactly what the run's files say.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::eval::checks::{Check, Verdict};
use crate::run::{files, AuditRecord, RunConfig, Summary};
use crate::train::{EpochMetrics, MonitorEvent};

pub use crate::run::EvalFile;

/// The sanity checklist's file, written by `advtrain eval --checks`.
pub const CHECKS: &str = files::CHECKS;

/// What a run directory holds, as far as the report is concerned.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The run directory's name: short, and what a person typed.
    pub name: String,
    /// The path as given to [`RunReport::load`] (not canonicalised); the report reads the
    /// trained model from it to draw adversarial examples.
    pub dir: PathBuf,
    /// `summary.json`, the one file a run directory must have: the headline numbers and the
    /// training threat model.
    pub summary: Summary,
    /// `None` when `config.toml` is missing (hand-made or copied runs).
    pub config: Option<RunConfig>,
    /// `None` when `metrics.jsonl` is missing.
    pub metrics: Option<Vec<EpochMetrics>>,
    /// Every `eval-*.json`, sorted by file name.
    pub evals: Vec<EvalFile>,
    /// The sanity checklist from [`CHECKS`]; `None` when it was never run (no
    /// `advtrain eval --checks`).
    pub checks: Option<Vec<Check>>,
    /// The side-effects audit of the current weights (`audit.json`); `None` when there is
    /// none, or when it measured weights the run has since replaced.
    pub audit: Option<AuditRecord>,
    /// The adversarial-example grid (PNG bytes), or why there is none.
    pub examples: std::result::Result<Vec<u8>, String>,
}

/// All runs of one report, in the order given.
#[derive(Clone, Debug)]
pub struct ReportData {
    /// One per run directory, in the order given (never empty after [`ReportData::load`]);
    /// a run's index here is its colour in every chart.
    pub runs: Vec<RunReport>,
}

fn not_a_run(dir: &Path, why: &str) -> Error {
    Error::Record {
        path: dir.to_path_buf(),
        message: format!("not a run directory ({why}); expected one written by `advtrain train`"),
    }
}

impl RunReport {
    /// Reads a run directory. `summary.json` must exist; every other file is optional, but a
    /// file that exists and does not parse is an error naming it.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(not_a_run(dir, "no such directory"));
        }
        let summary_path = dir.join(files::SUMMARY);
        if !summary_path.is_file() {
            return Err(not_a_run(dir, "it has no summary.json"));
        }
        let summary: Summary = crate::io::read_json(&summary_path)?;
        let config_path = dir.join(files::CONFIG);
        let config = if config_path.is_file() {
            Some(crate::io::read_toml::<RunConfig>(&config_path)?)
        } else {
            None
        };
        let metrics_path = dir.join(files::METRICS);
        let metrics = if metrics_path.is_file() {
            Some(crate::io::read_jsonl::<EpochMetrics>(&metrics_path)?)
        } else {
            None
        };
        // Only the results of the current weights: a run trained again (`--force`, or
        // further epochs) must not show the previous model's evaluations or checklist.
        let evals = crate::run::current_evals(dir)?;
        let checks = crate::run::current_checks(dir)?;
        let audit = crate::run::current_audit(dir)?;
        let name = dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Self {
            name,
            dir: dir.to_path_buf(),
            summary,
            config,
            metrics,
            evals,
            checks,
            audit,
            examples: Err("adversarial examples were not generated for this report".into()),
        })
    }

    /// Evaluations at the run's own threat model (norm and ε): the ones that measure the
    /// robustness it was trained for.
    pub fn evals_at_training_threat(&self) -> impl Iterator<Item = &EvalFile> {
        self.evals.iter().filter(|e| {
            e.record.norm == self.summary.norm && (e.record.eps - self.summary.eps).abs() <= 1e-6
        })
    }

    /// The evaluation behind the headline numbers: the one `summary.json` names, else the
    /// largest one at the training threat model, else the largest of any.
    pub fn headline_eval(&self) -> Option<&EvalFile> {
        let s = &self.summary;
        self.evals_at_training_threat()
            .find(|e| {
                e.record.n == s.n_test
                    && s.robust_attack.as_deref() == Some(e.record.attack_description.as_str())
            })
            .or_else(|| self.evals_at_training_threat().max_by_key(|e| e.record.n))
            .or_else(|| self.evals.iter().max_by_key(|e| e.record.n))
    }

    /// "all pass", "warn: 4, 5" or `None` without a checklist.
    pub fn checklist_verdict(&self) -> Option<String> {
        let checks = self.checks.as_ref()?;
        let warned: Vec<String> = checks
            .iter()
            .filter(|c| c.verdict == Verdict::Warn)
            .map(|c| c.id.to_string())
            .collect();
        Some(if warned.is_empty() {
            "all pass".into()
        } else {
            format!("warn: {}", warned.join(", "))
        })
    }
}

impl ReportData {
    /// Reads every run directory, failing on the first that is not a run or holds a
    /// corrupt record.
    pub fn load<P: AsRef<Path>>(dirs: &[P]) -> Result<Self> {
        if dirs.is_empty() {
            return Err(Error::config("a report needs at least one run directory"));
        }
        let runs = dirs
            .iter()
            .map(|d| RunReport::load(d.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { runs })
    }
}

/// One run's point on the robustness–accuracy plane, in percent.
#[derive(Clone, Debug, PartialEq)]
pub struct TradeoffPoint {
    /// Index of the run in [`ReportData::runs`] (its colour).
    pub run: usize,
    /// The run's [`RunReport::name`], the point's label.
    pub name: String,
    /// Clean test accuracy from `summary.json`, a percentage in `[0, 100]`.
    pub clean_pct: f64,
    /// Robust test accuracy from `summary.json` (the lowest any evaluation at the training
    /// ε found), a percentage in `[0, 100]`.
    pub robust_pct: f64,
}

/// Clean vs robust accuracy per run, from `summary.json`; runs without a robust accuracy
/// (trained and evaluated without ε) have no point.
pub fn tradeoff_points(data: &ReportData) -> Vec<TradeoffPoint> {
    data.runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            Some(TradeoffPoint {
                run: i,
                name: r.name.clone(),
                clean_pct: 100.0 * r.summary.clean_accuracy,
                robust_pct: 100.0 * r.summary.robust_accuracy?,
            })
        })
        .collect()
}

/// A run's accuracy-vs-ε curve.
#[derive(Clone, Debug, PartialEq)]
pub struct EpsCurve {
    /// Index of the run in [`ReportData::runs`] (its colour).
    pub run: usize,
    /// The run's [`RunReport::name`], the curve's legend entry.
    pub name: String,
    /// Where the points come from, in words.
    pub source: String,
    /// (ε, accuracy in %), ε ascending.
    pub points: Vec<(f64, f64)>,
}

/// The ε-curve of a run: from an evaluation record that stored one (the largest such
/// evaluation), else from check 1 of the sanity checklist, which measures PGD accuracy at
/// several radii too.
pub fn eps_curve(run_index: usize, run: &RunReport) -> Option<EpsCurve> {
    let from_eval = run
        .evals
        .iter()
        .filter(|e| e.record.eps_curve.as_ref().is_some_and(|c| !c.is_empty()))
        .max_by_key(|e| e.record.n);
    let (source, mut points) = if let Some(e) = from_eval {
        let pts: Vec<(f64, f64)> = e
            .record
            .eps_curve
            .iter()
            .flatten()
            .map(|p| (f64::from(p.eps), 100.0 * p.robust.value))
            .collect();
        (
            format!(
                "{} ({}, {} norm, n={})",
                e.file, e.record.attack, e.record.norm, e.record.n
            ),
            pts,
        )
    } else {
        let check = run.checks.as_ref()?.iter().find(|c| c.id == 1)?;
        let pts: Vec<(f64, f64)> = check
            .figures
            .iter()
            .filter_map(|(k, v)| {
                let eps: f64 = k.strip_prefix("accuracy_at_eps_")?.parse().ok()?;
                Some((eps, 100.0 * v))
            })
            .collect();
        if pts.is_empty() {
            return None;
        }
        (
            format!("{CHECKS} check 1 (PGD, {} norm)", run.summary.norm),
            pts,
        )
    };
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(EpsCurve {
        run: run_index,
        name: run.name.clone(),
        source,
        points,
    })
}

/// Every run's ε-curve, for the runs that have one.
pub fn eps_curves(data: &ReportData) -> Vec<EpsCurve> {
    data.runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| eps_curve(i, r))
        .collect()
}

/// A run's training history by epoch, accuracies in %.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingCurves {
    /// (epoch, mean training loss) per epoch: the method's own loss, not scaled. In every
    /// series here epochs are 1-based and ascending, and an epoch whose value is missing or
    /// not finite has no point, so series may differ in length.
    pub train_loss: Vec<(f64, f64)>,
    /// (epoch, validation clean accuracy in %); empty without a validation split.
    pub val_clean: Vec<(f64, f64)>,
    /// (epoch, validation FGSM accuracy in %); empty when it was not measured.
    pub val_fgsm: Vec<(f64, f64)>,
    /// (epoch, validation robust accuracy in %) under the monitor's PGD (named in
    /// `val_attack`); empty without ε or a validation split.
    pub val_pgd: Vec<(f64, f64)>,
    /// Which attack `val_pgd` used, as recorded.
    pub val_attack: Option<String>,
    /// Every monitor event, in order.
    pub events: Vec<MonitorEvent>,
    /// The best checkpoint's epoch: the last line's `best_epoch`, else summary.json's.
    pub best_epoch: Option<usize>,
    /// The last epoch in `metrics.jsonl` (the largest `epoch`): the x-axis extent.
    pub epochs: usize,
}

/// The training curves of a run, `None` without `metrics.jsonl` or with an empty one.
pub fn training_curves(run: &RunReport) -> Option<TrainingCurves> {
    let metrics = run.metrics.as_ref().filter(|m| !m.is_empty())?;
    let series = |f: &dyn Fn(&EpochMetrics) -> Option<f64>, scale: f64| -> Vec<(f64, f64)> {
        metrics
            .iter()
            .filter_map(|m| {
                f(m).filter(|v| v.is_finite())
                    .map(|v| (m.epoch as f64, scale * v))
            })
            .collect()
    };
    Some(TrainingCurves {
        train_loss: series(&|m| Some(m.train_loss), 1.0),
        val_clean: series(&|m| m.val_clean_accuracy, 100.0),
        val_fgsm: series(&|m| m.val_fgsm_accuracy, 100.0),
        val_pgd: series(&|m| m.val_robust_accuracy, 100.0),
        val_attack: metrics.iter().rev().find_map(|m| m.val_attack.clone()),
        events: metrics.iter().flat_map(|m| m.events.clone()).collect(),
        best_epoch: metrics
            .iter()
            .rev()
            .find_map(|m| m.best_epoch)
            .or_else(|| run.summary.best_checkpoint.as_ref().map(|b| b.epoch)),
        epochs: metrics.iter().map(|m| m.epoch).max().unwrap_or(0),
    })
}

/// One class's clean and robust accuracy, in %.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassRow {
    /// The class index (its label).
    pub class: usize,
    /// The class's name in the data set.
    pub name: String,
    /// Clean accuracy on the class's examples, a percentage in `[0, 100]`.
    pub clean_pct: f64,
    /// Robust accuracy on them (correct clean and after the attack), a percentage in
    /// `[0, 100]`, never above `clean_pct`.
    pub robust_pct: f64,
    /// Examples of the class in the evaluation: both percentages are over this many.
    pub n: usize,
}

/// Per-class accuracies of a run's headline evaluation, with the file they came from.
pub fn per_class(run: &RunReport) -> Option<(String, Vec<ClassRow>)> {
    let e = run.headline_eval()?;
    if e.record.per_class.is_empty() {
        return None;
    }
    let rows = e
        .record
        .per_class
        .iter()
        .map(|c| ClassRow {
            class: c.class,
            name: c.name.clone(),
            clean_pct: 100.0 * c.clean.value,
            robust_pct: 100.0 * c.robust.value,
            n: c.clean.n,
        })
        .collect();
    Some((
        format!(
            "{} ({}, n={})",
            e.file, e.record.attack_description, e.record.n
        ),
        rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::audit::tests::{audit, calibration};

    /// A run directory with only the summary.json a report needs.
    fn bare_run(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "advtrain-report-data-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let summary = serde_json::json!({
            "method": "standard", "model": "small-cnn", "dataset": "fashion-mnist",
            "norm": "linf", "eps": 0.1, "epochs": 1, "train_seconds": 1.0,
            "clean_accuracy": 0.9, "clean_ci95": [0.88, 0.92], "robust_accuracy": null,
            "robust_ci95": null, "robust_attack": null, "n_test": 1000
        });
        std::fs::write(dir.join(files::SUMMARY), summary.to_string()).unwrap();
        dir
    }

    #[test]
    fn an_audit_is_loaded_shown_and_a_corrupt_one_names_its_file() {
        let dir = bare_run("audit");
        let data = ReportData::load(&[&dir]).unwrap();
        assert!(data.runs[0].audit.is_none());
        assert!(!super::super::render_html(&data).contains("bought and cost"));

        let record = AuditRecord {
            model_sha256: None,
            test_data_sha256: "abc".into(),
            audit: audit(0.9, 0.1, calibration([0.55, 0.75, 0.95], [100, 200, 700])),
        };
        crate::io::write_json(&dir.join(files::AUDIT), &record).unwrap();
        let data = ReportData::load(&[&dir]).unwrap();
        assert_eq!(data.runs[0].audit.as_ref(), Some(&record));
        let html = super::super::render_html(&data);
        assert!(html.contains("<h2>8. What adversarial training bought and cost</h2>"));
        assert!(html.contains("Only one run has an audit"));

        std::fs::write(dir.join(files::AUDIT), "{ \"audit\": 3 }").unwrap();
        let e = ReportData::load(&[&dir]).unwrap_err().to_string();
        assert!(e.contains("audit.json"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
