//! An attack described by data: what the CLI's `--attack`, `--steps`, `--loss`... say, as a
//! typed value a library user can build too, and one call that runs it (a single attack or
//! an AutoAttack-style ensemble) or its accuracy-vs-ε curve.
//!
//! ```
//! use advtrain::eval::spec::{AttackKind, AttackSpec};
//! use advtrain::threat::ThreatModel;
//!
//! let spec = AttackSpec { steps: 40, restarts: 2, ..AttackSpec::new(AttackKind::Pgd) };
//! let pgd = spec.build(ThreatModel::linf(0.1)).unwrap();
//! # let _ = pgd;
//! ```

use std::fmt;
use std::str::FromStr;

use super::ensemble::{self, EnsemblePreset, EnsembleResult};
use super::resume::{run_stages, Cover, EvalState, Plan};
use super::{clean_accuracy, eps_curve, CurvePoint, RobustEval};
use crate::attack::{
    AnyAttack, Apgd, ApgdLoss, ApgdTargeted, Attack, AttackLoss, Fab, FabTargeted, Fgsm, Pgd,
    Square, TargetMode,
};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::progress::Progress;
use crate::rng::AdvRng;
use crate::threat::{Norm, ThreatModel};

/// Which attack (or ensemble) a spec names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttackKind {
    /// One signed-gradient step (FGM under L2).
    Fgsm,
    /// Projected gradient descent (Madry et al.), with restarts and an optional target.
    Pgd,
    /// APGD with cross-entropy (Croce & Hein 2020).
    ApgdCe,
    /// APGD with the DLR loss.
    ApgdDlr,
    /// Targeted APGD with the DLR loss, over several target classes.
    ApgdT,
    /// Square, the black-box score-based attack (L∞ and L2).
    Square,
    /// FAB, the minimum-norm fast adaptive boundary attack (Croce & Hein 2020), untargeted.
    Fab,
    /// FAB-T: FAB towards each of the most likely other classes in turn.
    FabT,
    /// The AutoAttack-style ensemble, [`EnsemblePreset::Standard`].
    AutoAttack,
    /// The cheaper screening ensemble, [`EnsemblePreset::Fast`].
    AutoAttackFast,
}

impl AttackKind {
    /// The names [`FromStr`] accepts, for error messages and help texts.
    pub const NAMES: &'static str =
        "fgsm, pgd, apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square, autoattack or autoattack-fast";

    /// Whether this kind names an ensemble (run through [`ensemble::ensemble`], not as one
    /// [`crate::attack::Attack`]); [`AttackSpec::ensemble`] says which.
    pub fn is_ensemble(self) -> bool {
        matches!(self, AttackKind::AutoAttack | AttackKind::AutoAttackFast)
    }

    /// Whether `steps` is part of the attack (so an evaluation record carries it).
    pub fn is_iterative(self) -> bool {
        matches!(
            self,
            AttackKind::Pgd
                | AttackKind::ApgdCe
                | AttackKind::ApgdDlr
                | AttackKind::ApgdT
                | AttackKind::Fab
                | AttackKind::FabT
        )
    }

    /// Whether `restarts` is part of the attack (so an evaluation record carries it).
    pub fn has_restarts(self) -> bool {
        matches!(
            self,
            AttackKind::Pgd | AttackKind::ApgdCe | AttackKind::ApgdDlr | AttackKind::Fab
        )
    }
}

impl FromStr for AttackKind {
    type Err = Error;

    /// Parses the CLI's names; `fgm` is FGSM's L2 name and `apgd` is APGD-CE.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "fgsm" | "fgm" => AttackKind::Fgsm,
            "pgd" => AttackKind::Pgd,
            "apgd-ce" | "apgd" => AttackKind::ApgdCe,
            "apgd-dlr" => AttackKind::ApgdDlr,
            "apgd-t" => AttackKind::ApgdT,
            "square" => AttackKind::Square,
            "fab" => AttackKind::Fab,
            "fab-t" => AttackKind::FabT,
            "autoattack" => AttackKind::AutoAttack,
            "autoattack-fast" => AttackKind::AutoAttackFast,
            other => {
                return Err(Error::config(format!(
                    "unknown attack '{other}': expected {}",
                    Self::NAMES
                )))
            }
        })
    }
}

