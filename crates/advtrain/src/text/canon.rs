//! Input canonicalisation: a defence baseline against look-alike, invisible and obfuscated
//! characters, and a layer any text model can put in front of its tokeniser.
//!
//! Steps, each optional, in this order:
//!
//! 1. `bidi`: undo "Trojan source" reversal. The content of each RLO (U+202E) … PDF
//!    (U+202C) span is reversed back (a span with no PDF ends at the end of its paragraph,
//!    as in UAX #9) and every bidi control is dropped. It runs before invisible stripping,
//!    which would drop the controls and leave the reversed word behind.
//! 2. `strip_invisible`: remove [`is_invisible`] characters (zero-width, tags, ...).
//! 3. `nfkc`: Unicode NFKC.
//! 4. `confusables`: map each remaining non-ASCII character whose Unicode confusable
//!    prototype (UTS #39 `confusables.txt`, via the `confusables` crate) is ASCII to that
//!    prototype. ASCII is never changed by this step: the table's ASCII-to-ASCII entries
//!    (`m` → `rn`, `0` → `O`, ...) would corrupt ordinary text.
//! 5. `separators`: collapse spaced-out letters and remove separators inside words (see
//!    [`collapse_separators`]).
//! 6. `casefold`: lowercase, character by character.
//!
//! Steps 1–4 never change ASCII text, so ASCII skips them; steps 5–6 do change ASCII. The
//! look-alike steps come first so that two texts the look-alike steps make equal stay equal
//! after the later ones.
//!
//! The cost: legitimate non-Latin text is folded too (Cyrillic `сор` becomes `cop`), and
//! `separators` merges some ordinary text (`e-mail` → `email`, `a b c` → `abc`), so a model
//! trained behind this layer must see canonical text at training time as well.

use std::fmt;
use std::str::FromStr;

use confusables::Confusable;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// RIGHT-TO-LEFT OVERRIDE: what a [`EditKind::Bidi`](super::edits::EditKind::Bidi) edit
/// opens its reversed word with.
pub const RLO: char = '\u{202E}';
/// POP DIRECTIONAL FORMATTING: closes an RLO span.
pub const PDF: char = '\u{202C}';
/// The characters a separator obfuscation puts inside a word (`ig-nore`, `i.g.n.o.r.e`) and
/// the `separators` step removes.
pub const WORD_SEPARATORS: [char; 4] = ['-', '.', '_', '*'];

/// Which canonicalisation steps to run (see the module docs for the order).
///
/// The steps added after the first three default to off when a config written before them
/// is read, so an older model keeps canonicalising as it was trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canonicalizer {
    /// Unicode compatibility normalisation (fullwidth `Ａ` → `A`, `ﬁ` → `fi`, `𝐚` → `a`).
    pub nfkc: bool,
    /// Non-ASCII characters whose confusable prototype is ASCII (Cyrillic `а` → `a`).
    pub confusables: bool,
    /// Remove [`is_invisible`] characters.
    pub strip_invisible: bool,
    /// Reverse RLO … PDF spans back and drop bidi controls ([`undo_bidi`]).
    #[serde(default)]
    pub bidi: bool,
    /// Collapse spaced-out letters and drop separators inside words
    /// ([`collapse_separators`]).
    #[serde(default)]
    pub separators: bool,
    /// Lowercase everything (undoes mixed case).
    #[serde(default)]
    pub casefold: bool,
}

impl Default for Canonicalizer {
    /// No change: canonicalisation is opt-in, so baselines stay comparable.
    fn default() -> Self {
        Self::none()
    }
}

impl Canonicalizer {
    /// Every step on: the full defence baseline.
    pub fn all() -> Self {
        Self {
            nfkc: true,
            confusables: true,
            strip_invisible: true,
            bidi: true,
            separators: true,
            casefold: true,
        }
    }

    /// Every step off: [`Canonicalizer::apply`] returns the text unchanged (the default).
    pub fn none() -> Self {
        Self {
            nfkc: false,
            confusables: false,
            strip_invisible: false,
            bidi: false,
            separators: false,
            casefold: false,
        }
    }

