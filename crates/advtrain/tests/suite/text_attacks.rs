//! Character attacks on text classifiers: budgets hold, edits are one OSA step, the
//! canonicaliser undoes look-alike and invisible edits, and both attacks break toy models
//! that are vulnerable by construction.

use std::cell::Cell;
use std::collections::HashMap;

use advtrain::rng::{derived, seeded};
use advtrain::text::attack::{DeepWordBug, HotFlip, TextAttackResult};
use advtrain::text::canon::{is_invisible, Canonicalizer};
use advtrain::text::edits::{
    edit_distance, highlight, highlight_html, highlight_terminal, homoglyphs, leet, propose, words,
    EditKind, DEEPWORDBUG_KINDS, ZERO_WIDTH,
};
use advtrain::text::{argmax, TextClassifier, Token, WhiteBoxText};
use proptest::prelude::*;
use rand::Rng;

// ---------------------------------------------------------------------------------------
// Toy models

/// Linear model over lowercase ASCII words: spam words push to class 1, ham words to 0.
/// Any edit inside a keyword removes its evidence, so it is trivially attackable.
struct Keywords {
    weights: HashMap<&'static str, f32>,
    calls: Cell<usize>,
}

const SPAM: [&str; 6] = ["free", "winner", "cash", "prize", "offer", "urgent"];
const HAM: [&str; 6] = ["meeting", "lunch", "report", "project", "thanks", "agenda"];
const FILLER: [&str; 10] = [
    "the", "for", "you", "today", "please", "our", "team", "new", "now", "see",
];

impl Keywords {
    fn new() -> Self {
        let mut weights = HashMap::new();
        for w in SPAM {
            weights.insert(w, 3.0);
        }
        for w in HAM {
            weights.insert(w, -3.0);
        }
        // Weak words of the other class, so removing the strong ones flips either class.
        weights.insert("money", 1.0);
        weights.insert("notes", -1.0);
        Self {
            weights,
            calls: Cell::new(0),
        }
    }

    fn score(&self, text: &str) -> f32 {
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .map(|w| {
                self.weights
                    .get(w.to_ascii_lowercase().as_str())
                    .copied()
                    .unwrap_or(0.0)
            })
            .sum()
    }
}

impl TextClassifier for Keywords {
    fn num_classes(&self) -> usize {
        2
    }

    fn probabilities(&self, texts: &[String]) -> advtrain::Result<Vec<Vec<f32>>> {
        self.calls.set(self.calls.get() + 1);
        Ok(texts
            .iter()
            .map(|t| {
                let p = 1.0 / (1.0 + (-self.score(t)).exp());
                vec![1.0 - p, p]
            })
            .collect())
    }
}

/// `k` strong keywords of the class, `k` weak words of the other class, a few fillers.
fn keyword_set(n: usize, seed: u64) -> (Vec<String>, Vec<usize>) {
    let mut rng = seeded(seed);
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let label = i % 2;
        let k = rng.random_range(1..=2);
        let mut ws: Vec<&str> = Vec::new();
        for _ in 0..k {
            let strong = if label == 1 { &SPAM } else { &HAM };
            ws.push(strong[rng.random_range(0..strong.len())]);
            ws.push(if label == 1 { "notes" } else { "money" });
        }
        for _ in 0..rng.random_range(2..6) {
            ws.push(FILLER[rng.random_range(0..FILLER.len())]);
        }
        for j in (1..ws.len()).rev() {
            ws.swap(j, rng.random_range(0..=j));
        }
        let mut t = ws.join(" ");
        if rng.random_bool(0.5) {
            t.push('!');
        }
        texts.push(t);
        labels.push(label);
    }
    (texts, labels)
}

/// Mean of per-character embeddings, then linear. Characters `qxzjkvw` push to class 1,
/// vowels to class 0; gradients are exact, so HotFlip should find the flips.
struct CharMean {
    alphabet: Vec<char>,
    embedding: Vec<[f32; 2]>,
    w: [[f32; 2]; 2],
    max_len: usize,
    prob_calls: Cell<usize>,
    grad_calls: Cell<usize>,
}

