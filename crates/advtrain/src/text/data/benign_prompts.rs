//! SYNTHETIC benign prompts, the negatives of the prompt-injection training set.
//!
//! No real benign user prompts are available under a usable licence, so they are generated:
//! a request template with its `{slot}`s filled at random, padded with context sentences to
//! a target length. The tables (templates, context sentences, intros, slot fillers) are data,
//! kept in `benign_prompt_templates.txt` so they can be read and reviewed as text; it is
//! embedded at compile time and parsed once. This file is only the parser and the generator.
//!
//! The generated texts feed reproducible benchmarks, so for a given seed they must never
//! change by accident: the golden tests at the bottom pin counts and hashes that were
//! computed with the generator as it was when the tables were still Rust constants.

use std::collections::{BTreeSet, HashSet};
use std::sync::LazyLock;

use rand::Rng as _;

use super::normalise::{cap_chars, dedupe_key};
use super::{MAX_TEXT_CHARS, SYNTH_STREAM};
use crate::rng::{derived, AdvRng};

/// The tables as text; the file's header describes the format.
const TABLES_TEXT: &str = include_str!("benign_prompt_templates.txt");

/// The tables, parsed on first use. The file is part of the source, so a parse error is a
/// bug that this module's tests catch, not bad input.
static TABLES: LazyLock<PromptTables<'static>> = LazyLock::new(|| {
    PromptTables::parse(TABLES_TEXT).unwrap_or_else(|e| panic!("benign_prompt_templates.txt: {e}"))
});

/// `n` distinct SYNTHETIC benign prompts from the request templates, seeded by `seed` only.
/// Each takes a target length from `lengths` (e.g. the positives' lengths, so both classes
/// have the same length distribution and length alone does not give the class away) and
/// pads a request with context sentences up to it. Prompts whose case- and
/// whitespace-insensitive form is in `avoid` (the test set, the positives) are skipped, so
/// no text is in both classes or leaks into the test set. Fewer than `n` come back only if
/// the templates run out of distinct fillings.
pub fn synthetic_benign_prompts(
    n: usize,
    lengths: &[usize],
    avoid: &HashSet<String>,
    seed: u64,
) -> Vec<String> {
    let tables = &*TABLES;
    let mut rng = derived(seed, SYNTH_STREAM);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(n);
    let mut attempts = 0usize;
    while out.len() < n && attempts < 50 * n + 1000 {
        attempts += 1;
        let text = tables.prompt(lengths, &mut rng);
        let key = dedupe_key(&text);
        if avoid.contains(&key) || !seen.insert(key) {
            continue;
        }
        out.push(text);
    }
    out
}

/// Number of request templates [`synthetic_benign_prompts`] draws from, quoted in the
/// prompt-injection provenance so a report says how varied its synthetic negatives are.
pub fn synthetic_template_count() -> usize {
    TABLES.templates.len()
}

/// The generator's tables, borrowing from the text they were parsed from.
#[derive(Debug)]
struct PromptTables<'a> {
    /// Request templates (`[templates]`), in file order.
    templates: Vec<&'a str>,
    /// Sentences that pad a request to a target length (`[context]`).
    context: Vec<&'a str>,
    /// Openers of the padding (`[intros]`).
    intros: Vec<&'a str>,
    /// `(slot name, fillers)` of each `[slot NAME]` section, in file order.
    slots: Vec<(&'a str, Vec<&'a str>)>,
}

/// Which table the entries under a section header go to.
#[derive(Clone, Copy)]
enum Section {
    Templates,
    Context,
    Intros,
    /// Index into [`PromptTables::slots`].
    Slot(usize),
}

