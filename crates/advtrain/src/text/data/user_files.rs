//! User files: labelled texts in CSV or JSON Lines, for training or evaluating on data of
//! one's own.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::data::DataError;
use crate::error::Result;
use crate::text::TextDataset;

/// Most classes an integer-labelled user file may declare (a guard against a stray huge
/// number creating millions of empty classes).
const MAX_INT_CLASSES: u64 = 10_000;

/// A raw label as written in a user file.
enum RawLabel {
    Index(u64),
    Name(String),
}

/// A labelled text file: CSV with a header row naming `text` and `label` columns (any order,
/// other columns ignored; quoted fields may hold commas and newlines) or JSON Lines
/// (`{"text": ..., "label": ...}` per line; blank lines skipped), chosen by extension
/// (`.csv`, `.jsonl`, `.json-lines`).
///
/// Labels are either all non-negative integers (class `k` is named `"k"`, classes
/// `0..=max`) or names (classes are the sorted distinct names, so the mapping does not
/// depend on row order). A malformed row is an error naming the file and its line.
///
/// This is how a model is trained or evaluated on data of one's own with the same pipeline
/// as the named sets; split it with [`split_stratified`](super::split_stratified).
pub fn load_labelled_file(path: &Path) -> Result<TextDataset> {
    if !path.exists() {
        return Err(DataError::Missing {
            path: path.to_path_buf(),
            hint: "give the path of a .csv or .jsonl file with text and label fields".into(),
        }
        .into());
    }
    format_of(path)?;
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_labelled_bytes(&bytes, path)
}

/// [`load_labelled_file`] on a file's bytes already in memory: `path` names them in errors
/// and its extension says the format. What the fuzz targets call: the same checks as on a
/// file, no file system.
pub fn parse_labelled_bytes(bytes: &[u8], path: &Path) -> Result<TextDataset> {
    let rows = match format_of(path)? {
        Format::Csv => read_csv_rows(bytes, path)?,
        Format::Jsonl => read_jsonl_rows(bytes, path)?,
    };
    if rows.is_empty() {
        return Err(DataError::invalid(path, "no examples (the file has no data rows)").into());
    }
    let all_int = rows.iter().all(|(_, _, l)| matches!(l, RawLabel::Index(_)));
    let (classes, labels) = classes_and_labels(path, &rows)?;
    check_classes(path, &rows, &classes, &labels, !all_int)?;
    let texts: Vec<String> = rows.into_iter().map(|(_, t, _)| t).collect();
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut ds = TextDataset {
        name,
        texts,
        labels,
        classes,
        provenance: String::new(),
    };
    let counts = ds.class_counts();
    let summary: Vec<String> = ds
        .classes
        .iter()
        .zip(&counts)
        .map(|(c, n)| format!("{n} {c}"))
        .collect();
    ds.provenance = format!(
        "user file {}: {} examples ({})",
        path.display(),
        ds.len(),
        summary.join(", ")
    );
    Ok(ds)
}

/// The two formats a user file can be in.
enum Format {
    Csv,
    Jsonl,
}

/// The format `path`'s extension names, or an error listing the accepted ones.
fn format_of(path: &Path) -> Result<Format, DataError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Ok(Format::Csv),
        "jsonl" | "json-lines" => Ok(Format::Jsonl),
        _ => Err(DataError::invalid(
            path,
            format!(
                "unsupported extension '{ext}': expected .csv (header with text and label \
                 columns) or .jsonl / .json-lines ({{\"text\": ..., \"label\": ...}} per line)"
            ),
        )),
    }
}

/// A label that is this many times rarer than another label, or rarer still, may be a typo
/// of it.
const TYPO_RATIO: usize = 10;
/// A label on fewer than this fraction of rows (1 %) may be a typo.
const TYPO_MAX_SHARE: f64 = 0.01;
/// Most line numbers an error lists.
const LINES_SHOWN: usize = 5;

