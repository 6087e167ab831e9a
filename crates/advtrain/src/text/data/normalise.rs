//! Text clean-up shared by the loaders: whitespace collapsing, the length cap and the key
//! that decides which texts count as duplicates.

/// Runs of whitespace (and control characters) become one space; trimmed.
pub(super) fn collapse_whitespace(text: &str) -> String {
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
pub(super) fn cap_chars(mut text: String, max: usize) -> String {
    if let Some((i, _)) = text.char_indices().nth(max) {
        text.truncate(i);
    }
    text
}

/// Lower-case, whitespace-collapsed form used to find duplicates.
pub(super) fn dedupe_key(text: &str) -> String {
    collapse_whitespace(&text.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_chars_cuts_on_char_boundary() {
        assert_eq!(cap_chars("ééé".into(), 2), "éé");
        assert_eq!(cap_chars("ab".into(), 5), "ab");
    }

    #[test]
    fn dedupe_key_ignores_case_and_whitespace() {
        assert_eq!(dedupe_key("  Hello \n\tWORLD "), "hello world");
    }
}
