//! Turning text into token ids: characters for the char-CNN, hashed character n-grams for the
//! fastText-style bag model.
//!
//! Every token keeps the character span it was read from, and its id is a function of the
//! characters under that span only. That is what lets a gradient attack (HotFlip) score a
//! character substitution from the tokens it touches without re-tokenising the text.

use serde::{Deserialize, Serialize};

use super::Token;
use crate::error::{Error, Result};

/// Id of padding positions (masked out by every model).
pub const PAD: u32 = 0;
/// Id of characters outside the char encoder's alphabet.
pub const UNKNOWN: u32 = 1;
/// First printable ASCII character (space).
const ASCII_FIRST: u32 = 0x20;
/// Last printable ASCII character (`~`).
const ASCII_LAST: u32 = 0x7e;

/// How a model reads text. N-gram token ids carry two flag bits; the embedding row of an
/// id is [`table_row`]`(id)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TextEncoder {
    /// One token per character of the first `max_len` characters. Printable ASCII keeps
    /// its own id (case kept), any whitespace reads as a space, everything else is
    /// [`UNKNOWN`], which is exactly what a look-alike or invisible character becomes.
    Chars {
        /// Characters read; the rest of a longer text is ignored. At least 1.
        max_len: usize,
    },
    /// Character n-grams (`min_n..=max_n`) over the lower-cased text of the first
    /// `max_chars` characters, whitespace read as a space and the text framed by spaces,
    /// hashed into `buckets` ids (FNV-1a). Word boundaries are inside the n-grams
    /// (" buy", "now "), as in a character "word-boundary" analyser.
    Ngrams {
        /// Hash buckets, the number of distinct n-gram ids (default 2^17); in
        /// `2..=`[`MAX_BUCKETS`].
        buckets: usize,
        /// Shortest n-gram, in characters (default 2); at least 1.
        min_n: usize,
        /// Longest n-gram, in characters (default 4); `min_n..=16`.
        max_n: usize,
        /// Characters read; the rest of a longer text is ignored. At least 1.
        max_chars: usize,
    },
}

impl TextEncoder {
    /// The char-CNN's encoder.
    pub fn chars(max_len: usize) -> Self {
        TextEncoder::Chars { max_len }
    }

    /// The bag model's encoder: 2- to 4-grams in 2^17 buckets.
    pub fn ngrams(max_chars: usize) -> Self {
        TextEncoder::Ngrams {
            buckets: 1 << 17,
            min_n: 2,
            max_n: 4,
            max_chars,
        }
    }

    /// Checks the ranges given on each field.
    pub fn validate(&self) -> Result<()> {
        match *self {
            TextEncoder::Chars { max_len } => {
                if max_len == 0 {
                    return Err(Error::config("max_len must be at least 1"));
                }
            }
            TextEncoder::Ngrams {
                buckets,
                min_n,
                max_n,
                max_chars,
            } => {
                if !(2..=MAX_BUCKETS).contains(&buckets) {
                    return Err(Error::config(format!(
                        "buckets must be in 2..={MAX_BUCKETS}, got {buckets}"
                    )));
                }
                if min_n == 0 || min_n > max_n || max_n > 16 {
                    return Err(Error::config(format!(
                        "n-gram sizes must satisfy 1 <= min_n <= max_n <= 16, got {min_n}..={max_n}"
                    )));
                }
                if max_chars == 0 {
                    return Err(Error::config("max_chars must be at least 1"));
                }
            }
        }
        Ok(())
    }

    /// Size of the embedding table (ids `0..vocab_size`).
    pub fn vocab_size(&self) -> usize {
        match *self {
            TextEncoder::Chars { .. } => 2 + (ASCII_LAST - ASCII_FIRST + 1) as usize,
            TextEncoder::Ngrams { buckets, .. } => 1 + buckets,
        }
    }

    /// Characters of the text the encoder reads (after truncation).
    pub fn visible_len(&self, text_len: usize) -> usize {
        match *self {
            TextEncoder::Chars { max_len } => text_len.min(max_len),
            TextEncoder::Ngrams { max_chars, .. } => text_len.min(max_chars),
        }
    }

