//! Text classifiers (spam, moderation, prompt-injection filters): data, models, character and
//! word attacks, adversarial training and evaluation.
//!
//! The flow mirrors the image side: `data` → `encode`/`model` → `attack` → `train` → `eval`,
//! and runs are written to the same run directories and read by the same report.
//!
//! Threat model: an attacker edits a text within a budget of edits: characters (swaps,
//! deletions, insertions, substitutions, look-alike Unicode characters, leetspeak, invisible
//! characters), whole words (spaced-out letters, separators, case mixing, full leetspeak,
//! Unicode tag and bidi characters, splits and joins, WordNet synonyms), or the whole text
//! (an encoding with a "decode this" preamble). Each character edit is one step of
//! Damerau–Levenshtein (optimal string alignment) distance, so for the character attacks
//! `edit_distance(original, adversarial) <= budget` holds; a word or whole-text edit counts
//! as one edit of the budget. A filter is evaluated for evasion ([`evasion`]): only its
//! malicious texts are attacked, at the threshold of a fixed false-positive rate.

pub mod attack;
pub mod canon;
pub mod data;
pub mod detection;
pub mod edits;
pub mod encode;
pub mod eval;
pub mod evasion;
pub mod evasion_files;
pub mod model;
pub mod run;
pub mod target;
pub mod train;
pub mod transformer;
pub mod wordnet;

use serde::{Deserialize, Serialize};

/// A labelled text data set held in memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TextDataset {
    /// Short name (`spam-assassin`, `prompt-injection`, or a file stem).
    pub name: String,
    /// The texts, one per example.
    pub texts: Vec<String>,
    /// Class index of each text, `< classes.len()`.
    pub labels: Vec<usize>,
    /// Class names, e.g. `["ham", "spam"]` or `["benign", "injection"]`.
    pub classes: Vec<String>,
    /// Where the examples came from and anything a reader of results must know
    /// (e.g. "benign side synthetic"). Shown in reports.
    pub provenance: String,
}

impl TextDataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// SHA-256 (hex) of the examples: class names, then each text with its label. A
    /// checkpoint records it so a resume on other data (another `limit`, split or file) is
    /// refused, and evaluations record it so results on other data are told apart.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for class in &self.classes {
            hash.update((class.len() as u64).to_le_bytes());
            hash.update(class.as_bytes());
        }
        for (text, label) in self.texts.iter().zip(&self.labels) {
            hash.update((*label as u64).to_le_bytes());
            hash.update((text.len() as u64).to_le_bytes());
            hash.update(text.as_bytes());
        }
        crate::io::hex(&hash.finalize())
    }

    /// Number of classes (`classes.len()`), whether or not every class has examples.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> TextDataset {
        TextDataset {
            name: self.name.clone(),
            texts: indices.iter().map(|&i| self.texts[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
            provenance: self.provenance.clone(),
        }
    }

    /// The first `n` examples (all if fewer).
    pub fn take(&self, n: usize) -> TextDataset {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.subset(&idx)
    }

    /// Number of examples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }
}

/// Black-box access to a text classifier: class probabilities for whole texts. This is all a
/// query-based attack such as DeepWordBug may use.
pub trait TextClassifier {
    /// Number of classes.
    fn num_classes(&self) -> usize;
    /// Class probabilities for each text (`[texts.len()][num_classes]`). Implementations
    /// batch internally; callers pass as many texts as they like. An in-process model never
    /// fails; a filter behind a process or a URL can (it crashed, hung, answered garbage),
    /// and the error names the text it failed on.
    fn probabilities(&self, texts: &[String]) -> crate::error::Result<Vec<Vec<f32>>>;
}

/// One token a model sees: its id in the embedding table and the character span (indices into
/// `text.chars()`) it was read from. For a character model a token is one character; for an
/// n-gram model it is a character n-gram or a word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Row of the model's embedding table this token reads (`< ` the table's size).
    pub id: u32,
    /// First character (inclusive).
    pub start: usize,
    /// Last character (exclusive).
    pub end: usize,
}

/// White-box access for gradient attacks (HotFlip): tokens, gradients of the loss with respect
/// to each token's embedding, and the embedding table.
///
/// Gradient attacks work on [`WhiteBoxText::canonical`] text, i.e. the text after the model's
/// own input canonicalisation (identity for models without one).
pub trait WhiteBoxText: TextClassifier {
    /// The text as the model's tokeniser sees it (after canonicalisation, if the model has it).
    fn canonical(&self, text: &str) -> String;
    /// Tokens of `chars` (already canonical), truncated as the model truncates.
    fn tokens(&self, chars: &[char]) -> Vec<Token>;
    /// The id that token `token` would have if the characters under its span were those of
    /// `chars` (same length as the text `token` was read from). Used to score a character
    /// substitution without re-tokenising the whole text.
    fn retoken(&self, chars: &[char], token: &Token) -> u32;
    /// For each text: `d(loss)/d(embedding)` of each token, row-major `[tokens.len() * dim]`,
    /// aligned with [`WhiteBoxText::tokens`] of `texts[i]` (canonical). The loss is the
    /// cross-entropy of `labels[i]`.
    fn token_gradients(&self, texts: &[String], labels: &[usize]) -> Vec<Vec<f32>>;
    /// Embedding width.
    fn embedding_dim(&self) -> usize;
    /// Row `id` of the embedding table (`embedding_dim` values).
    fn embedding_row(&self, id: u32) -> Vec<f32>;
    /// The same row borrowed, for models that keep their table in memory: HotFlip reads
    /// millions of rows per text, and a copy (or a cache lookup) per read dominates its time.
    fn embedding_row_ref(&self, _id: u32) -> Option<&[f32]> {
        None
    }
    /// Characters a substitution may write (the model's alphabet, printable).
    fn alphabet(&self) -> Vec<char>;
}

/// Index of the largest value (first on ties); 0 for an empty slice.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}
