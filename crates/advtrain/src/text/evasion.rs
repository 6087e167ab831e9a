//! Evasion, the threat a deployed filter faces: an attacker edits a *malicious* text (spam,
//! an injection) until the filter lets it through. Benign texts are never attacked (pushing
//! a benign text to "malicious" is no attack on a filter), and the filter decides at the
//! threshold its operators would set: the one that keeps the false-positive rate on benign
//! validation texts at a target (`--fpr`), chosen before any test text is seen.
//!
//! Reported, clean and under an attack: the detection rate (TPR) at that threshold, ROC and
//! precision–recall curves with their areas, the attack success rate (of the malicious texts
//! detected clean, the share evaded), and mean edits and queries per success. Accuracy at the
//! threshold is kept as a secondary figure.
//!
//! The attacks themselves stop when the model's arg-max changes; [`Thresholded`] re-centres
//! the malicious-class probability on the threshold (`q = σ(logit p − logit t)`), so
//! "arg-max changed" means "score fell below the threshold", and every attack targets the
//! operating point without knowing about it. The map is monotone, so the attack's objective
//! (lower the true class's probability) is unchanged.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::attack::{TextAttackConfig, TextAttackResult};
use super::detection::{precision_recall, rate_at, roc, threshold_at_fpr, Curve};
use super::{TextClassifier, TextDataset, Token, WhiteBoxText};
use crate::error::{Error, Result};
use crate::eval::Accuracy;
use crate::rng::derived;
use rand::RngCore;

/// The false-positive rate filters are compared at unless `--fpr` says otherwise.
pub const DEFAULT_FPR: f64 = 0.01;

/// Malicious texts attacked per call when the caller does not choose: large enough to batch
/// the model's forward passes, small enough that a crash loses little.
pub const DEFAULT_CHUNK: usize = 32;

/// Where the filter decides, and how that was chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectionThreshold {
    /// The false-positive rate asked for.
    pub target_fpr: f64,
    /// A text is detected when its malicious-class score is at least this.
    pub threshold: f32,
    /// Benign texts it was chosen on.
    pub val_benign: usize,
    /// Which texts those were (the name of the set: `spam-assassin validation`,
    /// `prompt-injection calibration`); empty in records written before it was recorded.
    #[serde(default)]
    pub chosen_on: String,
    /// The false-positive rate it gives on them (at most the target for scoring filters).
    pub val_fpr: f64,
    /// The filter answered with labels only: the threshold is its own decision (0.5 on the
    /// one-hot scores) and cannot be moved to the target, so `val_fpr` is what it gives.
    pub hard_label: bool,
}

/// A filter under test: a model whose gradients are available (every attack), or one known
/// only by its answers (query attacks only).
#[derive(Clone, Copy)]
pub enum EvasionTarget<'a> {
    /// White-box access (advtrain's own models).
    WhiteBox(&'a dyn WhiteBoxText),
    /// Query access (a filter behind `--target-cmd` or `--target-url`).
    BlackBox(&'a dyn TextClassifier),
}

impl EvasionTarget<'_> {
    fn classifier(&self) -> &dyn TextClassifier {
        match *self {
            EvasionTarget::WhiteBox(m) => m,
            EvasionTarget::BlackBox(m) => m,
        }
    }

    /// Malicious-class score of each text.
    fn scores(&self, texts: &[String], positive: usize) -> Result<Vec<f32>> {
        let probs = self.classifier().probabilities(texts)?;
        Ok(probs
            .iter()
            .map(|p| p.get(positive).copied().unwrap_or(0.0))
            .collect())
    }

    fn attack(
        &self,
        attack: &TextAttackConfig,
        at: &DetectionThreshold,
        positive: usize,
        texts: &[String],
        seed: u64,
    ) -> Result<Vec<TextAttackResult>> {
        let labels = vec![positive; texts.len()];
        match *self {
            EvasionTarget::WhiteBox(m) => {
                let shifted = Thresholded::new(m, positive, at.threshold);
                attack.run(&shifted, texts, &labels, seed)
            }
            EvasionTarget::BlackBox(m) => {
                let shifted = Thresholded::new(m, positive, at.threshold);
                attack.run_black_box(&shifted, texts, &labels, seed)
            }
        }
    }
}

