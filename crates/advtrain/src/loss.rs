//! Attack and training objectives, computed per example so that each example's gradient is
//! its own. They sit below `attack` because models (the text models' white-box gradients) and
//! training methods use them too; `attack` re-exports them.

use std::fmt;
use std::str::FromStr;

use burn::prelude::{Int, Tensor};
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The loss an attack maximises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackLoss {
    /// Cross-entropy of the true (or, targeted, the target) class.
    CrossEntropy,
    /// Carlini-Wagner margin `max_{j≠y} z_j − z_y`: scale-free, so it still has a useful
    /// gradient when softmax saturates.
    CwMargin,
}

impl AttackLoss {
    /// Short name as used on the command line and in records: `"ce"` or `"cw"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AttackLoss::CrossEntropy => "ce",
            AttackLoss::CwMargin => "cw",
        }
    }

    /// The per-example objective to maximise. Untargeted: move away from `labels`.
    /// Targeted: move towards `labels` (which then hold the targets).
    pub fn objective(
        &self,
        logits: Tensor<2>,
        labels: Tensor<1, Int>,
        targeted: bool,
    ) -> Tensor<1> {
        let value = match self {
            AttackLoss::CrossEntropy => cross_entropy(logits, labels),
            AttackLoss::CwMargin => cw_margin(logits, labels),
        };
        if targeted {
            value.neg()
        } else {
            value
        }
    }
}

impl fmt::Display for AttackLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttackLoss {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ce" | "cross-entropy" => Ok(AttackLoss::CrossEntropy),
            "cw" | "cw-margin" => Ok(AttackLoss::CwMargin),
            other => Err(Error::config(format!(
                "unknown attack loss '{other}': expected 'ce' or 'cw'"
            ))),
        }
    }
}

/// Per-example cross-entropy `−log softmax(z)_y`, shape `[batch]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let b = logits.dims()[0];
    let logp = log_softmax(logits, 1);
    logp.gather(1, labels.reshape([b, 1])).reshape([b]).neg()
}

/// Per-example Carlini-Wagner margin `max_{j≠y} z_j − z_y`, shape `[batch]`.
/// Positive exactly when the example is misclassified.
pub fn cw_margin(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, k] = logits.dims();
    let true_mask = labels.clone().one_hot::<2>(k).equal_elem(1);
    let z_y = logits
        .clone()
        .gather(1, labels.reshape([b, 1]))
        .reshape([b]);
    let z_other = logits.mask_fill(true_mask, -1e9).max_dim(1).reshape([b]);
    z_other - z_y
}

/// Per-example `KL(p_clean ‖ p_adv)` from logits, shape `[batch]` (TRADES' robustness term).
pub fn kl_from_logits(clean_logits: Tensor<2>, adv_logits: Tensor<2>) -> Tensor<1> {
    let b = clean_logits.dims()[0];
    let log_p = log_softmax(clean_logits, 1);
    let log_q = log_softmax(adv_logits, 1);
    (log_p.clone().exp() * (log_p - log_q))
        .sum_dim(1)
        .reshape([b])
}

/// Per-example difference-of-logits-ratio loss (Croce & Hein 2020), to maximise:
/// `−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e-12)` with `π` the logits sorted in
/// decreasing order. Invariant to shifting and rescaling the logits, so saturated or
/// temperature-scaled models cannot hide behind small gradients. Needs at least 3 classes;
/// with fewer, the (scale-dependent) CW margin is returned instead.
pub fn dlr(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, k] = logits.dims();
    if k < 3 {
        return cw_margin(logits, labels);
    }
    let sorted = logits.clone().sort_descending(1);
    let z1 = sorted.clone().slice([0..b, 0..1]).reshape([b]);
    let z3 = sorted.slice([0..b, 2..3]).reshape([b]);
    cw_margin(logits, labels) / (z1 - z3).add_scalar(1e-12)
}

/// Per-example targeted DLR loss towards `targets`, to maximise:
/// `−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12)`. Needs at least 4 classes; with
/// fewer it falls back to the targeted CW margin `z_t − max_{j≠t} z_j`.
pub fn dlr_targeted(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    targets: Tensor<1, Int>,
) -> Tensor<1> {
    let [b, k] = logits.dims();
    if k < 4 {
        return cw_margin(logits, targets).neg();
    }
    let sorted = logits.clone().sort_descending(1);
    let z1 = sorted.clone().slice([0..b, 0..1]).reshape([b]);
    let z3 = sorted.clone().slice([0..b, 2..3]).reshape([b]);
    let z4 = sorted.slice([0..b, 3..4]).reshape([b]);
    let z_y = logits
        .clone()
        .gather(1, labels.reshape([b, 1]))
        .reshape([b]);
    let z_t = logits.gather(1, targets.reshape([b, 1])).reshape([b]);
    (z_t - z_y) / (z1 - (z3 + z4).mul_scalar(0.5)).add_scalar(1e-12)
}
