//! Edits an attacker may make, the distance that budgets the character ones, and
//! highlighting of what changed.
//!
//! Three families, each edit one unit of an attack's budget:
//!
//! - **Character edits** ([`EditKind::is_character`]: swap, delete, insert, substitute,
//!   homoglyph, leet, zero-width, flip). Every one [`propose`] makes is exactly one step of
//!   optimal-string-alignment (restricted Damerau–Levenshtein) distance: one adjacent
//!   transposition, deletion, insertion or substitution. OSA is not a metric (editing inside
//!   a transposed pair can cost more than the sum), so attacks keep their edits apart: at
//!   most one edit per word (DeepWordBug) or substitutions at distinct positions (HotFlip);
//!   then the distance is at most the number of edits.
//! - **Word edits** ([`WORD_KINDS`]: spacing, separator, case-mix, full-leet, tag, bidi,
//!   split, join, synonym): the obfuscations people use against text filters, each
//!   rewriting one whole word (join: removing the whitespace after it). They change many
//!   characters at once, so no edit-distance bound holds for them; the budget counts words.
//!   Their [`Edit`] records the whole word as `before` and its rewrite as `after`.
//! - **Whole-text encodings** ([`ENCODE_KINDS`]), made by the `Encoding` attack
//!   (`text::attack::encoding`), never by [`propose`].

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::OnceLock;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::canon::{is_invisible, Canonicalizer, PDF, RLO, WORD_SEPARATORS};
use super::wordnet::WordNet;
use crate::rng::AdvRng;

/// The kinds of edit (see the module docs for the three families).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EditKind {
    /// Transpose two adjacent, different characters.
    Swap,
    /// Delete one character.
    Delete,
    /// Insert one random letter.
    Insert,
    /// Replace one character by a random letter (or digit, for a digit).
    Substitute,
    /// Replace an ASCII character by a non-ASCII look-alike (Cyrillic `а` for `a`).
    Homoglyph,
    /// Replace a letter by a look-alike digit (`e` → `3`).
    Leet,
    /// Insert an invisible character.
    ZeroWidth,
    /// A gradient-chosen substitution (HotFlip).
    Flip,
    /// A space between every character of the word (`ignore` → `i g n o r e`): readers
    /// still read it, word and n-gram tokenisers no longer see the word.
    Spacing,
    /// One of [`WORD_SEPARATORS`] inside the word, once (`ig-nore`) or between every
    /// character (`i.g.n.o.r.e`), chosen at random.
    Separator,
    /// The word's letters in random or alternating case, different from the original
    /// (`iGnOrE`): beats case-sensitive keyword lists.
    CaseMix,
    /// Every letter of the word that has a [`leet`] digit replaced by it (`free` → `fr33`).
    FullLeet,
    /// Invisible Unicode tag characters (U+E0020..U+E007E, the tag copies of ASCII) inside
    /// the word: the "ASCII smuggling" of prompt injection.
    Tag,
    /// "Trojan source": the word written reversed between RLO (U+202E) and PDF (U+202C), so
    /// it renders as the original word while its characters run backwards.
    Bidi,
    /// A space at one interior position of the word (`ig nore`).
    Split,
    /// The whitespace between the word and the next word removed (`ignore previous` →
    /// `ignoreprevious`).
    Join,
    /// The word replaced by a WordNet synonym in the same case pattern (`Big` → `Large`).
    Synonym,
    /// The whole text base64-encoded behind a "decode this" preamble.
    EncodeBase64,
    /// The whole text ROT13-encoded behind a "decode this" preamble.
    EncodeRot13,
    /// The whole text's UTF-8 bytes in hex behind a "decode this" preamble.
    EncodeHex,
}

/// The edit kinds of the `deepwordbug` attack: the character edits but the white-box
/// [`EditKind::Flip`]. Records name this set `deepwordbug`, so it never grows.
pub const DEEPWORDBUG_KINDS: [EditKind; 7] = [
    EditKind::Swap,
    EditKind::Delete,
    EditKind::Insert,
    EditKind::Substitute,
    EditKind::Homoglyph,
    EditKind::Leet,
    EditKind::ZeroWidth,
];