/// Refuse data a classifier cannot learn from, or learns the wrong thing from, without a
/// word: one class only, or (for named labels, `names`) a label that looks like a typo.
fn check_classes(
    path: &Path,
    rows: &[Row],
    classes: &[String],
    labels: &[usize],
    names: bool,
) -> Result<(), DataError> {
    let mut counts = vec![0usize; classes.len()];
    for &l in labels {
        counts[l] += 1;
    }
    let used: Vec<usize> = (0..classes.len()).filter(|&c| counts[c] > 0).collect();
    if let [only] = used[..] {
        return Err(DataError::invalid(
            path,
            format!(
                "every one of the {} rows has the label '{}': a classifier needs examples of at \
                 least two classes; add rows of the other class(es) to the file",
                rows.len(),
                classes[only]
            ),
        ));
    }
    if !names {
        return Ok(());
    }
    let Some((rare, other)) = suspect_label(classes, &counts) else {
        return Ok(());
    };
    let lines: Vec<String> = rows
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l == rare)
        .take(LINES_SHOWN)
        .map(|((line, _, _), _)| line.to_string())
        .collect();
    let more = if counts[rare] > lines.len() {
        ", ..."
    } else {
        ""
    };
    Err(DataError::invalid(
        path,
        format!(
            "label '{}' is on only {} of {} rows (line {}{more}) {other}; it looks like a typo: \
             fix the label in the file",
            classes[rare],
            counts[rare],
            rows.len(),
            lines.join(", "),
        ),
    ))
}

/// A label that is probably a mistake, with the reason: `(class, "beside 'spam' (4000
/// rows)...")`. A label under [`TYPO_MAX_SHARE`] of the rows is suspect when it is one or two
/// edits from a label [`TYPO_RATIO`] times as common, or when the other labels are exactly a
/// pair advtrain knows (`ham`/`spam`, `benign`/`injection`).
fn suspect_label(classes: &[String], counts: &[usize]) -> Option<(usize, String)> {
    let total: usize = counts.iter().sum();
    let rare = |c: usize| counts[c] > 0 && (counts[c] as f64) < TYPO_MAX_SHARE * total as f64;
    for c in (0..classes.len()).filter(|&c| rare(c)) {
        let near = (0..classes.len()).find(|&o| {
            counts[o] >= TYPO_RATIO * counts[c]
                && (1..=2).contains(&edit_distance(&classes[c], &classes[o]))
        });
        if let Some(o) = near {
            return Some((
                c,
                format!(
                    "and one or two letters from '{}' ({} rows)",
                    classes[o], counts[o]
                ),
            ));
        }
        let others: Vec<&str> = (0..classes.len())
            .filter(|&o| o != c && counts[o] > 0)
            .map(|o| classes[o].as_str())
            .collect();
        let known = [super::SPAM_CLASSES, super::INJECTION_CLASSES]
            .into_iter()
            .find(|pair| others == pair[..]);
        if let Some(pair) = known {
            return Some((
                c,
                format!("beside the known pair '{}' and '{}'", pair[0], pair[1]),
            ));
        }
    }
    None
}

