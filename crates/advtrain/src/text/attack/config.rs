//! A text attack and its settings as one value: what adversarial training trains against,
//! what evaluation measures, and what a run records, so the two always name the same attack.

use serde::{Deserialize, Serialize};

use super::encoding::{Encoding, EncodingScheme, ENCODING_SCHEMES};
use super::{DeepWordBug, HotFlip, TextAttackResult};
use crate::error::{Error, Result};
use crate::text::edits::{EditKind, DEEPWORDBUG_KINDS};
use crate::text::{TextClassifier, WhiteBoxText};

/// The edit kinds of the `lookalike` attack.
pub const LOOKALIKE_KINDS: [EditKind; 2] = [EditKind::Homoglyph, EditKind::ZeroWidth];

/// The edit kinds of the `obfuscation` attack: the word obfuscations people use against
/// keyword and n-gram filters, all but synonyms (which change the words, not their look).
pub const OBFUSCATION_KINDS: [EditKind; 8] = [
    EditKind::Spacing,
    EditKind::Separator,
    EditKind::CaseMix,
    EditKind::FullLeet,
    EditKind::Tag,
    EditKind::Bidi,
    EditKind::Split,
    EditKind::Join,
];

/// The edit kinds of the `synonym` attack.
pub const SYNONYM_KINDS: [EditKind; 1] = [EditKind::Synonym];

/// Every name [`TextAttackConfig::from_name`] accepts (aliases aside), for help texts and
/// error messages.
pub const TEXT_ATTACK_NAMES: &[&str] = &[
    "deepwordbug",
    "lookalike",
    "hotflip",
    "obfuscation",
    "synonym",
    "encoding",
];

/// Words DeepWordBug scores and edits per text unless told otherwise.
const MAX_WORDS: usize = 128;

/// A text attack and its settings: what adversarial training trains against and what
/// evaluation measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TextAttackConfig {
    /// Black-box edits at the most important words (Gao et al. 2018): character edits, or
    /// the word obfuscations and synonyms of [`EditKind`].
    DeepWordBug {
        /// Most edits per text (at most one per word); at least 1.
        budget: usize,
        /// Edit kinds proposed at each word; not empty, no [`EditKind::Flip`] and no
        /// whole-text encoding.
        kinds: Vec<EditKind>,
        /// Only the first `max_words` words are scored and edited (default 128), to bound
        /// the queries spent on long texts.
        max_words: usize,
        /// Most queries per text, the clean one included (0, the default: no limit).
        #[serde(default)]
        max_queries: usize,
    },
    /// White-box gradient-ranked character flips with beam search (Ebrahimi et al. 2018).
    HotFlip {
        /// Most flips per text, one per round, each at a new position; at least 1.
        budget: usize,
        /// Texts kept per round (default 2); at least 1.
        beam: usize,
        /// Flips per beam state scored exactly, the top of the gradient ranking (default
        /// 8); at least 1.
        candidates: usize,
        /// Positions ranked per beam state (0: all).
        #[serde(default)]
        positions: usize,
    },
    /// The whole text encoded behind a "decode this" preamble, one edit (see
    /// [`Encoding`]).
    Encoding {
        /// Schemes tried in order; not empty, no repeats.
        schemes: Vec<EncodingScheme>,
    },
}

impl TextAttackConfig {
    /// DeepWordBug with `kinds`, 128 words, no query limit.
    fn dwb(budget: usize, kinds: &[EditKind]) -> Self {
        TextAttackConfig::DeepWordBug {
            budget,
            kinds: kinds.to_vec(),
            max_words: MAX_WORDS,
            max_queries: 0,
        }
    }

    /// DeepWordBug with every character edit kind.
    pub fn deepwordbug(budget: usize) -> Self {
        Self::dwb(budget, &DEEPWORDBUG_KINDS)
    }

    /// DeepWordBug restricted to look-alike (homoglyph) and invisible (zero-width)
    /// characters: the evasions input canonicalisation is meant to undo.
    pub fn lookalike(budget: usize) -> Self {
        Self::dwb(budget, &LOOKALIKE_KINDS)
    }

    /// DeepWordBug with the word obfuscations ([`OBFUSCATION_KINDS`]): spacing,
    /// separators, mixed case, leetspeak, tags, bidi reversal, splits and joins.
    pub fn obfuscation(budget: usize) -> Self {
        Self::dwb(budget, &OBFUSCATION_KINDS)
    }

    /// DeepWordBug replacing words by WordNet synonyms (needs WordNet installed).
    pub fn synonym(budget: usize) -> Self {
        Self::dwb(budget, &SYNONYM_KINDS)
    }

    /// Every encoding scheme, tried in order (one edit; the budget does not apply).
    pub fn encoding() -> Self {
        TextAttackConfig::Encoding {
            schemes: ENCODING_SCHEMES.to_vec(),
        }
    }

    /// HotFlip with beam 2, 8 candidates per state, 64 positions ranked per state.
    pub fn hotflip(budget: usize) -> Self {
        TextAttackConfig::HotFlip {
            budget,
            beam: 2,
            candidates: 8,
            positions: 64,
        }
    }