/// The word edits, each rewriting one word as one unit of budget.
pub const WORD_KINDS: [EditKind; 9] = [
    EditKind::Spacing,
    EditKind::Separator,
    EditKind::CaseMix,
    EditKind::FullLeet,
    EditKind::Tag,
    EditKind::Bidi,
    EditKind::Split,
    EditKind::Join,
    EditKind::Synonym,
];

/// The whole-text encodings of the `encoding` attack.
pub const ENCODE_KINDS: [EditKind; 3] = [
    EditKind::EncodeBase64,
    EditKind::EncodeRot13,
    EditKind::EncodeHex,
];

/// Every edit kind, in declaration order: what [`EditKind::from_str`] accepts.
pub const ALL_KINDS: [EditKind; 20] = [
    EditKind::Swap,
    EditKind::Delete,
    EditKind::Insert,
    EditKind::Substitute,
    EditKind::Homoglyph,
    EditKind::Leet,
    EditKind::ZeroWidth,
    EditKind::Flip,
    EditKind::Spacing,
    EditKind::Separator,
    EditKind::CaseMix,
    EditKind::FullLeet,
    EditKind::Tag,
    EditKind::Bidi,
    EditKind::Split,
    EditKind::Join,
    EditKind::Synonym,
    EditKind::EncodeBase64,
    EditKind::EncodeRot13,
    EditKind::EncodeHex,
];

impl EditKind {
    /// Kebab-case name as used on the command line and in records.
    pub fn as_str(&self) -> &'static str {
        match self {
            EditKind::Swap => "swap",
            EditKind::Delete => "delete",
            EditKind::Insert => "insert",
            EditKind::Substitute => "substitute",
            EditKind::Homoglyph => "homoglyph",
            EditKind::Leet => "leet",
            EditKind::ZeroWidth => "zero-width",
            EditKind::Flip => "flip",
            EditKind::Spacing => "spacing",
            EditKind::Separator => "separator",
            EditKind::CaseMix => "case-mix",
            EditKind::FullLeet => "full-leet",
            EditKind::Tag => "tag",
            EditKind::Bidi => "bidi",
            EditKind::Split => "split",
            EditKind::Join => "join",
            EditKind::Synonym => "synonym",
            EditKind::EncodeBase64 => "encode-base64",
            EditKind::EncodeRot13 => "encode-rot13",
            EditKind::EncodeHex => "encode-hex",
        }
    }

    /// Whether an edit of this kind is one OSA step, so `edit_distance <= edits` holds.
    pub fn is_character(&self) -> bool {
        DEEPWORDBUG_KINDS.contains(self) || *self == EditKind::Flip
    }

    /// Whether this kind rewrites one word (see [`WORD_KINDS`]).
    pub fn is_word(&self) -> bool {
        WORD_KINDS.contains(self)
    }

    /// Whether this kind rewrites the whole text (see [`ENCODE_KINDS`]); [`propose`] never
    /// makes one.
    pub fn is_whole_text(&self) -> bool {
        ENCODE_KINDS.contains(self)
    }

    /// Whether proposals of this kind need a [`WordNet`] in their [`EditContext`].
    pub fn needs_wordnet(&self) -> bool {
        *self == EditKind::Synonym
    }
}

impl fmt::Display for EditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EditKind {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> crate::error::Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let alias = match s.as_str() {
            "zerowidth" => "zero-width",
            "casemix" => "case-mix",
            "fullleet" => "full-leet",
            other => other,
        };
        ALL_KINDS
            .into_iter()
            .find(|k| k.as_str() == alias)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL_KINDS.iter().map(|k| k.as_str()).collect();
                crate::error::Error::config(format!(
                    "unknown edit kind {s:?} (expected one of {})",
                    names.join(", ")
                ))
            })
    }
}

/// One applied edit. `before` was replaced by `after` at char index `position` of the text as
/// it was when the edit was applied (a swap has `before = "ab"`, `after = "ba"`; a word edit
/// has the whole word as `before`; a join has the removed whitespace as `before` and an
/// empty `after`; an encoding has the whole text as `before`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    /// Which kind of edit it was.
    pub kind: EditKind,
    /// Char index (not byte index) in the text before this edit where it applies; for an
    /// insertion, the index the new char takes.
    pub position: usize,
    /// The chars removed: one for a substitution or deletion, two for a swap, empty for an
    /// insertion, the word for a word edit.
    pub before: String,
    /// The chars written in their place: empty for a deletion or a join.
    pub after: String,
}

