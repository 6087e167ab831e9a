//! HotFlip (Ebrahimi et al. 2018): a white-box character-flip attack. The loss gradient with
//! respect to each token's embedding ranks every substitution by its first-order effect; the
//! best few per beam state are then scored exactly and a beam of the best texts is kept.
//!
//! The attack works on the model's canonical text (what its tokeniser sees), and the result's
//! `original` is that canonical text, so `edit_distance(original, adversarial) <= budget`
//! holds as for any attack: each flip substitutes a character at a position not flipped
//! before.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{true_prob, TextAttackResult};
use crate::text::edits::{Edit, EditKind};
use crate::text::{argmax, Token, WhiteBoxText};

/// HotFlip settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HotFlip {
    /// Most flips per text (one per round).
    pub budget: usize,
    /// Texts kept per round.
    pub beam: usize,
    /// Flips per beam state scored exactly (the top of the first-order ranking).
    pub candidates: usize,
    /// Positions per beam state whose substitutions are ranked: those whose covering tokens
    /// have the largest loss gradient (0: every position). Ranking every position of a long
    /// text against the whole alphabet costs positions × alphabet × covering tokens
    /// re-hashes per state, far more than the forward passes it saves.
    #[serde(default)]
    pub positions: usize,
}

impl Default for HotFlip {
    fn default() -> Self {
        Self {
            budget: 5,
            beam: 2,
            candidates: 8,
            positions: 64,
        }
    }
}

#[derive(Clone)]
struct Beam {
    chars: Vec<char>,
    edits: Vec<Edit>,
    p_true: f32,
    prediction: usize,
}

struct State {
    label: usize,
    beams: Vec<Beam>,
    /// Lowest true-class probability seen (a misclassified text ends the attack).
    best: Beam,
    queries: usize,
    active: bool,
}

/// Embedding rows by id, bounded so hashed n-gram tables do not fill memory.
struct RowCache<'m> {
    model: &'m dyn WhiteBoxText,
    rows: HashMap<u32, Vec<f32>>,
    limit: usize,
}

impl<'m> RowCache<'m> {
    fn new(model: &'m dyn WhiteBoxText) -> Self {
        let dim = model.embedding_dim().max(1);
        Self {
            model,
            rows: HashMap::new(),
            limit: (1 << 24) / dim,
        }
    }

    fn dot(&mut self, id: u32, g: &[f32]) -> f32 {
        if let Some(row) = self.model.embedding_row_ref(id) {
            return row.iter().zip(g).map(|(a, b)| a * b).sum();
        }
        if self.rows.len() >= self.limit && !self.rows.contains_key(&id) {
            self.rows.clear();
        }
        let row = self
            .rows
            .entry(id)
            .or_insert_with(|| self.model.embedding_row(id));
        row.iter().zip(g).map(|(a, b)| a * b).sum()
    }
}

impl HotFlip {
    /// Checks that budget, beam and candidates are each at least 1.
    pub fn validate(&self) -> crate::error::Result<()> {
        if self.budget == 0 {
            return Err(crate::error::Error::config(
                "hotflip budget must be at least 1",
            ));
        }
        if self.beam == 0 {
            return Err(crate::error::Error::config(
                "hotflip beam must be at least 1",
            ));
        }
        if self.candidates == 0 {
            return Err(crate::error::Error::config(
                "hotflip candidates must be at least 1",
            ));
        }
        Ok(())
    }

