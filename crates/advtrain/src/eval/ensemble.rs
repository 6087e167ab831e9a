//! An AutoAttack-style ensemble: diverse attacks run in sequence, each only on the points
//! every earlier attack failed to break, so a point counts as robust only if it survives
//! all of them (the per-point worst case), at little more cost than the strongest one.

use serde::{Deserialize, Serialize};

use super::resume::{run_stages, Cover, EvalState, Plan};
use super::{Accuracy, RobustEval};
use crate::attack::{AnyAttack, Apgd, ApgdLoss, ApgdTargeted, Fab, FabTargeted, Square};
use crate::data::Dataset;
use crate::error::Result;
use crate::model::Classifier;
use crate::progress::Progress;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;

/// Which ensemble to run: the versions of the reference AutoAttack (Croce & Hein 2020,
/// `autoattack.py`, each member configured as the reference configures it), and a cheaper
/// screen of our own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnsemblePreset {
    /// AutoAttack `standard`: APGD-CE (100 iterations), APGD-T (9 targets × 100
    /// iterations), FAB-T (9 targets × 100 iterations), Square (5,000 queries, p_init 0.8,
    /// the schedule not rescaled).
    Standard,
    /// AutoAttack `plus`: APGD-CE and APGD-DLR with 5 restarts, FAB with 5 restarts,
    /// Square (5,000 queries), then APGD-T and FAB-T (9 targets each).
    Plus,
    /// AutoAttack `rand`, for models with a random forward pass: APGD-CE and APGD-DLR, each
    /// gradient averaged over 20 samples (EOT), 1 restart.
    Rand,
    /// A cheaper screen, named as such: APGD-CE (25), APGD-T (3 targets × 25), FAB-T (3
    /// targets × 25), Square (1,000 queries). Use `Standard` for numbers you publish.
    Fast,
}

impl EnsemblePreset {
    /// The names [`EnsemblePreset::from_version`] accepts.
    pub const VERSIONS: &'static str = "standard, plus or rand";

    /// The preset of a reference version name: `standard`, `plus` or `rand`.
    pub fn from_version(version: &str) -> Result<Self> {
        match version {
            "standard" => Ok(EnsemblePreset::Standard),
            "plus" => Ok(EnsemblePreset::Plus),
            "rand" => Ok(EnsemblePreset::Rand),
            other => Err(crate::error::Error::config(format!(
                "unknown AutoAttack version '{other}': expected {}",
                Self::VERSIONS
            ))),
        }
    }

    /// The ensemble's name in records, reports and file names: `autoattack`,
    /// `autoattack-plus`, `autoattack-rand` or `autoattack-fast`.
    pub fn name(&self) -> &'static str {
        match self {
            EnsemblePreset::Standard => "autoattack",
            EnsemblePreset::Plus => "autoattack-plus",
            EnsemblePreset::Rand => "autoattack-rand",
            EnsemblePreset::Fast => "autoattack-fast",
        }
    }

    /// The attacks of the preset at `threat`, in the order they run.
    pub fn attacks(&self, threat: ThreatModel) -> Vec<AnyAttack> {
        let apgd = |restarts| Apgd::new(threat).steps(100).restarts(restarts);
        let dlr = |restarts| apgd(restarts).loss(ApgdLoss::Dlr);
        let square = |queries| {
            AnyAttack::Square(Square::new(threat).queries(queries).rescale_schedule(false))
        };
        let apgd_t = |steps, targets| {
            AnyAttack::ApgdTargeted(ApgdTargeted::new(threat).steps(steps).targets(targets))
        };
        let fab_t = |steps, targets| {
            AnyAttack::FabTargeted(FabTargeted::new(threat).steps(steps).targets(targets))
        };
        match self {
            EnsemblePreset::Standard => vec![
                AnyAttack::Apgd(apgd(1)),
                apgd_t(100, 9),
                fab_t(100, 9),
                square(5000),
            ],
            EnsemblePreset::Plus => vec![
                AnyAttack::Apgd(apgd(5)),
                AnyAttack::Apgd(dlr(5)),
                AnyAttack::Fab(Fab::new(threat).steps(100).restarts(5)),
                square(5000),
                apgd_t(100, 9),
                fab_t(100, 9),
            ],
            EnsemblePreset::Rand => vec![
                AnyAttack::Apgd(apgd(1).eot(20)),
                AnyAttack::Apgd(dlr(1).eot(20)),
            ],
            EnsemblePreset::Fast => vec![
                AnyAttack::Apgd(Apgd::new(threat).steps(25)),
                apgd_t(25, 3),
                fab_t(25, 3),
                square(1000),
            ],
        }
    }
}