/// `original` with `edits` applied in order, or `None` if an edit's `before` is not at its
/// `position` (the record does not belong to this text). Lets a reader of a record check
/// that its adversarial text is what the edits say.
pub fn apply_edits(original: &str, edits: &[Edit]) -> Option<String> {
    let mut chars: Vec<char> = original.chars().collect();
    for e in edits {
        let before: Vec<char> = e.before.chars().collect();
        let end = e.position.checked_add(before.len())?;
        if chars.get(e.position..end)? != before.as_slice() {
            return None;
        }
        chars.splice(e.position..end, e.after.chars());
    }
    Some(chars.into_iter().collect())
}

/// What a proposal may read besides the text: the WordNet that [`EditKind::Synonym`] draws
/// from. The default (nothing) serves every other kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct EditContext<'a> {
    /// Synonyms for [`EditKind::Synonym`]; without it, synonym proposals are `None`.
    pub wordnet: Option<&'a WordNet>,
}

impl<'a> EditContext<'a> {
    /// A context with `wordnet` for synonym proposals.
    pub fn with_wordnet(wordnet: &'a WordNet) -> Self {
        Self {
            wordnet: Some(wordnet),
        }
    }
}

/// Invisible characters a [`EditKind::ZeroWidth`] edit inserts: zero-width space, non-joiner,
/// joiner, word joiner, BOM (zero-width no-break space).
pub const ZERO_WIDTH: [char; 5] = ['\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}'];

/// Non-ASCII look-alikes `h` of `c`, i.e. those with
/// `Canonicalizer::lookalikes().apply(h) == c`
/// (Cyrillic, Greek, fullwidth, mathematical alphanumerics, ...). Empty for non-ASCII `c`.
/// Built once from the confusables and NFKC data, so the defence undoes exactly these.
pub fn homoglyphs(c: char) -> &'static [char] {
    static TABLE: OnceLock<Vec<Vec<char>>> = OnceLock::new();
    if !c.is_ascii() {
        return &[];
    }
    let table = TABLE.get_or_init(build_homoglyphs);
    &table[c as usize]
}

fn build_homoglyphs() -> Vec<Vec<char>> {
    let canon = Canonicalizer::lookalikes();
    let mut table = vec![Vec::new(); 128];
    // Planes 0 and 1 hold every character that folds to one ASCII character.
    for h in (0x80u32..0x2_0000).filter_map(char::from_u32) {
        if is_invisible(h)
            || h.is_whitespace()
            || h.is_control()
            || unicode_normalization::char::is_combining_mark(h)
        {
            continue;
        }
        let mut buf = [0u8; 4];
        let folded = canon.apply(h.encode_utf8(&mut buf));
        let mut it = folded.chars();
        if let (Some(c), None) = (it.next(), it.next()) {
            if c.is_ascii_graphic() {
                table[c as usize].push(h);
            }
        }
    }
    table
}

/// A look-alike digit for a letter (`a`→4, `e`→3, `i`→1, `o`→0, `s`→5, `t`→7, ...).
pub fn leet(c: char) -> Option<char> {
    Some(match c.to_ascii_lowercase() {
        'a' => '4',
        'b' => '8',
        'e' => '3',
        'g' => '9',
        'i' => '1',
        'l' => '1',
        'o' => '0',
        's' => '5',
        't' => '7',
        'z' => '2',
        _ => return None,
    })
}

/// Spans (char indices) of maximal runs of alphanumeric characters.
pub fn words(chars: &[char]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in chars.iter().enumerate() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..chars.len());
    }
    out
}

fn random_letter_like(c: char, rng: &mut AdvRng) -> char {
    let (base, n) = if c.is_ascii_uppercase() {
        (b'A', 26)
    } else if c.is_ascii_digit() {
        (b'0', 10)
    } else {
        (b'a', 26)
    };
    loop {
        let r = (base + rng.random_range(0..n)) as char;
        if r != c {
            return r;
        }
    }
}

fn pick<T: Copy>(items: &[T], rng: &mut AdvRng) -> Option<T> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())])
}

