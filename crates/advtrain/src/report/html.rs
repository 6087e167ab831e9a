//! The report as one self-contained HTML file: inline SVG charts, the example grid as a
//! base64 data URI, inline CSS, no scripts and no network, so it can be mailed or archived
//! and still open years later.

use std::fmt::Write as _;

use base64::Engine as _;

use super::charts::{self, run_colour_css};
use super::data::{self, ReportData};
use crate::eval::checks::Verdict;
pub use crate::io::escape_html as escape;

/// The one-line note that stands in for a section a run has no data for.
pub fn note(run: &str, what: &str) -> String {
    format!("<p class=\"note\">{}: {}</p>\n", escape(run), escape(what))
}

/// The most monitor events listed per run, and class rows per table: enough to read, and
/// a long history or a thousand-class data set cannot grow the report without bound.
pub const MAX_LISTED: usize = 200;

/// "showing N of M WHAT (...)" under a list or chart that leaves some out.
pub(crate) fn showing(shown: usize, total: usize, what: &str, how: &str) -> String {
    format!("<p class=\"small\">showing {shown} of {total} {what} ({how})</p>\n")
}

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

fn ci(c: [f64; 2]) -> String {
    format!("[{:.2}, {:.2}]", 100.0 * c[0], 100.0 * c[1])
}

pub(crate) fn swatch(run: usize) -> String {
    format!(
        "<span class=\"swatch\" style=\"background:{}\"></span>",
        run_colour_css(run)
    )
}

pub(crate) fn duration(seconds: f64) -> String {
    if seconds >= 90.0 {
        format!("{:.0} s ({:.1} min)", seconds, seconds / 60.0)
    } else {
        format!("{seconds:.1} s")
    }
}

