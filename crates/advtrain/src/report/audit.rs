//! The report's section "What adversarial training bought and cost": the side-effects audits
//! ([`crate::eval::audit`]) of several runs side by side, each run against one baseline
//! (the first audited run trained with the standard method and without augmentation).
//!
//! A difference alone says little on a few thousand test images, so every cell carries the
//! difference's 95% interval and a verdict read off it: "better" or "worse" when the interval
//! excludes 0 (by the axis's direction), "no difference" when it does not. The intervals:
//!
//! - accuracies: Newcombe's hybrid score interval
//!   ([`crate::eval::calibration::newcombe_difference`]); a mean over
//!   severities or corruptions is counted as an accuracy on the `n` test images, which is
//!   conservative, since the corrupted versions of one image are correlated;
//! - class spread (best − worst class): the normal approximation;
//! - expected calibration error: a parametric bootstrap from the reliability bins
//!   ([`ece_difference`]);
//! - confidence on uniform noise: the normal approximation over the noise images.
//!
//! The maths and the table's data are plain functions of [`Audit`] values, tested without a
//! run directory ([`stats`] holds the maths); [`audit_section`] is what the HTML renderer
//! calls.

mod render;
mod stats;

use super::charts::RunLine;
use super::data::{ReportData, RunReport};
use crate::eval::audit::Audit;
use crate::eval::calibration::{class_drops, ClassDrop};
use crate::eval::Accuracy;
use crate::threat::ThreatModel;

pub(crate) use render::audit_section;
pub use render::render_audit;
pub use stats::{
    accuracy_difference, ece_difference, mean_accuracy, mean_difference,
    noise_confidence_difference, spread_difference, Better, Change, Difference, ECE_DRAWS,
};

/// Seed of the ECE bootstrap: the report is the same every time it is written.
const ECE_SEED: u64 = 0xEC0;

/// Classes listed per run in "which classes adversarial training lost most on".
const CLASSES_LISTED: usize = 3;

/// One audited run, a column of the comparison.
#[derive(Clone, Debug)]
pub struct AuditedRun<'a> {
    /// Index of the run in the report (its colour).
    pub run: usize,
    /// The run's name.
    pub name: &'a str,
    /// Its training method (`standard`, `pgd-at`, ...).
    pub method: &'a str,
    /// Whether it was trained with augmentation.
    pub augmented: bool,
    /// Its audit.
    pub audit: &'a Audit,
}

impl AuditedRun<'_> {
    /// The column's short label: `std`, `std+augment`, `pgd-at`, `trades+augment`.
    pub fn label(&self) -> String {
        let method = if self.method == "standard" {
            "std"
        } else {
            self.method
        };
        if self.augmented {
            format!("{method}+augment")
        } else {
            method.to_string()
        }
    }

    fn is_plain_standard(&self) -> bool {
        self.method == "standard" && !self.augmented
    }
}

/// The runs of `data` with a current audit, in report order.
pub fn audited_runs(data: &ReportData) -> Vec<AuditedRun<'_>> {
    data.runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| audited_run(i, r))
        .collect()
}

fn audited_run(i: usize, r: &RunReport) -> Option<AuditedRun<'_>> {
    let record = r.audit.as_ref()?;
    Some(AuditedRun {
        run: i,
        name: &r.name,
        method: r
            .config
            .as_ref()
            .map_or(r.summary.method.as_str(), |c| c.train.method.name()),
        augmented: r
            .config
            .as_ref()
            .is_some_and(|c| c.train.augment.is_active()),
        audit: &record.audit,
    })
}

