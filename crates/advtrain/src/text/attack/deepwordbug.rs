//! DeepWordBug (Gao et al. 2018): a black-box character attack. Words are ranked by how much
//! deleting them lowers the true-class probability ("replace-one" score); the attack then
//! walks down that ranking, editing each word once with the best of one random proposal per
//! allowed edit kind, until the prediction flips, the budget is spent or the text's query
//! budget (`max_queries`) is.
//!
//! With character kinds only, each word is edited at most once and words are separated by
//! unedited characters, so the OSA distance to the original is at most the number of edits.
//! Word kinds ([`WORD_KINDS`](crate::text::edits::WORD_KINDS)) rewrite a whole word (a
//! join removes the whitespace after it) and the budget counts them as one edit each.
//!
//! With `max_queries` set, word scoring spends at most what leaves one round of proposals
//! (one query per kind); the words it cannot score come after the scored ones, in text
//! order, and a round sends only as many proposals as queries remain.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{true_prob, TextAttackResult};
use crate::error::{Error, Result};
use crate::rng::{derived, AdvRng};
use crate::text::edits::{propose_in, words, Edit, EditContext, EditKind, DEEPWORDBUG_KINDS};
use crate::text::wordnet::WordNet;
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
    /// Most queries per text, the clean one included (0: no limit). Records written before
    /// this setting read as 0.
    #[serde(default)]
    pub max_queries: usize,
    /// Text `i` draws from `derived(seed, i)`, so a result does not depend on the batch.
    pub seed: u64,
}