    /// The look-alike steps only (NFKC, confusables, invisible): folds what look-alike and
    /// invisible characters change and leaves ASCII text as it is. This is what `all` was
    /// before the obfuscation steps, and what the homoglyph table is built against.
    pub fn lookalikes() -> Self {
        Self {
            nfkc: true,
            confusables: true,
            strip_invisible: true,
            ..Self::none()
        }
    }

    /// Whether no step is on, so canonicalisation can be skipped.
    pub fn is_identity(&self) -> bool {
        *self == Self::none()
    }

    /// The canonical form of `text`. With every step on, applying it twice gives the same
    /// result as once for ordinary text (after mapping, NFKC runs again so that an ASCII
    /// prototype composes with a following combining mark as the ASCII letter would).
    pub fn apply(&self, text: &str) -> String {
        if self.is_identity() {
            return text.to_string();
        }
        let mut s = if text.is_ascii() {
            text.to_string()
        } else {
            self.fold_unicode(text)
        };
        if self.separators {
            s = collapse_separators(&s);
        }
        if self.casefold {
            s = casefold(&s);
            if self.confusables && !s.is_ascii() {
                // Lowercasing can make a character that has a prototype (Warang Citi
                // U+118A8 lowercases to U+118C8, a look-alike of "o"): map once more, or a
                // second pass would change the text.
                let mapped = self.map_confusables(&s);
                if mapped != s {
                    s = casefold(&mapped);
                }
            }
        }
        s
    }

    /// Steps 1–4, which only ever change non-ASCII text.
    fn fold_unicode(&self, text: &str) -> String {
        let mut s = if self.bidi {
            undo_bidi(text)
        } else {
            text.to_string()
        };
        if self.strip_invisible {
            s = s.chars().filter(|&c| !is_invisible(c)).collect();
        }
        if self.nfkc {
            s = s.nfkc().collect();
        }
        if self.confusables {
            s = self.map_confusables(&s);
        }
        s
    }