/// One random edit of `kind` inside `word` (a span of `chars`): the edited text and the edit.
/// `None` if the kind does not apply there (no swappable pair, no look-alike, empty span, no
/// following word to join, no synonym). Synonyms need a WordNet: use [`propose_in`].
/// Insertions may go at either end of the word, so they stay within its span.
pub fn propose(
    kind: EditKind,
    chars: &[char],
    word: Range<usize>,
    rng: &mut AdvRng,
) -> Option<(Vec<char>, Edit)> {
    propose_in(&EditContext::default(), kind, chars, word, rng)
}

/// [`propose`] with a context, for the kinds that read more than the text
/// ([`EditKind::Synonym`]). A character edit stays inside `word`; a word edit replaces the
/// whole of `word`; a join removes the whitespace right after it.
pub fn propose_in(
    ctx: &EditContext<'_>,
    kind: EditKind,
    chars: &[char],
    word: Range<usize>,
    rng: &mut AdvRng,
) -> Option<(Vec<char>, Edit)> {
    let word = word.start.min(chars.len())..word.end.min(chars.len());
    if word.is_empty() || kind.is_whole_text() {
        return None;
    }
    let (at, removed, with) = if kind.is_character() {
        char_edit(kind, chars, word, rng)?
    } else if kind == EditKind::Join {
        let ws = join_whitespace(chars, word.end)?;
        (word.end, ws, Vec::new())
    } else {
        let new = rewrite_word(ctx, kind, &chars[word.clone()], rng)?;
        (word.start, word.len(), new)
    };
    Some(splice(kind, chars, at, removed, with))
}

/// `chars` with `removed` chars at `at` replaced by `with`, and the edit saying so.
fn splice(
    kind: EditKind,
    chars: &[char],
    at: usize,
    removed: usize,
    with: Vec<char>,
) -> (Vec<char>, Edit) {
    let edit = Edit {
        kind,
        position: at,
        before: chars[at..at + removed].iter().collect(),
        after: with.iter().collect(),
    };
    let mut out = chars.to_vec();
    out.splice(at..at + removed, with);
    (out, edit)
}

/// Number of whitespace chars from `at` when a word (an alphanumeric char) follows them.
pub fn join_whitespace(chars: &[char], at: usize) -> Option<usize> {
    let n = chars
        .get(at..)?
        .iter()
        .take_while(|c| c.is_whitespace())
        .count();
    (n > 0 && chars.get(at + n).is_some_and(|c| c.is_alphanumeric())).then_some(n)
}

/// A one-OSA-step edit inside `word`: (position, chars removed, chars written).
fn char_edit(
    kind: EditKind,
    chars: &[char],
    word: Range<usize>,
    rng: &mut AdvRng,
) -> Option<(usize, usize, Vec<char>)> {
    Some(match kind {
        EditKind::Swap => {
            let ps: Vec<usize> = (word.start..word.end - 1)
                .filter(|&p| chars[p] != chars[p + 1])
                .collect();
            let p = pick(&ps, rng)?;
            (p, 2, vec![chars[p + 1], chars[p]])
        }
        EditKind::Delete => (rng.random_range(word), 1, Vec::new()),
        EditKind::Insert => {
            let p = rng.random_range(word.start..=word.end);
            (p, 0, vec![(b'a' + rng.random_range(0..26u8)) as char])
        }
        EditKind::Homoglyph => {
            let ps: Vec<usize> = word.filter(|&p| !homoglyphs(chars[p]).is_empty()).collect();
            let p = pick(&ps, rng)?;
            (p, 1, vec![pick(homoglyphs(chars[p]), rng)?])
        }
        EditKind::Leet => {
            let ps: Vec<usize> = word
                .filter(|&p| leet(chars[p]).is_some_and(|l| l != chars[p]))
                .collect();
            let p = pick(&ps, rng)?;
            (p, 1, vec![leet(chars[p])?])
        }
        EditKind::ZeroWidth => {
            // Inside the word when it has an inside, so the split is unseen.
            let p = if word.len() >= 2 {
                rng.random_range(word.start + 1..word.end)
            } else {
                rng.random_range(word.start..=word.end)
            };
            (p, 0, vec![pick(&ZERO_WIDTH, rng)?])
        }
        EditKind::Substitute | EditKind::Flip => {
            let p = rng.random_range(word);
            (p, 1, vec![random_letter_like(chars[p], rng)])
        }
        _ => return None,
    })
}

