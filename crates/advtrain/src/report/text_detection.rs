//! The text report's detection section: each filter at its operating point (the threshold
//! at a fixed false-positive rate on benign validation texts), its detection rate clean and
//! under every attack, and ROC and precision–recall curves with their areas, drawn as
//! inline SVG so the report stays one self-contained file.

use std::fmt::Write as _;

use crate::io::escape_html as escape;
use crate::text::detection::Curve;
use crate::text::evasion::EvasionRecord;

/// Colours of the curves: clean first, then one per attack.
const COLOURS: [&str; 7] = [
    "#222222", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];
/// Side of one curve plot, in pixels.
const SIDE: f64 = 240.0;
/// Margin around the plot area for the axis labels.
const MARGIN: f64 = 34.0;

/// One filter's evasion records, with how to name it.
pub struct DetectionRow<'a> {
    /// The run (or filter) name.
    pub name: &'a str,
    /// How it was trained, one line.
    pub training: String,
    /// Its evasion records, clean first.
    pub records: &'a [EvasionRecord],
}

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

/// Appends the section to `h` (nothing if no row has a record).
pub fn render_detection(h: &mut String, rows: &[DetectionRow<'_>]) {
    if rows.iter().all(|r| r.records.is_empty()) {
        return;
    }
    h.push_str("<h2>Detection at a fixed false-positive rate (evasion)</h2>\n");
    h.push_str(
        "<p class=\"small\">Threat model: evasion. Only malicious test texts are attacked; \
         benign texts are never modified. The threshold is chosen on benign texts no tested text \
         is among (the validation split; for prompt-injection, whose training negatives are \
         synthetic, half of the test corpus's benign rows, held out of the test) to give the \
         target false-positive rate. TPR: \
         malicious test texts detected (score ≥ threshold), with its 95% interval. Evaded: of \
         the malicious texts detected clean, the share the attack got below the threshold. \
         Accuracy at the threshold (benign as they are, malicious attacked) is the secondary \
         figure.</p>\n",
    );
    render_table(h, rows);
    for r in rows.iter().filter(|r| !r.records.is_empty()) {
        render_curves(h, r);
    }
}

fn attack_columns(rows: &[DetectionRow<'_>]) -> Vec<(String, usize)> {
    let mut attacks: Vec<(String, usize)> = Vec::new();
    for rec in rows.iter().flat_map(|r| r.records.iter()) {
        let key = (rec.attack.clone(), rec.budget);
        if rec.attack != "none" && !attacks.contains(&key) {
            attacks.push(key);
        }
    }
    attacks.sort();
    attacks
}

fn render_table(h: &mut String, rows: &[DetectionRow<'_>]) {
    let attacks = attack_columns(rows);
    h.push_str("<table>\n<tr><th>run</th><th>training</th><th>FPR target · threshold</th><th>test FPR</th><th>TPR clean</th><th>ROC AUC · PR AUC</th><th>accuracy</th>");
    for (a, b) in &attacks {
        let _ = write!(
            h,
            "<th>{} (budget {b})<br><span class=\"small\">TPR · evaded · edits · queries per success</span></th>",
            escape(a)
        );
    }
    h.push_str("</tr>\n");
    for r in rows.iter().filter(|r| !r.records.is_empty()) {
        let base = &r.records[0];
        let t = &base.threshold;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{} · {:.4}{}</td><td class=\"num\">{}<br><span class=\"small\">{} benign</span></td><td class=\"num\"><b>{}</b><br><span class=\"small\">[{}, {}] of {}</span></td><td class=\"num\">{:.4} · {:.4}</td><td class=\"num\">{}</td>",
            escape(r.name),
            escape(&r.training),
            pct(t.target_fpr),
            t.threshold,
            if t.hard_label { " (labels only)" } else { "" },
            pct(base.test_fpr.value),
            base.benign,
            pct(base.tpr_clean.value),
            pct(base.tpr_clean.ci95[0]),
            pct(base.tpr_clean.ci95[1]),
            base.malicious,
            base.roc_clean.auc,
            base.pr_clean.auc,
            pct(base.accuracy_clean.value),
        );
        for (a, b) in &attacks {
            match r.records.iter().find(|x| &x.attack == a && x.budget == *b) {
                Some(x) => {
                    let _ = write!(
                        h,
                        "<td class=\"num\"><b>{}</b> · {} · {:.2} · {:.0}<br><span class=\"small\">ROC AUC {:.3}, accuracy {}</span></td>",
                        pct(x.tpr_attacked.value),
                        pct(x.attack_success_rate.value),
                        x.mean_edits,
                        x.mean_queries_per_success,
                        x.roc_attacked.auc,
                        pct(x.accuracy_attacked.value)
                    );
                }
                None => h.push_str("<td class=\"note\">not run</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

/// ROC and PR plots of one filter: clean and under each attack.
fn render_curves(h: &mut String, row: &DetectionRow<'_>) {
    let _ = writeln!(h, "<h3>{}: ROC and precision–recall</h3>", escape(row.name));
    let mut legend = String::new();
    let mut roc: Vec<(&Curve, &str)> = Vec::new();
    let mut pr: Vec<(&Curve, &str)> = Vec::new();
    for (k, rec) in row.records.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let (curve_roc, curve_pr, label) = if rec.attack == "none" {
            (&rec.roc_clean, &rec.pr_clean, "clean".to_string())
        } else {
            (
                &rec.roc_attacked,
                &rec.pr_attacked,
                format!("{} (budget {})", rec.attack, rec.budget),
            )
        };
        roc.push((curve_roc, colour));
        pr.push((curve_pr, colour));
        let _ = write!(
            legend,
            "<span style=\"color:{colour}\">■</span> {} (ROC AUC {:.3}, PR AUC {:.3}) ",
            escape(&label),
            curve_roc.auc,
            curve_pr.auc
        );
    }
    h.push_str("<div>");
    h.push_str(&svg_plot(&roc, "false-positive rate", "true-positive rate"));
    h.push_str(&svg_plot(&pr, "recall", "precision"));
    let _ = writeln!(h, "</div>\n<p class=\"small\">{legend}</p>");
}

/// One square plot of `curves` over `[0, 1]²`.
fn svg_plot(curves: &[(&Curve, &str)], x_label: &str, y_label: &str) -> String {
    let size = SIDE + 2.0 * MARGIN;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" role=\"img\" aria-label=\"{y_label} against {x_label}\">\
         <rect x=\"{MARGIN}\" y=\"{MARGIN}\" width=\"{SIDE}\" height=\"{SIDE}\" fill=\"none\" stroke=\"#999\"/>"
    );
    for tick in [0.0, 0.5, 1.0] {
        let (x, y) = at(tick, tick);
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{tick}</text>\
             <text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"10\" text-anchor=\"end\">{tick}</text>",
            MARGIN + SIDE + 14.0,
            MARGIN - 4.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{x_label}</text>\
         <text x=\"12\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 12 {:.1})\">{y_label}</text>",
        MARGIN + SIDE / 2.0,
        size - 4.0,
        MARGIN + SIDE / 2.0,
        MARGIN + SIDE / 2.0
    );
    for (curve, colour) in curves {
        let points: Vec<String> = curve
            .points
            .iter()
            .map(|p| {
                let (x, y) = at(p[0], p[1]);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.6\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    s.push_str("</svg>");
    s
}

/// Pixel position of `(x, y)` in `[0, 1]²`, y upwards.
fn at(x: f64, y: f64) -> (f64, f64) {
    (
        MARGIN + x.clamp(0.0, 1.0) * SIDE,
        MARGIN + (1.0 - y.clamp(0.0, 1.0)) * SIDE,
    )
}