impl CharMean {
    fn new() -> Self {
        let alphabet: Vec<char> = "abcdefghijklmnopqrstuvwxyz ".chars().collect();
        let mut embedding: Vec<[f32; 2]> = alphabet
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let v = if "qxzjkvw".contains(c) {
                    1.0
                } else if "aeiou".contains(c) {
                    -1.0
                } else {
                    0.0
                };
                [v, 0.1 * (i % 3) as f32]
            })
            .collect();
        embedding.push([0.0, 0.0]); // unknown
        Self {
            alphabet,
            embedding,
            w: [[0.0, 0.5], [6.0, 0.5]],
            max_len: 64,
            prob_calls: Cell::new(0),
            grad_calls: Cell::new(0),
        }
    }

    fn id(&self, c: char) -> u32 {
        self.alphabet
            .iter()
            .position(|&a| a == c)
            .unwrap_or(self.alphabet.len()) as u32
    }

    /// Token count and class probabilities (a text with no tokens has a zero mean).
    fn forward(&self, text: &str) -> (usize, [f32; 2]) {
        let chars: Vec<char> = text.chars().collect();
        let toks = self.tokens(&chars);
        let mut h = [0.0f32; 2];
        for t in &toks {
            let e = self.embedding[t.id as usize];
            h[0] += e[0];
            h[1] += e[1];
        }
        let n = toks.len().max(1) as f32;
        h[0] /= n;
        h[1] /= n;
        let logits: Vec<f32> = self
            .w
            .iter()
            .map(|row| row[0] * h[0] + row[1] * h[1])
            .collect();
        let m = logits[0].max(logits[1]);
        let e: Vec<f32> = logits.iter().map(|l| (l - m).exp()).collect();
        let s = e[0] + e[1];
        (toks.len(), [e[0] / s, e[1] / s])
    }
}

impl TextClassifier for CharMean {
    fn num_classes(&self) -> usize {
        2
    }

    fn probabilities(&self, texts: &[String]) -> advtrain::Result<Vec<Vec<f32>>> {
        self.prob_calls.set(self.prob_calls.get() + 1);
        Ok(texts.iter().map(|t| self.forward(t).1.to_vec()).collect())
    }
}

impl WhiteBoxText for CharMean {
    fn canonical(&self, text: &str) -> String {
        text.to_lowercase()
    }

    fn tokens(&self, chars: &[char]) -> Vec<Token> {
        chars
            .iter()
            .take(self.max_len)
            .enumerate()
            .map(|(i, &c)| Token {
                id: self.id(c),
                start: i,
                end: i + 1,
            })
            .collect()
    }

    fn retoken(&self, chars: &[char], token: &Token) -> u32 {
        self.id(chars[token.start])
    }

    fn token_gradients(&self, texts: &[String], labels: &[usize]) -> Vec<Vec<f32>> {
        self.grad_calls.set(self.grad_calls.get() + 1);
        texts
            .iter()
            .zip(labels)
            .map(|(t, &y)| {
                let (n, p) = self.forward(t);
                let dl: Vec<f32> = (0..2).map(|k| p[k] - f32::from(k == y)).collect();
                let dh: Vec<f32> = (0..2)
                    .map(|d| (dl[0] * self.w[0][d] + dl[1] * self.w[1][d]) / n.max(1) as f32)
                    .collect();
                dh.iter().copied().cycle().take(n * 2).collect()
            })
            .collect()
    }

    fn embedding_dim(&self) -> usize {
        2
    }

    fn embedding_row(&self, id: u32) -> Vec<f32> {
        self.embedding[id as usize].to_vec()
    }

    fn alphabet(&self) -> Vec<char> {
        self.alphabet.clone()
    }
}

