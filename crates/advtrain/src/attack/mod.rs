//! Adversarial attacks: ways to find a worst-case input inside a threat model.
//!
//! Every attack works on any [`Classifier`]. While crafting, the model is switched to
//! evaluation mode with parameter gradients off ([`Module::valid`]): only the gradient with
//! respect to the input is computed, which is both correct (batch-norm statistics and dropout
//! must not change during an attack) and about a third cheaper.

mod any;
mod apgd;
mod fab;
mod fgsm;

mod pgd;
mod square;

use burn::module::Module;
use burn::prelude::{Bool, Int, Tensor, TensorData};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

pub use crate::loss::{cross_entropy, cw_margin, dlr, dlr_targeted, kl_from_logits, AttackLoss};
pub use any::AnyAttack;
pub use apgd::{Apgd, ApgdLoss, ApgdTargeted};
pub use fab::{Fab, FabTargeted};
pub use fgsm::Fgsm;
pub use pgd::Pgd;
pub use square::{Square, SquareLoss};

use crate::model::Classifier;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;

/// An attack maps clean inputs to adversarial inputs inside its threat model.
pub trait Attack {
    /// Short name with the settings that matter, e.g. `pgd-20x1 linf eps=0.1`.
    fn name(&self) -> String;

    /// The threat model the output respects.
    fn threat(&self) -> ThreatModel;

    /// Adversarial versions of `x` (labels `y`); the result lies in the ε-ball around `x`
    /// and in `[0, 1]`. The model is used in evaluation mode.
    fn perturb<M: Classifier>(
        &self,
        model: &M,
        x: Tensor<4>,
        y: Tensor<1, Int>,
        rng: &mut AdvRng,
    ) -> Tensor<4>;
}

/// How a targeted attack picks its target class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    /// A class drawn uniformly among those other than the true one.
    Random,
    /// The class the model finds least likely on the clean input (the hardest target).
    LeastLikely,
    /// One fixed class for every input (inputs of that class are left as they are).
    Class(usize),
}

/// Result of one forward/backward pass at an input.
pub struct InputGradient {
    /// Logits at the input (no autodiff).
    pub logits: Tensor<2>,
    /// Per-example objective values at the input.
    pub objective: Tensor<1>,
    /// Gradient of the summed objective with respect to the input.
    pub grad: Tensor<4>,
}

/// Computes the attack objective and its input gradient on a model that is already in
/// evaluation mode (`model.valid()`): the parameters are constants, only `x` is tracked.
pub fn input_gradient<M: Classifier>(
    eval_model: &M,
    x: Tensor<4>,
    labels: Tensor<1, Int>,
    loss: AttackLoss,
    targeted: bool,
) -> InputGradient {
    input_gradient_with(eval_model, x, |logits| {
        loss.objective(logits, labels, targeted)
    })
}

/// Like [`input_gradient`] for any per-example objective of the logits (TRADES uses the KL
/// divergence to the clean prediction).
pub fn input_gradient_with<M: Classifier>(
    eval_model: &M,
    x: Tensor<4>,
    objective: impl FnOnce(Tensor<2>) -> Tensor<1>,
) -> InputGradient {
    let x = x.without_autodiff().autodiff().require_grad();
    let logits = eval_model.logits(x.clone());
    let objective = objective(logits.clone());
    let grads = objective.clone().sum().backward();
    let grad = x
        .grad(&grads)
        .expect("the input requires a gradient, so backward must produce one");
    InputGradient {
        logits: logits.without_autodiff(),
        objective: objective.without_autodiff(),
        grad,
    }
}

/// [`input_gradient_with`] averaged over `samples` forward/backward passes: expectation over
/// transformation (EOT, Athalye et al. 2018) for a model whose forward pass is random. As in
/// the reference APGD, the gradient is the mean over the samples and the logits and
/// objective are the last sample's. `samples <= 1` is one plain pass.
pub fn input_gradient_eot<M: Classifier>(
    eval_model: &M,
    x: Tensor<4>,
    objective: &dyn Fn(Tensor<2>) -> Tensor<1>,
    samples: usize,
) -> InputGradient {
    let mut g = input_gradient_with(eval_model, x.clone(), objective);
    for _ in 1..samples {
        let next = input_gradient_with(eval_model, x.clone(), objective);
        g = InputGradient {
            grad: g.grad + next.grad,
            ..next
        };
    }
    if samples > 1 {
        g.grad = g.grad.div_scalar(samples as f32);
    }
    g
}

/// Predicted classes for a batch (model used as given; pass `model.valid()` for inference).
pub fn predict<M: Classifier>(model: &M, x: Tensor<4>) -> Tensor<1, Int> {
    let logits = model.logits(x);
    let b = logits.dims()[0];
    logits.argmax(1).reshape([b])
}

/// Target classes for a targeted attack, never equal to the true label (except
/// [`TargetMode::Class`] on examples already of that class).
pub fn choose_targets<M: Classifier>(
    mode: TargetMode,
    eval_model: &M,
    x: &Tensor<4>,
    y: &Tensor<1, Int>,
    rng: &mut AdvRng,
) -> Tensor<1, Int> {
    let device = x.device();
    let labels = int_vec(y);
    let b = labels.len();
    let targets: Vec<i64> = match mode {
        // The class is checked against the model where it enters (`AttackSpec::check_classes`):
        // checking it here would cost a forward pass per batch.
        TargetMode::Class(c) => vec![c as i64; b],
        TargetMode::Random => {
            let logits = eval_model.logits(x.clone());
            let k = logits.dims()[1] as i64;
            labels
                .iter()
                .map(|&l| {
                    let t = rng.random_range(0..k - 1);
                    if t >= l {
                        t + 1
                    } else {
                        t
                    }
                })
                .collect()
        }
        TargetMode::LeastLikely => {
            let logits = eval_model.logits(x.clone());
            int_vec(&logits.argmin(1).reshape([b]))
        }
    };
    Tensor::<1, Int>::from_data(TensorData::new(targets, [b]), &device)
}