impl Default for DeepWordBug {
    fn default() -> Self {
        Self {
            budget: 5,
            kinds: DEEPWORDBUG_KINDS.to_vec(),
            max_words: 128,
            max_queries: 0,
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

    /// One proposal of `kind` at the word in segment `seg`: the segment it rewrites, that
    /// segment's new content, and the edit. A join rewrites the segment after the word: it
    /// is proposed on the word, that segment and the next word, and applies when the
    /// segment is all whitespace.
    fn propose_at(
        &mut self,
        ctx: &EditContext<'_>,
        kind: EditKind,
        seg: usize,
    ) -> Option<(usize, Vec<char>, Edit)> {
        let offset = self.offset(seg);
        let word_len = self.segments[seg].len();
        if kind != EditKind::Join {
            let word = &self.segments[seg];
            let (new, mut edit) = propose_in(ctx, kind, word, 0..word_len, &mut self.rng)?;
            edit.position += offset;
            return Some((seg, new, edit));
        }
        let sep = self.segments.get(seg + 1)?;
        let next = self.segments.get(seg + 2)?;
        let window: Vec<char> = [&self.segments[seg], sep, next]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let (new, mut edit) = propose_in(ctx, kind, &window, 0..word_len, &mut self.rng)?;
        edit.position += offset;
        let new_sep = new[word_len..new.len() - next.len()].to_vec();
        Some((seg + 1, new_sep, edit))
    }
}

/// A proposed edit: the new content of one segment (the word, or for a join the
/// whitespace after it), the edit (position in the whole text).
struct Candidate {
    text: usize,
    segment: usize,
    word: Vec<char>,
    edit: Edit,
    /// Random tie-break, so equally good kinds are all used, not always the first listed.
    tie: u32,
}

impl DeepWordBug {
    /// Checks the budget is at least 1, the kinds non-empty, free of [`EditKind::Flip`] and
    /// of whole-text encodings, and that the system WordNet loads when synonyms are asked
    /// for (so a missing WordNet fails here, before any query is spent).
    pub fn validate(&self) -> Result<()> {
        self.validate_in(&EditContext::default())
    }

    /// [`DeepWordBug::validate`] for an attack run with `ctx`: a WordNet in `ctx` stands in
    /// for the system one.
    pub fn validate_in(&self, ctx: &EditContext<'_>) -> Result<()> {
        if self.budget == 0 {
            return Err(Error::config("deepwordbug budget must be at least 1"));
        }
        if self.kinds.is_empty() {
            return Err(Error::config("deepwordbug needs at least one edit kind"));
        }
        if self.kinds.contains(&EditKind::Flip) {
            return Err(Error::config(
                "deepwordbug cannot use flip edits (they need gradients; use hotflip)",
            ));
        }
        if let Some(k) = self.kinds.iter().find(|k| k.is_whole_text()) {
            return Err(Error::config(format!(
                "deepwordbug edits words; {k} encodes the whole text (use the encoding attack)"
            )));
        }
        if self.needs_wordnet() && ctx.wordnet.is_none() {
            WordNet::system()?;
        }
        Ok(())
    }

    fn needs_wordnet(&self) -> bool {
        self.kinds.iter().any(EditKind::needs_wordnet)
    }

    /// Attack each text against its label. Every round sends one `probabilities` call holding
    /// the candidates of all texts still under attack. Synonym edits read the system
    /// WordNet ([`WordNet::system`]); use [`DeepWordBug::attack_in`] to give another.
    ///
    /// Panics if `texts` and `labels` differ in length. Fails when the model does (a filter
    /// behind a process or URL), or when synonyms are asked for and WordNet is missing.
    pub fn attack(
        &self,
        model: &dyn TextClassifier,
        texts: &[String],
        labels: &[usize],
    ) -> Result<Vec<TextAttackResult>> {
        self.attack_in(&EditContext::default(), model, texts, labels)
    }

    /// [`DeepWordBug::attack`] with the proposals reading `ctx` (its WordNet, if any, is
    /// used for synonyms instead of the system one).
    pub fn attack_in(
        &self,
        ctx: &EditContext<'_>,
        model: &dyn TextClassifier,
        texts: &[String],
        labels: &[usize],
    ) -> Result<Vec<TextAttackResult>> {
        assert_eq!(texts.len(), labels.len(), "one label per text");
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = match ctx.wordnet {
            None if self.needs_wordnet() => EditContext::with_wordnet(WordNet::system()?),
            _ => *ctx,
        };
        let mut states: Vec<State> = texts
            .iter()
            .zip(labels)
            .enumerate()
            .map(|(i, (t, &l))| State::new(t, l, self.max_words, derived(self.seed, i as u64)))
            .collect();
        let clean_predictions = self.query_clean(model, texts, &mut states)?;
        self.rank_words(model, &mut states)?;
        self.edit_rounds(&ctx, model, &mut states)?;

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

    /// Queries still allowed for `s` (`usize::MAX` without a limit).
    fn remaining(&self, s: &State) -> usize {
        match self.max_queries {
            0 => usize::MAX,
            m => m.saturating_sub(s.queries),
        }
    }

    /// The clean query: predictions, and which texts are worth attacking.
    fn query_clean(
        &self,
        model: &dyn TextClassifier,
        texts: &[String],
        states: &mut [State],
    ) -> Result<Vec<usize>> {
        let clean = model.probabilities(texts)?;
        let mut clean_predictions = vec![0; states.len()];
        for ((s, p), out) in states.iter_mut().zip(&clean).zip(&mut clean_predictions) {
            s.queries += 1;
            s.p_true = true_prob(p, s.label);
            s.prediction = argmax(p);
            s.active = s.prediction == s.label && self.budget > 0 && !s.word_segments.is_empty();
            *out = s.prediction;
        }
        for s in states.iter_mut() {
            s.active &= self.remaining(s) > 0;
        }
        Ok(clean_predictions)
    }

    /// Words scored for `s`: all, or under a query limit as many as leave one round of
    /// proposals.
    fn scored_words(&self, s: &State) -> usize {
        let n = s.word_segments.len();
        match self.max_queries {
            0 => n,
            _ => n.min(self.remaining(s).saturating_sub(self.kinds.len())),
        }
    }

    /// Replace-one scores: the drop in true-class probability when a word is deleted.
    fn rank_words(&self, model: &dyn TextClassifier, states: &mut [State]) -> Result<()> {
        let mut batch = Vec::new();
        for s in states.iter_mut().filter(|s| s.active) {
            s.order = (0..s.word_segments.len()).collect();
            for &seg in &s.word_segments[..self.scored_words(s)] {
                batch.push(s.text_with(seg, &[]));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let probs = model.probabilities(&batch)?;
        let mut at = 0;
        for s in states.iter_mut().filter(|s| s.active) {
            let n = self.scored_words(s);
            let scores: Vec<f32> = probs[at..at + n]
                .iter()
                .map(|p| s.p_true - true_prob(p, s.label))
                .collect();
            at += n;
            s.queries += n;
            // Stable: unscored words keep their text order after the scored ones.
            s.order[..n].sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        }
        Ok(())
    }

    /// One proposal per kind at the next words of `s` until some kind applies, at most as
    /// many as queries remain.
    fn propose_next(
        &self,
        ctx: &EditContext<'_>,
        i: usize,
        s: &mut State,
        candidates: &mut Vec<Candidate>,
    ) {
        let before = candidates.len();
        while candidates.len() == before && s.next < s.order.len() {
            let seg = s.word_segments[s.order[s.next]];
            s.next += 1;
            for &kind in &self.kinds {
                if let Some((segment, word, edit)) = s.propose_at(ctx, kind, seg) {
                    let tie = s.rng.random();
                    candidates.push(Candidate {
                        text: i,
                        segment,
                        word,
                        edit,
                        tie,
                    });
                }
            }
        }
        candidates.truncate(before.saturating_add(self.remaining(s)));
        if candidates.len() == before {
            s.active = false;
        }
    }

    fn edit_rounds(
        &self,
        ctx: &EditContext<'_>,
        model: &dyn TextClassifier,
        states: &mut [State],
    ) -> Result<()> {
        loop {
            let mut candidates: Vec<Candidate> = Vec::new();
            for (i, s) in states.iter_mut().enumerate().filter(|(_, s)| s.active) {
                self.propose_next(ctx, i, s, &mut candidates);
            }
            if candidates.is_empty() {
                return Ok(());
            }
            let batch: Vec<String> = candidates
                .iter()
                .map(|c| states[c.text].text_with(c.segment, &c.word))
                .collect();
            let probs = model.probabilities(&batch)?;
            self.apply_best(states, candidates, &probs);
        }
    }

    /// Keeps each text's best candidate (lowest true-class probability) if it helps, and
    /// stops texts that flipped or spent their budget of edits or queries.
    fn apply_best(&self, states: &mut [State], candidates: Vec<Candidate>, probs: &[Vec<f32>]) {
        let mut best: Vec<Option<(usize, f32, usize)>> = vec![None; states.len()];
        for (k, (c, p)) in candidates.iter().zip(probs).enumerate() {
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
            if s.prediction != s.label || s.edits.len() >= self.budget || self.remaining(s) == 0 {
                s.active = false;
            }
        }
    }
}
