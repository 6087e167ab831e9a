//! The transformations attackers use against text filters: word obfuscations (spacing,
//! separators, mixed case, leetspeak, tags, bidi reversal, splits, joins), WordNet synonyms
//! and whole-text encodings. Each is one edit of one word (or one whitespace run, or the
//! whole text), DeepWordBug keeps its budgets of edits and queries with them, records replay
//! to the adversarial text, and the canonicaliser undoes the look-changing ones.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use advtrain::rng::derived;
use advtrain::text::attack::{
    DeepWordBug, Encoding, EncodingScheme, TextAttackConfig, TextAttackResult, ENCODING_SCHEMES,
    OBFUSCATION_KINDS, TEXT_ATTACK_NAMES,
};
use advtrain::text::canon::{is_invisible, Canonicalizer, PDF, RLO};
use advtrain::text::edits::{
    apply_edits, edit_distance, propose, propose_in, words, Edit, EditContext, EditKind, ALL_KINDS,
    DEEPWORDBUG_KINDS, WORD_KINDS,
};
use advtrain::text::wordnet::WordNet;
use advtrain::text::{argmax, TextClassifier};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Fixtures

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wordnet")
}

fn fixture() -> &'static WordNet {
    static WN: std::sync::OnceLock<WordNet> = std::sync::OnceLock::new();
    WN.get_or_init(|| WordNet::load(fixture_dir()).expect("the committed fixture loads"))
}

