//! Attacks on text classifiers: DeepWordBug (black-box, queries only), HotFlip (white-box,
//! token gradients) and Encoding (black-box, the whole text encoded behind a "decode this"
//! preamble).
//!
//! Every attack keeps `edits.len() <= budget`. With character edits only (HotFlip, and
//! DeepWordBug with [`DEEPWORDBUG_KINDS`](crate::text::edits::DEEPWORDBUG_KINDS) or a subset)
//! `edit_distance(original, adversarial) <= budget` holds too; word edits (spacing, synonym,
//! ...) and encodings change many characters as one edit, so for them the budget counts
//! edits, not characters.

mod config;
pub mod deepwordbug;
pub mod encoding;
pub mod hotflip;

pub use config::{
    TextAttackConfig, LOOKALIKE_KINDS, OBFUSCATION_KINDS, SYNONYM_KINDS, TEXT_ATTACK_NAMES,
};
pub use deepwordbug::DeepWordBug;
pub use encoding::{Encoding, EncodingScheme, ENCODING_SCHEMES};
pub use hotflip::HotFlip;

use serde::{Deserialize, Serialize};

use super::edits::Edit;

/// The outcome of attacking one text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextAttackResult {
    /// The text the edits apply to (for HotFlip, the model's canonical form of the input).
    pub original: String,
    /// The attacked text: `original` with `edits` applied (within the budget's edit
    /// distance for character edits); equal to `original` when the text was not attacked
    /// (already misclassified).
    pub adversarial: String,
    /// The true class index.
    pub label: usize,
    /// The model's predicted class on `original`.
    pub clean_prediction: usize,
    /// The model's predicted class on `adversarial`.
    pub adversarial_prediction: usize,
    /// The edits in the order applied; positions refer to the text at that time.
    pub edits: Vec<Edit>,
    /// Texts this attack sent to `probabilities` for this example (gradient calls excluded).
    pub queries: usize,
}

impl TextAttackResult {
    /// The attack flipped a correct prediction.
    pub fn success(&self) -> bool {
        self.clean_prediction == self.label && self.adversarial_prediction != self.label
    }

    /// The model is still right on the adversarial text.
    pub fn robust(&self) -> bool {
        self.adversarial_prediction == self.label
    }
}

/// Probability of `label` (0 for a label the model does not have, so it never panics).
pub(crate) fn true_prob(probs: &[f32], label: usize) -> f32 {
    probs.get(label).copied().unwrap_or(0.0)
}