/// The rewrite of a whole word by a word edit, or `None` where the kind does not apply
/// (a one-char word cannot be spaced out, a word without letters has no case, ...).
fn rewrite_word(
    ctx: &EditContext<'_>,
    kind: EditKind,
    w: &[char],
    rng: &mut AdvRng,
) -> Option<Vec<char>> {
    let inside = |rng: &mut AdvRng| rng.random_range(1..w.len());
    match kind {
        EditKind::Spacing if w.len() >= 2 => Some(interleave(w, ' ')),
        EditKind::Separator if w.len() >= 2 => {
            let sep = pick(&WORD_SEPARATORS, rng)?;
            if rng.random_bool(0.5) {
                Some(insert_at(w, inside(rng), &[sep]))
            } else {
                Some(interleave(w, sep))
            }
        }
        EditKind::CaseMix => case_mix(w, rng),
        EditKind::FullLeet => {
            let out: Vec<char> = w.iter().map(|&c| leet(c).unwrap_or(c)).collect();
            (out != w).then_some(out)
        }
        EditKind::Tag => {
            let tags: Vec<char> = (0..rng.random_range(1..=3))
                .filter_map(|_| tag_char(b'a' + rng.random_range(0..26u8)))
                .collect();
            let at = if w.len() >= 2 { inside(rng) } else { w.len() };
            Some(insert_at(w, at, &tags))
        }
        EditKind::Bidi if w.len() >= 2 => {
            let mut out = vec![RLO];
            out.extend(w.iter().rev());
            out.push(PDF);
            Some(out)
        }
        EditKind::Split if w.len() >= 2 => Some(insert_at(w, inside(rng), &[' '])),
        EditKind::Synonym => synonym(ctx.wordnet?, w, rng),
        _ => None,
    }
}

/// `w` with `sep` between every two chars.
fn interleave(w: &[char], sep: char) -> Vec<char> {
    let mut out = Vec::with_capacity(2 * w.len());
    for (i, &c) in w.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

fn insert_at(w: &[char], at: usize, with: &[char]) -> Vec<char> {
    let mut out = w.to_vec();
    out.splice(at..at, with.iter().copied());
    out
}

/// The Unicode tag character that encodes printable ASCII `b` (U+E0020..U+E007E); `None`
/// outside `0x20..=0x7E`.
pub fn tag_char(b: u8) -> Option<char> {
    (0x20..=0x7E)
        .contains(&b)
        .then(|| char::from_u32(0xE0000 + u32::from(b)))
        .flatten()
}

/// The other-case form of a letter whose case round-trips exactly (one char each way), so
/// lowercasing undoes the change; `None` for caseless chars and for special cases (`ß`,
/// `İ`, final sigma, titlecase digraphs).
fn other_case(c: char) -> Option<char> {
    let lower = single(c.to_lowercase())?;
    let upper = single(c.to_uppercase())?;
    let round_trips = lower != upper
        && single(upper.to_lowercase()) == Some(lower)
        && single(lower.to_uppercase()) == Some(upper);
    if !round_trips {
        None
    } else if c == lower {
        Some(upper)
    } else if c == upper {
        Some(lower)
    } else {
        None
    }
}

/// The only char of `it`, or `None` if it has none or several.
fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
    let first = it.next()?;
    it.next().is_none().then_some(first)
}

/// Random (half the time alternating) case of the word's cased letters, never the original.
fn case_mix(w: &[char], rng: &mut AdvRng) -> Option<Vec<char>> {
    let cased: Vec<usize> = (0..w.len())
        .filter(|&i| other_case(w[i]).is_some())
        .collect();
    if cased.is_empty() {
        return None;
    }
    let alternate = rng.random_bool(0.5);
    let mut upper = rng.random_bool(0.5);
    let mut out = w.to_vec();
    for &i in &cased {
        upper = if alternate {
            !upper
        } else {
            rng.random_bool(0.5)
        };
        let is_upper = w[i].to_lowercase().ne([w[i]]);
        if upper != is_upper {
            out[i] = other_case(w[i])?;
        }
    }
    if out == w {
        let i = pick(&cased, rng)?;
        out[i] = other_case(w[i])?;
    }
    Some(out)
}