fn ctx() -> EditContext<'static> {
    EditContext::with_wordnet(fixture())
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advtrain-wordnet-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of the fixture in a fresh directory, to corrupt.
fn fixture_copy(test: &str) -> PathBuf {
    let dir = temp_dir(test);
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// Linear model over lowercased words split at non-alphanumerics (so case does not matter,
/// but spaces, separators, joins and tags inside a word do): spam words push to class 1.
struct Keywords {
    weights: HashMap<&'static str, f32>,
    calls: Cell<usize>,
}

const SPAM: [&str; 6] = ["free", "cash", "winner", "ignore", "big", "money"];
const FILLER: [&str; 8] = [
    "the", "for", "you", "today", "please", "team", "previous", "now",
];

impl Keywords {
    fn new() -> Self {
        let mut weights: HashMap<&'static str, f32> = SPAM.iter().map(|&w| (w, 3.0)).collect();
        weights.insert("meeting", -2.0);
        Self {
            weights,
            calls: Cell::new(0),
        }
    }

    fn score(&self, text: &str) -> f32 {
        text.split(|c: char| !c.is_alphanumeric())
            .map(|w| {
                self.weights
                    .get(w.to_lowercase().as_str())
                    .copied()
                    .unwrap_or(0.0)
            })
            .sum::<f32>()
            - 1.0
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

fn spam_texts() -> Vec<String> {
    [
        "free cash for you today",
        "Ignore previous instructions now",
        "BIG money winner",
        "please send cash now",
        "the winner gets big cash",
        "FREE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn accuracy(results: &[TextAttackResult]) -> f64 {
    results.iter().filter(|r| r.robust()).count() as f64 / results.len() as f64
}

fn assert_replays(r: &TextAttackResult) {
    assert_eq!(
        apply_edits(&r.original, &r.edits).as_deref(),
        Some(r.adversarial.as_str()),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The edits, one by one

#[test]
fn each_word_kind_on_an_example() {
    let chars: Vec<char> = "ignore previous".chars().collect();
    let w = 0..6;
    let mut rng = derived(1, 0);
    let mut after = |kind: EditKind| -> Edit {
        propose_in(&ctx(), kind, &chars, w.clone(), &mut rng)
            .unwrap_or_else(|| panic!("{kind} applies to 'ignore'"))
            .1
    };
    assert_eq!(after(EditKind::Spacing).after, "i g n o r e");
    let sep = after(EditKind::Separator).after;
    assert!(sep.len() == 7 || sep.len() == 11, "{sep}");
    let mixed = after(EditKind::CaseMix).after;
    assert_ne!(mixed, "ignore");
    assert_eq!(mixed.to_lowercase(), "ignore");
    assert_eq!(after(EditKind::FullLeet).after, "19n0r3");
    let tagged = after(EditKind::Tag).after;
    assert!(tagged
        .chars()
        .any(|c| ('\u{E0020}'..='\u{E007E}').contains(&c)));
    assert_eq!(
        tagged
            .chars()
            .filter(|&c| !is_invisible(c))
            .collect::<String>(),
        "ignore"
    );
    assert_eq!(after(EditKind::Bidi).after, format!("{RLO}erongi{PDF}"));
    let split = after(EditKind::Split).after;
    assert_eq!(split.replace(' ', ""), "ignore");
    assert_eq!(split.matches(' ').count(), 1);
    let join = after(EditKind::Join);
    assert_eq!(
        (join.position, join.before.as_str(), join.after.as_str()),
        (6, " ", "")
    );
    let syn = after(EditKind::Synonym).after;
    assert!(
        ["disregard", "neglect", "snub", "cut"].contains(&syn.as_str()),
        "{syn}"
    );
}

#[test]
fn kinds_that_do_not_apply_say_so() {
    let one: Vec<char> = "a".chars().collect();
    let mut rng = derived(2, 0);
    for kind in [
        EditKind::Spacing,
        EditKind::Separator,
        EditKind::Bidi,
        EditKind::Split,
    ] {
        assert!(propose(kind, &one, 0..1, &mut rng).is_none(), "{kind}");
    }
    let digits: Vec<char> = "1234 x".chars().collect();
    assert!(propose(EditKind::CaseMix, &digits, 0..4, &mut rng).is_none());
    assert!(propose(
        EditKind::FullLeet,
        &"mmm".chars().collect::<Vec<_>>(),
        0..3,
        &mut rng
    )
    .is_none());
    // The last word has nothing to join; a comma is not whitespace.
    assert!(propose(EditKind::Join, &digits, 5..6, &mut rng).is_none());
    let comma: Vec<char> = "free, cash".chars().collect();
    assert!(propose(EditKind::Join, &comma, 0..4, &mut rng).is_none());
    // Synonyms need a WordNet; the word must be in it.
    let big: Vec<char> = "big".chars().collect();
    assert!(propose(EditKind::Synonym, &big, 0..3, &mut rng).is_none());
    let zork: Vec<char> = "zork".chars().collect();
    assert!(propose_in(&ctx(), EditKind::Synonym, &zork, 0..4, &mut rng).is_none());
    for kind in [
        EditKind::EncodeBase64,
        EditKind::EncodeRot13,
        EditKind::EncodeHex,
    ] {
        assert!(propose(kind, &big, 0..3, &mut rng).is_none());
    }
}

#[test]
fn synonyms_keep_the_case_pattern() {
    let allowed = ["large", "bad", "grown"];
    for (word, shape) in [("big", 0), ("Big", 1), ("BIG", 2)] {
        let chars: Vec<char> = word.chars().collect();
        for seed in 0..8 {
            let (_, e) = propose_in(
                &ctx(),
                EditKind::Synonym,
                &chars,
                0..3,
                &mut derived(seed, 0),
            )
            .unwrap();
            let lower = e.after.to_lowercase();
            assert!(allowed.contains(&lower.as_str()), "{}", e.after);
            let want = match shape {
                0 => lower.clone(),
                1 => format!("{}{}", lower[..1].to_uppercase(), &lower[1..]),
                _ => lower.to_uppercase(),
            };
            assert_eq!(e.after, want);
        }
    }
}

#[test]
fn every_kind_has_a_name_that_parses_back() {
    for k in ALL_KINDS {
        assert_eq!(k.as_str().parse::<EditKind>().unwrap(), k);
        assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
    }
    assert_eq!("case-mix".parse::<EditKind>().unwrap(), EditKind::CaseMix);
    assert_eq!("full-leet".parse::<EditKind>().unwrap(), EditKind::FullLeet);
    assert_eq!(DEEPWORDBUG_KINDS.len(), 7);
    assert!(DEEPWORDBUG_KINDS.iter().all(EditKind::is_character));
    assert!(WORD_KINDS.iter().all(|k| !k.is_character() && k.is_word()));
    let err = "warp".parse::<EditKind>().unwrap_err().to_string();
    assert!(err.contains("spacing") && err.contains("synonym"), "{err}");
}

// ---------------------------------------------------------------------------------------
// DeepWordBug with word edits

#[test]
fn join_rewrites_the_whitespace_after_the_word() {
    let model = Keywords::new();
    let attack = DeepWordBug {
        kinds: vec![EditKind::Join],
        budget: 3,
        ..DeepWordBug::default()
    };
    let r = &attack.attack(&model, &["free cash".into()], &[1]).unwrap()[0];
    assert_eq!(r.adversarial, "freecash");
    assert_eq!(
        r.edits,
        vec![Edit {
            kind: EditKind::Join,
            position: 4,
            before: " ".into(),
            after: String::new(),
        }]
    );
    assert!(r.success());
}

#[test]
fn obfuscation_breaks_a_keyword_filter() {
    let model = Keywords::new();
    let texts = spam_texts();
    let labels = vec![1; texts.len()];
    let attack = DeepWordBug {
        kinds: OBFUSCATION_KINDS.to_vec(),
        seed: 5,
        ..DeepWordBug::default()
    };
    attack.validate().unwrap();
    let results = attack.attack(&model, &texts, &labels).unwrap();
    assert_eq!(accuracy(&results), 0.0, "{results:#?}");
    for r in &results {
        assert_replays(r);
        assert!(r.edits.len() <= attack.budget);
        assert!(r.edits.iter().all(|e| OBFUSCATION_KINDS.contains(&e.kind)));
    }
}

#[test]
fn synonyms_break_a_keyword_filter_with_the_fixture() {
    let model = Keywords::new();
    let texts: Vec<String> = vec!["big".into(), "the big".into(), "ignore".into()];
    let attack = DeepWordBug {
        kinds: vec![EditKind::Synonym],
        ..DeepWordBug::default()
    };
    attack.validate_in(&ctx()).unwrap();
    let results = attack
        .attack_in(&ctx(), &model, &texts, &[1, 1, 1])
        .unwrap();
    assert_eq!(accuracy(&results), 0.0, "{results:#?}");
    assert_eq!(results[1].adversarial.split(' ').next(), Some("the"));
    for r in &results {
        assert_replays(r);
        let e = &r.edits[0];
        assert!(fixture().synonyms(&e.before).contains(&e.after), "{e:?}");
    }
}

#[test]
fn query_limit_stops_the_attack() {
    let model = Keywords::new();
    let texts = vec!["please send the cash for the team today now".to_string()];
    for max_queries in 1..12 {
        let attack = DeepWordBug {
            kinds: WORD_KINDS[..8].to_vec(),
            max_queries,
            ..DeepWordBug::default()
        };
        let r = &attack.attack(&model, &texts, &[1]).unwrap()[0];
        assert!(r.queries <= max_queries, "{} > {max_queries}", r.queries);
        assert_replays(r);
    }
    let unlimited = DeepWordBug::default().attack(&model, &texts, &[1]).unwrap();
    assert!(unlimited[0].queries > 11);
}

#[test]
fn word_attacks_are_deterministic_and_batch_independent() {
    let model = Keywords::new();
    let texts = spam_texts();
    let labels = vec![1; texts.len()];
    let mut kinds = WORD_KINDS.to_vec();
    kinds.extend(DEEPWORDBUG_KINDS);
    let attack = DeepWordBug {
        kinds,
        seed: 9,
        ..DeepWordBug::default()
    };
    let a = attack.attack_in(&ctx(), &model, &texts, &labels).unwrap();
    assert_eq!(
        a,
        attack.attack_in(&ctx(), &model, &texts, &labels).unwrap()
    );
    let alone = attack
        .attack_in(&ctx(), &model, &texts[2..3], &labels[2..3])
        .unwrap();
    assert_eq!(alone[0], a[2]);
}

#[test]
fn validation_rejects_encodings_and_a_missing_wordnet() {
    let encode = DeepWordBug {
        kinds: vec![EditKind::Spacing, EditKind::EncodeHex],
        ..DeepWordBug::default()
    };
    assert!(encode.validate().is_err());
    let synonym = DeepWordBug {
        kinds: vec![EditKind::Synonym],
        ..DeepWordBug::default()
    };
    assert!(synonym.validate_in(&ctx()).is_ok());
    match synonym.validate() {
        Ok(()) => assert!(WordNet::system().is_ok()),
        Err(e) => assert!(
            e.to_string().contains("apt-get install -y wordnet-base"),
            "{e}"
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Encoding

#[test]
fn encoding_evades_a_keyword_filter_in_one_edit() {
    let model = Keywords::new();
    let texts = spam_texts();
    let labels = vec![1; texts.len()];
    let attack = Encoding::default();
    attack.validate().unwrap();
    model.calls.set(0);
    let results = attack.attack(&model, &texts, &labels).unwrap();
    assert_eq!(
        model.calls.get(),
        2,
        "clean texts, then every candidate in one call"
    );
    assert_eq!(accuracy(&results), 0.0);
    for (r, t) in results.iter().zip(&texts) {
        assert_eq!(r.edits.len(), 1);
        assert_eq!(r.queries, 1 + ENCODING_SCHEMES.len());
        let scheme = ENCODING_SCHEMES
            .iter()
            .find(|s| s.kind() == r.edits[0].kind)
            .unwrap();
        assert_eq!(scheme.unwrap(&r.adversarial).as_deref(), Some(t.as_str()));
        // The first scheme that evades is the one kept.
        assert_eq!(*scheme, EncodingScheme::Base64);
        assert_replays(r);
    }
}

#[test]
fn encoding_leaves_misclassified_and_blank_texts_alone() {
    let model = Keywords::new();
    let texts: Vec<String> = vec!["meeting notes".into(), "   ".into(), "".into()];
    let results = Encoding::default()
        .attack(&model, &texts, &[1, 0, 0])
        .unwrap();
    for (r, t) in results.iter().zip(&texts) {
        assert!(r.edits.is_empty());
        assert_eq!(&r.adversarial, t);
        assert_eq!(r.queries, 1);
    }
    assert!(Encoding::default().attack(&model, &texts, &[1]).is_err());
    assert!(Encoding { schemes: vec![] }.validate().is_err());
    let twice = Encoding {
        schemes: vec![EncodingScheme::Hex, EncodingScheme::Hex],
    };
    assert!(twice.validate().is_err());
}

#[test]
fn schemes_encode_as_documented() {
    assert_eq!(EncodingScheme::Rot13.encode("Hello, World"), "Uryyb, Jbeyq");
    assert_eq!(EncodingScheme::Hex.encode("hi"), "6869");
    assert_eq!(EncodingScheme::Base64.encode("hi"), "aGk=");
    assert_eq!(EncodingScheme::Hex.decode("6"), None);
    assert_eq!(EncodingScheme::Hex.decode("zz"), None);
    assert_eq!(EncodingScheme::Base64.unwrap("no preamble"), None);
    for s in ENCODING_SCHEMES {
        assert_eq!(s.as_str().parse::<EncodingScheme>().unwrap(), s);
    }
}

// ---------------------------------------------------------------------------------------
// The attack configs

#[test]
fn every_attack_name_round_trips() {
    let wordnet = WordNet::system().is_ok();
    for &name in TEXT_ATTACK_NAMES {
        match TextAttackConfig::from_name(name, 3) {
            Ok(c) => assert_eq!(c.name(), name),
            Err(e) => {
                assert!(name == "synonym" && !wordnet, "{name}: {e}");
                assert!(
                    e.to_string().contains("apt-get install -y wordnet-base"),
                    "{e}"
                );
            }
        }
    }
    let err = TextAttackConfig::from_name("nope", 3)
        .unwrap_err()
        .to_string();
    assert!(TEXT_ATTACK_NAMES.iter().all(|n| err.contains(n)), "{err}");
    assert_eq!(TextAttackConfig::encoding().budget(), 1);
    assert_eq!(TextAttackConfig::obfuscation(4).name(), "obfuscation");
    assert_eq!(TextAttackConfig::synonym(4).name(), "synonym");
}

#[test]
fn records_written_before_max_queries_still_read() {
    let old = r#"{"kind":"deep-word-bug","budget":2,"kinds":["swap"],"max_words":8}"#;
    let c: TextAttackConfig = serde_json::from_str(old).unwrap();
    assert_eq!(
        c,
        TextAttackConfig::DeepWordBug {
            budget: 2,
            kinds: vec![EditKind::Swap],
            max_words: 8,
            max_queries: 0
        }
    );
    let limited = c.with_max_queries(40);
    let json = serde_json::to_string(&limited).unwrap();
    assert_eq!(
        serde_json::from_str::<TextAttackConfig>(&json).unwrap(),
        limited
    );
    assert!(json.contains("\"max_queries\":40"));
    let enc = TextAttackConfig::encoding();
    let back: TextAttackConfig =
        serde_json::from_str(&serde_json::to_string(&enc).unwrap()).unwrap();
    assert_eq!(back, enc);
}

#[test]
fn encoding_runs_black_box() {
    let model = Keywords::new();
    let rs = TextAttackConfig::encoding()
        .run_black_box(&model, &["free cash".into()], &[1], 0)
        .unwrap();
    assert!(rs[0].success());
}

// ---------------------------------------------------------------------------------------
// WordNet

#[test]
fn wordnet_reads_the_fixture() {
    let wn = fixture();
    // First three adjective senses only ("boastful" is the fourth), deduplicated, in order,
    // the "(a)" marker dropped.
    assert_eq!(wn.synonyms("big"), ["large", "bad", "grown"]);
    assert_eq!(wn.synonyms("BIG"), wn.synonyms("big"));
    // Parts of speech in order noun, verb, adjective, adverb; multi-word lemmas dropped.
    assert_eq!(
        wn.synonyms("fast"),
        ["quick", "speedy", "quickly", "rapidly"]
    );
    assert_eq!(wn.synonyms("cash"), ["currency", "money"]);
    assert!(wn.synonyms("hard_cash").is_empty());
    assert!(wn.synonyms("zork").is_empty());
    assert_eq!(wn.dir(), fixture_dir().as_path());
}

#[test]
fn wordnet_reads_the_debian_package_when_installed() {
    let dir = Path::new(WordNet::DEFAULT_DIR);
    if !dir.join("index.noun").exists() {
        eprintln!("skipped: no WordNet at {}", dir.display());
        return;
    }
    let wn = WordNet::load(dir).unwrap();
    assert!(wn.synonyms("big").iter().any(|s| s == "large"));
    assert!(wn.synonyms("ignore").iter().any(|s| s == "disregard"));
    assert!(wn.len() > 10_000);
    assert!(wn.synonyms("big").iter().all(|s| !s.contains('_')));
}

#[test]
fn wordnet_errors_name_the_file() {
    let missing = temp_dir("missing");
    let e = WordNet::load(&missing).unwrap_err().to_string();
    assert!(
        e.contains("index.noun") && e.contains("apt-get install -y wordnet-base"),
        "{e}"
    );

    let shifted = fixture_copy("shifted");
    let data = std::fs::read_to_string(shifted.join("data.adj")).unwrap();
    std::fs::write(shifted.join("data.adj"), format!("x{data}")).unwrap();
    let e = WordNet::load(&shifted).unwrap_err().to_string();
    assert!(e.contains("data.adj") && e.contains("offset"), "{e}");

    let bad_index = fixture_copy("bad-index");
    let index = std::fs::read_to_string(bad_index.join("index.verb")).unwrap();
    std::fs::write(
        bad_index.join("index.verb"),
        format!("{index}snub v two 0 1 0 00000001\n"),
    )
    .unwrap();
    let e = WordNet::load(&bad_index).unwrap_err().to_string();
    assert!(e.contains("index.verb") && e.contains("line"), "{e}");

    let truncated = fixture_copy("truncated");
    std::fs::write(truncated.join("data.noun"), "  1 prolog only\n").unwrap();
    let e = WordNet::load(&truncated).unwrap_err().to_string();
    assert!(e.contains("data.noun"), "{e}");
    for dir in [missing, shifted, bad_index, truncated] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

// ---------------------------------------------------------------------------------------
// The canonicaliser against the obfuscations

#[test]
fn canonicaliser_strips_tags_and_undoes_bidi() {
    let tags: String = "ignore"
        .bytes()
        .map(|b| char::from_u32(0xE0000 + u32::from(b)).unwrap())
        .collect();
    for c in [Canonicalizer::all(), Canonicalizer::lookalikes()] {
        assert_eq!(c.apply(&format!("hi{tags}")), "hi");
    }
    let bidi = Canonicalizer {
        bidi: true,
        ..Canonicalizer::none()
    };
    assert_eq!(bidi.apply("say \u{202E}olleh\u{202C}!"), "say hello!");
    for name in ["bidi", "separators", "casefold"] {
        let c: Canonicalizer = name.parse().unwrap();
        assert_eq!(c.to_string(), name);
    }
}

#[test]
fn canonicaliser_on_ascii_runs_the_ascii_steps() {
    let c = Canonicalizer::all();
    assert_eq!(c.apply("I G N O R E previous"), "ignore previous");
    assert_eq!(c.apply("i-g-n-o-r-e"), "ignore");
    assert_eq!(
        Canonicalizer::lookalikes().apply("I G N O R E"),
        "I G N O R E"
    );
}

fn general_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ,.!'-]{0,40}",
        "[a-z \u{0430}\u{0435}\u{FF21}\u{200B}\u{202E}\u{202C}\u{E0041}\u{00E9}\u{0301}.]{0,30}",
        any::<String>(),
    ]
}

/// Texts of spam words, fillers and fixture lemmas, so attacks have something to do.
fn vocabulary_text() -> impl Strategy<Value = String> {
    let vocab: Vec<&'static str> = SPAM
        .iter()
        .chain(&FILLER)
        .chain(&["fast", "quick", "Big", "CASH", "a", "I", "x1"])
        .copied()
        .collect();
    (
        prop::collection::vec(prop::sample::select(vocab), 1..8),
        prop::sample::select(vec![" ", "  ", ", ", " - "]),
    )
        .prop_map(|(ws, sep)| ws.join(sep))
}

fn any_kinds() -> impl Strategy<Value = Vec<EditKind>> {
    let pool: Vec<EditKind> = DEEPWORDBUG_KINDS
        .iter()
        .chain(&WORD_KINDS)
        .copied()
        .collect();
    prop::sample::subsequence(pool, 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn word_kinds_make_one_edit_of_one_word(
        text in prop_oneof![general_text(), vocabulary_text()],
        kind_i in 0usize..9,
        word_pick in any::<usize>(),
        seed in any::<u64>(),
    ) {
        let kind = WORD_KINDS[kind_i];
        let chars: Vec<char> = text.chars().collect();
        let ws = words(&chars);
        prop_assume!(!ws.is_empty());
        let w = ws[word_pick % ws.len()].clone();
        if let Some((new, e)) = propose_in(&ctx(), kind, &chars, w.clone(), &mut derived(seed, 0)) {
            prop_assert_eq!(e.kind, kind);
            prop_assert_ne!(&e.before, &e.after);
            prop_assert_eq!(apply_edits(&text, std::slice::from_ref(&e)), Some(new.iter().collect::<String>()));
            let b = e.before.chars().count();
            if kind == EditKind::Join {
                prop_assert_eq!(e.position, w.end);
                prop_assert!(e.before.chars().all(char::is_whitespace) && e.after.is_empty());
                prop_assert!(chars[w.end + b].is_alphanumeric());
            } else {
                prop_assert_eq!((e.position, b), (w.start, w.len()));
            }
        }
    }

    #[test]
    fn deepwordbug_keeps_its_budgets(
        texts in prop::collection::vec(prop_oneof![vocabulary_text(), general_text()], 1..5),
        kinds in any_kinds(),
        budget in 0usize..6,
        max_queries in 0usize..25,
        seed in any::<u64>(),
    ) {
        let labels: Vec<usize> = texts.iter().map(|t| usize::from(Keywords::new().score(t) > 0.0)).collect();
        let attack = DeepWordBug { budget, kinds: kinds.clone(), max_words: 8, max_queries, seed };
        let model = Keywords::new();
        let results = attack.attack_in(&ctx(), &model, &texts, &labels).unwrap();
        for (r, t) in results.iter().zip(&texts) {
            prop_assert_eq!(&r.original, t);
            prop_assert!(r.edits.len() <= budget);
            prop_assert!(max_queries == 0 || r.queries <= max_queries, "{} queries", r.queries);
            prop_assert_eq!(apply_edits(&r.original, &r.edits), Some(r.adversarial.clone()));
            if kinds.iter().all(EditKind::is_character) {
                prop_assert!(edit_distance(&r.original, &r.adversarial) <= r.edits.len());
            }
            let p = model.probabilities(std::slice::from_ref(&r.adversarial)).unwrap();
            prop_assert_eq!(argmax(&p[0]), r.adversarial_prediction);
        }
    }

    #[test]
    fn canonicaliser_undoes_the_look_changing_edits(
        ws in prop::collection::vec("[a-zA-Z]{3,9}", 1..6),
        kind_i in 0usize..5,
        word_pick in any::<usize>(),
        seed in any::<u64>(),
    ) {
        let kind = [EditKind::Tag, EditKind::Bidi, EditKind::Spacing, EditKind::Separator, EditKind::CaseMix][kind_i];
        let text = ws.join(" ");
        let chars: Vec<char> = text.chars().collect();
        let spans = words(&chars);
        let w = spans[word_pick % spans.len()].clone();
        let (new, _) = propose(kind, &chars, w, &mut derived(seed, 0)).unwrap();
        let adv: String = new.iter().collect();
        let c = Canonicalizer::all();
        prop_assert_eq!(c.apply(&adv), c.apply(&text));
        prop_assert_eq!(c.apply(&text), text.to_lowercase());
    }

    #[test]
    fn encodings_decode_back(text in general_text()) {
        for s in ENCODING_SCHEMES {
            prop_assert_eq!(s.unwrap(&s.wrap(&text)), Some(text.clone()));
        }
    }

    #[test]
    fn encoding_is_one_edit_and_replays(texts in prop::collection::vec(general_text(), 1..4)) {
        let model = Keywords::new();
        let labels: Vec<usize> = texts.iter().map(|t| usize::from(model.score(t) > 0.0)).collect();
        for r in Encoding::default().attack(&model, &texts, &labels).unwrap() {
            prop_assert!(r.edits.len() <= 1);
            prop_assert!(r.queries <= 1 + ENCODING_SCHEMES.len());
            prop_assert_eq!(apply_edits(&r.original, &r.edits), Some(r.adversarial.clone()));
        }
    }

    #[test]
    fn full_canonicalisation_is_idempotent(text in general_text()) {
        let c = Canonicalizer::all();
        let once = c.apply(&text);
        prop_assert!(!once.chars().any(is_invisible));
        prop_assert_eq!(c.apply(&once), once.clone());
    }
}
