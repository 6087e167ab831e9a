//! User files: labelled texts in CSV or JSON Lines, for training or evaluating on data of
//! one's own.

use std::collections::BTreeSet;
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
    let rows = read_rows(path)?;
    if rows.is_empty() {
        return Err(DataError::invalid(path, "no examples (the file has no data rows)").into());
    }
    let (classes, labels) = classes_and_labels(path, &rows)?;
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

/// The rows of a user file, read as CSV or JSON Lines by its extension.
fn read_rows(path: &Path) -> Result<Vec<Row>> {
    if !path.exists() {
        return Err(DataError::Missing {
            path: path.to_path_buf(),
            hint: "give the path of a .csv or .jsonl file with text and label fields".into(),
        }
        .into());
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let rows = match ext.as_str() {
        "csv" => read_csv_rows(path)?,
        "jsonl" | "json-lines" => read_jsonl_rows(path)?,
        _ => {
            return Err(DataError::invalid(
                path,
                format!(
                    "unsupported extension '{ext}': expected .csv (header with text and label \
                     columns) or .jsonl / .json-lines ({{\"text\": ..., \"label\": ...}} per line)"
                ),
            )
            .into())
        }
    };
    Ok(rows)
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
        let labels = rows
            .iter()
            .map(|(_, _, l)| {
                let name = name_of(l);
                classes.iter().position(|c| *c == name).unwrap_or(0)
            })
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
fn read_csv_rows(path: &Path) -> Result<Vec<Row>, DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DataError::invalid(
            path,
            "empty file (expected a header row with text and label columns)",
        ));
    }
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

/// The rows of a JSON Lines file, one `{"text": ..., "label": ...}` object per line.
fn read_jsonl_rows(path: &Path) -> Result<Vec<Row>, DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
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
