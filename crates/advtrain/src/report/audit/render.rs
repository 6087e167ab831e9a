//! The audit comparison as HTML: the baseline sentence, the table of axes, the classes lost
//! most, the charts and the settings, every run-supplied string escaped.

use std::fmt::Write as _;

use super::stats::{Better, Difference, ECE_DRAWS};
use super::{
    attack_setting, audited_runs, axis_rows, baseline, class_changes, class_name, pct,
    reliability_lines, severity_lines, AuditedRun, Cell,
};
use crate::eval::audit::Audit;
use crate::eval::calibration::ClassDrop;
use crate::report::charts;
use crate::report::data::ReportData;
use crate::report::html::{duration, escape, note, swatch};

/// The section's heading, also what tests look for.
pub(crate) const TITLE: &str = "8. What adversarial training bought and cost";

/// Appends the section when at least one run has a current audit; runs without one get a
/// note. Nothing when no run has one.
pub(crate) fn audit_section(h: &mut String, data: &ReportData) {
    let runs = audited_runs(data);
    if runs.is_empty() {
        return;
    }
    let missing: Vec<&str> = data
        .runs
        .iter()
        .filter(|r| r.audit.is_none())
        .map(|r| r.name.as_str())
        .collect();
    h.push_str(&render_audit(&runs, &missing));
}

