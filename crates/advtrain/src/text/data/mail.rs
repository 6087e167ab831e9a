//! Raw emails to text: RFC 822 headers, MIME multipart structure, transfer encodings
//! (quoted-printable, base64), RFC 2047 encoded words, charsets and HTML.
//!
//! Written for the 2002-era SpamAssassin corpus, where malformed mail is the norm: every
//! decoder here is lenient (a broken part is read as best it can be, bytes invalid in the
//! declared charset are replaced) and none returns an error, so one bad email can never stop
//! a data set from loading.

use super::normalise::{cap_chars, collapse_whitespace};
use super::MAX_TEXT_CHARS;

/// Most nested MIME levels followed (deeper parts are ignored).
const MAX_MIME_DEPTH: usize = 8;

/// One raw email as `"Subject: ...\n<body>"`, decoded as described at
/// [`load_spam_assassin`](super::load_spam_assassin). Only the subject survives of the
/// headers because the others hold routing data that identifies the corpus folder (and so the
/// label), not the message. Public so that other emails (a user's own `.eml` files, a test)
/// can be turned into exactly the text a spam model was trained on.
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
/// malformed `=` is kept as is, because spam often has broken escapes and dropping the body
/// (or failing) would lose the message's words. Also decodes RFC 2047 `Q` words.
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
/// Decoding stops at the first `=`. A strict decoder would reject many real bodies outright;
/// losing a stray byte is better than losing the message.
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
/// whitespace between two adjacent encoded words is dropped (the RFC says it is not part of
/// the text). Non-ASCII subjects are written this way; undecoded, a model would see
/// `=?utf-8?B?...` noise instead of words.
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
/// removed (a tag becomes a space, so words either side stay apart), entities decoded. Much
/// spam is HTML only: a model should see the words a reader sees, not markup that would give
/// the class away by itself.
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

/// Named entities common in mail, plus numeric ones (`&#233;`, `&#xE9;`; code points
/// 0x80-0x9f read as Windows-1252, as browsers do). Decoding makes escaped and plain text
/// the same string, so an entity is not a feature of its own. An unknown entity is kept.
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
}
