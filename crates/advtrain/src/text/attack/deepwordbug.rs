//! DeepWordBug (Gao et al. 2018): a black-box character attack. Words are ranked by how much
//! deleting them lowers the true-class probability ("replace-one" score); the attack then
//! walks down that ranking, editing each word once with the best of one random proposal per
//! allowed edit kind, until the prediction flips or the budget is spent.
//!
//! Each word is edited at most once and words are separated by unedited characters, so the
//! OSA distance to the original is at most the number of edits.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{true_prob, TextAttackResult};
use crate::error::Result;
use crate::rng::{derived, AdvRng};
use crate::text::edits::{propose, words, Edit, EditKind, DEEPWORDBUG_KINDS};
use crate::text::{argmax, TextClassifier};

/// DeepWordBug settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeepWordBug {
    /// Most edits per text.
    pub budget: usize,
    /// Edit kinds to propose at each word.
    pub kinds: Vec<EditKind>,
    /// Only the first `max_words` words are scored and edited (bounds queries on long texts).
    pub max_words: usize,
    /// Text `i` draws from `derived(seed, i)`, so a result does not depend on the batch.
    pub seed: u64,
}

impl Default for DeepWordBug {
    fn default() -> Self {
        Self {
            budget: 5,
            kinds: DEEPWORDBUG_KINDS.to_vec(),
            max_words: 128,
            seed: 0,
        }
    }
}

/// One text under attack: its runs of non-word and word characters, edited in place.
struct State {
    label: usize,
    segments: Vec<Vec<char>>,
    /// Segment index of each scored word.
    word_segments: Vec<usize>,
    /// Word indices, most important first.
    order: Vec<usize>,
    next: usize,
    p_true: f32,
    prediction: usize,
    edits: Vec<Edit>,
    queries: usize,
    rng: AdvRng,
    active: bool,
}

impl State {
    fn new(text: &str, label: usize, max_words: usize, rng: AdvRng) -> Self {
        let chars: Vec<char> = text.chars().collect();
        let mut segments = Vec::new();
        let mut word_segments = Vec::new();
        let mut at = 0;
        for w in words(&chars) {
            if w.start > at {
                segments.push(chars[at..w.start].to_vec());
            }
            if word_segments.len() < max_words {
                word_segments.push(segments.len());
            }
            segments.push(chars[w.clone()].to_vec());
            at = w.end;
        }
        if at < chars.len() {
            segments.push(chars[at..].to_vec());
        }
        Self {
            label,
            segments,
            word_segments,
            order: Vec::new(),
            next: 0,
            p_true: 0.0,
            prediction: 0,
            edits: Vec::new(),
            queries: 0,
            rng,
            active: false,
        }
    }

    /// The text with segment `seg` replaced by `with`.
    fn text_with(&self, seg: usize, with: &[char]) -> String {
        let mut s = String::new();
        for (i, part) in self.segments.iter().enumerate() {
            let part = if i == seg { with } else { part };
            s.extend(part.iter());
        }
        s
    }

    fn text(&self) -> String {
        self.segments.iter().flatten().collect()
    }

    fn offset(&self, seg: usize) -> usize {
        self.segments[..seg].iter().map(Vec::len).sum()
    }
}

/// A proposed edit of one word: the new word, the edit (position in the whole text).
struct Candidate {
    text: usize,
    segment: usize,
    word: Vec<char>,
    edit: Edit,
    /// Random tie-break, so equally good kinds are all used, not always the first listed.
    tie: u32,
}

impl DeepWordBug {
    /// Checks the budget is at least 1 and the kinds non-empty and free of
    /// [`EditKind::Flip`].
    pub fn validate(&self) -> crate::error::Result<()> {
        if self.budget == 0 {
            return Err(crate::error::Error::config(
                "deepwordbug budget must be at least 1",
            ));
        }
        if self.kinds.is_empty() {
            return Err(crate::error::Error::config(
                "deepwordbug needs at least one edit kind",
            ));
        }
        if self.kinds.contains(&EditKind::Flip) {
            return Err(crate::error::Error::config(
                "deepwordbug cannot use flip edits (they need gradients; use hotflip)",
            ));
        }
        Ok(())
    }