/// The whole section for `runs` (at least one), with a note for each run in `missing`.
pub fn render_audit(runs: &[AuditedRun<'_>], missing: &[&str]) -> String {
    let mut h = format!("<section id=\"audit\">\n<h2>{TITLE}</h2>\n");
    let Some((base, standard)) = baseline(runs) else {
        h.push_str("</section>\n");
        return h;
    };
    // The baseline's column first: every other column is read against it.
    let runs: Vec<AuditedRun<'_>> = std::iter::once(runs[base].clone())
        .chain(
            runs.iter()
                .enumerate()
                .filter(|&(i, _)| i != base)
                .map(|(_, r)| r.clone()),
        )
        .collect();
    let (runs, base) = (&runs[..], 0);
    baseline_sentence(&mut h, runs, base, standard);
    for name in missing {
        h.push_str(&note(
            name,
            "no audit of its current weights (audit.json, written by `advtrain eval --run DIR --audit`): not in this comparison",
        ));
    }
    axis_table(&mut h, runs, base);
    table_notes(&mut h, runs);
    class_changes_list(&mut h, runs, base);
    audit_charts(&mut h, runs);
    caption(&mut h, runs);
    h.push_str("</section>\n");
    h
}

fn column_title(r: &AuditedRun<'_>) -> String {
    format!(
        "{}{} ({})",
        swatch(r.run),
        escape(r.name),
        escape(&r.label())
    )
}

fn baseline_sentence(h: &mut String, runs: &[AuditedRun<'_>], base: usize, standard: bool) {
    let b = column_title(&runs[base]);
    let why = if standard {
        "the first audited run trained with the standard method and without augmentation"
    } else {
        "the first audited run, as none was trained with the standard method without augmentation"
    };
    let _ = writeln!(
        h,
        "<p>Baseline: <b>{b}</b>, {why}. Each other column gives its value, its difference from the baseline in percentage points (pp) with the 95% interval, and the verdict at 95%: <span class=\"better\">better</span> or <span class=\"worse\">worse</span> when the interval excludes 0, <span class=\"same\">no difference</span> when it holds 0.</p>"
    );
    if runs.len() == 1 {
        h.push_str(
            "<p class=\"note\">Only one run has an audit, so nothing is compared: audit a standard run too to see what adversarial training changed.</p>\n",
        );
    }
}

fn axis_table(h: &mut String, runs: &[AuditedRun<'_>], base: usize) {
    h.push_str("<div class=\"wide\"><table class=\"audit\">\n<tr><th>axis</th>");
    for (i, r) in runs.iter().enumerate() {
        let tag = if i == base {
            "<br><span class=\"small\">baseline</span>"
        } else {
            ""
        };
        let _ = write!(h, "<th>{}{tag}</th>", column_title(r));
    }
    h.push_str("</tr>\n");
    for row in axis_rows(runs, base) {
        let arrow = match row.better {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        };
        let _ = write!(
            h,
            "<tr><td>{}<br><span class=\"small\">{}; {arrow}</span></td>",
            escape(&row.axis),
            escape(&row.detail)
        );
        for cell in &row.cells {
            let _ = write!(h, "<td class=\"num\">{}</td>", cell_html(cell));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table></div>\n");
}

/// A fraction as signed percentage points, `+0.00` for a zero of either sign.
fn signed(v: f64) -> String {
    let s = format!("{:+.2}", 100.0 * v);
    if s == "-0.00" {
        "+0.00".into()
    } else {
        s
    }
}

fn signed_pp(d: &Difference) -> String {
    format!(
        "{} pp [{}, {}]",
        signed(d.delta),
        signed(d.ci95[0]),
        signed(d.ci95[1])
    )
}

fn cell_html(cell: &Cell) -> String {
    let mut parts = vec![cell.value.map_or_else(|| "–".to_string(), pct)];
    if let (Some(d), Some(v)) = (&cell.difference, cell.verdict) {
        parts.push(format!("<span class=\"small\">{}</span>", signed_pp(d)));
        parts.push(format!("<span class=\"{}\">{}</span>", v.css(), v.word()));
    }
    if let Some(why) = &cell.not_compared {
        parts.push(format!("<span class=\"small\">{}</span>", escape(why)));
    }
    if !cell.note.is_empty() {
        parts.push(format!(
            "<span class=\"small\">{}</span>",
            escape(&cell.note)
        ));
    }
    parts.join("<br>")
}

fn table_notes(h: &mut String, runs: &[AuditedRun<'_>]) {
    let versions: usize = runs[0].audit.corruptions.len() * 5;
    let _ = writeln!(
        h,
        "<p class=\"small\">How the intervals are made. Accuracies: Newcombe's hybrid score interval for the difference of two proportions; the runs were scored on the same test images, whose outcomes are positively correlated, so these intervals are conservative. A mean over the 5 severities of a corruption, or over all {versions} corrupted versions, is counted as an accuracy on the n test images (for the interval's width): conservative as well, since the corrupted versions of one image are correlated. Class spread: normal approximation, the best and the worst class's variances summed (each with Agresti and Coull's two successes and two failures added, so that a class at 100% still has one). Calibration error: a parametric bootstrap from the reliability bins ({ECE_DRAWS} draws per run, each bin's accuracy redrawn as binomial with its confidence fixed, from the accuracy with two hits and two misses added; percentile interval, corrected for the bootstrap's bias). Confidence on noise: normal approximation over the noise images.</p>"
    );
}

fn drop_item(audit: &Audit, d: &ClassDrop) -> String {
    let change = Difference {
        delta: -d.drop,
        ci95: [-d.ci95[1], -d.ci95[0]],
    };
    let v = change.verdict(Better::Higher);
    format!(
        "{} {} <span class=\"{}\">{}</span>",
        escape(&class_name(audit, d.class)),
        signed_pp(&change),
        v.css(),
        v.word()
    )
}

fn class_changes_list(h: &mut String, runs: &[AuditedRun<'_>], base: usize) {
    let changes = class_changes(runs, base);
    if changes.is_empty() {
        return;
    }
    h.push_str("<h3>Which classes adversarial training lost most on</h3>\n<p class=\"small\">Per run, the classes whose clean accuracy fell most against the baseline, and those whose robust accuracy changed most either way, each change with its 95% Newcombe interval.</p>\n<table>\n<tr><th>run</th><th>largest clean-accuracy drops</th><th>largest robust-accuracy changes</th></tr>\n");
    for c in &changes {
        let r = &runs[c.column];
        let list = |drops: &[ClassDrop]| -> String {
            if drops.is_empty() {
                return "<span class=\"note\">not compared</span>".into();
            }
            drops
                .iter()
                .map(|d| drop_item(r.audit, d))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            column_title(r),
            list(&c.clean),
            list(&c.robust)
        );
    }
    h.push_str("</table>\n");
}

fn push_chart(h: &mut String, chart: Result<String, String>) {
    match chart {
        Ok(svg) => h.push_str(&svg),
        Err(e) => h.push_str(&note("chart", &e)),
    }
    h.push('\n');
}

fn audit_charts(h: &mut String, runs: &[AuditedRun<'_>]) {
    h.push_str("<div class=\"charts\">\n");
    push_chart(h, charts::severity_chart(&severity_lines(runs)));
    push_chart(
        h,
        charts::reliability_chart("Reliability, clean", &reliability_lines(runs, false)),
    );
    push_chart(
        h,
        charts::reliability_chart("Reliability under attack", &reliability_lines(runs, true)),
    );
    h.push_str("</div>\n<p class=\"small\">Left: accuracy at each corruption severity, averaged over the corruptions. Middle and right: reliability diagrams, accuracy against mean confidence of each non-empty confidence bin; a calibrated model lies on the dashed diagonal, an over-confident one below it.</p>\n");
}

fn caption(h: &mut String, runs: &[AuditedRun<'_>]) {
    h.push_str("<p class=\"small\">What these costs mean and what to do about them: the practitioner's guide, <code>docs/guide.md</code> in the advtrain repository. Audit settings per run:</p>\n<ul class=\"small\">\n");
    for r in runs {
        let a = r.audit;
        let other = a
            .threat_models
            .iter()
            .find(|t| t.name == "other-norm")
            .map_or_else(|| "not measured".to_string(), |t| t.description.clone());
        let _ = writeln!(
            h,
            "<li>{}{}: n={}, {}, other norm: {}, spatial grid of {} rotations and shifts, {} noise images, {} corruptions at 5 severities; took {}</li>",
            swatch(r.run),
            escape(r.name),
            a.n,
            escape(&attack_setting(a)),
            escape(&other),
            a.config.grid.len(),
            a.config.noise_examples,
            a.corruptions.len(),
            duration(a.seconds)
        );
    }
    h.push_str("</ul>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::audit::tests::{audit, calibration, run};
    use crate::report::audit::Change;

    #[test]
    fn the_section_renders_verdicts_and_escapes_names() {
        let standard = audit(0.9, 0.05, calibration([0.55, 0.75, 0.95], [100, 200, 700]));
        let robust = audit(0.8, 0.6, calibration([0.45, 0.6, 0.8], [300, 400, 300]));
        let runs = [
            run(0, "std <run>", "standard", &standard),
            run(1, "pgd & co", "pgd-at", &robust),
        ];
        let html = render_audit(&runs, &["no-audit\"run"]);
        assert!(html.contains(&format!("<h2>{TITLE}</h2>")));
        assert!(html.contains("What adversarial training bought and cost"));
        assert!(html.contains("Baseline: <b>") && html.contains("std &lt;run&gt;"));
        assert!(html.contains("pgd &amp; co (pgd-at)") && html.contains("(std)"));
        assert!(!html.contains("std <run>") && !html.contains("pgd & co"));
        assert!(html.contains("T-shirt &lt;top&gt;") && html.contains("Shirt &amp; co"));
        assert!(html.contains("no-audit&quot;run"));
        // Clean accuracy fell 10 points, robust rose 55: both clear on 1,000 images.
        assert!(html.contains("<span class=\"worse\">worse</span>"));
        assert!(html.contains("<span class=\"better\">better</span>"));
        // The noise confidence is equal in both: no difference.
        assert!(html.contains("<span class=\"same\">no difference</span>"));
        assert!(
            html.contains("-10.00 pp"),
            "the clean accuracy's difference"
        );
        assert!(html.contains("severity 1–5: 85.0, 80.0, 75.0, 70.0, 65.0%"));
        assert!(html.contains("docs/guide.md"));
        assert!(html.contains("Which classes adversarial training lost most on"));
        assert_eq!(
            html.matches("<svg").count(),
            3,
            "severity and two reliability charts"
        );
        assert!(html.contains("gaussian-noise"));
        assert!(html.contains("pgd-20x1 ce l2 eps=0.7"));

        let rows = axis_rows(&runs, 0);
        let clean = &rows[0].cells[1];
        assert_eq!(clean.verdict, Some(Change::Worse));
        assert_eq!(
            rows[0].cells[0].verdict, None,
            "the baseline is not compared"
        );
        assert_eq!(rows[1].cells[1].verdict, Some(Change::Better));
        let names: Vec<&str> = rows.iter().map(|r| r.axis.as_str()).collect();
        assert_eq!(names.len(), 2 + 1 + 2 + 4 + 3, "{names:?}");
    }
}