/// Random letters whose "x-ish" minus vowel count is `d` (1..=3) in the label's direction.
fn char_set(n: usize, seed: u64) -> (Vec<String>, Vec<usize>) {
    let mut rng = seeded(seed);
    let neutral: Vec<char> = "bcdfghlmnprst ".chars().collect();
    let (up, down): (Vec<char>, Vec<char>) =
        ("qxzjkvw".chars().collect(), "aeiou".chars().collect());
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let label = i % 2;
        let d = rng.random_range(1..=3);
        let base = rng.random_range(1..5);
        let (n_up, n_down) = if label == 1 {
            (base + d, base)
        } else {
            (base, base + d)
        };
        let mut cs: Vec<char> = Vec::new();
        cs.extend((0..n_up).map(|_| up[rng.random_range(0..up.len())]));
        cs.extend((0..n_down).map(|_| down[rng.random_range(0..down.len())]));
        cs.extend(
            (0..rng.random_range(4..16)).map(|_| neutral[rng.random_range(0..neutral.len())]),
        );
        for j in (1..cs.len()).rev() {
            cs.swap(j, rng.random_range(0..=j));
        }
        texts.push(cs.into_iter().collect());
        labels.push(label);
    }
    (texts, labels)
}

fn accuracy(results: &[TextAttackResult]) -> f64 {
    results.iter().filter(|r| r.robust()).count() as f64 / results.len() as f64
}

fn clean_accuracy(model: &dyn TextClassifier, texts: &[String], labels: &[usize]) -> f64 {
    let p = model.probabilities(texts).unwrap();
    p.iter()
        .zip(labels)
        .filter(|(p, &l)| argmax(p) == l)
        .count() as f64
        / texts.len() as f64
}

fn assert_within_budget(r: &TextAttackResult, budget: usize) {
    assert!(
        r.edits.len() <= budget,
        "{} edits > {budget}: {r:?}",
        r.edits.len()
    );
    let d = edit_distance(&r.original, &r.adversarial);
    assert!(
        d <= r.edits.len(),
        "distance {d} > {} edits: {r:?}",
        r.edits.len()
    );
}

// ---------------------------------------------------------------------------------------
// Attacks break the toy models

#[test]
fn deepwordbug_breaks_keyword_model() {
    let model = Keywords::new();
    let (texts, labels) = keyword_set(40, 1);
    assert_eq!(clean_accuracy(&model, &texts, &labels), 1.0);
    model.calls.set(0);
    let attack = DeepWordBug {
        seed: 7,
        ..DeepWordBug::default()
    };
    attack.validate().unwrap();
    let results = attack.attack(&model, &texts, &labels).unwrap();
    assert_eq!(results.len(), texts.len());
    let acc = accuracy(&results);
    assert!(acc <= 0.1, "adversarial accuracy {acc}");
    let max_words = texts
        .iter()
        .map(|t| words(&t.chars().collect::<Vec<_>>()).len())
        .max();
    // One call for clean, one for word scores, one per round: batched across texts.
    assert!(
        model.calls.get() <= 2 + max_words.unwrap(),
        "{} calls",
        model.calls.get()
    );
    for (r, t) in results.iter().zip(&texts) {
        assert_eq!(&r.original, t);
        assert_within_budget(r, attack.budget);
        assert!(r.queries > 1);
        if r.success() {
            assert!(!r.edits.is_empty());
        }
    }
}

#[test]
fn hotflip_breaks_char_model() {
    let model = CharMean::new();
    let (texts, labels) = char_set(30, 2);
    assert_eq!(clean_accuracy(&model, &texts, &labels), 1.0);
    model.prob_calls.set(0);
    let attack = HotFlip::default();
    attack.validate().unwrap();
    let results = attack.attack(&model, &texts, &labels).unwrap();
    let acc = accuracy(&results);
    assert!(acc <= 0.05, "adversarial accuracy {acc}");
    assert!(model.prob_calls.get() <= 1 + attack.budget);
    assert!(model.grad_calls.get() <= attack.budget);
    for r in &results {
        assert_within_budget(r, attack.budget);
        assert!(r.edits.iter().all(|e| e.kind == EditKind::Flip));
        // Exact re-evaluation agrees with the recorded prediction.
        let p = model
            .probabilities(std::slice::from_ref(&r.adversarial))
            .unwrap();
        assert_eq!(argmax(&p[0]), r.adversarial_prediction);
    }
}

#[test]
fn hotflip_original_is_the_canonical_text() {
    let model = CharMean::new();
    let r = &HotFlip::default()
        .attack(&model, &["AEIOU BCD Q".to_string()], &[0])
        .unwrap()[0];
    assert_eq!(r.original, "aeiou bcd q");
    assert_within_budget(r, 5);
}

