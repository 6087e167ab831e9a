//! The SpamAssassin public corpus: raw 2002-era emails, ham and spam, in five folders.

use std::fs;
use std::path::Path;

use super::mail::email_to_text;
use super::split::{dedupe_labelled, split_stratified};
use super::{
    check_fraction, require, sorted_entries_with_extension, FETCH_HINT, MAX_TEXT_CHARS,
    SPAM_ASSASSIN_PACKAGE, SPAM_CLASSES,
};
use crate::data::DataError;
use crate::error::Result;
use crate::text::TextDataset;

/// The SpamAssassin folders, with their class.
const SPAM_FOLDERS: [(&str, usize); 5] = [
    ("easy-ham-1", 0),
    ("easy-ham-2", 0),
    ("hard-ham-1", 0),
    ("spam-1", 1),
    ("spam-2", 1),
];

/// The SpamAssassin public corpus (`dir/spam-assassin/{easy-ham-1,easy-ham-2,hard-ham-1,
/// spam-1,spam-2}/*.txt`, raw RFC 822 emails), split `(train, test)` stratified by class.
///
/// Each email becomes `"Subject: <subject>\n<body>"`: every other header is dropped (they
/// hold routing data that identifies the corpus folder, not the message), quoted-printable
/// and base64 bodies are decoded, multipart messages contribute their `text/plain` parts (or
/// their `text/html` parts with tags stripped if there is no plain part), HTML entities are
/// decoded, whitespace is collapsed and the text is capped at [`MAX_TEXT_CHARS`]. Bytes that
/// are not valid in the declared charset are replaced, never an error. Exact duplicate texts
/// are dropped (the corpus has resent messages) so no text is in both train and test; a text
/// found under both labels is dropped entirely.
pub fn load_spam_assassin(
    dir: &Path,
    seed: u64,
    test_fraction: f64,
) -> Result<(TextDataset, TextDataset)> {
    check_fraction(test_fraction)?;
    let root = dir.join("spam-assassin");
    require(&root)?;
    let (texts, labels) = read_emails(&root)?;
    let read = texts.len();
    if read == 0 {
        return Err(DataError::Missing {
            path: root,
            hint: format!("no emails (*.txt) found; {FETCH_HINT}"),
        }
        .into());
    }
    let (texts, labels) = dedupe_labelled(texts, labels);
    let dropped = read - texts.len();
    let ds = TextDataset {
        name: "spam-assassin".into(),
        texts,
        labels,
        classes: SPAM_CLASSES.iter().map(|s| s.to_string()).collect(),
        provenance: String::new(),
    };
    let counts = ds.class_counts();
    let base = format!(
        "SpamAssassin public corpus via {SPAM_ASSASSIN_PACKAGE}: {read} emails read, {dropped} \
         duplicate texts dropped, {} kept ({} ham, {} spam); headers dropped except Subject, \
         bodies MIME-decoded, HTML stripped, capped at {MAX_TEXT_CHARS} chars; stratified split \
         with seed {seed}, test fraction {test_fraction}",
        ds.len(),
        counts[0],
        counts[1]
    );
    let (mut train, mut test) = split_stratified(&ds, seed, test_fraction);
    for (part, role) in [(&mut train, "train"), (&mut test, "test")] {
        let c = part.class_counts();
        part.provenance = format!(
            "{base}; this is the {role} part: {} texts ({} ham, {} spam)",
            part.len(),
            c[0],
            c[1]
        );
    }
    Ok((train, test))
}

/// Every email of every folder as text, with its label: folders in [`SPAM_FOLDERS`] order,
/// files sorted by name within a folder.
fn read_emails(root: &Path) -> Result<(Vec<String>, Vec<usize>), DataError> {
    let mut texts: Vec<String> = Vec::new();
    let mut labels: Vec<usize> = Vec::new();
    for (folder, label) in SPAM_FOLDERS {
        let path = root.join(folder);
        require(&path)?;
        let files = sorted_entries_with_extension(&path, "txt")?;
        for file in files.into_iter().filter(|p| p.is_file()) {
            let raw = fs::read(&file).map_err(|e| DataError::io(&file, e))?;
            texts.push(email_to_text(&raw));
            labels.push(label);
        }
    }
    Ok((texts, labels))
}