    /// Attack each text (canonicalised by the model) against its label. Each round makes one
    /// `token_gradients` call and one `probabilities` call covering every beam of every text
    /// still under attack.
    ///
    /// Panics if `texts` and `labels` differ in length.
    pub fn attack(
        &self,
        model: &dyn WhiteBoxText,
        texts: &[String],
        labels: &[usize],
    ) -> crate::error::Result<Vec<TextAttackResult>> {
        assert_eq!(texts.len(), labels.len(), "one label per text");
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let canonical: Vec<String> = texts.iter().map(|t| model.canonical(t)).collect();
        let clean = model.probabilities(&canonical)?;
        let mut states: Vec<State> = canonical
            .iter()
            .zip(labels)
            .zip(&clean)
            .map(|((t, &label), p)| {
                let start = Beam {
                    chars: t.chars().collect(),
                    edits: Vec::new(),
                    p_true: true_prob(p, label),
                    prediction: argmax(p),
                };
                State {
                    label,
                    active: start.prediction == label && self.budget > 0 && self.beam > 0,
                    beams: vec![start.clone()],
                    best: start,
                    queries: 1,
                }
            })
            .collect();
        let clean_predictions: Vec<usize> = states.iter().map(|s| s.best.prediction).collect();

        let mut alphabet = Vec::new();
        for c in model.alphabet() {
            if !alphabet.contains(&c) {
                alphabet.push(c);
            }
        }
        let mut cache = RowCache::new(model);
        for _ in 0..self.budget {
            if !self.round(model, &alphabet, &mut cache, &mut states)? {
                break;
            }
        }

        Ok(states
            .into_iter()
            .zip(canonical)
            .zip(clean_predictions)
            .map(|((s, original), clean_prediction)| TextAttackResult {
                original,
                adversarial: s.best.chars.iter().collect(),
                label: s.label,
                clean_prediction,
                adversarial_prediction: s.best.prediction,
                edits: s.best.edits,
                queries: s.queries,
            })
            .collect())
    }

    /// One flip for every beam state; false when no text is left to attack.
    fn round(
        &self,
        model: &dyn WhiteBoxText,
        alphabet: &[char],
        cache: &mut RowCache,
        states: &mut [State],
    ) -> crate::error::Result<bool> {
        let mut grad_texts = Vec::new();
        let mut grad_labels = Vec::new();
        for s in states.iter().filter(|s| s.active) {
            for b in &s.beams {
                grad_texts.push(b.chars.iter().collect::<String>());
                grad_labels.push(s.label);
            }
        }
        if grad_texts.is_empty() {
            return Ok(false);
        }
        let grads = model.token_gradients(&grad_texts, &grad_labels);

        // Children of every beam: (text, parent beam, position, new char).
        let mut children: Vec<(usize, Beam)> = Vec::new();
        let mut g = 0;
        for (i, s) in states.iter().enumerate().filter(|(_, s)| s.active) {
            for b in &s.beams {
                let grad = grads.get(g).map(Vec::as_slice).unwrap_or(&[]);
                g += 1;
                for (p, c) in self.ranked_flips(model, alphabet, cache, b, grad) {
                    let mut chars = b.chars.clone();
                    let before = chars[p];
                    chars[p] = c;
                    let mut edits = b.edits.clone();
                    edits.push(Edit {
                        kind: EditKind::Flip,
                        position: p,
                        before: before.to_string(),
                        after: c.to_string(),
                    });
                    children.push((
                        i,
                        Beam {
                            chars,
                            edits,
                            p_true: 0.0,
                            prediction: 0,
                        },
                    ));
                }
            }
        }
        // Beams of one text may reach the same string by flips in another order.
        let mut seen: HashSet<(usize, Vec<char>)> = HashSet::new();
        children.retain(|(i, b)| seen.insert((*i, b.chars.clone())));

        let batch: Vec<String> = children
            .iter()
            .map(|(_, b)| b.chars.iter().collect())
            .collect();
        let probs = if batch.is_empty() {
            Vec::new()
        } else {
            model.probabilities(&batch)?
        };
        let mut pools: Vec<Vec<Beam>> = vec![Vec::new(); states.len()];
        for ((i, mut b), p) in children.into_iter().zip(&probs) {
            b.p_true = true_prob(p, states[i].label);
            b.prediction = argmax(p);
            states[i].queries += 1;
            pools[i].push(b);
        }
        for (s, mut pool) in states.iter_mut().zip(pools) {
            if !s.active {
                continue;
            }
            if pool.is_empty() {
                s.active = false;
                continue;
            }
            // Misclassified first, then by true-class probability; stable keeps ties in order.
            pool.sort_by(|a, b| {
                (a.prediction == s.label)
                    .cmp(&(b.prediction == s.label))
                    .then(a.p_true.total_cmp(&b.p_true))
            });
            let top = &pool[0];
            if top.prediction != s.label || top.p_true < s.best.p_true {
                s.best = top.clone();
            }
            if s.best.prediction != s.label {
                s.active = false;
            }
            pool.truncate(self.beam);
            s.beams = pool;
        }
        Ok(true)
    }