/// Chooses the threshold at `target_fpr` on the benign texts of `val` (never on test texts:
/// validation texts, or calibration texts held out of the test corpus).
/// `positive` is the malicious class.
pub fn choose_threshold(
    target: EvasionTarget<'_>,
    val: &TextDataset,
    positive: usize,
    target_fpr: f64,
) -> Result<DetectionThreshold> {
    check_binary(val, positive)?;
    let benign: Vec<String> = val
        .texts
        .iter()
        .zip(&val.labels)
        .filter(|(_, &l)| l != positive)
        .map(|(t, _)| t.clone())
        .collect();
    let scores = target.scores(&benign, positive)?;
    let hard_label = !scores.is_empty() && scores.iter().all(|&s| s == 0.0 || s == 1.0);
    let threshold = if hard_label {
        0.5
    } else {
        threshold_at_fpr(&scores, target_fpr)?
    };
    Ok(DetectionThreshold {
        target_fpr,
        threshold,
        val_benign: scores.len(),
        chosen_on: val.name.clone(),
        val_fpr: rate_at(&scores, threshold),
        hard_label,
    })
}

fn check_binary(data: &TextDataset, positive: usize) -> Result<()> {
    if data.num_classes() != 2 || positive > 1 {
        return Err(Error::config(format!(
            "detection at a false-positive rate needs two classes (benign, malicious); {} has {}",
            data.name,
            data.num_classes()
        )));
    }
    Ok(())
}

/// One attacked malicious text: its index in the test set and the attack's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvasionExample {
    /// Index of the text in the test set.
    pub index: usize,
    /// The malicious-class score after the attack.
    pub score: f32,
    /// The attack's result (edits, queries) against the thresholded filter.
    pub result: TextAttackResult,
}

/// Evasion of one filter by one attack (or none) on a test set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvasionRecord {
    /// `none` or the attack's name.
    pub attack: String,
    /// The attack's settings (absent clean).
    pub attack_config: Option<TextAttackConfig>,
    /// Edits allowed per text (0 clean).
    pub budget: usize,
    /// The data set's name.
    pub dataset: String,
    /// The malicious class's name.
    pub positive_class: String,
    /// What was attacked: `model` or the target's description (command, URL).
    pub target: String,
    /// The operating point.
    pub threshold: DetectionThreshold,
    /// Malicious test texts.
    pub malicious: usize,
    /// Benign test texts (never attacked).
    pub benign: usize,
    /// False-positive rate on the benign test texts at the threshold, with its interval.
    pub test_fpr: Accuracy,
    /// Detection rate of the malicious test texts as they are.
    pub tpr_clean: Accuracy,
    /// Detection rate after the attack (equal to `tpr_clean` without one).
    pub tpr_attacked: Accuracy,
    /// Of the malicious texts detected clean, the share the attack got past the filter.
    pub attack_success_rate: Accuracy,
    /// Mean edits of the successful evasions (0 without one).
    pub mean_edits: f64,
    /// Mean filter queries of the successful evasions.
    pub mean_queries_per_success: f64,
    /// Mean filter queries per attacked text.
    pub mean_queries: f64,
    /// Accuracy at the threshold over all test texts, clean (secondary figure).
    pub accuracy_clean: Accuracy,
    /// Accuracy at the threshold with the malicious texts attacked, benign ones as they are.
    pub accuracy_attacked: Accuracy,
    /// ROC of the clean test texts.
    pub roc_clean: Curve,
    /// ROC with the malicious texts' post-attack scores (at the attacked operating point).
    pub roc_attacked: Curve,
    /// Precision–recall of the clean test texts.
    pub pr_clean: Curve,
    /// Precision–recall with the post-attack scores.
    pub pr_attacked: Curve,
    /// Malicious texts per attack call (results are deterministic for a given chunk size).
    pub chunk: usize,
    /// The attack's seed.
    pub seed: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Fingerprint of the test texts.
    pub test_data_sha256: String,
    /// SHA-256 of the evaluated weights, stamped when written to a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
}

/// How to run an evasion evaluation.
pub struct EvasionRun<'a> {
    /// The filter.
    pub target: EvasionTarget<'a>,
    /// Its description in the record (`model`, `command: ...`).
    pub target_name: String,
    /// The malicious class.
    pub positive: usize,
    /// The operating point, from [`choose_threshold`].
    pub threshold: DetectionThreshold,
    /// Malicious texts per attack call.
    pub chunk: usize,
    /// The attack's seed; chunk `k` attacks with `derived(seed, k)`.
    pub seed: u64,
}

