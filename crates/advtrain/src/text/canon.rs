//! Input canonicalisation: a defence baseline against look-alike and invisible characters,
//! and a layer any text model can put in front of its tokeniser.
//!
//! Steps, each optional, in this order: strip invisible characters, Unicode NFKC, then map
//! each remaining non-ASCII character whose Unicode confusable prototype (UTS #39
//! `confusables.txt`, via the `confusables` crate) is ASCII to that prototype. ASCII is never
//! changed: the table's ASCII-to-ASCII entries (`m` → `rn`, `0` → `O`, ...) would corrupt
//! ordinary text.
//!
//! The cost: legitimate non-Latin text is folded too (Cyrillic `сор` becomes `cop`), so a
//! model trained behind this layer must see canonical text at training time as well.

use std::fmt;
use std::str::FromStr;

use confusables::Confusable;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Which canonicalisation steps to run (see the module docs for the order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canonicalizer {
    /// Unicode compatibility normalisation (fullwidth `Ａ` → `A`, `ﬁ` → `fi`, `𝐚` → `a`).
    pub nfkc: bool,
    /// Non-ASCII characters whose confusable prototype is ASCII (Cyrillic `а` → `a`).
    pub confusables: bool,
    /// Remove [`is_invisible`] characters.
    pub strip_invisible: bool,
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
        }
    }

    /// Every step off: [`Canonicalizer::apply`] returns the text unchanged (the default).
    pub fn none() -> Self {
        Self {
            nfkc: false,
            confusables: false,
            strip_invisible: false,
        }
    }

    /// Whether no step is on, so canonicalisation can be skipped.
    pub fn is_identity(&self) -> bool {
        !(self.nfkc || self.confusables || self.strip_invisible)
    }

    /// The canonical form of `text`. With every step on, applying it twice gives the same
    /// result as once for ordinary text (after mapping, NFKC runs again so that an ASCII
    /// prototype composes with a following combining mark as the ASCII letter would).
    pub fn apply(&self, text: &str) -> String {
        if self.is_identity() || text.is_ascii() {
            return text.to_string();
        }
        let mut s: String = if self.strip_invisible {
            text.chars().filter(|&c| !is_invisible(c)).collect()
        } else {
            text.to_string()
        };
        if self.nfkc {
            s = s.nfkc().collect();
        }
        if self.confusables {
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
            s = if changed && self.nfkc {
                out.nfkc().collect()
            } else {
                out
            };
        }
        s
    }

    fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.nfkc {
            names.push("nfkc");
        }
        if self.confusables {
            names.push("confusables");
        }
        if self.strip_invisible {
            names.push("invisible");
        }
        names
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
    /// `none`, `all`, or a comma list of `nfkc`, `confusables`, `invisible`; parses back.
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
                "nfkc" => c.nfkc = true,
                "confusables" | "homoglyphs" => c.confusables = true,
                "invisible" | "strip-invisible" => c.strip_invisible = true,
                other => {
                    return Err(crate::error::Error::config(format!(
                        "unknown canonicalisation step {other:?} \
                         (expected none, all, or a comma list of nfkc, confusables, invisible)"
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
    fn all_folds_lookalikes_and_strips_invisible() {
        let c = Canonicalizer::all();
        assert_eq!(c.apply("p\u{0430}yp\u{0430}l"), "paypal");
        assert_eq!(c.apply("\u{FF21}BC"), "ABC");
        assert_eq!(c.apply("fr\u{200B}ee\u{FEFF}"), "free");
        assert_eq!(c.apply("m 0 O l 1 I |"), "m 0 O l 1 I |");
        assert_eq!(c.apply(""), "");
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
    }

    #[test]
    fn names_round_trip() {
        for c in [
            Canonicalizer::all(),
            Canonicalizer::none(),
            Canonicalizer {
                nfkc: true,
                ..Canonicalizer::none()
            },
            Canonicalizer {
                confusables: true,
                strip_invisible: true,
                nfkc: false,
            },
        ] {
            assert_eq!(c.to_string().parse::<Canonicalizer>().unwrap(), c);
        }
        assert!("nfkc,bogus".parse::<Canonicalizer>().is_err());
    }
}
