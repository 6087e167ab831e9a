//! The evaluation engine, resumable: clean predictions, then attack stages over the points
//! each one covers, batch by batch. Everything an evaluation knows (per-point outcomes, the
//! finished stages, the position in the current one and the generator's position) is one
//! serialisable [`EvalState`], handed to a `save` callback after every batch. A caller that
//! writes it atomically can resume a killed evaluation from the file and get exactly the
//! result of an uninterrupted one: a batch's attack depends only on the model, the batch
//! and the generator's position, and all three are the same on resume.
//!
//! [`super::evaluate`] (one attack on every point) and [`super::ensemble::ensemble`] (each
//! attack on the points still robust) are this engine without saving.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::ensemble::Stage;
use super::{check_finite, correct, first_device};
use crate::attack::{int_vec, Attack};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::progress::Progress;
use crate::rng::{AdvRng, RngState};
use crate::threat::ThreatModel;

/// Which points a stage attacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cover {
    /// Every point, clean-misclassified ones included (a single attack's evaluation: its
    /// adversarial predictions are recorded for every point).
    All,
    /// Only the points correct clean and unbroken by every earlier stage (an ensemble).
    StillRobust,
}

/// What is being evaluated: a saved state resumes only the evaluation it was made by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalKey {
    /// The evaluation's name (the attack's, or the ensemble's).
    pub name: String,
    /// Every stage's attack, as [`Attack::name`] describes it (settings and threat model).
    pub attacks: Vec<String>,
    /// The threat model.
    pub threat: ThreatModel,
    /// Which points the stages attack.
    pub cover: Cover,
    /// Examples per batch: it decides which points share a batch, so it must not change.
    pub batch_size: usize,
    /// Examples evaluated.
    pub n: usize,
}

/// Where the stage in progress stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageProgress {
    /// The points it attacks, in order (its batches are consecutive runs of them).
    pub attacked: Vec<usize>,
    /// How many of `attacked` are done.
    pub done: usize,
    /// Of those, how many it broke.
    pub broken: usize,
    /// Seconds spent on it so far, over every process.
    pub seconds: f64,
}

/// The whole state of an evaluation: what a killed one resumes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalState {
    /// What is evaluated.
    pub key: EvalKey,
    /// Per example: the true label (checked on resume: the same data).
    pub labels: Vec<u8>,
    /// Per example: correct on the clean input (checked on resume: the same model).
    pub clean_correct: Vec<bool>,
    /// Per example: the clean prediction (states saved before it was kept have none; the
    /// clean pass of the resuming run fills it in).
    #[serde(default)]
    pub clean_pred: Vec<u8>,
    /// Per example: correct clean and unbroken by every stage so far.
    pub robust_correct: Vec<bool>,
    /// Per example: the prediction on the last adversarial input scored for it (the clean
    /// prediction before any).
    pub adv_pred: Vec<u8>,
    /// Per example: the index of the stage that broke it.
    pub broken_by: Vec<Option<usize>>,
    /// The finished stages.
    pub stages: Vec<Stage>,
    /// The stage in progress, if one is.
    pub current: Option<StageProgress>,
    /// The largest perturbation scored so far, in the threat model's norm.
    pub max_perturbation: f32,
    /// Seconds spent before this process, clean predictions included.
    pub seconds: f64,
    /// The generator's position after the last finished batch.
    pub rng: RngState,
}

impl EvalState {
    /// True once every stage has run.
    pub fn finished(&self) -> bool {
        self.current.is_none() && self.stages.len() == self.key.attacks.len()
    }

    /// Points correct clean and after every stage so far.
    pub fn robust_count(&self) -> usize {
        self.robust_correct.iter().filter(|&&r| r).count()
    }

    /// Refuses a state of another evaluation, naming what differs.
    pub fn check_key(&self, key: &EvalKey) -> Result<()> {
        if &self.key == key {
            return Ok(());
        }
        let was = &self.key;
        let mut diffs = Vec::new();
        if was.name != key.name || was.attacks != key.attacks {
            diffs.push(format!("attacks {:?}, now {:?}", was.attacks, key.attacks));
        }
        if was.threat != key.threat {
            diffs.push(format!(
                "{}, now {}",
                was.threat.describe(),
                key.threat.describe()
            ));
        }
        if was.batch_size != key.batch_size {
            diffs.push(format!(
                "batch size {}, now {}",
                was.batch_size, key.batch_size
            ));
        }
        if was.n != key.n {
            diffs.push(format!("{} examples, now {}", was.n, key.n));
        }
        if was.cover != key.cover {
            diffs.push(format!("{:?} cover, now {:?}", was.cover, key.cover));
        }
        Err(Error::config(format!(
            "the saved evaluation state is of another evaluation ({})",
            diffs.join("; ")
        )))
    }
}