    fn map_confusables(&self, s: &str) -> String {
        let mut changed = false;
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match ascii_prototype(c) {
                Some(p) => {
                    out.push_str(&p);
                    changed = true;
                }
                None => out.push(c),
            }
        }
        if changed && self.nfkc {
            out.nfkc().collect()
        } else {
            out
        }
    }

    fn names(&self) -> Vec<&'static str> {
        [
            (self.nfkc, "nfkc"),
            (self.confusables, "confusables"),
            (self.strip_invisible, "invisible"),
            (self.bidi, "bidi"),
            (self.separators, "separators"),
            (self.casefold, "casefold"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// Bidi controls: ALM, LRM, RLM, the embeddings and overrides (LRE, RLE, PDF, LRO, RLO) and
/// the isolates (LRI, RLI, FSI, PDI).
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Ends a paragraph for the bidi algorithm (UAX #9 type B), and so an unclosed override.
fn is_paragraph_end(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{1C}'..='\u{1E}' | '\u{85}' | '\u{2029}')
}

/// `text` in the order a reader sees it: the content of every RLO … PDF span reversed
/// (RLO displays its characters right to left), bidi controls dropped. A legitimate override
/// around right-to-left script is rare and comes out reversed.
pub fn undo_bidi(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != RLO {
            if !is_bidi_control(chars[i]) {
                out.push(chars[i]);
            }
            i += 1;
            continue;
        }
        let end = chars[i + 1..]
            .iter()
            .position(|&c| c == PDF || is_paragraph_end(c))
            .map_or(chars.len(), |k| i + 1 + k);
        out.extend(
            chars[i + 1..end]
                .iter()
                .rev()
                .filter(|&&c| !is_bidi_control(c)),
        );
        i = if chars.get(end) == Some(&PDF) {
            end + 1
        } else {
            end
        };
    }
    out
}

/// Whether `c` may stand between the letters of a spaced-out word.
fn is_run_separator(c: char) -> bool {
    c == ' ' || WORD_SEPARATORS.contains(&c)
}

/// Undoes spacing and separator obfuscation, in two passes:
///
/// 1. a run of at least 3 one-character alphanumeric tokens, each two separated by one
///    space or one of [`WORD_SEPARATORS`], is written together (`i g n o r e` and
///    `i.g.n.o.r.e` → `ignore`); runs of 2 are kept, so ordinary one-letter words (`I a`,
///    `a b`) survive in pairs;
/// 2. one of [`WORD_SEPARATORS`] between two letters is removed (`ig-nore` → `ignore`).
///
/// What ordinary text loses: hyphenated and underscored words are joined (`e-mail` →
/// `email`, `snake_case` → `snakecase`), so are dotted names (`file.txt` → `filetxt`,
/// `example.com` → `examplecom`, `e.g.` → `eg.`); three or more single letters or digits
/// in a row are merged (`a b c` → `abc`, `1 2 3` → `123`, `1.2.3` → `123`, `U.S.A.` →
/// `USA.`). Separators next to digits (`3.14`, `v1.2`) are kept by pass 2. Spacing of a
/// two-letter word (`i s`) is not undone, and a spaced word next to a one-letter word is
/// merged with it (`a i g n o r e` → `aignore`).
pub fn collapse_separators(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let merged = merge_spaced_runs(&chars);
    let keep = |i: usize| {
        let c = merged[i];
        !(WORD_SEPARATORS.contains(&c)
            && i > 0
            && merged[i - 1].is_alphabetic()
            && merged.get(i + 1).is_some_and(|n| n.is_alphabetic()))
    };
    (0..merged.len())
        .filter(|&i| keep(i))
        .map(|i| merged[i])
        .collect()
}

/// Pass 1 of [`collapse_separators`].
fn merge_spaced_runs(chars: &[char]) -> Vec<char> {
    let single = |i: usize| {
        chars[i].is_alphanumeric()
            && (i == 0 || !chars[i - 1].is_alphanumeric())
            && chars.get(i + 1).is_none_or(|c| !c.is_alphanumeric())
    };
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if single(i) {
            let mut j = i;
            while j + 2 < chars.len() && is_run_separator(chars[j + 1]) && single(j + 2) {
                j += 2;
            }
            if (j - i) / 2 + 1 >= 3 {
                out.extend((i..=j).step_by(2).map(|k| chars[k]));
                i = j + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Lowercase, character by character.
fn casefold(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.chars().flat_map(char::to_lowercase).collect()
    }
}

/// The ASCII confusable prototype of a non-ASCII character, if it has one.
fn ascii_prototype(c: char) -> Option<String> {
    if c.is_ascii() {
        return None;
    }
    let mut buf = [0u8; 4];
    let s: &str = c.encode_utf8(&mut buf);
    if !s.contains_confusable() {
        return None;
    }
    let p = s.replace_confusable();
    (p.is_ascii() && !p.is_empty()).then_some(p)
}

impl fmt::Display for Canonicalizer {
    /// `none`, `all`, or a comma list of `nfkc`, `confusables`, `invisible`, `bidi`,
    /// `separators`, `casefold`; parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_identity() {
            f.write_str("none")
        } else if *self == Self::all() {
            f.write_str("all")
        } else {
            f.write_str(&self.names().join(","))
        }
    }
}

impl FromStr for Canonicalizer {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> crate::error::Result<Self> {
        let mut c = Self::none();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.to_ascii_lowercase().as_str() {
                "none" => {}
                "all" => c = Self::all(),
                "lookalikes" => {
                    c.nfkc = true;
                    c.confusables = true;
                    c.strip_invisible = true;
                }
                "nfkc" => c.nfkc = true,
                "confusables" | "homoglyphs" => c.confusables = true,
                "invisible" | "strip-invisible" => c.strip_invisible = true,
                "bidi" => c.bidi = true,
                "separators" => c.separators = true,
                "casefold" | "lowercase" => c.casefold = true,
                other => {
                    return Err(crate::error::Error::config(format!(
                        "unknown canonicalisation step {other:?} (expected none, all, \
                         lookalikes, or a comma list of nfkc, confusables, invisible, bidi, \
                         separators, casefold)"
                    )))
                }
            }
        }
        Ok(c)
    }
}

/// Characters that render as nothing (or nearly) in most fonts and so can be slipped into a
/// word to break its tokens unseen: zero-width space/joiners, word joiner, BOM, soft hyphen,
/// bidi controls, invisible operators, Hangul and Khmer fillers, variation selectors, tags.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes_fold_lookalikes_and_strip_invisible() {
        let c = Canonicalizer::lookalikes();
        assert_eq!(c.apply("p\u{0430}yp\u{0430}l"), "paypal");
        assert_eq!(c.apply("\u{FF21}BC"), "ABC");
        assert_eq!(c.apply("fr\u{200B}ee\u{FEFF}"), "free");
        assert_eq!(c.apply("m 0 O l 1 I |"), "m 0 O l 1 I |");
        assert_eq!(c.apply(""), "");
    }

    #[test]
    fn all_also_undoes_obfuscation() {
        let c = Canonicalizer::all();
        assert_eq!(c.apply("\u{FF21}BC"), "abc");
        assert_eq!(c.apply("i g n o r e previous"), "ignore previous");
        assert_eq!(c.apply("IG-NORE"), "ignore");
        assert_eq!(c.apply("x \u{202E}erongi\u{202C} y"), "x ignore y");
        assert_eq!(c.apply("ig\u{E0061}\u{E0062}nore"), "ignore");
        assert_eq!(c.apply("I a"), "i a");
    }

    #[test]
    fn separators_keep_pairs_and_digit_separators() {
        assert_eq!(collapse_separators("I a"), "I a");
        assert_eq!(collapse_separators("a b c"), "abc");
        assert_eq!(collapse_separators("i.g.n.o.r.e it"), "ignore it");
        assert_eq!(collapse_separators("e-mail 3.14 v1.2"), "email 3.14 v1.2");
        assert_eq!(collapse_separators("a  b  c"), "a  b  c");
        assert_eq!(collapse_separators("ab-cd-ef"), "abcdef");
    }

    #[test]
    fn bidi_spans_without_pdf_end_at_the_paragraph() {
        assert_eq!(undo_bidi("\u{202E}cba\ndef"), "abc\ndef");
        assert_eq!(undo_bidi("a\u{200F}b\u{2066}c\u{2069}"), "abc");
        assert_eq!(undo_bidi("\u{202E}"), "");
    }

    #[test]
    fn steps_are_independent() {
        let only_inv = Canonicalizer {
            strip_invisible: true,
            ..Canonicalizer::none()
        };
        assert_eq!(only_inv.apply("\u{0430}\u{200D}"), "\u{0430}");
        assert_eq!(
            Canonicalizer::none().apply("\u{0430}\u{200D}"),
            "\u{0430}\u{200D}"
        );
        let only_case = Canonicalizer {
            casefold: true,
            ..Canonicalizer::none()
        };
        assert_eq!(only_case.apply("FrEe \u{0414}"), "free \u{0434}");
    }

    #[test]
    fn a_lowercased_lookalike_is_mapped_too() {
        let c = Canonicalizer::all();
        let once = c.apply("\u{118A8}");
        assert_eq!(c.apply(&once), once);
    }

    #[test]
    fn names_round_trip() {
        for c in [
            Canonicalizer::all(),
            Canonicalizer::none(),
            Canonicalizer::lookalikes(),
            Canonicalizer {
                nfkc: true,
                ..Canonicalizer::none()
            },
            Canonicalizer {
                confusables: true,
                strip_invisible: true,
                separators: true,
                ..Canonicalizer::none()
            },
            Canonicalizer {
                bidi: true,
                casefold: true,
                ..Canonicalizer::none()
            },
        ] {
            assert_eq!(c.to_string().parse::<Canonicalizer>().unwrap(), c);
        }
        assert!("nfkc,bogus".parse::<Canonicalizer>().is_err());
        assert_eq!(
            "lookalikes".parse::<Canonicalizer>().unwrap(),
            Canonicalizer::lookalikes()
        );
    }

    #[test]
    fn configs_written_before_the_new_steps_still_read() {
        let old = r#"{"nfkc":true,"confusables":true,"strip_invisible":true}"#;
        let c: Canonicalizer = serde_json::from_str(old).unwrap();
        assert_eq!(c, Canonicalizer::lookalikes());
    }
}