/// The baseline's index in `runs`: the first standard run without augmentation (`true`),
/// else the first run (`false`); `None` for no runs.
pub fn baseline(runs: &[AuditedRun<'_>]) -> Option<(usize, bool)> {
    match runs.iter().position(AuditedRun::is_plain_standard) {
        Some(i) => Some((i, true)),
        None => (!runs.is_empty()).then_some((0, false)),
    }
}

/// One cell of the table: a run's value on an axis and, for a run other than the baseline,
/// its difference from the baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// The value, a fraction (shown in %); `None` when the run's audit lacks the axis.
    pub value: Option<f64>,
    /// Small print under the value: the class named, the values by severity, ...
    pub note: String,
    /// The difference from the baseline; `None` for the baseline or when not compared.
    pub difference: Option<Difference>,
    /// The verdict read off `difference`.
    pub verdict: Option<Change>,
    /// Why there is no comparison, when the baseline measured the axis differently.
    pub not_compared: Option<String>,
}

impl Cell {
    fn missing() -> Self {
        Self {
            value: None,
            note: "not measured".into(),
            difference: None,
            verdict: None,
            not_compared: None,
        }
    }
}

/// One axis of the comparison: a row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisRow {
    /// What is measured.
    pub axis: String,
    /// How, in small print (the attack and its radius, say).
    pub detail: String,
    /// Which way is better.
    pub better: Better,
    /// One per run, in the order of the runs.
    pub cells: Vec<Cell>,
}

/// A run's value on one axis: what its difference is computed from (`of`), the value
/// shown, small print, and the setting it was measured at (only equal settings compare).
struct Measure<T> {
    of: T,
    value: f64,
    note: String,
    setting: String,
}

impl<T> Measure<T> {
    fn new(of: T, value: f64, note: String) -> Self {
        Self {
            of,
            value,
            note,
            setting: String::new(),
        }
    }

    fn at(mut self, setting: String) -> Self {
        self.setting = setting;
        self
    }
}

/// An axis's name, detail and direction.
struct Axis {
    name: String,
    detail: String,
    better: Better,
}

impl Axis {
    fn new(name: impl Into<String>, detail: impl Into<String>, better: Better) -> Self {
        Self {
            name: name.into(),
            detail: detail.into(),
            better,
        }
    }
}

/// A row: each run's measure, and its difference from the baseline's (`differ(run,
/// baseline, column)`) where both measured the axis at the same setting.
fn axis_row<T>(
    axis: Axis,
    runs: &[AuditedRun<'_>],
    base: usize,
    measure: impl Fn(&Audit) -> Option<Measure<T>>,
    differ: impl Fn(&T, &T, usize) -> Difference,
) -> AxisRow {
    let baseline = measure(runs[base].audit);
    let cells = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let Some(m) = measure(r.audit) else {
                return Cell::missing();
            };
            let mut cell = Cell {
                value: Some(m.value),
                note: m.note,
                difference: None,
                verdict: None,
                not_compared: None,
            };
            match &baseline {
                _ if i == base => {}
                Some(b) if b.setting == m.setting => {
                    let d = differ(&m.of, &b.of, i);
                    cell.verdict = Some(d.verdict(axis.better));
                    cell.difference = Some(d);
                }
                Some(b) => {
                    cell.not_compared = Some(format!(
                        "not compared: measured at {}, the baseline at {}",
                        m.setting, b.setting
                    ))
                }
                None => cell.not_compared = Some("not compared: the baseline lacks it".into()),
            }
            cell
        })
        .collect();
    AxisRow {
        axis: axis.name,
        detail: axis.detail,
        better: axis.better,
        cells,
    }
}

