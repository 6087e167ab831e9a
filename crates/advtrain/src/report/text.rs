//! The report for text runs (the report layer shows both modalities; the text side reads
//! `text::run` records): accuracy under each attack, attack success rate and mean edits for
//! every run side by side (so "before" and "after" adversarial training read off one table),
//! training history, and example evasions with the edits highlighted.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::text_detection::{render_detection, DetectionRow};
use super::STYLE;
use crate::error::Result;
use crate::io::escape_html as escape;
use crate::text::attack::TextAttackResult;
use crate::text::edits::highlight_html;
use crate::text::eval::TextEvalRecord;
use crate::text::evasion::EvasionRecord;
use crate::text::evasion_files::{evasion_stem, read_evasion_examples};
use crate::text::run::{TextRun, TextRunConfig};

/// Examples of successful evasions shown per run and attack.
const EXAMPLES_SHOWN: usize = 4;
/// Characters of an example shown around its first edit.
const EXAMPLE_CHARS: usize = 360;

struct Loaded {
    name: String,
    run: TextRun,
    config: TextRunConfig,
}

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

/// A one-line description of how a run was trained.
fn training_label(config: &TextRunConfig) -> String {
    use crate::text::train::TextMethod;
    let t = &config.train;
    let mut s = format!("{} · {}", t.model.kind, t.method.name());
    match &t.method {
        TextMethod::Standard => {}
        TextMethod::Adversarial {
            attack,
            lambda,
            fraction,
            ..
        } => {
            let _ = write!(
                s,
                " ({} budget {}, λ={lambda}, {:.0}% of texts per epoch)",
                attack.name(),
                attack.budget(),
                100.0 * fraction
            );
        }
        TextMethod::EmbeddingAt { eps, steps, lambda } => {
            let _ = write!(s, " (ε={eps} relative, {steps} steps, λ={lambda})");
        }
    }
    if !t.canonicalizer.is_identity() {
        s.push_str(" + canonicalisation");
    }
    s
}

/// Renders the report for text runs and writes it to `out`.
pub fn write_text_report<P: AsRef<Path>>(dirs: &[P], out: &Path) -> Result<PathBuf> {
    let mut runs = Vec::new();
    for d in dirs {
        let (run, config) = TextRun::open(d.as_ref())?;
        let name = d
            .as_ref()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| d.as_ref().display().to_string());
        runs.push(Loaded { name, run, config });
    }
    let html = render(&runs)?;
    crate::io::write_atomic(out, html.as_bytes())?;
    Ok(out.to_path_buf())
}

