//! Text from data sets made safe to print on a terminal: a data set's texts are untrusted
//! input, and an ESC or CSI in one would otherwise reach the terminal as a command (move
//! the cursor, retitle the window, hide what follows).

/// `text` with every control character except newline and tab written as a Rust escape
/// (`\u{1b}`): the C0 controls (U+0000–U+001F, so ESC and CR too), DEL (U+007F) and the C1
/// controls (U+0080–U+009F, whose U+009B is a one-character CSI on some terminals).
/// Everything else, other scripts included, is kept as it is.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe_control(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A control character a terminal may act on (newline and tab are printed as they are).
fn is_unsafe_control(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_written_out() {
        assert_eq!(
            escape_controls("free \u{1b}[2J\u{1b}]0;pwned\u{7}money"),
            "free \\u{1b}[2J\\u{1b}]0;pwned\\u{7}money"
        );
        assert_eq!(
            escape_controls("a\u{9b}31mb\u{7f}\r"),
            "a\\u{9b}31mb\\u{7f}\\u{d}"
        );
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        let text = "line one\n\tcafé 日本 [edit] <U+200B>";
        assert_eq!(escape_controls(text), text);
    }
}
