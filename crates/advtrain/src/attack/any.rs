//! An attack chosen at run time: the CLI's `--attack` and the ensemble's stages.

use burn::prelude::{Int, Tensor};

use super::{Apgd, ApgdTargeted, Attack, Fab, FabTargeted, Fgsm, Pgd, Square};
use crate::model::Classifier;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;

/// Any of advtrain's attacks.
#[derive(Clone, Debug)]
pub enum AnyAttack {
    /// Single-step FGSM (L∞) or FGM (L2), optionally from a random start.
    Fgsm(Fgsm),
    /// Multi-step PGD, untargeted or targeted.
    Pgd(Pgd),
    /// Untargeted APGD (AutoAttack's first stage).
    Apgd(Apgd),
    /// APGD-T: APGD with the targeted DLR loss over the top classes.
    ApgdTargeted(ApgdTargeted),
    /// FAB: minimum-norm attack along the closest linearised decision boundary.
    Fab(Fab),
    /// FAB-T: FAB towards each of the top classes in turn (AutoAttack's third stage).
    FabTargeted(FabTargeted),
    /// Square Attack: query-based, gradient-free.
    Square(Square),
}

impl Attack for AnyAttack {
    fn name(&self) -> String {
        match self {
            AnyAttack::Fgsm(a) => a.name(),
            AnyAttack::Pgd(a) => a.name(),
            AnyAttack::Apgd(a) => a.name(),
            AnyAttack::ApgdTargeted(a) => a.name(),
            AnyAttack::Fab(a) => a.name(),
            AnyAttack::FabTargeted(a) => a.name(),
            AnyAttack::Square(a) => a.name(),
        }
    }

    fn threat(&self) -> ThreatModel {
        match self {
            AnyAttack::Fgsm(a) => a.threat(),
            AnyAttack::Pgd(a) => a.threat(),
            AnyAttack::Apgd(a) => a.threat(),
            AnyAttack::ApgdTargeted(a) => a.threat(),
            AnyAttack::Fab(a) => a.threat(),
            AnyAttack::FabTargeted(a) => a.threat(),
            AnyAttack::Square(a) => a.threat(),
        }
    }

    fn perturb<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        rng: &mut AdvRng,
    ) -> Tensor<4> {
        match self {
            AnyAttack::Fgsm(a) => a.perturb(model, x, y, rng),
            AnyAttack::Pgd(a) => a.perturb(model, x, y, rng),
            AnyAttack::Apgd(a) => a.perturb(model, x, y, rng),
            AnyAttack::ApgdTargeted(a) => a.perturb(model, x, y, rng),
            AnyAttack::Fab(a) => a.perturb(model, x, y, rng),
            AnyAttack::FabTargeted(a) => a.perturb(model, x, y, rng),
            AnyAttack::Square(a) => a.perturb(model, x, y, rng),
        }
    }
}