/// Levenshtein distance between `a` and `b` in characters, or 3 when it is certainly more
/// than 2 (the lengths differ by more): only "one or two edits" matters here.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2 {
        return 3;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `(class names, label per row)`: integer labels when every row has one (classes
/// `"0"..="max"`), otherwise the sorted distinct names.
fn classes_and_labels(path: &Path, rows: &[Row]) -> Result<(Vec<String>, Vec<usize>)> {
    let all_int = rows.iter().all(|(_, _, l)| matches!(l, RawLabel::Index(_)));
    if all_int {
        let mut max = 0u64;
        for (line, _, l) in rows {
            if let RawLabel::Index(k) = l {
                if *k >= MAX_INT_CLASSES {
                    return Err(DataError::invalid(
                        path,
                        format!(
                            "line {line}: label {k} is too large (at most {} classes)",
                            MAX_INT_CLASSES
                        ),
                    )
                    .into());
                }
                max = max.max(*k);
            }
        }
        let classes = (0..=max).map(|k| k.to_string()).collect();
        let labels = rows
            .iter()
            .map(|(_, _, l)| match l {
                RawLabel::Index(k) => *k as usize,
                RawLabel::Name(_) => 0,
            })
            .collect();
        Ok((classes, labels))
    } else {
        let name_of = |l: &RawLabel| match l {
            RawLabel::Index(k) => k.to_string(),
            RawLabel::Name(s) => s.clone(),
        };
        let names: BTreeSet<String> = rows.iter().map(|(_, _, l)| name_of(l)).collect();
        let classes: Vec<String> = names.into_iter().collect();
        let index: BTreeMap<&str, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let labels = rows
            .iter()
            .map(|(_, _, l)| index.get(name_of(l).as_str()).copied().unwrap_or(0))
            .collect();
        Ok((classes, labels))
    }
}

/// A raw label from a field: a non-negative integer or a name.
fn parse_label(field: &str) -> Option<RawLabel> {
    let field = field.trim();
    if field.is_empty() {
        None
    } else if let Ok(k) = field.parse::<u64>() {
        Some(RawLabel::Index(k))
    } else {
        Some(RawLabel::Name(field.to_string()))
    }
}

/// `(line number, text, label)` of one example.
type Row = (u64, String, RawLabel);

/// The rows of a CSV file with a header row naming `text` and `label` columns.
fn read_csv_rows(bytes: &[u8], path: &Path) -> Result<Vec<Row>, DataError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DataError::invalid(
            path,
            "empty file (expected a header row with text and label columns)",
        ));
    }
    check_quotes(bytes, path)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let csv_error = |e: csv::Error| {
        let line = e.position().map(|p| p.line()).unwrap_or(1);
        DataError::invalid(path, format!("line {line}: {e}"))
    };
    let header = reader.headers().map_err(csv_error)?.clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let (Some(text_col), Some(label_col)) = (column("text"), column("label")) else {
        return Err(DataError::invalid(
            path,
            format!(
                "line 1: the header must name a 'text' and a 'label' column, found: {}",
                header.iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let bad = |msg: &str| DataError::invalid(path, format!("line {line}: {msg}"));
        let text = record.get(text_col).unwrap_or("");
        if text.trim().is_empty() {
            return Err(bad("empty text"));
        }
        let label =
            parse_label(record.get(label_col).unwrap_or("")).ok_or_else(|| bad("missing label"))?;
        rows.push((line, text.to_string(), label));
    }
    Ok(rows)
}

/// Refuse a quoted CSV field that is never closed, or whose closing quote is followed by
/// more text: the `csv` crate reads on to the next quote, however many lines away, and so
/// would silently merge rows (the merged text taking the later row's label). The error
/// names the line where the quote opened, which is where the fix is.
fn check_quotes(bytes: &[u8], path: &Path) -> Result<(), DataError> {
    let (mut line, mut i, mut field_start) = (1u64, 0usize, true);
    while let Some(&b) = bytes.get(i) {
        if field_start && b == b'"' {
            let opened = line;
            i = closing_quote(bytes, i + 1, &mut line).ok_or_else(|| {
                quote_error(
                    path,
                    opened,
                    "is never closed: the rest of the file would be its text",
                )
            })?;
            if let Some(&c) = bytes.get(i).filter(|c| !matches!(c, b',' | b'\n' | b'\r')) {
                let why = format!(
                    "is closed on line {line} by a quote followed by '{}', not by a comma or the \
                     end of the line",
                    char::from(c).escape_default()
                );
                return Err(quote_error(path, opened, &why));
            }
            field_start = false;
            continue;
        }
        if b == b'\n' {
            line += 1;
        }
        field_start = matches!(b, b',' | b'\n' | b'\r');
        i += 1;
    }
    Ok(())
}

/// The index just past the quote closing a field whose text starts at `i` (a doubled `""`
/// is a quote in the text), counting lines into `line`; `None` if the file ends first.
fn closing_quote(bytes: &[u8], mut i: usize, line: &mut u64) -> Option<usize> {
    loop {
        match bytes.get(i)? {
            b'"' if bytes.get(i + 1) == Some(&b'"') => i += 2,
            b'"' => return Some(i + 1),
            b'\n' => {
                *line += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
}

fn quote_error(path: &Path, line: u64, why: &str) -> DataError {
    DataError::invalid(
        path,
        format!(
            "line {line}: the quoted field that opens on this line {why}; close the quote there \
             (a quote inside a quoted field is written twice: \"\")"
        ),
    )
}

/// The rows of a JSON Lines file, one `{"text": ..., "label": ...}` object per line.
fn read_jsonl_rows(bytes: &[u8], path: &Path) -> Result<Vec<Row>, DataError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut rows = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = n as u64 + 1;
        let bad = |msg: String| DataError::invalid(path, format!("line {line_no}: {msg}"));
        let line = std::str::from_utf8(line).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("bad JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| bad("expected a JSON object {\"text\": ..., \"label\": ...}".into()))?;
        let text = match obj.get("text") {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(serde_json::Value::String(_)) => return Err(bad("empty text".into())),
            Some(_) => return Err(bad("\"text\" must be a string".into())),
            None => return Err(bad("missing \"text\"".into())),
        };
        let label = match obj.get("label") {
            Some(serde_json::Value::String(s)) => {
                parse_label(s).ok_or_else(|| bad("empty label".into()))?
            }
            Some(serde_json::Value::Number(k)) => RawLabel::Index(
                k.as_u64()
                    .ok_or_else(|| bad(format!("label {k} is not a non-negative integer")))?,
            ),
            Some(serde_json::Value::Null) | None => return Err(bad("missing \"label\"".into())),
            Some(other) => {
                return Err(bad(format!(
                    "label must be a string or integer, got {other}"
                )))
            }
        };
        rows.push((line_no, text, label));
    }
    Ok(rows)
}