#[test]
fn attacks_are_deterministic_and_batch_independent() {
    let model = Keywords::new();
    let (texts, labels) = keyword_set(12, 3);
    let attack = DeepWordBug {
        seed: 11,
        ..DeepWordBug::default()
    };
    let a = attack.attack(&model, &texts, &labels).unwrap();
    assert_eq!(a, attack.attack(&model, &texts, &labels).unwrap());
    let alone = attack.attack(&model, &texts[..1], &labels[..1]).unwrap();
    assert_eq!(alone[0], a[0]);
    let other = DeepWordBug {
        seed: 12,
        ..DeepWordBug::default()
    };
    assert_ne!(
        a,
        other.attack(&model, &texts, &labels).unwrap(),
        "the seed matters"
    );

    let model = CharMean::new();
    let (texts, labels) = char_set(10, 4);
    let h = HotFlip::default();
    let a = h.attack(&model, &texts, &labels).unwrap();
    assert_eq!(a, h.attack(&model, &texts, &labels).unwrap());
    assert_eq!(
        h.attack(&model, &texts[3..4], &labels[3..4]).unwrap()[0],
        a[3]
    );
}

#[test]
fn misclassified_and_odd_inputs_are_left_alone() {
    let model = Keywords::new();
    let texts: Vec<String> = ["free cash", "", "!!! ...", "   ", "free", "cash"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Wrong label, then texts with no words, a label the model does not have.
    let labels = [0, 0, 1, 1, 7, 1];
    let attack = DeepWordBug {
        budget: 50,
        ..DeepWordBug::default()
    };
    let rs = attack.attack(&model, &texts, &labels).unwrap();
    for (r, t) in rs.iter().zip(&texts).take(5) {
        assert!(r.edits.is_empty(), "{r:?}");
        assert_eq!(&r.adversarial, t);
        assert!(!r.success());
    }
    assert_eq!(rs[0].queries, 1);
    assert!(rs[5].success(), "a one-word text still falls: {:?}", rs[5]);
    assert!(attack.attack(&model, &[], &[]).unwrap().is_empty());

    let cm = CharMean::new();
    let hs = HotFlip {
        budget: 40,
        ..HotFlip::default()
    }
    .attack(&cm, &["".into(), "???".into(), "q".into()], &[1, 0, 1])
    .unwrap();
    for r in &hs {
        assert_within_budget(r, 40);
    }
}

#[test]
fn validation_rejects_bad_settings() {
    assert!(DeepWordBug::default().validate().is_ok());
    assert!(DeepWordBug {
        budget: 0,
        ..DeepWordBug::default()
    }
    .validate()
    .is_err());
    assert!(DeepWordBug {
        kinds: vec![],
        ..DeepWordBug::default()
    }
    .validate()
    .is_err());
    assert!(DeepWordBug {
        kinds: vec![EditKind::Swap, EditKind::Flip],
        ..DeepWordBug::default()
    }
    .validate()
    .is_err());
    assert!(HotFlip::default().validate().is_ok());
    for h in [
        HotFlip {
            budget: 0,
            ..HotFlip::default()
        },
        HotFlip {
            beam: 0,
            ..HotFlip::default()
        },
        HotFlip {
            candidates: 0,
            ..HotFlip::default()
        },
    ] {
        assert!(h.validate().is_err());
    }
}

#[test]
fn lookalike_attacks_are_undone_by_canonicalisation() {
    let model = Keywords::new();
    let (texts, labels) = keyword_set(30, 5);
    let attack = DeepWordBug {
        kinds: vec![EditKind::Homoglyph, EditKind::ZeroWidth],
        seed: 3,
        ..DeepWordBug::default()
    };
    let results = attack.attack(&model, &texts, &labels).unwrap();
    assert!(
        accuracy(&results) <= 0.1,
        "look-alikes alone fool the model"
    );
    let canon = Canonicalizer::all();
    for r in &results {
        assert_eq!(canon.apply(&r.adversarial), canon.apply(&r.original));
    }
    let defended: Vec<String> = results
        .iter()
        .map(|r| canon.apply(&r.adversarial))
        .collect();
    assert_eq!(clean_accuracy(&model, &defended, &labels), 1.0);
}

// ---------------------------------------------------------------------------------------
// Canonicaliser, edits, highlighting

#[test]
fn canonicaliser_examples() {
    let c = Canonicalizer::lookalikes();
    assert_eq!(c.apply("\u{0430}"), "a");
    assert_eq!(c.apply("\u{FF21}"), "A");
    assert_eq!(
        c.apply("fr\u{200B}e\u{200C}e\u{200D}\u{2060}\u{FEFF}\u{00AD}"),
        "free"
    );
    assert_eq!(c.apply("\u{1D41F}r\u{0435}\u{FF45}"), "free"); // math bold, Cyrillic, fullwidth
    for z in ZERO_WIDTH {
        assert!(is_invisible(z));
        assert_eq!(c.apply(&format!("a{z}b")), "ab");
    }
    assert!(!is_invisible('a') && !is_invisible(' '));
    assert!(Canonicalizer::none().is_identity() && !Canonicalizer::all().is_identity());
    assert_eq!(
        "all".parse::<Canonicalizer>().unwrap(),
        Canonicalizer::all()
    );
    assert_eq!(
        "nfkc, invisible".parse::<Canonicalizer>().unwrap(),
        Canonicalizer {
            nfkc: true,
            confusables: false,
            strip_invisible: true,
            ..Canonicalizer::none()
        }
    );
}

#[test]
fn edit_kind_names() {
    for k in DEEPWORDBUG_KINDS {
        assert_eq!(k.as_str().parse::<EditKind>().unwrap(), k);
    }
    assert!(!DEEPWORDBUG_KINDS.contains(&EditKind::Flip));
    assert_eq!(
        "zero-width".parse::<EditKind>().unwrap(),
        EditKind::ZeroWidth
    );
    assert_eq!(leet('e'), Some('3'));
    assert_eq!(leet('O'), Some('0'));
    assert_eq!(leet('m'), None);
    assert!(homoglyphs('o').contains(&'\u{043E}'));
}

#[test]
fn highlight_examples() {
    let segs = highlight("free cash", "fr\u{0435}e c4sh");
    let marked: Vec<(&str, bool)> = segs.iter().map(|s| (s.text.as_str(), s.changed)).collect();
    assert_eq!(
        marked,
        vec![
            ("fr", false),
            ("\u{0435}", true),
            ("e c", false),
            ("4", true),
            ("sh", false)
        ]
    );
    assert_eq!(highlight_terminal("free cash", "fre c4sh"), "fre c[4]sh");
    assert_eq!(
        highlight_html("<free>", "<fr\u{200B}ee>"),
        "&lt;fr<mark title=\"U+200B\">\u{27E8}ZWSP\u{27E9}</mark>ee&gt;"
    );
    assert_eq!(highlight_html("ab", "ba"), "<mark>ba</mark>");
    assert!(highlight("", "").is_empty());
}

fn text_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ,.!']{0,40}",
        "[a-z \u{0430}\u{0435}\u{043E}\u{FF21}\u{200B}\u{00E9}\u{0301}\u{1F600}é.]{0,30}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn propose_is_one_osa_step(
        text in text_strategy(),
        kind_i in 0usize..8,
        word_pick in any::<usize>(),
        seed in any::<u64>(),
    ) {
        let kinds = [EditKind::Swap, EditKind::Delete, EditKind::Insert, EditKind::Substitute,
            EditKind::Homoglyph, EditKind::Leet, EditKind::ZeroWidth, EditKind::Flip];
        let kind = kinds[kind_i];
        let chars: Vec<char> = text.chars().collect();
        let ws = words(&chars);
        prop_assume!(!ws.is_empty());
        let w = ws[word_pick % ws.len()].clone();
        let mut rng = derived(seed, 0);
        if let Some((new, e)) = propose(kind, &chars, w.clone(), &mut rng) {
            let new_s: String = new.iter().collect();
            prop_assert_eq!(edit_distance(&text, &new_s), 1);
            prop_assert_eq!(e.kind, kind);
            let (b, a): (Vec<char>, Vec<char>) = (e.before.chars().collect(), e.after.chars().collect());
            let p = e.position;
            prop_assert!(p >= w.start && p + b.len() <= w.end.max(p));
            prop_assert_eq!(&chars[p..p + b.len()], &b[..]);
            prop_assert_eq!(&new[p..p + a.len()], &a[..]);
            prop_assert_eq!(&chars[..p], &new[..p]);
            prop_assert_eq!(&chars[p + b.len()..], &new[p + a.len()..]);
            if matches!(kind, EditKind::Homoglyph | EditKind::ZeroWidth) {
                let c = Canonicalizer::all();
                prop_assert_eq!(c.apply(&new_s), c.apply(&text));
            }
        }
    }

    #[test]
    fn attacks_never_exceed_budget(
        texts in prop::collection::vec(text_strategy(), 1..5),
        label_bits in any::<u8>(),
        budget in 0usize..7,
        seed in any::<u64>(),
    ) {
        let labels: Vec<usize> = (0..texts.len()).map(|i| usize::from(label_bits >> i & 1 == 1)).collect();
        let dwb = DeepWordBug { budget, seed, max_words: 8, ..DeepWordBug::default() };
        for r in dwb.attack(&Keywords::new(), &texts, &labels).unwrap() {
            prop_assert!(r.edits.len() <= budget);
            prop_assert!(edit_distance(&r.original, &r.adversarial) <= budget);
        }
        let hf = HotFlip { budget, beam: 2, candidates: 4, positions: 0 };
        let model = CharMean::new();
        let rs = hf.attack(&model, &texts, &labels).unwrap();
        for (r, t) in rs.iter().zip(&texts) {
            prop_assert_eq!(&r.original, &model.canonical(t));
            prop_assert!(r.edits.len() <= budget);
            prop_assert!(edit_distance(&r.original, &r.adversarial) <= budget);
        }
    }

    #[test]
    fn canonicaliser_leaves_ascii_and_is_idempotent(ascii in "[ -~]{0,60}", text in text_strategy()) {
        let c = Canonicalizer::lookalikes();
        prop_assert_eq!(c.apply(&ascii), ascii.clone());
        let once = c.apply(&text);
        prop_assert!(!once.chars().any(is_invisible));
        prop_assert_eq!(c.apply(&once), once.clone());
    }

    #[test]
    fn highlight_marks_exactly_the_changed_chars(
        text in "[a-z]{1,8}( [a-z]{1,8}){0,6}",
        picks in prop::collection::vec((0usize..3, any::<u64>()), 0..4),
    ) {
        // Edits whose new char cannot occur in the original, one per word, so the optimal
        // alignment is unique.
        let mut chars: Vec<char> = text.chars().collect();
        let mut changed: Vec<bool> = vec![false; chars.len()];
        let ws = words(&chars);
        let mut used = vec![false; ws.len()];
        for (k, s) in picks {
            let wi = (s as usize) % ws.len();
            if used[wi] { continue; }
            used[wi] = true;
            let kind = [EditKind::Homoglyph, EditKind::Leet, EditKind::ZeroWidth][k];
            // The word's current span (earlier edits may have split `words` spans).
            let spans = word_spans_by_space(&chars);
            let w = spans[wi].clone();
            let mut rng = derived(s, 1);
            if let Some((new, e)) = propose(kind, &chars, w, &mut rng) {
                if e.before.is_empty() {
                    changed.insert(e.position, true);
                } else {
                    changed[e.position] = true;
                }
                chars = new;
            }
        }
        let adv: String = chars.iter().collect();
        let flags: Vec<bool> = highlight(&text, &adv)
            .iter()
            .flat_map(|s| s.text.chars().map(move |_| s.changed))
            .collect();
        prop_assert_eq!(flags, changed);
    }
}

/// Spans between spaces (a zero-width or digit edit may split a `words` span).
fn word_spans_by_space(chars: &[char]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            out.push(start..i);
            start = i + 1;
        }
    }
    out.push(start..chars.len());
    out
}