/// Parses a target mode: `random`, `least-likely` or a class index.
pub fn parse_target(s: &str) -> Result<TargetMode> {
    Ok(match s {
        "random" => TargetMode::Random,
        "least-likely" => TargetMode::LeastLikely,
        n => TargetMode::Class(n.parse().map_err(|_| {
            Error::config(format!(
                "--target must be random, least-likely or a class index, got '{n}'"
            ))
        })?),
    })
}

/// An attack with its settings, independent of the radius: [`AttackSpec::build`] places it
/// at a threat model, so one spec serves every point of an ε-curve. Fields a kind does not
/// use are ignored (`queries` outside Square, `targets` outside APGD-T).
#[derive(Clone, Debug, PartialEq)]
pub struct AttackSpec {
    /// Which attack.
    pub kind: AttackKind,
    /// The name it was asked for by (`fgm` or `fgsm`, `apgd` or `apgd-ce`): it labels the
    /// evaluation record and its file, so what a person typed is what they find.
    pub name: String,
    /// Iterations of PGD and APGD.
    pub steps: usize,
    /// Restarts of PGD and APGD (the worst case per example is kept).
    pub restarts: usize,
    /// PGD's step size (`None`: 2.5·ε/steps).
    pub step_size: Option<f32>,
    /// The loss FGSM and PGD ascend.
    pub loss: AttackLoss,
    /// Targeted PGD: how the target is picked.
    pub target: Option<TargetMode>,
    /// Square's query budget per example.
    pub queries: usize,
    /// `autoattack`'s version (`None`: standard); only the AutoAttack kind takes one.
    pub version: Option<EnsemblePreset>,
    /// APGD-T's and FAB-T's number of target classes.
    pub targets: usize,
    /// Gradient samples averaged per step by FGSM, PGD and APGD (expectation over
    /// transformation, for models with a random forward pass); 1 is off.
    pub eot: usize,
}

impl AttackSpec {
    /// `kind` with its reference defaults: PGD 20 steps, APGD (CE, DLR, T) 100 iterations as
    /// in AutoAttack (Croce & Hein 2020), 1 restart, cross-entropy, untargeted, 5,000 Square
    /// queries, 9 APGD-T targets.
    pub fn new(kind: AttackKind) -> Self {
        let name = match kind {
            AttackKind::Fgsm => "fgsm",
            AttackKind::Pgd => "pgd",
            AttackKind::ApgdCe => "apgd-ce",
            AttackKind::ApgdDlr => "apgd-dlr",
            AttackKind::ApgdT => "apgd-t",
            AttackKind::Square => "square",
            AttackKind::Fab => "fab",
            AttackKind::FabT => "fab-t",
            AttackKind::AutoAttack => "autoattack",
            AttackKind::AutoAttackFast => "autoattack-fast",
        };
        let steps = match kind {
            AttackKind::ApgdCe
            | AttackKind::ApgdDlr
            | AttackKind::ApgdT
            | AttackKind::Fab
            | AttackKind::FabT => 100,
            _ => 20,
        };
        Self {
            kind,
            name: name.to_string(),
            steps,
            restarts: 1,
            step_size: None,
            loss: AttackLoss::CrossEntropy,
            target: None,
            queries: 5000,
            version: None,
            targets: 9,
            eot: 1,
        }
    }

    /// The spec an attack name asks for, with the defaults of [`AttackSpec::new`].
    pub fn named(name: &str) -> Result<Self> {
        Ok(Self {
            name: name.to_string(),
            ..Self::new(name.parse()?)
        })
    }