    /// Tokens of a text given as characters.
    pub fn tokens(&self, chars: &[char]) -> Vec<Token> {
        let n = self.visible_len(chars.len());
        match *self {
            TextEncoder::Chars { .. } => (0..n)
                .map(|i| Token {
                    id: char_id(chars[i]),
                    start: i,
                    end: i + 1,
                })
                .collect(),
            TextEncoder::Ngrams {
                buckets,
                min_n,
                max_n,
                ..
            } => {
                // Framed text: a virtual space before index 0 and after index n-1. Framed
                // position p covers character p-1; positions 0 and n+1 are the frame.
                let framed = n + 2;
                let mut out = Vec::with_capacity(framed * (max_n - min_n + 1));
                for len in min_n..=max_n {
                    if len > framed {
                        break;
                    }
                    for p in 0..=framed - len {
                        // Skip grams that are frame only (cannot happen for len >= 2 unless
                        // the text is empty).
                        let (start, end) = framed_span(p, len, n);
                        if start >= end {
                            continue;
                        }
                        let id = ngram_id(chars, p, len, n, buckets);
                        out.push(Token { id, start, end });
                    }
                }
                out
            }
        }
    }

    /// The id `token` would have if the text were `chars` (same length as the text it was
    /// read from).
    pub fn retoken(&self, chars: &[char], token: &Token) -> u32 {
        match *self {
            TextEncoder::Chars { .. } => char_id(chars[token.start]),
            TextEncoder::Ngrams {
                buckets, max_chars, ..
            } => {
                let n = chars.len().min(max_chars);
                let (p, len) = unframe(token);
                ngram_id(chars, p, len, n, buckets)
            }
        }
    }

    /// Ids of a batch of token lists, padded with [`PAD`] to the longest (at least 1), and
    /// the mask (1 for real tokens).
    /// Takes owned or borrowed lists, so callers batching stored tokens need not copy them.
    pub fn batch_ids<T: AsRef<[Token]>>(&self, tokens: &[T]) -> (Vec<i64>, Vec<f32>, usize) {
        let t = tokens
            .iter()
            .map(|x| x.as_ref().len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut ids = vec![PAD as i64; tokens.len() * t];
        let mut mask = vec![0.0f32; tokens.len() * t];
        for (b, toks) in tokens.iter().enumerate() {
            for (i, tok) in toks.as_ref().iter().enumerate() {
                ids[b * t + i] = table_row(tok.id) as i64;
                mask[b * t + i] = 1.0;
            }
        }
        (ids, mask, t)
    }
}

/// Id of one character for the char encoder.
pub fn char_id(c: char) -> u32 {
    let c = if c.is_whitespace() { ' ' } else { c };
    let u = c as u32;
    if (ASCII_FIRST..=ASCII_LAST).contains(&u) {
        2 + u - ASCII_FIRST
    } else {
        UNKNOWN
    }
}

/// Span in the text of the framed gram at position `p` of length `len`, text length `n`.
fn framed_span(p: usize, len: usize, n: usize) -> (usize, usize) {
    let start = p.max(1) - 1;
    let end = (p + len).min(n + 1) - 1;
    (start, end.max(start))
}

/// Inverse of [`framed_span`]: the framed position and length of a gram, from its span and
/// the frame bits of its id.
fn unframe(token: &Token) -> (usize, usize) {
    let span = token.end - token.start;
    let lead = token.id & FRAME_LEAD != 0;
    let trail = token.id & FRAME_TRAIL != 0;
    let p = if lead { 0 } else { token.start + 1 };
    (p, span + lead as usize + trail as usize)
}

/// Id bits recording whether a gram touches the frame: set aside so that an id alone
/// tells which framed gram a span came from (spans at the text's ends are otherwise
/// ambiguous: " ab" and "ab" share the span 0..2).
const FRAME_LEAD: u32 = 1 << 30;
const FRAME_TRAIL: u32 = 1 << 31;
/// Largest bucket count: ids must leave the frame bits free.
pub const MAX_BUCKETS: usize = (1 << 30) - 2;

/// Hashed id of the framed gram at `p`, length `len`.
fn ngram_id(chars: &[char], p: usize, len: usize, n: usize, buckets: usize) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for q in p..p + len {
        let c = if q == 0 || q == n + 1 {
            ' '
        } else {
            normalise_char(chars[q - 1])
        };
        h ^= c as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let bucket = 1 + (h % buckets as u64) as u32;
    bucket | if p == 0 { FRAME_LEAD } else { 0 } | if p + len == n + 2 { FRAME_TRAIL } else { 0 }
}

/// Lower-case, whitespace as a space; one character in, one out.
fn normalise_char(c: char) -> char {
    if c.is_whitespace() {
        ' '
    } else {
        c.to_lowercase().next().unwrap_or(c)
    }
}

/// The embedding-table row of an id (frame bits removed).
pub fn table_row(id: u32) -> u32 {
    id & !(FRAME_LEAD | FRAME_TRAIL)
}