/// What to run: stages of `attacks` over the points `cover` says.
pub struct Plan<'a, A> {
    /// The evaluation's name.
    pub name: &'a str,
    /// The stages, in order; all share one threat model.
    pub attacks: &'a [A],
    /// Which points each stage attacks.
    pub cover: Cover,
    /// Examples per forward pass; 0 is treated as 1.
    pub batch_size: usize,
}

impl<A: Attack> Plan<'_, A> {
    /// The key of this plan on `n` examples.
    pub fn key(&self, n: usize) -> EvalKey {
        EvalKey {
            name: self.name.to_string(),
            attacks: self.attacks.iter().map(Attack::name).collect(),
            threat: self.threat(),
            cover: self.cover,
            batch_size: self.batch_size.max(1),
            n,
        }
    }

    /// The stages' threat model (an L∞ ball of radius 0 without stages).
    pub fn threat(&self) -> ThreatModel {
        self.attacks
            .first()
            .map(Attack::threat)
            .unwrap_or(ThreatModel::linf(0.0))
    }
}

/// Runs `plan` on `data`, from `saved` if given (after checking it is this plan's, on the
/// same data and model), calling `save` after the clean predictions and after every batch.
/// `rng` is drawn from in order and ends where an uninterrupted run would leave it.
pub fn run_stages<M: Classifier, A: Attack>(
    model: &M,
    data: &Dataset,
    plan: &Plan<'_, A>,
    saved: Option<EvalState>,
    rng: &mut AdvRng,
    save: &mut dyn FnMut(&EvalState) -> Result<()>,
    progress: &dyn Progress,
) -> Result<EvalState> {
    for attack in plan.attacks {
        attack.threat().validate()?;
    }
    let started = Instant::now();
    let eval_model = model.valid();
    let key = plan.key(data.len());
    let (clean_correct, clean_pred) = clean_pass(&eval_model, data, key.batch_size)?;
    let mut state = match saved {
        Some(s) => resumed(s, &key, data, &clean_correct, rng)?,
        None => fresh(key, data, clean_correct, clean_pred.clone(), rng),
    };
    state.clean_pred = clean_pred;
    let before = state.seconds;
    save(&state)?;
    while !state.finished() {
        let s = state.stages.len();
        run_stage(&eval_model, data, plan, s, &mut state, rng, save, progress)?;
        state.seconds = before + started.elapsed().as_secs_f64();
    }
    state.seconds = before + started.elapsed().as_secs_f64();
    Ok(state)
}

/// Clean correctness and predictions for every example, with a check for finite logits (a
/// forward pass per batch: too quick for a progress bar of its own).
fn clean_pass<M: Classifier>(
    eval_model: &M,
    data: &Dataset,
    batch_size: usize,
) -> Result<(Vec<bool>, Vec<u8>)> {
    let device = first_device(eval_model);
    let order: Vec<usize> = (0..data.len()).collect();
    let (mut flags, mut preds) = (
        Vec::with_capacity(data.len()),
        Vec::with_capacity(data.len()),
    );
    for chunk in order.chunks(batch_size) {
        let (x, y) = data.batch(chunk, &device);
        let logits = eval_model.logits(x);
        check_finite(&logits)?;
        let pred = logits.argmax(1).reshape([chunk.len()]);
        flags.extend(correct(&pred, &y));
        preds.extend(int_vec(&pred).into_iter().map(|p| p as u8));
    }
    Ok((flags, preds))
}

fn fresh(
    key: EvalKey,
    data: &Dataset,
    clean_correct: Vec<bool>,
    clean_pred: Vec<u8>,
    rng: &AdvRng,
) -> EvalState {
    let n = data.len();
    EvalState {
        key,
        labels: data.labels.clone(),
        robust_correct: clean_correct.clone(),
        clean_correct,
        adv_pred: clean_pred.clone(),
        clean_pred,
        broken_by: vec![None; n],
        stages: Vec::new(),
        current: None,
        max_perturbation: 0.0,
        seconds: 0.0,
        rng: RngState::of(rng),
    }
}

/// A saved state, checked against this evaluation, with `rng` moved to its position.
fn resumed(
    state: EvalState,
    key: &EvalKey,
    data: &Dataset,
    clean_correct: &[bool],
    rng: &mut AdvRng,
) -> Result<EvalState> {
    state.check_key(key)?;
    if state.labels != data.labels {
        return Err(Error::config(
            "the saved evaluation state is of other test data (its labels differ)",
        ));
    }
    if state.clean_correct != clean_correct {
        return Err(Error::config(
            "the saved evaluation state is of another model (its clean predictions differ)",
        ));
    }
    let consistent = state.robust_correct.len() == state.labels.len()
        && state.adv_pred.len() == state.labels.len()
        && state.broken_by.len() == state.labels.len()
        && state.stages.len() <= key.attacks.len()
        && state.current.as_ref().is_none_or(|c| {
            c.done <= c.attacked.len() && c.attacked.iter().all(|&i| i < state.labels.len())
        });
    if !consistent {
        return Err(Error::config(
            "the saved evaluation state is inconsistent (damaged file?)",
        ));
    }
    *rng = state.rng.restore().ok_or_else(|| {
        Error::config("the saved evaluation state's generator position is malformed")
    })?;
    Ok(state)
}