    /// The ensemble this spec names, if it names one: `autoattack` at its version
    /// (standard unless set), `autoattack-fast`.
    pub fn ensemble(&self) -> Option<EnsemblePreset> {
        match self.kind {
            AttackKind::AutoAttack => Some(self.version.unwrap_or(EnsemblePreset::Standard)),
            AttackKind::AutoAttackFast => Some(EnsemblePreset::Fast),
            _ => None,
        }
    }

    /// `autoattack` at a reference version (`standard`, `plus`, `rand`), named after it so
    /// its record has its own file.
    pub fn autoattack(version: &str) -> Result<Self> {
        let preset = EnsemblePreset::from_version(version)?;
        Ok(Self {
            name: preset.name().to_string(),
            version: Some(preset),
            ..Self::new(AttackKind::AutoAttack)
        })
    }

    /// Checks the settings the kind uses, so [`AttackSpec::build`] fails before any work.
    pub fn validate(&self) -> Result<()> {
        if self.version.is_some() && self.kind != AttackKind::AutoAttack {
            return Err(Error::config(format!(
                "--version applies to --attack autoattack only, not {}",
                self.name
            )));
        }
        let positive = |v: usize, what: &str| {
            if v == 0 {
                Err(Error::config(format!("{what} must be at least 1")))
            } else {
                Ok(())
            }
        };
        positive(self.eot, "--eot")?;
        let gradient = matches!(
            self.kind,
            AttackKind::Fgsm
                | AttackKind::Pgd
                | AttackKind::ApgdCe
                | AttackKind::ApgdDlr
                | AttackKind::ApgdT
        );
        if self.eot > 1 && !gradient {
            return Err(Error::config(format!(
                "--eot applies to the gradient attacks (fgsm, pgd, apgd-ce, apgd-dlr, apgd-t), not {}; \
                 for an ensemble over a randomized model use --attack autoattack --version rand",
                self.name
            )));
        }
        match self.kind {
            AttackKind::Fgsm if self.target.is_some() => {
                Err(Error::config("--target needs --attack pgd"))
            }
            AttackKind::Pgd => {
                if self.steps == 0 || self.restarts == 0 {
                    return Err(Error::config("--steps and --restarts must be at least 1"));
                }
                match self.step_size {
                    Some(a) if !(a.is_finite() && a > 0.0) => {
                        Err(Error::config("--step-size must be > 0"))
                    }
                    _ => Ok(()),
                }
            }
            AttackKind::ApgdCe | AttackKind::ApgdDlr => {
                positive(self.steps, "--steps")?;
                positive(self.restarts, "--restarts")
            }
            AttackKind::ApgdT | AttackKind::FabT => {
                positive(self.steps, "--steps")?;
                positive(self.targets, "--targets")
            }
            AttackKind::Fab => {
                positive(self.steps, "--steps")?;
                positive(self.restarts, "--restarts")
            }
            AttackKind::Square => positive(self.queries, "--queries"),
            _ => Ok(()),
        }
    }

    /// Checks the settings that depend on the model: a `--target` class must be one of its
    /// `num_classes` classes.
    pub fn check_classes(&self, num_classes: usize) -> Result<()> {
        match self.target {
            Some(TargetMode::Class(c)) if c >= num_classes => Err(Error::config(format!(
                "--target {c} is not a class of this model: it has {num_classes} classes (0 to {})",
                num_classes.saturating_sub(1)
            ))),
            _ => Ok(()),
        }
    }

    /// The attack at `threat`. Ensembles are several attacks, not one: run them with
    /// [`AttackSpec::run`].
    pub fn build(&self, threat: ThreatModel) -> Result<AnyAttack> {
        if self.kind.is_ensemble() {
            return Err(Error::config(format!(
                "{} is an ensemble: use it with `advtrain eval`",
                self.name
            )));
        }
        self.validate()?;
        Ok(self.assemble(threat))
    }