fn accuracy_row(
    axis: Axis,
    runs: &[AuditedRun<'_>],
    base: usize,
    measure: impl Fn(&Audit) -> Option<Measure<Accuracy>>,
) -> AxisRow {
    axis_row(axis, runs, base, measure, |a, b, _| {
        accuracy_difference(a, b)
    })
}

/// A row of mean accuracies, each measured as (mean, images).
fn mean_row(
    axis: Axis,
    runs: &[AuditedRun<'_>],
    base: usize,
    measure: impl Fn(&Audit) -> Option<Measure<(f64, usize)>>,
) -> AxisRow {
    axis_row(axis, runs, base, measure, |a, b, _| {
        mean_difference(a.0, a.1, b.0, b.1)
    })
}

/// The training threat model and the PGD steps, in words: what robust numbers depend on.
fn attack_setting(audit: &Audit) -> String {
    let ThreatModel { norm, eps } = audit.config.threat;
    format!("PGD-{} at {norm} ε={eps}", audit.config.steps)
}

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

/// Every axis of the comparison, in the table's order.
pub fn axis_rows(runs: &[AuditedRun<'_>], base: usize) -> Vec<AxisRow> {
    let mut rows = headline_rows(runs, base);
    rows.extend(threat_model_rows(runs, base));
    rows.extend(corruption_rows(runs, base));
    rows.extend(class_rows(runs, base));
    rows.extend(calibration_rows(runs, base));
    rows
}

fn headline_rows(runs: &[AuditedRun<'_>], base: usize) -> Vec<AxisRow> {
    let b = runs[base].audit;
    vec![
        accuracy_row(
            Axis::new("clean accuracy", format!("n={}", b.n), Better::Higher),
            runs,
            base,
            |a| Some(Measure::new(a.clean, a.clean.value, String::new())),
        ),
        accuracy_row(
            Axis::new(
                "robust accuracy at the training ε",
                format!("{} (correct clean and attacked)", attack_setting(b)),
                Better::Higher,
            ),
            runs,
            base,
            |a| Some(Measure::new(a.robust, a.robust.value, String::new()).at(attack_setting(a))),
        ),
    ]
}

/// The names of the other threat models, in the order first met.
fn threat_model_names(runs: &[AuditedRun<'_>]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for t in runs.iter().flat_map(|r| &r.audit.threat_models) {
        if !names.contains(&t.name) {
            names.push(t.name.clone());
        }
    }
    names
}

fn threat_model_rows(runs: &[AuditedRun<'_>], base: usize) -> Vec<AxisRow> {
    threat_model_names(runs)
        .into_iter()
        .map(|name| {
            let find = |a: &Audit| a.threat_models.iter().find(|t| t.name == name).cloned();
            let detail = runs
                .iter()
                .find_map(|r| find(r.audit))
                .map(|t| t.description)
                .unwrap_or_default();
            let title = match name.as_str() {
                "other-norm" => "robust accuracy in the other norm".to_string(),
                "twice-eps" => "robust accuracy at twice ε".to_string(),
                "spatial" => "robust accuracy to rotations and shifts".to_string(),
                other => format!("robust accuracy: {other}"),
            };
            accuracy_row(Axis::new(title, detail, Better::Higher), runs, base, |a| {
                let t = find(a)?;
                Some(Measure::new(t.robust, t.robust.value, String::new()).at(t.description))
            })
        })
        .collect()
}

fn corruption_rows(runs: &[AuditedRun<'_>], base: usize) -> Vec<AxisRow> {
    let mut rows = vec![mean_row(
        Axis::new(
            "mean corruption accuracy",
            "over every corruption and severity",
            Better::Higher,
        ),
        runs,
        base,
        |a| {
            let m = a.mean_corruption_accuracy;
            Some(Measure::new((m, a.n), m, String::new()))
        },
    )];
    let mut kinds = Vec::new();
    for c in runs.iter().flat_map(|r| &r.audit.corruptions) {
        if !kinds.contains(&c.corruption) {
            kinds.push(c.corruption);
        }
    }
    rows.extend(kinds.into_iter().map(|kind| {
        let axis = Axis::new(kind.name(), "mean over severities 1–5", Better::Higher);
        mean_row(axis, runs, base, move |a| {
            let c = a.corruptions.iter().find(|c| c.corruption == kind)?;
            let by: Vec<String> = c
                .by_severity
                .iter()
                .map(|s| format!("{:.1}", 100.0 * s.value))
                .collect();
            let note = format!("severity 1–5: {}%", by.join(", "));
            Some(Measure::new((c.mean(), a.n), c.mean(), note))
        })
    }));
    rows
}

/// The name of class `class` in `audit`, else its number.
fn class_name(audit: &Audit, class: usize) -> String {
    audit
        .per_class
        .iter()
        .find(|r| r.class == class)
        .map_or_else(|| format!("class {class}"), |r| r.name.clone())
}

fn class_rows(runs: &[AuditedRun<'_>], base: usize) -> Vec<AxisRow> {
    let worst = |robust: bool| {
        move |a: &Audit| {
            let d = if robust {
                &a.robust_disparity
            } else {
                &a.clean_disparity
            };
            let m = Measure::new(d.worst, d.worst.value, class_name(a, d.worst_class));
            Some(if robust { m.at(attack_setting(a)) } else { m })
        }
    };
    let spread = |robust: bool| {
        move |a: &Audit| {
            let d = if robust {
                &a.robust_disparity
            } else {
                &a.clean_disparity
            };
            let note = format!(
                "best {} {:.1}%, worst {} {:.1}%",
                class_name(a, d.best_class),
                100.0 * d.best.value,
                class_name(a, d.worst_class),
                100.0 * d.worst.value
            );
            let m = Measure::new(d.clone(), d.spread, note);
            Some(if robust { m.at(attack_setting(a)) } else { m })
        }
    };
    let spread_row = |name: &str, robust: bool| {
        let axis = Axis::new(name, "best class − worst class", Better::Lower);
        axis_row(axis, runs, base, spread(robust), |a, b, _| {
            spread_difference(a, b)
        })
    };
    vec![
        accuracy_row(
            Axis::new(
                "worst-class clean accuracy",
                "the class is named",
                Better::Higher,
            ),
            runs,
            base,
            worst(false),
        ),
        accuracy_row(
            Axis::new(
                "worst-class robust accuracy",
                attack_setting(runs[base].audit),
                Better::Higher,
            ),
            runs,
            base,
            worst(true),
        ),
        spread_row("class spread, clean", false),
        spread_row("class spread, robust", true),
    ]
}

fn calibration_rows(runs: &[AuditedRun<'_>], base: usize) -> Vec<AxisRow> {
    let ece = |attacked: bool| {
        move |a: &Audit| {
            let c = if attacked {
                &a.calibration_attacked
            } else {
                &a.calibration_clean
            };
            let m = Measure::new(c.clone(), c.ece, format!("MCE {}", pct(c.mce)));
            Some(if attacked { m.at(attack_setting(a)) } else { m })
        }
    };
    let ece_row = |name: &str, detail: String, attacked: bool| {
        axis_row(
            Axis::new(name, detail, Better::Lower),
            runs,
            base,
            ece(attacked),
            move |a, b, column| {
                let seed = ECE_SEED + 2 * column as u64 + u64::from(attacked);
                ece_difference(a, b, ECE_DRAWS, seed)
            },
        )
    };
    let b = runs[base].audit;
    vec![
        ece_row(
            "expected calibration error, clean",
            format!("{} bins", b.calibration_clean.bins.len()),
            false,
        ),
        ece_row(
            "expected calibration error under attack",
            attack_setting(b),
            true,
        ),
        axis_row(
            Axis::new(
                "mean confidence on uniform noise",
                format!(
                    "{} noise images; chance is 1/classes",
                    b.config.noise_examples
                ),
                Better::Lower,
            ),
            runs,
            base,
            |a| {
                let note = format!("sd {:.3}", a.noise_confidence_sd);
                Some(Measure::new(a.clone(), a.noise_confidence, note))
            },
            |a, b, _| noise_confidence_difference(a, b),
        ),
    ]
}

/// The classes one run lost (or gained) most on against the baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassChanges {
    /// The run's column in the comparison.
    pub column: usize,
    /// The largest clean-accuracy drops, largest first.
    pub clean: Vec<ClassDrop>,
    /// The largest robust-accuracy changes either way, largest first; empty when the run
    /// was attacked at another setting than the baseline.
    pub robust: Vec<ClassDrop>,
}

/// For each run but the baseline, its [`CLASSES_LISTED`] largest clean-accuracy drops and
/// robust-accuracy changes. A run whose classes do not match the baseline's is left out.
pub fn class_changes(runs: &[AuditedRun<'_>], base: usize) -> Vec<ClassChanges> {
    let b = runs[base].audit;
    let of = |a: &Audit, robust: bool| -> Vec<Accuracy> {
        a.per_class
            .iter()
            .map(|r| if robust { r.robust } else { r.clean })
            .collect()
    };
    runs.iter()
        .enumerate()
        .filter(|&(i, _)| i != base)
        .filter_map(|(column, r)| {
            let mut clean = class_drops(&of(b, false), &of(r.audit, false)).ok()?;
            clean.truncate(CLASSES_LISTED);
            let mut robust = if attack_setting(r.audit) == attack_setting(b) {
                class_drops(&of(b, true), &of(r.audit, true)).ok()?
            } else {
                Vec::new()
            };
            robust.sort_by(|x, y| y.drop.abs().total_cmp(&x.drop.abs()));
            robust.truncate(CLASSES_LISTED);
            Some(ClassChanges {
                column,
                clean,
                robust,
            })
        })
        .collect()
}

/// Accuracy (%) by severity, averaged over the corruptions, one line per run.
pub fn severity_lines(runs: &[AuditedRun<'_>]) -> Vec<RunLine> {
    runs.iter()
        .map(|r| {
            let points = (0..5)
                .filter_map(|s| {
                    let values: Vec<f64> = r
                        .audit
                        .corruptions
                        .iter()
                        .filter_map(|c| c.by_severity.get(s).map(|a| a.value))
                        .collect();
                    let n = values.len();
                    (n > 0).then(|| {
                        (
                            (s + 1) as f64,
                            100.0 * values.iter().sum::<f64>() / n as f64,
                        )
                    })
                })
                .collect();
            RunLine {
                run: r.run,
                name: r.name.to_string(),
                points,
            }
        })
        .collect()
}

/// The reliability diagram's points (mean confidence, accuracy) of the non-empty bins, clean
/// or under attack, one line per run.
pub fn reliability_lines(runs: &[AuditedRun<'_>], attacked: bool) -> Vec<RunLine> {
    runs.iter()
        .map(|r| {
            let c = if attacked {
                &r.audit.calibration_attacked
            } else {
                &r.audit.calibration_clean
            };
            RunLine {
                run: r.run,
                name: r.name.to_string(),
                points: c
                    .bins
                    .iter()
                    .filter(|b| b.count > 0)
                    .map(|b| (b.mean_confidence, b.accuracy))
                    .collect(),
            }
        })
        .collect()
}

/// Hand-made audits for the report's tests.
#[cfg(test)]
pub(in crate::report) mod tests {
    use super::*;
    use crate::data::corrupt::Corruption;
    use crate::eval::audit::{AuditConfig, ClassRow, CorruptionAccuracy, ThreatModelAccuracy};
    use crate::eval::calibration::{class_disparity, Calibration, ReliabilityBin};

    /// Bins at confidences 0.55, 0.75, 0.95 with the given accuracies and counts.
    pub(in crate::report) fn calibration(accuracies: [f64; 3], counts: [usize; 3]) -> Calibration {
        let bins: Vec<ReliabilityBin> = [0.55, 0.75, 0.95]
            .iter()
            .zip(accuracies.iter().zip(counts))
            .enumerate()
            .map(|(i, (&conf, (&accuracy, count)))| ReliabilityBin {
                lower: 0.5 + 0.2 * i as f64,
                upper: 0.7 + 0.2 * i as f64,
                count,
                mean_confidence: conf,
                accuracy,
            })
            .collect();
        let n: usize = counts.iter().sum();
        let ece = bins
            .iter()
            .map(|b| b.count as f64 / n as f64 * (b.accuracy - b.mean_confidence).abs())
            .sum();
        Calibration {
            n,
            ece,
            mce: 0.0,
            mean_confidence: 0.8,
            accuracy: 0.8,
            bins,
        }
    }

    /// A two-class audit on 1,000 images: `clean` and `robust` accuracies (per class: the
    /// first class `spread` above the second), and calibration `cal`.
    pub(in crate::report) fn audit(clean: f64, robust: f64, cal: Calibration) -> Audit {
        let n = 1000;
        let acc = |v: f64, k: usize| Accuracy::new((v * k as f64).round() as usize, k);
        let per_class = vec![
            ClassRow {
                class: 0,
                name: "T-shirt <top>".into(),
                clean: acc((clean + 0.05).min(1.0), n / 2),
                robust: acc((robust + 0.05).min(1.0), n / 2),
            },
            ClassRow {
                class: 1,
                name: "Shirt & co".into(),
                clean: acc(clean - 0.05, n / 2),
                robust: acc(robust - 0.05, n / 2),
            },
        ];
        let disparity = |robust: bool| {
            let a: Vec<Accuracy> = per_class
                .iter()
                .map(|r| if robust { r.robust } else { r.clean })
                .collect();
            class_disparity(&a).unwrap()
        };
        Audit {
            config: AuditConfig::new(ThreatModel::linf(0.1)),
            n,
            clean: acc(clean, n),
            robust: acc(robust, n),
            corruptions: vec![CorruptionAccuracy {
                corruption: Corruption::GaussianNoise,
                by_severity: (1..=5).map(|s| acc(clean - 0.05 * s as f64, n)).collect(),
            }],
            mean_corruption_accuracy: clean - 0.15,
            threat_models: vec![ThreatModelAccuracy {
                name: "other-norm".into(),
                description: "pgd-20x1 ce l2 eps=0.7 alpha=0.0875".into(),
                robust: acc(robust / 2.0, n),
            }],
            clean_disparity: disparity(false),
            robust_disparity: disparity(true),
            per_class,
            calibration_clean: cal.clone(),
            calibration_attacked: cal,
            noise_confidence: 0.5,
            noise_confidence_sd: 0.1,
            seconds: 12.0,
        }
    }

    pub(in crate::report) fn run<'a>(
        run: usize,
        name: &'a str,
        method: &'a str,
        audit: &'a Audit,
    ) -> AuditedRun<'a> {
        AuditedRun {
            run,
            name,
            method,
            augmented: false,
            audit,
        }
    }

    #[test]
    fn the_baseline_is_the_first_plain_standard_run() {
        let a = audit(0.8, 0.1, calibration([0.5, 0.7, 0.9], [1, 1, 1]));
        let mut runs = vec![run(0, "pgd", "pgd-at", &a), run(1, "aug", "standard", &a)];
        runs[1].augmented = true;
        assert_eq!(baseline(&runs), Some((0, false)));
        assert_eq!(runs[1].label(), "std+augment");
        runs.push(run(2, "std", "standard", &a));
        assert_eq!(baseline(&runs), Some((2, true)));
        assert_eq!(runs[2].label(), "std");
        assert_eq!(baseline(&[]), None);
    }

    #[test]
    fn a_run_attacked_at_another_radius_is_not_compared_on_robust_axes() {
        let cal = calibration([0.55, 0.75, 0.95], [100, 200, 700]);
        let standard = audit(0.9, 0.05, cal.clone());
        let mut other = audit(0.8, 0.6, cal);
        other.config.threat = ThreatModel::linf(0.2);
        let runs = [
            run(0, "std", "standard", &standard),
            run(1, "pgd", "pgd-at", &other),
        ];
        let rows = axis_rows(&runs, 0);
        assert_eq!(
            rows[0].cells[1].verdict,
            Some(Change::Worse),
            "clean compares"
        );
        let robust = &rows[1].cells[1];
        assert_eq!(robust.verdict, None);
        assert!(robust.not_compared.as_deref().unwrap().contains("ε=0.2"));
        assert!(class_changes(&runs, 0)[0].robust.is_empty());
    }
}