fn render(runs: &[Loaded]) -> Result<String> {
    let mut h = String::new();
    let names: Vec<String> = runs.iter().map(|r| escape(&r.name)).collect();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>advtrain text report: {}</title>\n<style>{STYLE}\nmark {{ background: #ffd54a; }}\n\
         .pair td {{ font-family: monospace; white-space: pre-wrap; word-break: break-word; max-width: 560px; }}</style>\n\
         </head>\n<body>\n<h1>advtrain text report</h1>\n<p class=\"meta\">{} run(s): {}. Written by advtrain {}. \
         Accuracies are on each run's held-out test texts; an attack's budget is in character \
         edits per text (each edit is one step of edit distance).</p>\n",
        names.join(", "),
        runs.len(),
        names.join(", "),
        crate::VERSION
    );
    render_data(&mut h, runs)?;
    let evasion = runs
        .iter()
        .map(|r| r.run.evasion_records())
        .collect::<Result<Vec<_>>>()?;
    let rows: Vec<DetectionRow<'_>> = runs
        .iter()
        .zip(&evasion)
        .map(|(r, records)| DetectionRow {
            name: &r.name,
            training: training_label(&r.config),
            records,
        })
        .collect();
    render_detection(&mut h, &rows);
    let evals = runs
        .iter()
        .map(|r| r.run.evals())
        .collect::<Result<Vec<_>>>()?;
    render_table(&mut h, runs, &evals);
    render_training(&mut h, runs)?;
    render_examples(&mut h, runs, &evals)?;
    render_evasions(&mut h, runs, &evasion)?;
    h.push_str("</body>\n</html>\n");
    Ok(h)
}

/// Data provenance, stated once per distinct data set.
fn render_data(h: &mut String, runs: &[Loaded]) -> Result<()> {
    h.push_str("<h2>Data</h2>\n<ul>\n");
    let mut seen = Vec::new();
    for r in runs {
        if let Some(s) = r.run.summary()? {
            if !seen.contains(&s.provenance) {
                let _ = writeln!(
                    h,
                    "<li><b>{}</b>: {} training texts {:?}, {} test texts {:?} (classes {}). {}</li>",
                    escape(&s.dataset),
                    s.train_examples,
                    s.train_class_counts,
                    s.test_examples,
                    s.test_class_counts,
                    escape(&s.classes.join(", ")),
                    escape(&s.provenance)
                );
                seen.push(s.provenance);
            }
        }
    }
    h.push_str("</ul>\n");

    Ok(())
}

/// The comparison table: one row per run, one column group per attack.
fn render_table(h: &mut String, runs: &[Loaded], evals: &[Vec<TextEvalRecord>]) {
    let mut attacks: Vec<(String, usize)> = Vec::new();
    for rec in evals.iter().flatten() {
        if rec.attack != "none" && !attacks.contains(&(rec.attack.clone(), rec.budget)) {
            attacks.push((rec.attack.clone(), rec.budget));
        }
    }
    attacks.sort();
    h.push_str(
        "<h2>Accuracy under attack</h2>\n<table>\n<tr><th>run</th><th>training</th><th>clean</th>",
    );
    for (a, b) in &attacks {
        let _ = write!(
            h,
            "<th>{} (budget {b})<br><span class=\"small\">accuracy · success rate · mean edits · time</span></th>",
            escape(a)
        );
    }
    h.push_str("</tr>\n");
    for (r, e) in runs.iter().zip(evals) {
        let clean = e
            .iter()
            .find(|x| x.attack == "none")
            .or_else(|| e.first())
            .map(|x| pct(x.clean_accuracy))
            .unwrap_or_else(|| "–".into());
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{clean}</td>",
            escape(&r.name),
            escape(&training_label(&r.config))
        );
        for (a, b) in &attacks {
            match e.iter().find(|x| &x.attack == a && x.budget == *b) {
                Some(x) => {
                    let _ = write!(
                        h,
                        "<td class=\"num\"><b>{}</b> · {} · {:.2} · {:.0} s<br><span class=\"small\">{} texts</span></td>",
                        pct(x.robust_accuracy),
                        pct(x.attack_success_rate),
                        x.mean_edits,
                        x.seconds,
                        x.examples
                    );
                }
                None => h.push_str("<td class=\"note\">not run</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<p class=\"small\">Success rate: of the texts a model classified correctly, the share the attack turned wrong. Mean edits: over successful attacks.</p>\n");
}

/// Training history, one table per run.
fn render_training(h: &mut String, runs: &[Loaded]) -> Result<()> {
    h.push_str("<h2>Training</h2>\n");
    for r in runs {
        let epochs = r.run.epochs()?;
        let _ = writeln!(h, "<h3>{}</h3>", escape(&r.name));
        if epochs.is_empty() {
            h.push_str("<p class=\"note\">no epochs recorded</p>\n");
            continue;
        }
        h.push_str("<table>\n<tr><th>epoch</th><th>loss</th><th>train acc</th><th>val acc</th><th>attacked</th><th>attack success on train</th><th>time</th></tr>\n");
        let rows = table_rows(epochs.len(), super::html::MAX_LISTED);
        for row in &rows {
            let Some(i) = *row else {
                h.push_str("<tr><td colspan=\"7\" class=\"note\">…</td></tr>\n");
                continue;
            };
            let ep = &epochs[i];
            let _ = writeln!(
                h,
                "<tr><td class=\"num\">{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1} s</td></tr>",
                ep.epoch,
                ep.loss,
                pct(ep.train_accuracy),
                ep.val_accuracy.map(pct).unwrap_or_else(|| "–".into()),
                ep.attacked,
                ep.attack_success_rate.map(pct).unwrap_or_else(|| "–".into()),
                ep.seconds
            );
        }
        h.push_str("</table>\n");
        if epochs.len() > super::html::MAX_LISTED {
            h.push_str(&super::html::showing(
                rows.len() - 1,
                epochs.len(),
                "epochs",
                "the first and the last; all are in metrics.jsonl",
            ));
        }
    }

    Ok(())
}

/// The rows a table of `len` rows shows when it may show `max`: all of them, or the first
/// and the last halves with one `None` (an ellipsis row) between.
fn table_rows(len: usize, max: usize) -> Vec<Option<usize>> {
    if len <= max {
        return (0..len).map(Some).collect();
    }
    let head = max / 2;
    let tail = max - head;
    (0..head)
        .map(Some)
        .chain(std::iter::once(None))
        .chain((len - tail..len).map(Some))
        .collect()
}

/// Example evasions, with the edits marked.
fn render_examples(h: &mut String, runs: &[Loaded], evals: &[Vec<TextEvalRecord>]) -> Result<()> {
    h.push_str("<h2>Example evasions</h2>\n");
    for (r, e) in runs.iter().zip(evals) {
        for rec in e.iter().filter(|x| x.attack != "none") {
            let examples = r.run.examples(&rec.attack, rec.budget)?;
            let wins: Vec<_> = examples
                .iter()
                .filter(|x| x.success())
                .take(EXAMPLES_SHOWN)
                .collect();
            let _ = writeln!(
                h,
                "<h3>{} · {} (budget {})</h3>",
                escape(&r.name),
                escape(&rec.attack),
                rec.budget
            );
            if wins.is_empty() {
                h.push_str("<p class=\"note\">no successful evasions</p>\n");
                continue;
            }
            h.push_str("<table class=\"pair\">\n<tr><th>label → prediction</th><th>adversarial text (edits marked)</th></tr>\n");
            for w in wins {
                let class = |c: usize| {
                    rec.per_class
                        .get(c)
                        .map_or(c.to_string(), |p| p.class.clone())
                };
                let (orig, adv) = window(
                    &w.original,
                    &w.adversarial,
                    w.edits.first().map_or(0, |e| e.position),
                );
                let _ = writeln!(
                    h,
                    "<tr><td>{} → {}<br><span class=\"small\">{} edits</span></td><td>{}</td></tr>",
                    escape(&class(w.label)),
                    escape(&class(w.adversarial_prediction)),
                    w.edits.len(),
                    highlight_html(&orig, &adv)
                );
            }
            h.push_str("</table>\n");
        }
    }
    Ok(())
}

/// Malicious texts the attacks got past each filter, edits marked.
fn render_evasions(h: &mut String, runs: &[Loaded], records: &[Vec<EvasionRecord>]) -> Result<()> {
    for (r, recs) in runs.iter().zip(records) {
        for rec in recs.iter().filter(|x| x.attack != "none") {
            let stem = evasion_stem(rec.attack_config.as_ref(), rec.threshold.target_fpr);
            let examples = read_evasion_examples(r.run.path(), &stem)?;
            let t = rec.threshold.threshold;
            let wins: Vec<_> = examples
                .iter()
                .filter(|x| x.score < t)
                .take(EXAMPLES_SHOWN)
                .collect();
            let _ = writeln!(
                h,
                "<h3>{} · evaded {} (budget {}) at {} FPR</h3>",
                escape(&r.name),
                escape(&rec.attack),
                rec.budget,
                pct(rec.threshold.target_fpr)
            );
            if wins.is_empty() {
                h.push_str("<p class=\"note\">no successful evasions</p>\n");
                continue;
            }
            h.push_str("<table class=\"pair\">\n<tr><th>score (threshold)</th><th>malicious text as sent (edits marked)</th></tr>\n");
            for w in wins {
                let res = &w.result;
                let (orig, adv) = window(
                    &res.original,
                    &res.adversarial,
                    res.edits.first().map_or(0, |e| e.position),
                );
                let _ = writeln!(
                    h,
                    "<tr><td>{:.4} ({t:.4})<br><span class=\"small\">{} edits, {} queries</span></td><td>{}</td></tr>",
                    w.score,
                    res.edits.len(),
                    res.queries,
                    highlight_html(&orig, &adv)
                );
            }
            h.push_str("</table>\n");
        }
    }
    Ok(())
}

/// A window of both texts around `position` (chars), so long emails stay readable. The
/// window is the same for both texts; edits shift lengths by at most the budget.
fn window(original: &str, adversarial: &str, position: usize) -> (String, String) {
    let start = position.saturating_sub(EXAMPLE_CHARS / 3);
    let cut = |s: &str| -> String {
        let n = s.chars().count();
        let mut out: String = s.chars().skip(start).take(EXAMPLE_CHARS).collect();
        if start > 0 {
            out.insert(0, '…');
        }
        if start + EXAMPLE_CHARS < n {
            out.push('…');
        }
        out
    };
    (cut(original), cut(adversarial))
}

/// The pairs' JSON Lines file in [`write_attack_pairs`]'s directory.
pub const PAIRS_JSONL: &str = "pairs.jsonl";
/// The pairs' HTML page in [`write_attack_pairs`]'s directory.
pub const PAIRS_HTML: &str = "pairs.html";

/// What [`write_attack_pairs`] wrote.
#[derive(Clone, Debug)]
pub struct AttackPairs {
    /// One JSON line per attacked text: labels, predictions, edits, both texts.
    pub jsonl: PathBuf,
    /// The same pairs as an HTML table with the edits marked.
    pub html: PathBuf,
}

/// Writes the original / adversarial pairs of an attack on some test texts into `out_dir`
/// (`pairs.jsonl` and `pairs.html`), so a person can read what the attack changed.
/// `indices[i]` is the test index of `results[i]`; `classes` names the labels; `title`
/// names the run in the page's heading.
pub fn write_attack_pairs(
    out_dir: &Path,
    title: &str,
    classes: &[String],
    indices: &[usize],
    record: &TextEvalRecord,
    results: &[TextAttackResult],
) -> Result<AttackPairs> {
    std::fs::create_dir_all(out_dir).map_err(|e| crate::error::Error::io(out_dir, e))?;
    let class = |c: usize| classes.get(c).cloned().unwrap_or_else(|| c.to_string());
    let mut jsonl = String::new();
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>advtrain text attack</title>\
         <style>body{{font-family:sans-serif;max-width:1100px;margin:24px auto}} mark{{background:#ffd54a}} \
         td{{border:1px solid #ccc;padding:6px;vertical-align:top;font-family:monospace;white-space:pre-wrap;word-break:break-word}} \
         table{{border-collapse:collapse}}</style></head><body><h1>{} (budget {}) on {}</h1>\
         <p>accuracy {:.1}% → {:.1}%, success rate {:.1}%, mean edits {:.2}</p><table>\
         <tr><th>#</th><th>label → prediction</th><th>original</th><th>adversarial (edits marked)</th></tr>",
        record.attack,
        record.budget,
        escape(title),
        100.0 * record.clean_accuracy,
        100.0 * record.robust_accuracy,
        100.0 * record.attack_success_rate,
        record.mean_edits
    );
    let jsonl_path = out_dir.join(PAIRS_JSONL);
    for (i, r) in indices.iter().zip(results) {
        let line = serde_json::json!({
            "index": i,
            "label": class(r.label),
            "clean_prediction": class(r.clean_prediction),
            "adversarial_prediction": class(r.adversarial_prediction),
            "success": r.success(),
            "edits": r.edits,
            "queries": r.queries,
            "original": r.original,
            "adversarial": r.adversarial,
        });
        let _ = writeln!(jsonl, "{line}");
        let _ = write!(
            html,
            "<tr><td>{i}</td><td>{} → {}<br>{} edits</td><td>{}</td><td>{}</td></tr>",
            escape(&class(r.label)),
            escape(&class(r.adversarial_prediction)),
            r.edits.len(),
            escape(&r.original),
            highlight_html(&r.original, &r.adversarial)
        );
    }
    html.push_str("</table></body></html>\n");
    let html_path = out_dir.join(PAIRS_HTML);
    crate::io::write_atomic(&jsonl_path, jsonl.as_bytes())?;
    crate::io::write_atomic(&html_path, html.as_bytes())?;
    Ok(AttackPairs {
        jsonl: jsonl_path,
        html: html_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_tables_show_their_ends_around_an_ellipsis() {
        assert_eq!(table_rows(3, 200), vec![Some(0), Some(1), Some(2)]);
        let rows = table_rows(200_000, 200);
        assert_eq!(rows.len(), 201);
        assert_eq!(rows[0], Some(0));
        assert_eq!(rows[100], None);
        assert_eq!(rows[200], Some(199_999));
        assert_eq!(rows.iter().flatten().count(), 200);
    }
}