    /// [`AttackSpec::build`] after validation (ensembles excluded by the caller).
    fn assemble(&self, threat: ThreatModel) -> AnyAttack {
        match self.kind {
            AttackKind::Fgsm => {
                AnyAttack::Fgsm(Fgsm::new(threat).with_loss(self.loss).with_eot(self.eot))
            }
            AttackKind::Pgd => {
                let mut pgd = Pgd::new(threat)
                    .steps(self.steps)
                    .restarts(self.restarts)
                    .loss(self.loss)
                    .eot(self.eot);
                if let Some(a) = self.step_size {
                    pgd = pgd.step_size(a);
                }
                if let Some(t) = self.target {
                    pgd = pgd.targeted(t);
                }
                AnyAttack::Pgd(pgd)
            }
            AttackKind::ApgdCe | AttackKind::ApgdDlr => AnyAttack::Apgd(
                Apgd::new(threat)
                    .steps(self.steps)
                    .restarts(self.restarts)
                    .eot(self.eot)
                    .loss(if self.kind == AttackKind::ApgdDlr {
                        ApgdLoss::Dlr
                    } else {
                        ApgdLoss::CrossEntropy
                    }),
            ),
            AttackKind::ApgdT => AnyAttack::ApgdTargeted(
                ApgdTargeted::new(threat)
                    .steps(self.steps)
                    .targets(self.targets)
                    .eot(self.eot),
            ),
            AttackKind::Fab => {
                AnyAttack::Fab(Fab::new(threat).steps(self.steps).restarts(self.restarts))
            }
            AttackKind::FabT => AnyAttack::FabTargeted(
                FabTargeted::new(threat)
                    .steps(self.steps)
                    .targets(self.targets),
            ),
            AttackKind::Square | AttackKind::AutoAttack | AttackKind::AutoAttackFast => {
                AnyAttack::Square(Square::new(threat).queries(self.queries))
            }
        }
    }

    /// File-name tag of an evaluation: the name, then every setting that differs from the
    /// attack's reference defaults ([`AttackSpec::new`]): `-<loss>` unless cross-entropy,
    /// `-target<mode>`, `-steps<N>`, `-restarts<N>`, `-alpha<a>`, `-queries<N>`,
    /// `-targets<N>`, `-eot<N>`, and `-<norm>-eps<ε>` when `threat` is not the run's
    /// `trained` one. Two evaluations share a file only when they ran the same attack, so
    /// `--steps 1` can never replace the PGD-20 record.
    pub fn tag(&self, threat: ThreatModel, trained: ThreatModel) -> String {
        let reference = Self::new(self.kind);
        let mut tag = self.name.clone();
        if self.loss != AttackLoss::CrossEntropy {
            tag.push_str(&format!("-{}", self.loss));
        }
        match self.target {
            None => {}
            Some(TargetMode::Random) => tag.push_str("-target-random"),
            Some(TargetMode::LeastLikely) => tag.push_str("-target-least-likely"),
            Some(TargetMode::Class(c)) => tag.push_str(&format!("-target{c}")),
        }
        let mut differs = |used: bool, value: usize, default: usize, key: &str| {
            if used && value != default {
                tag.push_str(&format!("-{key}{value}"));
            }
        };
        let iterative = self.kind.is_iterative() && !self.kind.is_ensemble();
        differs(iterative, self.steps, reference.steps, "steps");
        differs(
            self.kind.has_restarts(),
            self.restarts,
            reference.restarts,
            "restarts",
        );
        let square = self.kind == AttackKind::Square;
        differs(square, self.queries, reference.queries, "queries");
        let targeted = matches!(self.kind, AttackKind::ApgdT | AttackKind::FabT);
        differs(targeted, self.targets, reference.targets, "targets");
        differs(true, self.eot, reference.eot, "eot");
        if let Some(a) = self.step_size {
            tag.push_str(&format!("-alpha{a}"));
        }
        if threat.norm != trained.norm || (threat.eps - trained.eps).abs() > 1e-9 {
            tag.push_str(&format!("-{}-eps{}", threat.norm, threat.eps));
        }
        tag
    }