impl EvasionRun<'_> {
    /// Evaluates the filter on `test` under `attack` (or clean). `done` holds examples an
    /// interrupted evaluation with the same settings already streamed (they are kept, and
    /// their chunks skipped); `on_chunk` receives each new chunk's examples as soon as they
    /// exist, so a caller can write them before the next chunk runs.
    pub fn evaluate(
        &self,
        test: &TextDataset,
        attack: Option<&TextAttackConfig>,
        done: Vec<EvasionExample>,
        on_chunk: &mut dyn FnMut(&[EvasionExample]) -> Result<()>,
    ) -> Result<(EvasionRecord, Vec<EvasionExample>)> {
        if test.is_empty() {
            return Err(Error::config("the evaluation set is empty"));
        }
        check_binary(test, self.positive)?;
        if self.chunk == 0 {
            return Err(Error::config("the evasion chunk size must be at least 1"));
        }
        let start = Instant::now();
        let clean = self.target.scores(&test.texts, self.positive)?;
        let t = self.threshold.threshold;
        // Only malicious texts the filter catches are worth attacking.
        let targets: Vec<usize> = (0..test.len())
            .filter(|&i| test.labels[i] == self.positive && clean[i] >= t)
            .collect();
        let examples = match attack {
            Some(a) => {
                a.validate()?;
                self.attack_chunks(test, a, &targets, done, on_chunk)?
            }
            None => Vec::new(),
        };
        let record = self.summarize(test, attack, &clean, &targets, &examples, start)?;
        Ok((record, examples))
    }

    fn attack_chunks(
        &self,
        test: &TextDataset,
        attack: &TextAttackConfig,
        targets: &[usize],
        done: Vec<EvasionExample>,
        on_chunk: &mut dyn FnMut(&[EvasionExample]) -> Result<()>,
    ) -> Result<Vec<EvasionExample>> {
        let mut out = done;
        for (k, chunk) in targets.chunks(self.chunk).enumerate() {
            if chunk.iter().all(|i| out.iter().any(|e| e.index == *i)) {
                continue;
            }
            let texts: Vec<String> = chunk.iter().map(|&i| test.texts[i].clone()).collect();
            let results = self
                .target
                .attack(
                    attack,
                    &self.threshold,
                    self.positive,
                    &texts,
                    derived(self.seed, k as u64).next_u64(),
                )
                .map_err(|e| chunk_context(e, chunk))?;
            let adversarial: Vec<String> = results.iter().map(|r| r.adversarial.clone()).collect();
            let scores = self
                .target
                .scores(&adversarial, self.positive)
                .map_err(|e| chunk_context(e, chunk))?;
            let new: Vec<EvasionExample> = chunk
                .iter()
                .zip(results)
                .zip(scores)
                .map(|((&index, result), score)| EvasionExample {
                    index,
                    score,
                    result,
                })
                .collect();
            on_chunk(&new)?;
            out.retain(|e| !chunk.contains(&e.index));
            out.extend(new);
        }
        out.sort_by_key(|e| e.index);
        Ok(out)
    }

    fn summarize(
        &self,
        test: &TextDataset,
        attack: Option<&TextAttackConfig>,
        clean: &[f32],
        targets: &[usize],
        examples: &[EvasionExample],
        start: Instant,
    ) -> Result<EvasionRecord> {
        let t = self.threshold.threshold;
        let mut attacked = clean.to_vec();
        for e in examples {
            attacked[e.index] = e.score;
        }
        let pick = |scores: &[f32], malicious: bool| -> Vec<f32> {
            (0..test.len())
                .filter(|&i| (test.labels[i] == self.positive) == malicious)
                .map(|i| scores[i])
                .collect()
        };
        let (pos_clean, pos_attacked, neg) =
            (pick(clean, true), pick(&attacked, true), pick(clean, false));
        let count = |s: &[f32]| s.iter().filter(|&&v| v >= t).count();
        let successes: Vec<&EvasionExample> = examples.iter().filter(|e| e.score < t).collect();
        let mean = |v: Vec<usize>| -> f64 {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<usize>() as f64 / v.len() as f64
            }
        };
        let n = test.len();
        let right_benign = neg.len() - count(&neg);
        Ok(EvasionRecord {
            attack: attack.map_or("none", |a| a.name()).to_string(),
            attack_config: attack.cloned(),
            budget: attack.map_or(0, |a| a.budget()),
            dataset: test.name.clone(),
            positive_class: test.classes[self.positive].clone(),
            target: self.target_name.clone(),
            threshold: self.threshold.clone(),
            malicious: pos_clean.len(),
            benign: neg.len(),
            test_fpr: Accuracy::new(count(&neg), neg.len()),
            tpr_clean: Accuracy::new(count(&pos_clean), pos_clean.len()),
            tpr_attacked: Accuracy::new(count(&pos_attacked), pos_attacked.len()),
            attack_success_rate: Accuracy::new(successes.len(), targets.len()),
            mean_edits: mean(successes.iter().map(|e| e.result.edits.len()).collect()),
            mean_queries_per_success: mean(successes.iter().map(|e| e.result.queries).collect()),
            mean_queries: mean(examples.iter().map(|e| e.result.queries).collect()),
            accuracy_clean: Accuracy::new(right_benign + count(&pos_clean), n),
            accuracy_attacked: Accuracy::new(right_benign + count(&pos_attacked), n),
            roc_clean: roc(&pos_clean, &neg)?,
            roc_attacked: roc(&pos_attacked, &neg)?,
            pr_clean: precision_recall(&pos_clean, &neg)?,
            pr_attacked: precision_recall(&pos_attacked, &neg)?,
            chunk: self.chunk,
            seed: self.seed,
            seconds: start.elapsed().as_secs_f64(),
            test_data_sha256: test.fingerprint(),
            model_sha256: None,
        })
    }
}