/// What one stage of the ensemble did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// The stage's attack, as its [`Attack::name`] describes it (budget and threat model).
    pub attack: String,
    /// Points still robust when the stage started.
    pub attacked: usize,
    /// Of those, how many it broke.
    pub broken: usize,
    /// Robust accuracy over the whole set after this stage.
    pub robust_after: f64,
    /// Wall-clock seconds the stage took.
    pub seconds: f64,
}

/// The ensemble's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnsembleResult {
    /// The ensemble's name (e.g. [`EnsemblePreset::name`]), used as the attack name.
    pub name: String,
    /// The threat model of the first attack (all stages share it); an L∞ ball of radius 0
    /// when there were no attacks.
    pub threat: ThreatModel,
    /// Number of examples evaluated.
    pub n: usize,
    /// Accuracy on the clean inputs.
    pub clean: Accuracy,
    /// Fraction correct clean and after every stage: the per-point worst case.
    pub robust: Accuracy,
    /// Per example: classified correctly on the clean input.
    pub clean_correct: Vec<bool>,
    /// Per example: correct on the clean input and not broken by any stage.
    pub robust_correct: Vec<bool>,
    /// Per example: the attack that broke it (`None`: robust, or wrong already when clean).
    pub broken_by: Vec<Option<String>>,
    /// Per example: the prediction on the adversarial input that broke it (else the clean
    /// prediction).
    pub adv_pred: Vec<u8>,
    /// Per example: the clean prediction.
    pub clean_pred: Vec<u8>,
    /// Per example: the true label.
    pub labels: Vec<u8>,
    /// One entry per attack, in the order they ran.
    pub stages: Vec<Stage>,
    /// The largest perturbation any stage produced, in the threat model's norm (checked
    /// against ε by the evaluation).
    pub max_perturbation: f32,
    /// Wall-clock seconds for the whole ensemble, clean predictions included.
    pub seconds: f64,
}

/// Runs `attacks` in order, each on the points still robust, and keeps the worst case.
pub fn ensemble<M: Classifier>(
    name: &str,
    model: &M,
    data: &Dataset,
    attacks: &[AnyAttack],
    batch_size: usize,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<EnsembleResult> {
    let plan = Plan {
        name,
        attacks,
        cover: Cover::StillRobust,
        batch_size,
    };
    let state = run_stages(model, data, &plan, None, rng, &mut |_| Ok(()), progress)?;
    Ok(EnsembleResult::from_state(&state))
}

impl EnsembleResult {
    /// The outcome of a finished ensemble's [`EvalState`].
    pub fn from_state(state: &EvalState) -> Self {
        let eval = state.robust_eval();
        let broken_by = state
            .broken_by
            .iter()
            .map(|s| {
                s.and_then(|s| state.stages.get(s))
                    .map(|st| st.attack.clone())
            })
            .collect();
        Self {
            name: state.key.name.clone(),
            threat: state.key.threat,
            n: eval.n,
            clean: eval.clean,
            robust: eval.robust,
            clean_correct: eval.clean_correct,
            robust_correct: eval.robust_correct,
            broken_by,
            adv_pred: eval.adv_pred,
            clean_pred: eval.clean_pred,
            labels: eval.labels,
            stages: state.stages.clone(),
            max_perturbation: state.max_perturbation,
            seconds: state.seconds,
        }
    }

    /// The result in the shape of a single-attack evaluation (for records and reports).
    pub fn as_eval(&self) -> RobustEval {
        RobustEval {
            attack: self.name.clone(),
            threat: self.threat,
            n: self.n,
            clean: self.clean,
            robust: self.robust,
            clean_correct: self.clean_correct.clone(),
            robust_correct: self.robust_correct.clone(),
            labels: self.labels.clone(),
            adv_pred: self.adv_pred.clone(),
            clean_pred: self.clean_pred.clone(),
            max_perturbation: self.max_perturbation,
            seconds: self.seconds,
        }
    }
}