    /// Evaluates `model` on `data` at `threat`: the attack's result, and for an ensemble
    /// also what each stage did.
    pub fn run<M: Classifier>(
        &self,
        model: &M,
        data: &Dataset,
        threat: ThreatModel,
        batch_size: usize,
        rng: &mut AdvRng,
        progress: &dyn Progress,
    ) -> Result<SpecResult> {
        let mut no_saving = |_: &EvalState| Ok(());
        let checkpoint = Checkpoint {
            saved: None,
            save: &mut no_saving,
        };
        self.run_resumable(model, data, threat, batch_size, checkpoint, rng, progress)
    }

    /// [`AttackSpec::run`], resuming from `checkpoint.saved` if given and handing the state
    /// to `checkpoint.save` after every batch ([`resume::run_stages`]): a killed evaluation
    /// resumed from its last saved state ends with exactly the uninterrupted result.
    #[allow(clippy::too_many_arguments)]
    pub fn run_resumable<M: Classifier>(
        &self,
        model: &M,
        data: &Dataset,
        threat: ThreatModel,
        batch_size: usize,
        checkpoint: Checkpoint<'_>,
        rng: &mut AdvRng,
        progress: &dyn Progress,
    ) -> Result<SpecResult> {
        let Checkpoint { saved, save } = checkpoint;
        match self.ensemble() {
            Some(p) => {
                let attacks = p.attacks(threat);
                let plan = Plan {
                    name: p.name(),
                    attacks: &attacks,
                    cover: Cover::StillRobust,
                    batch_size,
                };
                let state = run_stages(model, data, &plan, saved, rng, save, progress)?;
                let ens = EnsembleResult::from_state(&state);
                Ok(SpecResult {
                    eval: ens.as_eval(),
                    ensemble: Some(ens),
                })
            }
            None => {
                let attack = self.build(threat)?;
                let name = attack.name();
                let plan = Plan {
                    name: &name,
                    attacks: std::slice::from_ref(&attack),
                    cover: Cover::All,
                    batch_size,
                };
                let state = run_stages(model, data, &plan, saved, rng, save, progress)?;
                Ok(SpecResult {
                    eval: state.robust_eval(),
                    ensemble: None,
                })
            }
        }
    }

    /// Robust accuracy at each ε of `eps_values` under `norm` ([`eps_curve`] for one attack;
    /// an ensemble is run afresh at each radius). At ε = 0 it is the clean accuracy.
    #[allow(clippy::too_many_arguments)]
    pub fn curve<M: Classifier>(
        &self,
        model: &M,
        data: &Dataset,
        norm: Norm,
        eps_values: &[f32],
        batch_size: usize,
        rng: &mut AdvRng,
        progress: &dyn Progress,
    ) -> Result<Vec<CurvePoint>> {
        let at = |eps| ThreatModel { norm, eps };
        let Some(preset) = self.ensemble() else {
            self.validate()?;
            let make = |eps| self.assemble(at(eps));
            return eps_curve(model, data, eps_values, make, batch_size, rng, progress);
        };
        let mut points = Vec::with_capacity(eps_values.len());
        for &eps in eps_values {
            let robust = if eps == 0.0 {
                clean_accuracy(model, data, batch_size, progress)
            } else {
                let attacks = preset.attacks(at(eps));
                let name = preset.name();
                ensemble::ensemble(name, model, data, &attacks, batch_size, rng, progress)?.robust
            };
            points.push(CurvePoint { eps, robust });
        }
        Ok(points)
    }
}

impl fmt::Display for AttackSpec {
    /// The name it was asked for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Where a resumable evaluation comes from and where its state goes.
pub struct Checkpoint<'a> {
    /// The state a killed evaluation left, to resume from (`None`: start afresh).
    pub saved: Option<EvalState>,
    /// Called with the state after the clean predictions and after every batch; an error
    /// stops the evaluation (the state saved before it stays valid).
    pub save: &'a mut dyn FnMut(&EvalState) -> Result<()>,
}