    /// The top `candidates` flips of `beam` by first-order loss increase
    /// Σ_t g_t · (E[retoken(flipped, t)] − E[t.id]) over the tokens covering the position.
    fn ranked_flips(
        &self,
        model: &dyn WhiteBoxText,
        alphabet: &[char],
        cache: &mut RowCache,
        beam: &Beam,
        grad: &[f32],
    ) -> Vec<(usize, char)> {
        let dim = model.embedding_dim();
        if dim == 0 {
            return Vec::new();
        }
        let chars = &beam.chars;
        let tokens: Vec<Token> = model.tokens(chars);
        let n_tok = tokens.len().min(grad.len() / dim);
        let mut cover: Vec<Vec<usize>> = vec![Vec::new(); chars.len()];
        for (t, tok) in tokens[..n_tok].iter().enumerate() {
            for c in cover.iter_mut().take(tok.end).skip(tok.start) {
                c.push(t);
            }
        }
        let grad_of = |t: usize| &grad[t * dim..(t + 1) * dim];
        let base: Vec<f32> = (0..n_tok)
            .map(|t| cache.dot(tokens[t].id, grad_of(t)))
            .collect();
        let flipped: HashSet<usize> = beam.edits.iter().map(|e| e.position).collect();
        // Positions to rank: all, or the `positions` with the largest Σ‖g_t‖ over covering
        // tokens (ties by position, so the choice is deterministic).
        let mut open: Vec<usize> = (0..chars.len())
            .filter(|&p| !cover[p].is_empty() && !flipped.contains(&p))
            .collect();
        if self.positions > 0 && open.len() > self.positions {
            let norms: Vec<f32> = (0..n_tok)
                .map(|t| grad_of(t).iter().map(|v| v * v).sum::<f32>().sqrt())
                .collect();
            let weight = |p: usize| -> f32 { cover[p].iter().map(|&t| norms[t]).sum() };
            let mut ranked: Vec<(f32, usize)> = open.iter().map(|&p| (weight(p), p)).collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            open = ranked[..self.positions].iter().map(|&(_, p)| p).collect();
            open.sort_unstable();
        }

        let mut scored: Vec<(f32, usize, char)> = Vec::new();
        let mut work = chars.clone();
        for p in open {
            for &c in alphabet {
                if c == chars[p] {
                    continue;
                }
                work[p] = c;
                let mut score = 0.0;
                for &t in &cover[p] {
                    let id = model.retoken(&work, &tokens[t]);
                    if id != tokens[t].id {
                        score += cache.dot(id, grad_of(t)) - base[t];
                    }
                }
                if score.is_finite() {
                    scored.push((score, p, c));
                }
            }
            work[p] = chars[p];
        }
        // Highest score first; position and char break ties so the order is deterministic.
        let order = |a: &(f32, usize, char), b: &(f32, usize, char)| {
            b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
        };
        let k = self.candidates.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        if k < scored.len() {
            scored.select_nth_unstable_by(k - 1, order);
            scored.truncate(k);
        }
        scored.sort_by(order);
        scored.into_iter().map(|(_, p, c)| (p, c)).collect()
    }
}