impl<'a> PromptTables<'a> {
    /// Parse the line-based format described at the top of `benign_prompt_templates.txt`,
    /// then [`validate`](Self::validate) the result.
    fn parse(text: &'a str) -> Result<Self, String> {
        let mut tables = PromptTables {
            templates: Vec::new(),
            context: Vec::new(),
            intros: Vec::new(),
            slots: Vec::new(),
        };
        let mut headers: BTreeSet<&str> = BTreeSet::new();
        let mut section: Option<Section> = None;
        for (n, line) in text.lines().enumerate() {
            let at = |msg: String| format!("line {}: {msg}", n + 1);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(header) = line.strip_prefix('[') {
                let name = header
                    .strip_suffix(']')
                    .ok_or_else(|| at(format!("unclosed section header {line:?}")))?;
                if !headers.insert(name) {
                    return Err(at(format!("section [{name}] appears twice")));
                }
                section = Some(tables.open_section(name).map_err(at)?);
                continue;
            }
            if line != line.trim() {
                return Err(at(format!("entry {line:?} starts or ends with whitespace")));
            }
            let entries = match section {
                None => return Err(at(format!("entry {line:?} before any section header"))),
                Some(Section::Templates) => &mut tables.templates,
                Some(Section::Context) => &mut tables.context,
                Some(Section::Intros) => &mut tables.intros,
                Some(Section::Slot(i)) => &mut tables.slots[i].1,
            };
            entries.push(line);
        }
        tables.validate()?;
        Ok(tables)
    }