/// A WordNet synonym of `w` other than `w`, in `w`'s case pattern (lower, Capitalised or
/// UPPER).
fn synonym(wordnet: &WordNet, w: &[char], rng: &mut AdvRng) -> Option<Vec<char>> {
    let word: String = w.iter().collect();
    let lower = word.to_lowercase();
    let options: Vec<&String> = wordnet
        .synonyms(&lower)
        .iter()
        .filter(|s| !s.is_empty() && **s != lower && !s.contains(['_', ' ']))
        .collect();
    let chosen = pick(&options, rng)?;
    let letters: Vec<&char> = w.iter().filter(|c| c.is_alphabetic()).collect();
    let all_upper = letters.len() >= 2 && letters.iter().all(|c| c.is_uppercase());
    let out: String = if all_upper {
        chosen.to_uppercase()
    } else if w[0].is_uppercase() {
        let mut cs = chosen.chars();
        cs.next()
            .map(|f| f.to_uppercase().chain(cs).collect())
            .unwrap_or_default()
    } else {
        chosen.to_string()
    };
    Some(out.chars().collect())
}

/// Optimal-string-alignment distance between `a` and `b`, in chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (a, b) = trim_common(&a, &b);
    osa_rows(a, b)
}

/// Strip the common prefix and suffix (they never change the OSA distance).
fn trim_common<'a>(a: &'a [char], b: &'a [char]) -> (&'a [char], &'a [char]) {
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[pre..], &b[pre..]);
    let suf = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (&a[..a.len() - suf], &b[..b.len() - suf])
}