pub(crate) const STYLE: &str = "
body { font-family: sans-serif; margin: 24px auto; max-width: 1240px; color: #222; background: #fff; }
h1 { margin-bottom: 4px; }
h2 { border-bottom: 2px solid #ccc; padding-bottom: 4px; margin-top: 36px; }
h3 { margin-bottom: 6px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; font-size: 14px; }
th { background: #f0f0f0; }
td.num { text-align: right; white-space: nowrap; }
.note { color: #666; font-style: italic; margin: 4px 0; }
.meta { color: #555; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; border-radius: 2px; vertical-align: middle; }
.row { display: flex; flex-wrap: wrap; gap: 0 16px; }
.row > section { flex: 1 1 600px; min-width: 0; }
.charts { display: flex; flex-wrap: wrap; gap: 8px 24px; }
.charts p.small { max-width: 380px; }
.pass { color: #006e2e; font-weight: bold; }
.warn { color: #b00000; font-weight: bold; }
.skip { color: #777; font-weight: bold; }
.better { color: #006e2e; font-weight: bold; }
.worse { color: #b00000; font-weight: bold; }
.same { color: #555; }
tr.warn-row td { background: #fff0f0; }
.bar { display: inline-block; height: 10px; vertical-align: middle; margin-right: 6px; }
.small { font-size: 12px; color: #555; }
.wide { overflow-x: auto; }
table.audit { font-size: 13px; }
table.audit td.num { white-space: normal; min-width: 120px; }
table.audit td:first-child { min-width: 150px; }
ul.events li { font-size: 14px; }
";

/// Renders the whole report.
pub fn render_html(data: &ReportData) -> String {
    let mut h = String::new();
    let names: Vec<String> = data.runs.iter().map(|r| escape(&r.name)).collect();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>advtrain report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>advtrain report</h1>\n<p class=\"meta\">{} run(s): {}. Written by advtrain {}. \
         Accuracies are on the test set with 95% Wilson intervals in brackets.</p>\n",
        names.join(", "),
        data.runs.len(),
        names.join(", "),
        crate::VERSION
    );
    summary_section(&mut h, data);
    // The two cross-run charts side by side: one screen shows how the runs compare.
    h.push_str("<div class=\"row\">\n");
    tradeoff_section(&mut h, data);
    eps_section(&mut h, data);
    h.push_str("</div>\n");
    training_section(&mut h, data);
    examples_section(&mut h, data);
    per_class_section(&mut h, data);
    checks_section(&mut h, data);
    super::audit::audit_section(&mut h, data);
    h.push_str("</body>\n</html>\n");
    h
}

fn summary_section(h: &mut String, data: &ReportData) {
    h.push_str("<section id=\"summary\">\n<h2>1. Summary</h2>\n<table>\n<tr><th>run</th><th>method</th><th>threat model</th><th>clean accuracy</th><th>robust accuracy (worst, summary.json)</th><th>robust accuracy per attack at the training ε</th><th>training time</th><th>checklist</th></tr>\n");
    for (i, r) in data.runs.iter().enumerate() {
        let s = &r.summary;
        let robust = match (s.robust_accuracy, s.robust_ci95) {
            (Some(v), Some(c)) => format!(
                "{} {}<br><span class=\"small\">{}</span>",
                pct(v),
                ci(c),
                escape(s.robust_attack.as_deref().unwrap_or(""))
            ),
            (Some(v), None) => pct(v),
            _ => "not measured".into(),
        };
        let per_attack: Vec<String> = r
            .evals_at_training_threat()
            .map(|e| {
                format!(
                    "<b>{}</b> {} {} <span class=\"small\">n={}, {}</span>",
                    escape(&e.record.attack),
                    pct(e.record.robust_accuracy),
                    ci(e.record.robust_ci95),
                    e.record.n,
                    escape(&e.file)
                )
            })
            .collect();
        let per_attack = if per_attack.is_empty() {
            "<span class=\"note\">no eval-*.json at the training ε</span>".to_string()
        } else {
            per_attack.join("<br>")
        };
        let checks = match r.checklist_verdict() {
            Some(v) if v == "all pass" => format!("<span class=\"pass\">{v}</span>"),
            Some(v) => format!("<span class=\"warn\">{}</span>", escape(&v)),
            None => "<span class=\"note\">not run</span>".into(),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}{}</td><td>{}</td><td>{} ε={}</td><td class=\"num\">{} {}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            swatch(i),
            escape(&r.name),
            escape(&s.method),
            s.norm,
            s.eps,
            pct(s.clean_accuracy),
            ci(s.clean_ci95),
            robust,
            per_attack,
            duration(s.train_seconds),
            checks
        );
    }
    h.push_str("</table>\n");
    for r in &data.runs {
        if let Some(reason) = &r.summary.stopped_early {
            h.push_str(&note(&r.name, &format!("training stopped early: {reason}")));
        }
    }
    h.push_str("</section>\n");
}

fn chart_or_note(h: &mut String, chart: Result<String, String>) {
    match chart {
        Ok(svg) => {
            h.push_str(&svg);
            h.push('\n');
        }
        Err(e) => h.push_str(&note("chart", &e)),
    }
}

fn tradeoff_section(h: &mut String, data: &ReportData) {
    h.push_str("<section id=\"tradeoff\">\n<h2>2. Robustness–accuracy trade-off</h2>\n");
    let points = data::tradeoff_points(data);
    if points.is_empty() {
        h.push_str(&note(
            "all runs",
            "no run has a robust accuracy in summary.json, so there is no trade-off to plot",
        ));
    } else {
        h.push_str("<p class=\"small\">Each point is one run: clean test accuracy against the lowest robust accuracy any evaluation at its training ε found (summary.json). Up and to the right is better.</p>\n");
        chart_or_note(h, charts::tradeoff_chart(&points));
        for r in &data.runs {
            if r.summary.robust_accuracy.is_none() {
                h.push_str(&note(
                    &r.name,
                    "no robust accuracy in summary.json; not plotted",
                ));
            }
        }
    }
    h.push_str("</section>\n");
}

fn eps_section(h: &mut String, data: &ReportData) {
    h.push_str("<section id=\"eps-curve\">\n<h2>3. Accuracy vs ε</h2>\n");
    let curves = data::eps_curves(data);
    if curves.is_empty() {
        h.push_str(&note(
            "all runs",
            "no ε-curve recorded (run `advtrain eval --eps-curve 0,0.05,0.1` or `advtrain eval --checks`)",
        ));
    } else {
        let norm = data.runs[curves[0].run].summary.norm.to_string();
        chart_or_note(h, charts::eps_chart(&curves, &norm));
        h.push_str("<ul class=\"small\">\n");
        for c in &curves {
            let _ = writeln!(
                h,
                "<li>{}{}: {}</li>",
                swatch(c.run),
                escape(&c.name),
                escape(&c.source)
            );
        }
        h.push_str("</ul>\n");
        for (i, r) in data.runs.iter().enumerate() {
            if !curves.iter().any(|c| c.run == i) {
                h.push_str(&note(
                    &r.name,
                    "no ε-curve recorded (run `advtrain eval --eps-curve 0,0.05,0.1`)",
                ));
            }
        }
    }
    h.push_str("</section>\n");
}

fn training_section(h: &mut String, data: &ReportData) {
    h.push_str("<section id=\"training\">\n<h2>4. Training curves</h2>\n");
    for (i, r) in data.runs.iter().enumerate() {
        let Some(curves) = data::training_curves(r) else {
            h.push_str(&note(
                &r.name,
                "no metrics.jsonl (or it is empty); training curves left out",
            ));
            continue;
        };
        let _ = writeln!(h, "<h3>{}{}</h3>", swatch(i), escape(&r.name));
        match charts::training_charts(&curves, i) {
            Ok((loss, acc)) => {
                let _ = writeln!(h, "<div class=\"charts\">{loss}{acc}</div>");
            }
            Err(e) => h.push_str(&note(&r.name, &e)),
        }
        let mut facts = Vec::new();
        if let Some(b) = curves.best_epoch {
            facts.push(format!("best epoch: {b} (green line)"));
        }
        if let Some(a) = &curves.val_attack {
            facts.push(format!("validation PGD: {}", escape(a)));
        }
        if !facts.is_empty() {
            let _ = writeln!(h, "<p class=\"small\">{}</p>", facts.join("; "));
        }
        let longest = [&curves.train_loss, &curves.val_clean, &curves.val_pgd]
            .iter()
            .map(|s| s.len())
            .max()
            .unwrap_or(0);
        if longest > charts::MAX_CHART_POINTS {
            h.push_str(&showing(
                charts::MAX_CHART_POINTS,
                longest,
                "epochs in each chart line",
                "evenly spaced, with the first, the last, the lowest and the highest",
            ));
        }
        events_list(h, &curves.events);
    }
    h.push_str("</section>\n");
}

/// The monitor's events, the first [`MAX_LISTED`] of them.
fn events_list(h: &mut String, events: &[crate::train::MonitorEvent]) {
    if events.is_empty() {
        h.push_str("<p class=\"small\">The health monitor raised no events.</p>\n");
        return;
    }
    h.push_str("<p>Monitor events (dashed lines):</p>\n<ul class=\"events\">\n");
    for e in events.iter().take(MAX_LISTED) {
        let c = charts::event_colour(&e.kind);
        let _ = writeln!(
            h,
            "<li><b style=\"color:#{:02x}{:02x}{:02x}\">{}</b> epoch {}{}: {}</li>",
            c.0,
            c.1,
            c.2,
            escape(&e.kind),
            e.epoch,
            e.batch.map_or(String::new(), |b| format!(", batch {b}")),
            escape(&e.message)
        );
    }
    h.push_str("</ul>\n");
    if events.len() > MAX_LISTED {
        let how = format!(
            "the first ones; the charts mark the first {}; all are in metrics.jsonl",
            charts::MAX_EVENT_LINES
        );
        h.push_str(&showing(MAX_LISTED, events.len(), "monitor events", &how));
    }
}

fn examples_section(h: &mut String, data: &ReportData) {
    h.push_str("<section id=\"examples\">\n<h2>5. Adversarial examples</h2>\n");
    let mut grids = Vec::new();
    for (i, r) in data.runs.iter().enumerate() {
        match &r.examples {
            Ok(png) => {
                grids.push(format!(
                    "<div><h3>{}{}</h3>\n<p class=\"small\">The first {} test images attacked with PGD-{} at {} ε={}: clean image, perturbation (grey = 0, black/white = ∓ε), adversarial image; red rows were fooled.</p>\n<img alt=\"adversarial examples of {}\" src=\"data:image/png;base64,{}\"></div>",
                    swatch(i),
                    escape(&r.name),
                    super::adversarial::REPORT_EXAMPLES,
                    super::adversarial::REPORT_PGD_STEPS,
                    r.summary.norm,
                    r.summary.eps,
                    escape(&r.name),
                    base64::engine::general_purpose::STANDARD.encode(png)
                ));
            }
            Err(why) => h.push_str(&note(
                &r.name,
                &format!("adversarial examples left out: {why}"),
            )),
        }
    }
    if !grids.is_empty() {
        let _ = writeln!(h, "<div class=\"charts\">{}</div>", grids.join("\n"));
    }
    h.push_str("</section>\n");
}

fn per_class_section(h: &mut String, data: &ReportData) {
    h.push_str("<section id=\"per-class\">\n<h2>6. Per-class accuracy</h2>\n");
    for (i, r) in data.runs.iter().enumerate() {
        let Some((source, rows)) = data::per_class(r) else {
            h.push_str(&note(
                &r.name,
                "no eval-*.json with per-class results; per-class accuracy left out",
            ));
            continue;
        };
        let colour = run_colour_css(i);
        let _ = writeln!(
            h,
            "<h3>{}{}</h3>\n<p class=\"small\">From {}.</p>\n<table>\n<tr><th>class</th><th>n</th><th>clean accuracy</th><th>robust accuracy</th></tr>",
            swatch(i),
            escape(&r.name),
            escape(&source)
        );
        for row in rows.iter().take(MAX_LISTED) {
            let _ = writeln!(
                h,
                "<tr><td>{} {}</td><td class=\"num\">{}</td><td class=\"num\"><span class=\"bar\" style=\"width:{:.0}px;background:{colour};opacity:0.45\"></span>{:.1}%</td><td class=\"num\"><span class=\"bar\" style=\"width:{:.0}px;background:{colour}\"></span>{:.1}%</td></tr>",
                row.class,
                escape(&row.name),
                row.n,
                row.clean_pct * 1.5,
                row.clean_pct,
                row.robust_pct * 1.5,
                row.robust_pct
            );
        }
        h.push_str("</table>\n");
        if rows.len() > MAX_LISTED {
            h.push_str(&showing(
                MAX_LISTED,
                rows.len(),
                "classes",
                "the first ones; all are in the eval file",
            ));
        }
    }
    h.push_str("</section>\n");
}

fn figures(c: &crate::eval::checks::Check) -> String {
    c.figures
        .iter()
        .map(|(k, v)| {
            let value = if v.fract() == 0.0 && v.abs() < 1e12 {
                format!("{v:.0}")
            } else {
                format!("{v:.4}")
            };
            format!("{} = {value}", escape(k))
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn checks_section(h: &mut String, data: &ReportData) {
    h.push_str("<section id=\"checks\">\n<h2>7. Sanity checklist</h2>\n");
    for (i, r) in data.runs.iter().enumerate() {
        let Some(checks) = &r.checks else {
            h.push_str(&note(
                &r.name,
                "no checks.json (run `advtrain eval --checks --limit 1000`); checklist left out",
            ));
            continue;
        };
        let _ = writeln!(h, "<h3>{}{}</h3>", swatch(i), escape(&r.name));
        if crate::eval::checks::all_pass(checks) {
            h.push_str("<p class=\"pass\">Every check passed: nothing suggests the robust accuracy is inflated.</p>\n");
        } else {
            h.push_str("<p class=\"warn\">Some checks warn: the robust accuracy may be too high (gradient masking or a weak attack). Read the warnings before trusting it.</p>\n");
        }
        h.push_str("<table>\n<tr><th>#</th><th>check</th><th>verdict</th><th>what it found</th><th>figures</th></tr>\n");
        for c in checks {
            let (class, word) = match c.verdict {
                Verdict::Pass => ("pass", "PASS"),
                Verdict::Warn => ("warn", "WARN"),
                Verdict::Skip => ("skip", "SKIP"),
            };
            let _ = writeln!(
                h,
                "<tr{}><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td><td>{}</td><td class=\"small\">{}</td></tr>",
                if c.verdict == Verdict::Warn { " class=\"warn-row\"" } else { "" },
                c.id,
                escape(&c.name),
                escape(&c.detail),
                figures(c)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</section>\n");
}