    /// The section a header names; a `[slot NAME]` header adds the (empty) slot.
    fn open_section(&mut self, name: &'a str) -> Result<Section, String> {
        Ok(match name {
            "templates" => Section::Templates,
            "context" => Section::Context,
            "intros" => Section::Intros,
            _ => match name.strip_prefix("slot ") {
                Some(slot)
                    if !slot.is_empty()
                        && slot.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    self.slots.push((slot, Vec::new()));
                    Section::Slot(self.slots.len() - 1)
                }
                _ => return Err(format!("unknown section [{name}]")),
            },
        })
    }

    /// Every table and slot has an entry (the generator draws from each) and every `{slot}`
    /// a template or context sentence uses is defined.
    fn validate(&self) -> Result<(), String> {
        for (name, table) in [
            ("templates", &self.templates),
            ("context", &self.context),
            ("intros", &self.intros),
        ] {
            if table.is_empty() {
                return Err(format!("section [{name}] is missing or empty"));
            }
        }
        if let Some((slot, _)) = self.slots.iter().find(|(_, fillers)| fillers.is_empty()) {
            return Err(format!("section [slot {slot}] is empty"));
        }
        for entry in self.templates.iter().chain(&self.context) {
            for slot in placeholders(entry) {
                if self.fillers(slot).is_none() {
                    return Err(format!(
                        "{entry:?} uses {{{slot}}}, which has no [slot {slot}]"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The fillers of `slot`, if it is defined.
    fn fillers(&self, slot: &str) -> Option<&[&'a str]> {
        self.slots
            .iter()
            .find(|(name, _)| *name == slot)
            .map(|(_, fillers)| fillers.as_slice())
    }

    /// One prompt (before the duplicate check): a random request, padded with context when
    /// the drawn target length leaves room, capped at [`MAX_TEXT_CHARS`]. The order of the
    /// random draws is part of the seeded output; do not reorder them.
    fn prompt(&self, lengths: &[usize], rng: &mut AdvRng) -> String {
        let template = self.templates[rng.random_range(0..self.templates.len())];
        let request = self.fill(template, rng);
        let target = if lengths.is_empty() {
            0
        } else {
            lengths[rng.random_range(0..lengths.len())].min(MAX_TEXT_CHARS)
        };
        let mut text = request.clone();
        if text.chars().count() + 40 < target {
            let mut context = String::from(self.intros[rng.random_range(0..self.intros.len())]);
            while text.chars().count() + context.chars().count() + 2 < target {
                let sentence = self.context[rng.random_range(0..self.context.len())];
                context.push(' ');
                context.push_str(&self.fill(sentence, rng));
            }
            text = if rng.random_bool(0.5) {
                format!("{request}\n\n{context}")
            } else {
                format!("{context}\n\n{request}")
            };
        }
        cap_chars(text, MAX_TEXT_CHARS)
    }

    /// Fill each `{slot}` of `template` with a random filler (an unknown slot is left as is).
    fn fill(&self, template: &str, rng: &mut AdvRng) -> String {
        let mut out = String::with_capacity(template.len() + 40);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) => {
                    let slot = &after[..close];
                    match self.fillers(slot) {
                        Some(fillers) => out.push_str(fillers[rng.random_range(0..fillers.len())]),
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
}

/// The `{slot}` names in `template`, as [`PromptTables::fill`] finds them.
fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    let mut rest = template;
    std::iter::from_fn(move || {
        let open = rest.find('{')?;
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        rest = &after[close + 1..];
        Some(&after[..close])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a 64 over `bytes`, then a separator byte, so `["ab", "c"]` and `["a", "bc"]`
    /// hash differently. Written out so the golden values do not depend on std's hasher.
    fn fnv(h: &mut u64, bytes: &[u8]) {
        for &b in bytes {
            *h ^= u64::from(b);
            *h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        *h ^= 0xff;
        *h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }

    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

    fn hash_texts(texts: &[String]) -> u64 {
        let mut h = FNV_OFFSET;
        for t in texts {
            fnv(&mut h, t.as_bytes());
        }
        h
    }

    #[test]
    fn tables_parse_and_every_slot_has_fillers() {
        for t in TABLES.templates.iter().chain(&TABLES.context) {
            let mut rng = derived(0, 0);
            let filled = TABLES.fill(t, &mut rng);
            assert!(!filled.contains('{'), "unfilled slot in {t:?}: {filled:?}");
        }
        assert!(TABLES.templates.len() >= 40);
        assert_eq!(synthetic_template_count(), TABLES.templates.len());
    }

    /// The tables hold exactly what the Rust constants held before they moved to the data
    /// file: counts and a hash computed over the original `TEMPLATES`, `SLOTS` and `CONTEXT`
    /// in order, and the four intros that were inline in the generator.
    #[test]
    fn tables_match_the_original_constants() {
        let mut h = FNV_OFFSET;
        for t in &TABLES.templates {
            fnv(&mut h, t.as_bytes());
        }
        fnv(&mut h, b"--slots--");
        for (name, fillers) in &TABLES.slots {
            fnv(&mut h, name.as_bytes());
            for f in fillers {
                fnv(&mut h, f.as_bytes());
            }
            fnv(&mut h, b"--end--");
        }
        fnv(&mut h, b"--context--");
        for t in &TABLES.context {
            fnv(&mut h, t.as_bytes());
        }
        let fillers: usize = TABLES.slots.iter().map(|(_, f)| f.len()).sum();
        assert_eq!(TABLES.templates.len(), 75);
        assert_eq!(TABLES.slots.len(), 64);
        assert_eq!(fillers, 511);
        assert_eq!(TABLES.context.len(), 30);
        assert_eq!(h, GOLDEN_TABLES_HASH);
        assert_eq!(
            TABLES.intros,
            [
                "Here is some context:",
                "Background:",
                "My notes so far:",
                "For reference:"
            ]
        );
    }

    /// The generated prompts are exactly those of the original code (the tables as Rust
    /// constants), for several seeds, length mixes (none, short, long and over the cap) and
    /// an `avoid` set. Expected values were recorded from that code; if this fails, the
    /// seeded data sets (and every benchmark on them) have changed.
    #[test]
    fn generated_prompts_match_the_original_generator() {
        let lengths_b: Vec<usize> = (0..997).map(|i| (i * 37) % 4600).collect();
        let first = synthetic_benign_prompts(10, &lengths_b, &HashSet::new(), 42);
        let avoid_b: HashSet<String> = first.iter().map(|t| dedupe_key(t)).collect();
        let cases: [Case; 4] = [
            ("a", 300, vec![50, 400, 1500], HashSet::new(), 3),
            ("b", 2000, lengths_b, avoid_b, 42),
            ("c", 500, vec![], HashSet::new(), 0),
            ("d", 1000, vec![20, 60, 120, 250], HashSet::new(), u64::MAX),
        ];
        for ((tag, n, lengths, avoid, seed), golden) in cases.into_iter().zip(GOLDEN_PROMPTS) {
            let out = synthetic_benign_prompts(n, &lengths, &avoid, seed);
            let chars: usize = out.iter().map(|t| t.chars().count()).sum();
            let prefix = |t: &String| t.chars().take(72).collect::<String>();
            let ends: Vec<String> = out.iter().take(3).chain(out.last()).map(prefix).collect();
            assert_eq!(golden.0, tag);
            assert_eq!(
                (out.len(), chars, hash_texts(&out)),
                (golden.1, golden.2, golden.3),
                "case {tag}: (count, chars, hash)"
            );
            assert_eq!(ends, golden.4, "case {tag}: first three and last texts");
        }
    }

    /// `(case, n, lengths, avoid, seed)`: the arguments of one golden call.
    type Case = (&'static str, usize, Vec<usize>, HashSet<String>, u64);

    const GOLDEN_TABLES_HASH: u64 = 0xc751_a708_ff79_3fcd;

    /// `(case, count, total chars, hash, first 72 chars of the first three and last texts)`.
    const GOLDEN_PROMPTS: [(&str, usize, usize, u64, [&str; 4]); 4] = [
        (
            "a",
            300,
            208_715,
            0x60dd_8d10_ee97_9d0e,
            [
                "Here is some context: The library in Edinburgh has more than 8 reading r",
                "Background: The hiking trail near Lisbon is about 12 kilometres long and",
                "How do I set up a virtual environment in Docker?",
                "Our security training covers phishing and tailgating into the office; wr",
            ],
        ),
        (
            "b",
            2000,
            4_570_484,
            0x8f9f_b8dd_a33d_cf76,
            [
                "For reference: We agreed that the school fair should stay informal, with",
                "Background: Mateo recommends adding a pinch of salt to the chocolate chi",
                "What should I pack for a 7-day hiking trip near Vancouver?\n\nMy notes so ",
                "Here is some context: Last year the charity bake sale was held indoors b",
            ],
        ),
        (
            "c",
            500,
            33_686,
            0xb0b8_7b56_36b3_e8f8,
            [
                "Act as a spelling bee host for my essay on renewable energy.",
                "How do I override the default line height in Bootstrap?",
                "Write a Kotlin function that finds duplicate files by hash.",
                "Please disregard my earlier question about the immune system; explain co",
            ],
        ),
        (
            "d",
            1000,
            152_259,
            0x3fe5_151c_4f52_dbb8,
            [
                "Explain the water cycle to a busy executive in plain words.\n\nHere is som",
                "Recommend 6 books about the water cycle for a group of retirees.\n\nHere i",
                "What should I pack for a 2-day hiking trip near Marrakech?\n\nBackground: ",
                "Can you work out the integral of 1/(1+x^2)? Show the steps.\n\nFor referen",
            ],
        ),
    ];

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
    fn parse_rejects_malformed_tables() {
        let ok = "[templates]\nA {x}.\n[context]\nB.\n[intros]\nC:\n[slot x]\ny\n";
        assert!(PromptTables::parse(ok).is_ok());
        let bad: [(&str, String); 8] = [
            ("entry before header", "A.\n[templates]\nA.\n".into()),
            ("unknown section", "[nope]\n".into()),
            ("unclosed header", "[templates\n".into()),
            ("repeated section", format!("{ok}[templates]\nD.\n")),
            ("unknown slot", ok.replace("{x}", "{z}")),
            ("empty slot", format!("{ok}[slot w]\n")),
            ("missing table", ok.replace("[intros]\nC:\n", "")),
            ("whitespace", ok.replace("B.", "B. ")),
        ];
        for (what, text) in &bad {
            assert!(
                PromptTables::parse(text).is_err(),
                "{what}: accepted {text:?}"
            );
        }
    }

    #[test]
    fn crlf_line_ends_parse_the_same() {
        let crlf = TABLES_TEXT.replace('\n', "\r\n");
        let tables = PromptTables::parse(&crlf).unwrap();
        assert_eq!(tables.templates, TABLES.templates);
        assert_eq!(tables.slots, TABLES.slots);
    }
}