    /// The attack of one of [`TEXT_ATTACK_NAMES`] (or `dwb` for `deepwordbug`), validated.
    pub fn from_name(name: &str, budget: usize) -> Result<Self> {
        let config = match name {
            "deepwordbug" | "dwb" => Self::deepwordbug(budget),
            "lookalike" => Self::lookalike(budget),
            "hotflip" => Self::hotflip(budget),
            "obfuscation" => Self::obfuscation(budget),
            "synonym" => Self::synonym(budget),
            "encoding" => Self::encoding(),
            other => {
                return Err(Error::config(format!(
                    "unknown text attack '{other}': expected one of {}",
                    TEXT_ATTACK_NAMES.join(", ")
                )))
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// The same attack with at most `n` queries per text (0: no limit). Only DeepWordBug
    /// spends queries in proportion to the text; HotFlip and Encoding are returned as they
    /// are (Encoding sends one query per scheme, HotFlip one per round).
    pub fn with_max_queries(mut self, n: usize) -> Self {
        if let TextAttackConfig::DeepWordBug { max_queries, .. } = &mut self {
            *max_queries = n;
        }
        self
    }

    /// The attack's name in records: one of [`TEXT_ATTACK_NAMES`] for the named sets,
    /// `deepwordbug-custom` for DeepWordBug with another set of kinds, `encoding-custom`
    /// for another list of schemes.
    pub fn name(&self) -> &'static str {
        match self {
            TextAttackConfig::DeepWordBug { kinds, .. } => match kinds.as_slice() {
                k if k == LOOKALIKE_KINDS => "lookalike",
                k if k == DEEPWORDBUG_KINDS => "deepwordbug",
                k if k == OBFUSCATION_KINDS => "obfuscation",
                k if k == SYNONYM_KINDS => "synonym",
                _ => "deepwordbug-custom",
            },
            TextAttackConfig::HotFlip { .. } => "hotflip",
            TextAttackConfig::Encoding { schemes } if schemes.as_slice() == ENCODING_SCHEMES => {
                "encoding"
            }
            TextAttackConfig::Encoding { .. } => "encoding-custom",
        }
    }

    /// Edits allowed per text (1 for Encoding: the one encoding).
    pub fn budget(&self) -> usize {
        match *self {
            TextAttackConfig::DeepWordBug { budget, .. }
            | TextAttackConfig::HotFlip { budget, .. } => budget,
            TextAttackConfig::Encoding { .. } => 1,
        }
    }

    /// Checks the settings as the attack itself does ([`DeepWordBug::validate`],
    /// [`HotFlip::validate`], [`Encoding::validate`]); for synonyms, that WordNet loads.
    pub fn validate(&self) -> Result<()> {
        match self.attack(0) {
            Attack::DeepWordBug(a) => a.validate(),
            Attack::HotFlip(a) => a.validate(),
            Attack::Encoding(a) => a.validate(),
        }
    }

    /// The attack this config describes, with `seed` for DeepWordBug.
    fn attack(&self, seed: u64) -> Attack {
        match self {
            TextAttackConfig::DeepWordBug {
                budget,
                kinds,
                max_words,
                max_queries,
            } => Attack::DeepWordBug(DeepWordBug {
                budget: *budget,
                kinds: kinds.clone(),
                max_words: *max_words,
                max_queries: *max_queries,
                seed,
            }),
            &TextAttackConfig::HotFlip {
                budget,
                beam,
                candidates,
                positions,
            } => Attack::HotFlip(HotFlip {
                budget,
                beam,
                candidates,
                positions,
            }),
            TextAttackConfig::Encoding { schemes } => Attack::Encoding(Encoding {
                schemes: schemes.clone(),
            }),
        }
    }

    /// Attacks `texts` (true classes `labels`) on a model whose gradients are available.
    pub fn run(
        &self,
        model: &dyn WhiteBoxText,
        texts: &[String],
        labels: &[usize],
        seed: u64,
    ) -> Result<Vec<TextAttackResult>> {
        match self.attack(seed) {
            Attack::DeepWordBug(a) => a.attack(model, texts, labels),
            Attack::HotFlip(a) => a.attack(model, texts, labels),
            Attack::Encoding(a) => a.attack(model, texts, labels),
        }
    }

    /// Attacks `texts` on a model known only by its answers (a filter behind a process or
    /// a URL). Gradient attacks are refused: they need the model's internals.
    pub fn run_black_box(
        &self,
        model: &dyn TextClassifier,
        texts: &[String],
        labels: &[usize],
        seed: u64,
    ) -> Result<Vec<TextAttackResult>> {
        match self.attack(seed) {
            Attack::DeepWordBug(a) => a.attack(model, texts, labels),
            Attack::Encoding(a) => a.attack(model, texts, labels),
            Attack::HotFlip(_) => Err(Error::config(
                "hotflip needs the model's gradients; a filter reached through --target-cmd or \
                 --target-url answers queries only (use a query attack such as deepwordbug)",
            )),
        }
    }
}

/// The attack a config runs.
enum Attack {
    DeepWordBug(DeepWordBug),
    HotFlip(HotFlip),
    Encoding(Encoding),
}