/// Per example (row): the row of `b` where `take` is set, the row of `a` elsewhere. Exact,
/// a selection rather than arithmetic: one pass over the batch (the `a·(1−m) + b·m` it
/// replaces made three, and turned an infinite value in the row not taken into NaN).
pub(crate) fn blend_rows(a: Tensor<4>, b: Tensor<4>, take: &[bool]) -> Tensor<4> {
    if !take.iter().any(|&t| t) {
        return a;
    }
    if take.iter().all(|&t| t) {
        return b;
    }
    let mask = Tensor::<4, Bool>::from_data(
        TensorData::new(take.to_vec(), [take.len(), 1, 1, 1]),
        &a.device(),
    );
    a.mask_where(mask, b)
}

/// The rows `rows` of a batch, in that order.
pub(crate) fn select_rows(t: &Tensor<4>, rows: &[usize]) -> Tensor<4> {
    t.clone().select(0, row_indices(rows, &t.device()))
}

/// The entries `rows` of a vector of labels, in that order.
pub(crate) fn select_labels(t: &Tensor<1, Int>, rows: &[usize]) -> Tensor<1, Int> {
    t.clone().select(0, row_indices(rows, &t.device()))
}

/// `into` with its rows `rows` replaced by the rows of `values`, in order. Exact: the rows
/// are scattered onto zeros and blended in with weights 0 and 1.
pub(crate) fn replace_rows(into: Tensor<4>, rows: &[usize], values: Tensor<4>) -> Tensor<4> {
    let b = into.dims()[0];
    if rows.len() == b && rows.iter().enumerate().all(|(k, &r)| k == r) {
        return values;
    }
    if rows.is_empty() {
        return into;
    }
    let device = into.device();
    let scattered = Tensor::<4>::zeros(into.dims(), &device).select_assign(
        0,
        row_indices(rows, &device),
        values,
        burn::tensor::IndexingUpdateOp::Add,
    );
    let mut take = vec![false; b];
    for &r in rows {
        take[r] = true;
    }
    blend_rows(into, scattered, &take)
}

fn row_indices(rows: &[usize], device: &burn::prelude::Device) -> Tensor<1, Int> {
    let idx: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(idx, [rows.len()]), device)
}

/// The name suffix of an attack averaging `eot` gradient samples (none for 1).
pub(crate) fn eot_suffix(eot: usize) -> String {
    if eot > 1 {
        format!(" eot={eot}")
    } else {
        String::new()
    }
}

/// The rows `rows` of a batch and of its labels (the whole batch without copying when
/// `rows` is all of it).
pub(crate) fn rows_of(
    x: &Tensor<4>,
    y: &Tensor<1, Int>,
    rows: &[usize],
) -> (Tensor<4>, Tensor<1, Int>) {
    if rows.len() == x.dims()[0] {
        (x.clone(), y.clone())
    } else {
        (select_rows(x, rows), select_labels(y, rows))
    }
}

/// Reads an integer tensor back to the host.
pub(crate) fn int_vec(t: &Tensor<1, Int>) -> Vec<i64> {
    let data = t.to_data();
    data.convert::<i64>()
        .try_to_vec::<i64>()
        .expect("int tensor converts to i64")
}

/// Reads a float tensor back to the host.
pub(crate) fn float_vec<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("float tensor converts to f32")
}

/// Switches a model to evaluation mode with no parameter gradients.
pub(crate) fn eval_mode<M: Module>(model: &M) -> M {
    model.valid()
}

#[cfg(test)]
mod tests {
    use burn::prelude::{Device, Tensor, TensorData};

    use super::{blend_rows, float_vec};

    fn rows(values: &[f32]) -> Tensor<4> {
        Tensor::<4>::from_data(
            TensorData::new(values.to_vec(), [values.len() / 2, 1, 1, 2]),
            &Device::flex(),
        )
    }

    #[test]
    fn blending_selects_rows_exactly_even_next_to_infinities_and_nan() {
        let a = rows(&[1.0, f32::INFINITY, 3.0, 4.0, f32::NAN, 6.0]);
        let b = rows(&[-1.0, -2.0, f32::NEG_INFINITY, -4.0, -5.0, -6.0]);
        let got = float_vec(&blend_rows(a.clone(), b.clone(), &[true, false, true]));
        assert_eq!(got, [-1.0, -2.0, 3.0, 4.0, -5.0, -6.0]);
        let got = float_vec(&blend_rows(a.clone(), b.clone(), &[false, true, false]));
        assert_eq!(got[..2], [1.0, f32::INFINITY]);
        assert_eq!(got[2..4], [f32::NEG_INFINITY, -4.0]);
        assert!(got[4].is_nan() && got[5] == 6.0);
        assert_eq!(
            float_vec(&blend_rows(a, b, &[true; 3]))[2],
            f32::NEG_INFINITY
        );
    }
}