    /// Attack each text against its label. Every round sends one `probabilities` call holding
    /// the candidates of all texts still under attack.
    ///
    /// Panics if `texts` and `labels` differ in length. Fails only when the model does
    /// (a filter behind a process or URL).
    pub fn attack(
        &self,
        model: &dyn TextClassifier,
        texts: &[String],
        labels: &[usize],
    ) -> Result<Vec<TextAttackResult>> {
        assert_eq!(texts.len(), labels.len(), "one label per text");
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut states: Vec<State> = texts
            .iter()
            .zip(labels)
            .enumerate()
            .map(|(i, (t, &l))| State::new(t, l, self.max_words, derived(self.seed, i as u64)))
            .collect();

        let clean = model.probabilities(texts)?;
        let mut clean_predictions = Vec::with_capacity(states.len());
        for (s, p) in states.iter_mut().zip(&clean) {
            s.queries += 1;
            s.p_true = true_prob(p, s.label);
            s.prediction = argmax(p);
            s.active = s.prediction == s.label && self.budget > 0 && !s.word_segments.is_empty();
            clean_predictions.push(s.prediction);
        }

        self.rank_words(model, &mut states)?;
        self.edit_rounds(model, &mut states)?;

        Ok(states
            .into_iter()
            .zip(texts)
            .zip(clean_predictions)
            .map(|((s, t), clean_prediction)| TextAttackResult {
                original: t.clone(),
                adversarial: s.text(),
                label: s.label,
                clean_prediction,
                adversarial_prediction: s.prediction,
                edits: s.edits,
                queries: s.queries,
            })
            .collect())
    }

    /// Replace-one scores: the drop in true-class probability when a word is deleted.
    fn rank_words(&self, model: &dyn TextClassifier, states: &mut [State]) -> Result<()> {
        let mut batch = Vec::new();
        for s in states.iter().filter(|s| s.active) {
            for &seg in &s.word_segments {
                batch.push(s.text_with(seg, &[]));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let probs = model.probabilities(&batch)?;
        let mut at = 0;
        for s in states.iter_mut().filter(|s| s.active) {
            let n = s.word_segments.len();
            let scores: Vec<f32> = probs[at..at + n]
                .iter()
                .map(|p| s.p_true - true_prob(p, s.label))
                .collect();
            at += n;
            s.queries += n;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            s.order = order;
        }
        Ok(())
    }

    fn edit_rounds(&self, model: &dyn TextClassifier, states: &mut [State]) -> Result<()> {
        loop {
            let mut candidates: Vec<Candidate> = Vec::new();
            for (i, s) in states.iter_mut().enumerate().filter(|(_, s)| s.active) {
                let before = candidates.len();
                while candidates.len() == before && s.next < s.order.len() {
                    let seg = s.word_segments[s.order[s.next]];
                    s.next += 1;
                    let offset = s.offset(seg);
                    let word = s.segments[seg].clone();
                    for &kind in &self.kinds {
                        if let Some((new, mut edit)) =
                            propose(kind, &word, 0..word.len(), &mut s.rng)
                        {
                            edit.position += offset;
                            candidates.push(Candidate {
                                text: i,
                                segment: seg,
                                word: new,
                                edit,
                                tie: s.rng.random(),
                            });
                        }
                    }
                }
                if candidates.len() == before {
                    s.active = false;
                }
            }
            if candidates.is_empty() {
                return Ok(());
            }
            let batch: Vec<String> = candidates
                .iter()
                .map(|c| states[c.text].text_with(c.segment, &c.word))
                .collect();
            let probs = model.probabilities(&batch)?;

            // Best candidate per text: lowest true-class probability.
            let mut best: Vec<Option<(usize, f32, usize)>> = vec![None; states.len()];
            for (k, (c, p)) in candidates.iter().zip(&probs).enumerate() {
                let s = &mut states[c.text];
                s.queries += 1;
                let pt = true_prob(p, s.label);
                let better = best[c.text].is_none_or(|(b, bp, _)| {
                    pt.total_cmp(&bp)
                        .then(c.tie.cmp(&candidates[b].tie))
                        .is_lt()
                });
                if better {
                    best[c.text] = Some((k, pt, argmax(p)));
                }
            }
            let mut candidates: Vec<Option<Candidate>> = candidates.into_iter().map(Some).collect();
            for (i, b) in best.into_iter().enumerate() {
                let Some((k, pt, prediction)) = b else {
                    continue;
                };
                let s = &mut states[i];
                // An edit that does not help would only spend budget.
                if pt < s.p_true || prediction != s.label {
                    if let Some(c) = candidates[k].take() {
                        s.segments[c.segment] = c.word;
                        s.edits.push(c.edit);
                        s.p_true = pt;
                        s.prediction = prediction;
                    }
                }
                if s.prediction != s.label || s.edits.len() >= self.budget {
                    s.active = false;
                }
            }
        }
    }
}