/// Adds which test texts were under attack to a failing filter's error.
fn chunk_context(e: Error, chunk: &[usize]) -> Error {
    let ids: Vec<String> = chunk.iter().map(usize::to_string).collect();
    Error::config(format!(
        "{e} (while attacking test texts {})",
        ids.join(", ")
    ))
}

/// A binary classifier seen through its operating point: the malicious-class probability
/// `p` becomes `σ(logit p − logit t)`, which is above ½ exactly when `p` is above the
/// threshold `t`. Gradients and tokens are the inner model's.
pub struct Thresholded<'a, M: ?Sized> {
    inner: &'a M,
    positive: usize,
    shift: f64,
}

impl<'a, M: ?Sized> Thresholded<'a, M> {
    /// `inner` decided at `threshold` on class `positive`'s probability.
    pub fn new(inner: &'a M, positive: usize, threshold: f32) -> Self {
        Self {
            inner,
            positive,
            shift: logit(threshold as f64),
        }
    }
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln()
}

impl<M: TextClassifier + ?Sized> TextClassifier for Thresholded<'_, M> {
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }

    fn probabilities(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let probs = self.inner.probabilities(texts)?;
        Ok(probs
            .into_iter()
            .map(|p| {
                let s = p.get(self.positive).copied().unwrap_or(0.0) as f64;
                let q = (1.0 / (1.0 + (self.shift - logit(s)).exp())) as f32;
                let mut out = vec![0.0; p.len().max(2)];
                out[self.positive] = q;
                out[1 - self.positive] = 1.0 - q;
                out
            })
            .collect())
    }
}

impl<M: WhiteBoxText + ?Sized> WhiteBoxText for Thresholded<'_, M> {
    fn canonical(&self, text: &str) -> String {
        self.inner.canonical(text)
    }
    fn tokens(&self, chars: &[char]) -> Vec<Token> {
        self.inner.tokens(chars)
    }
    fn retoken(&self, chars: &[char], token: &Token) -> u32 {
        self.inner.retoken(chars, token)
    }
    fn token_gradients(&self, texts: &[String], labels: &[usize]) -> Vec<Vec<f32>> {
        self.inner.token_gradients(texts, labels)
    }
    fn embedding_dim(&self) -> usize {
        self.inner.embedding_dim()
    }
    fn embedding_row(&self, id: u32) -> Vec<f32> {
        self.inner.embedding_row(id)
    }
    fn embedding_row_ref(&self, id: u32) -> Option<&[f32]> {
        self.inner.embedding_row_ref(id)
    }
    fn alphabet(&self) -> Vec<char> {
        self.inner.alphabet()
    }
}