fn osa_rows(a: &[char], b: &[char]) -> usize {
    if a.is_empty() || b.is_empty() {
        return a.len() + b.len();
    }
    let m = b.len();
    let mut prev2 = vec![0usize; m + 1];
    let mut prev: Vec<usize> = (0..=m).collect();
    let mut cur = vec![0usize; m + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[m]
}

/// Which chars of `b` are not plainly matched to a char of `a` in an optimal OSA alignment
/// (inserted, substituted or transposed).
fn changed_chars(a: &[char], b: &[char]) -> Vec<bool> {
    let (n, m) = (a.len(), b.len());
    let w = m + 1;
    let mut d = vec![0usize; (n + 1) * w];
    for i in 0..=n {
        d[i * w] = i;
    }
    for (j, v) in d.iter_mut().enumerate().take(w) {
        *v = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    let mut changed = vec![false; m];
    let (mut i, mut j) = (n, m);
    while i > 0 || j > 0 {
        let here = d[i * w + j];
        if i > 0 && j > 0 && a[i - 1] == b[j - 1] && here == d[(i - 1) * w + j - 1] {
            i -= 1;
            j -= 1;
        } else if i > 0 && j > 0 && here == d[(i - 1) * w + j - 1] + 1 {
            changed[j - 1] = true;
            i -= 1;
            j -= 1;
        } else if j > 0 && here == d[i * w + j - 1] + 1 {
            changed[j - 1] = true;
            j -= 1;
        } else if i > 0 && here == d[(i - 1) * w + j] + 1 {
            i -= 1;
        } else {
            // Transposition.
            changed[j - 1] = true;
            changed[j - 2] = true;
            i -= 2;
            j -= 2;
        }
    }
    changed
}

/// A run of the adversarial text, changed or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The run's chars, in order; concatenating every segment gives the adversarial text.
    pub text: String,
    /// Whether the alignment marks these chars as inserted, substituted or transposed.
    pub changed: bool,
}

/// The adversarial text cut into runs of chars that an optimal alignment with `original`
/// marks as inserted, substituted or transposed (`changed`) and runs it keeps. Deletions leave
/// no char to mark.
pub fn highlight(original: &str, adversarial: &str) -> Vec<Segment> {
    let a: Vec<char> = original.chars().collect();
    let b: Vec<char> = adversarial.chars().collect();
    let pre = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (ta, tb) = trim_common(&a, &b);
    let mut flags = vec![false; b.len()];
    for (k, f) in changed_chars(ta, tb).into_iter().enumerate() {
        flags[pre + k] = f;
    }
    let mut out: Vec<Segment> = Vec::new();
    for (c, f) in b.into_iter().zip(flags) {
        match out.last_mut() {
            Some(s) if s.changed == f => s.text.push(c),
            _ => out.push(Segment {
                text: c.to_string(),
                changed: f,
            }),
        }
    }
    out
}

fn invisible_name(c: char) -> String {
    match c {
        '\u{200B}' => "ZWSP".into(),
        '\u{200C}' => "ZWNJ".into(),
        '\u{200D}' => "ZWJ".into(),
        '\u{2060}' => "WJ".into(),
        '\u{FEFF}' => "BOM".into(),
        '\u{00AD}' => "SHY".into(),
        _ => format!("U+{:04X}", c as u32),
    }
}

use crate::io::push_html_escaped;

/// [`highlight`] as HTML: escaped text, changed runs in `<mark>`, and invisible characters
/// spelled out (`<mark title="U+200B">⟨ZWSP⟩</mark>`) so a reader sees them.
pub fn highlight_html(original: &str, adversarial: &str) -> String {
    let mut out = String::new();
    for seg in highlight(original, adversarial) {
        let tag = if seg.changed { "mark" } else { "span" };
        let mut open = false;
        for c in seg.text.chars() {
            if is_invisible(c) {
                if open {
                    out.push_str("</mark>");
                    open = false;
                }
                out.push_str(&format!(
                    "<{tag} title=\"U+{:04X}\">\u{27E8}{}\u{27E9}</{tag}>",
                    c as u32,
                    invisible_name(c)
                ));
            } else {
                if seg.changed && !open {
                    out.push_str("<mark>");
                    open = true;
                }
                push_html_escaped(&mut out, c);
            }
        }
        if open {
            out.push_str("</mark>");
        }
    }
    out
}

/// [`highlight`] for a terminal or log: changed runs in `[brackets]`, invisible characters as
/// `<U+200B>`.
pub fn highlight_terminal(original: &str, adversarial: &str) -> String {
    let mut out = String::new();
    for seg in highlight(original, adversarial) {
        if seg.changed {
            out.push('[');
        }
        for c in seg.text.chars() {
            if is_invisible(c) {
                out.push_str(&format!("<U+{:04X}>", c as u32));
            } else {
                out.push(c);
            }
        }
        if seg.changed {
            out.push(']');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn osa_full(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        osa_rows(&a, &b)
    }

    #[test]
    fn osa_known_values() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("ca", "abc"), 3); // OSA, not full Damerau (2)
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("f\u{0430}", "fa"), 1);
    }

    #[test]
    fn trimming_matches_untrimmed() {
        let alphabet = ['a', 'b', 'c'];
        let mut rng = crate::rng::seeded(3);
        for _ in 0..2000 {
            let mut s = || -> String {
                let n = rng.random_range(0..7);
                (0..n).map(|_| alphabet[rng.random_range(0..3)]).collect()
            };
            let (a, b) = (s(), s());
            assert_eq!(edit_distance(&a, &b), osa_full(&a, &b), "{a:?} {b:?}");
        }
    }

    #[test]
    fn kinds_parse_back() {
        for k in ALL_KINDS {
            assert_eq!(k.as_str().parse::<EditKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert!("typo".parse::<EditKind>().is_err());
    }

    #[test]
    fn homoglyph_table_is_sane() {
        let a = homoglyphs('a');
        assert!(a.contains(&'\u{0430}'), "Cyrillic a");
        assert!(a.contains(&'\u{FF41}'), "fullwidth a");
        for c in (0u8..128).map(char::from) {
            for &h in homoglyphs(c) {
                assert!(!h.is_ascii());
                assert_eq!(
                    Canonicalizer::lookalikes().apply(&h.to_string()),
                    c.to_string()
                );
            }
        }
        assert!(homoglyphs('\u{0430}').is_empty());
        assert!(!homoglyphs('m').contains(&'r'));
    }

    #[test]
    fn words_and_highlight() {
        let chars: Vec<char> = "  hi, there!x".chars().collect();
        assert_eq!(words(&chars), vec![2..4, 6..11, 12..13]);
        assert!(words(&[]).is_empty());
        assert_eq!(highlight_terminal("free", "fr\u{200B}33"), "fr[<U+200B>33]");
        assert_eq!(
            highlight_html("a<b", "a<\u{200B}b"),
            "a&lt;<mark title=\"U+200B\">\u{27E8}ZWSP\u{27E9}</mark>b"
        );
    }
}