/// Runs (the rest of) stage `s`, saving after every batch, and files it in `stages`.
#[allow(clippy::too_many_arguments)]
fn run_stage<M: Classifier, A: Attack>(
    eval_model: &M,
    data: &Dataset,
    plan: &Plan<'_, A>,
    s: usize,
    state: &mut EvalState,
    rng: &mut AdvRng,
    save: &mut dyn FnMut(&EvalState) -> Result<()>,
    progress: &dyn Progress,
) -> Result<()> {
    let attack = &plan.attacks[s];
    let threat = attack.threat();
    let mut stage = state.current.take().unwrap_or_else(|| StageProgress {
        attacked: match plan.cover {
            Cover::All => (0..data.len()).collect(),
            Cover::StillRobust => (0..data.len())
                .filter(|&i| state.robust_correct[i])
                .collect(),
        },
        done: 0,
        broken: 0,
        seconds: 0.0,
    });
    let device = first_device(eval_model);
    let bs = plan.batch_size.max(1);
    progress.begin(&attack.name(), stage.attacked.len() as u64);
    progress.advance(stage.done as u64, "");
    while stage.done < stage.attacked.len() {
        let batch_start = Instant::now();
        let end = (stage.done + bs).min(stage.attacked.len());
        let chunk: Vec<usize> = stage.attacked[stage.done..end].to_vec();
        let (x, y) = data.batch(&chunk, &device);
        let x_adv = attack.perturb(eval_model, x.clone(), y.clone(), rng);
        let pert = checked_perturbation(attack, threat, &x_adv, &x)?;
        state.max_perturbation = state.max_perturbation.max(pert);
        let adv_logits = eval_model.logits(x_adv);
        check_finite(&adv_logits)?;
        let pred = adv_logits.argmax(1).reshape([chunk.len()]);
        let adv_ok = correct(&pred, &y);
        for ((&i, ok), p) in chunk.iter().zip(adv_ok).zip(int_vec(&pred)) {
            state.adv_pred[i] = p as u8;
            if state.robust_correct[i] && !ok {
                state.robust_correct[i] = false;
                state.broken_by[i] = Some(s);
                stage.broken += 1;
            }
        }
        stage.done = end;
        stage.seconds += batch_start.elapsed().as_secs_f64();
        state.rng = RngState::of(rng);
        let status = format!("robust so far {}/{}", state.robust_count(), data.len());
        progress.advance(chunk.len() as u64, &status);
        state.current = Some(stage.clone());
        save(state)?;
        state.current = None;
    }
    progress.end();
    let robust_now = state.robust_count();
    if plan.cover == Cover::StillRobust {
        // An ensemble says what each stage added; a single attack's result is its caller's.
        progress.note(&format!(
            "{}: broke {} of {} points; robust accuracy now {:.2}%",
            attack.name(),
            stage.broken,
            stage.attacked.len(),
            100.0 * robust_now as f64 / data.len().max(1) as f64
        ));
    }
    state.stages.push(Stage {
        attack: attack.name(),
        attacked: stage.attacked.len(),
        broken: stage.broken,
        robust_after: robust_now as f64 / data.len().max(1) as f64,
        seconds: stage.seconds,
    });
    save(state)
}

/// The attack's largest perturbation on a batch, after checking it stayed in its threat
/// model and in `[0, 1]`.
fn checked_perturbation<A: Attack>(
    attack: &A,
    threat: ThreatModel,
    x_adv: &burn::prelude::Tensor<4>,
    x: &burn::prelude::Tensor<4>,
) -> Result<f32> {
    let pert = threat.max_perturbation(x_adv, x);
    let in_box = x_adv.clone().min().into_scalar::<f32>() >= 0.0
        && x_adv.clone().max().into_scalar::<f32>() <= 1.0;
    let within = pert <= threat.eps * (1.0 + 1e-5) + 1e-6; // false for NaN too
    if !within || !in_box {
        return Err(Error::config(format!(
            "attack {} left its threat model ({}): perturbation {pert}, inside [0,1]: {in_box}",
            attack.name(),
            threat.describe()
        )));
    }
    Ok(pert)
}
