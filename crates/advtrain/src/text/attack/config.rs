//! A text attack and its settings as one value: what adversarial training trains against,
//! what evaluation measures, and what a run records, so the two always name the same attack.

use serde::{Deserialize, Serialize};

use super::{DeepWordBug, HotFlip, TextAttackResult};
use crate::error::{Error, Result};
use crate::text::edits::{EditKind, DEEPWORDBUG_KINDS};
use crate::text::{TextClassifier, WhiteBoxText};

/// The edit kinds of the `lookalike` attack.
pub const LOOKALIKE_KINDS: [EditKind; 2] = [EditKind::Homoglyph, EditKind::ZeroWidth];

/// A text attack and its settings: what adversarial training trains against and what
/// evaluation measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TextAttackConfig {
    /// Black-box character edits at the most important words (Gao et al. 2018).
    DeepWordBug {
        /// Most character edits per text (at most one per word); at least 1.
        budget: usize,
        /// Edit kinds proposed at each word; not empty, and no [`EditKind::Flip`].
        kinds: Vec<EditKind>,
        /// Only the first `max_words` words are scored and edited (default 128), to bound
        /// the queries spent on long texts.
        max_words: usize,
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
}

impl TextAttackConfig {
    /// DeepWordBug with every edit kind.
    pub fn deepwordbug(budget: usize) -> Self {
        TextAttackConfig::DeepWordBug {
            budget,
            kinds: DEEPWORDBUG_KINDS.to_vec(),
            max_words: 128,
        }
    }

    /// DeepWordBug restricted to look-alike (homoglyph) and invisible (zero-width)
    /// characters: the evasions input canonicalisation is meant to undo.
    pub fn lookalike(budget: usize) -> Self {
        TextAttackConfig::DeepWordBug {
            budget,
            kinds: LOOKALIKE_KINDS.to_vec(),
            max_words: 128,
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

    /// `deepwordbug`, `lookalike` or `hotflip`.
    pub fn from_name(name: &str, budget: usize) -> Result<Self> {
        let config = match name {
            "deepwordbug" | "dwb" => Self::deepwordbug(budget),
            "lookalike" => Self::lookalike(budget),
            "hotflip" => Self::hotflip(budget),
            other => {
                return Err(Error::config(format!(
                "unknown text attack '{other}': expected 'deepwordbug', 'lookalike' or 'hotflip'"
            )))
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// The attack's name in records: `deepwordbug`, `lookalike`, `hotflip`, or
    /// `deepwordbug-custom` for DeepWordBug with another set of kinds.
    pub fn name(&self) -> &'static str {
        match self {
            TextAttackConfig::DeepWordBug { kinds, .. } => {
                if kinds.as_slice() == LOOKALIKE_KINDS {
                    "lookalike"
                } else if kinds.as_slice() == DEEPWORDBUG_KINDS {
                    "deepwordbug"
                } else {
                    "deepwordbug-custom"
                }
            }
            TextAttackConfig::HotFlip { .. } => "hotflip",
        }
    }

    /// Edits allowed per text.
    pub fn budget(&self) -> usize {
        match *self {
            TextAttackConfig::DeepWordBug { budget, .. }
            | TextAttackConfig::HotFlip { budget, .. } => budget,
        }
    }

    /// Checks the settings as the attack itself does ([`DeepWordBug::validate`],
    /// [`HotFlip::validate`]).
    pub fn validate(&self) -> Result<()> {
        match self {
            TextAttackConfig::DeepWordBug { .. } => {
                self.deepwordbug_with_seed(0).unwrap().validate()
            }
            TextAttackConfig::HotFlip { .. } => self.hotflip_attack().unwrap().validate(),
        }
    }

    fn deepwordbug_with_seed(&self, seed: u64) -> Option<DeepWordBug> {
        match self {
            TextAttackConfig::DeepWordBug {
                budget,
                kinds,
                max_words,
            } => Some(DeepWordBug {
                budget: *budget,
                kinds: kinds.clone(),
                max_words: *max_words,
                seed,
            }),
            _ => None,
        }
    }

    fn hotflip_attack(&self) -> Option<HotFlip> {
        match *self {
            TextAttackConfig::HotFlip {
                budget,
                beam,
                candidates,
                positions,
            } => Some(HotFlip {
                budget,
                beam,
                candidates,
                positions,
            }),
            _ => None,
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
        match self {
            TextAttackConfig::DeepWordBug { .. } => self
                .deepwordbug_with_seed(seed)
                .expect("variant checked")
                .attack(model, texts, labels),
            TextAttackConfig::HotFlip { .. } => self
                .hotflip_attack()
                .expect("variant checked")
                .attack(model, texts, labels),
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
        match self {
            TextAttackConfig::DeepWordBug { .. } => self
                .deepwordbug_with_seed(seed)
                .expect("variant checked")
                .attack(model, texts, labels),
            TextAttackConfig::HotFlip { .. } => Err(Error::config(
                "hotflip needs the model's gradients; a filter reached through --target-cmd or \
                 --target-url answers queries only (use a query attack such as deepwordbug)",
            )),
        }
    }
}