/// What [`AttackSpec::run`] measured.
#[derive(Clone, Debug)]
pub struct SpecResult {
    /// The evaluation (an ensemble's in the same shape).
    pub eval: RobustEval,
    /// An ensemble's full outcome: its stages and which attack broke each example.
    pub ensemble: Option<EnsembleResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_to_kinds_and_keep_what_was_typed() {
        let spec = AttackSpec::named("fgm").unwrap();
        assert_eq!(spec.kind, AttackKind::Fgsm);
        assert_eq!(spec.name, "fgm");
        assert!(AttackSpec::named("magic")
            .unwrap_err()
            .to_string()
            .contains("unknown attack 'magic'"));
        assert_eq!(
            AttackSpec::named("autoattack").unwrap().ensemble(),
            Some(EnsemblePreset::Standard)
        );
        let plus = AttackSpec::autoattack("plus").unwrap();
        assert_eq!(plus.ensemble(), Some(EnsemblePreset::Plus));
        assert_eq!(plus.name, "autoattack-plus");
        assert!(AttackSpec::autoattack("deluxe").is_err());
        let pgd_with_version = AttackSpec {
            version: Some(EnsemblePreset::Plus),
            ..AttackSpec::new(AttackKind::Pgd)
        };
        assert!(pgd_with_version.validate().is_err());
        let square_eot = AttackSpec {
            eot: 5,
            ..AttackSpec::new(AttackKind::Square)
        };
        assert!(square_eot
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--eot"));
    }

    #[test]
    fn invalid_settings_are_refused_before_any_work() {
        let threat = ThreatModel::linf(0.1);
        let pgd = AttackSpec {
            steps: 0,
            ..AttackSpec::new(AttackKind::Pgd)
        };
        assert!(pgd.build(threat).is_err());
        let fgsm = AttackSpec {
            target: Some(TargetMode::Random),
            ..AttackSpec::new(AttackKind::Fgsm)
        };
        assert!(fgsm.build(threat).is_err());
        let aa = AttackSpec::new(AttackKind::AutoAttack);
        assert!(aa
            .build(threat)
            .unwrap_err()
            .to_string()
            .contains("ensemble"));
        assert!(parse_target("three").is_err());
        assert_eq!(parse_target("3").unwrap(), TargetMode::Class(3));
    }

    #[test]
    fn tags_name_what_differs_from_the_training_threat() {
        let trained = ThreatModel::linf(0.1);
        let mut spec = AttackSpec::new(AttackKind::Pgd);
        assert_eq!(spec.tag(trained, trained), "pgd");
        spec.loss = AttackLoss::CwMargin;
        spec.target = Some(TargetMode::LeastLikely);
        assert_eq!(
            spec.tag(ThreatModel::linf(0.2), trained),
            "pgd-cw-target-least-likely-linf-eps0.2"
        );
    }

    #[test]
    fn tags_name_every_setting_that_differs_from_the_reference() {
        let trained = ThreatModel::linf(0.1);
        let pgd = AttackSpec::new(AttackKind::Pgd);
        let one_step = AttackSpec {
            steps: 1,
            ..pgd.clone()
        };
        assert_ne!(one_step.tag(trained, trained), pgd.tag(trained, trained));
        assert_eq!(one_step.tag(trained, trained), "pgd-steps1");
        let many = AttackSpec {
            restarts: 5,
            step_size: Some(0.01),
            target: Some(TargetMode::Class(3)),
            eot: 4,
            ..pgd
        };
        assert_eq!(
            many.tag(trained, trained),
            "pgd-target3-restarts5-eot4-alpha0.01"
        );
        let square = AttackSpec {
            queries: 100,
            ..AttackSpec::new(AttackKind::Square)
        };
        assert_eq!(square.tag(trained, trained), "square-queries100");
        let apgd_t = AttackSpec {
            targets: 3,
            ..AttackSpec::new(AttackKind::ApgdT)
        };
        assert_eq!(apgd_t.tag(trained, trained), "apgd-t-targets3");
        // The reference settings keep the short names scripts read.
        for kind in ["pgd", "apgd-ce", "square", "autoattack", "fab-t"] {
            let spec = AttackSpec::named(kind).unwrap();
            assert_eq!(spec.tag(trained, trained), kind);
        }
    }
}
