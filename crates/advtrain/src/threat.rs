//! Threat models: which perturbations an attacker may use.
//!
//! A threat model is a norm ball of radius ε around the clean input, intersected with the
//! valid pixel box `[0, 1]`. Every attack projects onto this set after every step, so its
//! output is a legal input by construction; evaluation checks it again.

use std::fmt;
use std::str::FromStr;

use burn::prelude::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::{self, AdvRng};

/// The norm that measures a perturbation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Max-norm: every pixel may move by at most ε.
    Linf,
    /// Euclidean norm over the whole image.
    L2,
}

impl Norm {
    /// Lower-case name as used on the command line and in records.
    pub fn as_str(&self) -> &'static str {
        match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        }
    }
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Norm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "linf" | "l-inf" | "inf" => Ok(Norm::Linf),
            "l2" | "2" => Ok(Norm::L2),
            other => Err(Error::config(format!(
                "unknown norm '{other}': expected 'linf' or 'l2'"
            ))),
        }
    }
}

/// A norm ball of radius `eps` around the input, intersected with `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreatModel {
    /// The norm the radius is measured in.
    pub norm: Norm,
    /// Radius ε in pixel units of `[0, 1]` images (8/255 ≈ 0.031 is the usual CIFAR-10 L∞
    /// budget); must be finite and `>= 0` (see [`ThreatModel::validate`]).
    pub eps: f32,
}

/// Guard against dividing by a zero norm (zero gradients, zero perturbations).
const TINY: f32 = 1e-12;

impl ThreatModel {
    /// An L∞ ball of radius `eps`.
    pub fn linf(eps: f32) -> Self {
        Self {
            norm: Norm::Linf,
            eps,
        }
    }

    /// An L2 ball of radius `eps`.
    pub fn l2(eps: f32) -> Self {
        Self {
            norm: Norm::L2,
            eps,
        }
    }

    /// Checks ε: finite and non-negative. (ε above 1 in L∞ is allowed: the box makes it
    /// "unbounded", which the sanity checks use on purpose.)
    pub fn validate(&self) -> Result<()> {
        if !self.eps.is_finite() || self.eps < 0.0 {
            return Err(Error::config(format!(
                "eps must be a finite number >= 0, got {}",
                self.eps
            )));
        }
        Ok(())
    }

    /// Projects `x_adv` onto the ε-ball around `x`, then onto the box `[0, 1]`.
    ///
    /// Clipping to the box after the ball keeps the result inside the ball: with `x` in the
    /// box, clipping only moves each coordinate towards `x`.
    pub fn project(&self, x_adv: Tensor<4>, x: &Tensor<4>) -> Tensor<4> {
        let delta = x_adv - x.clone();
        let delta = match self.norm {
            Norm::Linf => delta.clamp(-self.eps, self.eps),
            Norm::L2 => {
                let norm = per_example_l2(delta.clone());
                // factor = min(1, eps / ||delta||)
                let factor = norm
                    .add_scalar(TINY)
                    .recip()
                    .mul_scalar(self.eps)
                    .clamp_max(1.0);
                delta * factor
            }
        };
        (x.clone() + delta).clamp(0.0, 1.0)
    }

    /// A random point of the ball around `x` (then clipped to the box): uniform per pixel in
    /// L∞; in L2 a uniformly random direction with a radius uniform in `[0, ε]`.
    pub fn random_start(&self, x: &Tensor<4>, rng: &mut AdvRng) -> Tensor<4> {
        let dims = x.dims();
        let n: usize = dims.iter().product();
        let device = x.device();
        let delta = match self.norm {
            Norm::Linf => rng::uniform_vec(rng, n, -self.eps, self.eps),
            Norm::L2 => {
                let per = n / dims[0].max(1);
                let mut v = rng::normal_vec(rng, n);
                let radii = rng::uniform_vec(rng, dims[0], 0.0, 1.0);
                for (b, chunk) in v.chunks_mut(per.max(1)).enumerate() {
                    let norm = chunk.iter().map(|a| a * a).sum::<f32>().sqrt().max(TINY);
                    let scale = self.eps * radii[b] / norm;
                    chunk.iter_mut().for_each(|a| *a *= scale);
                }
                v
            }
        };
        let delta = Tensor::<4>::from_data(TensorData::new(delta, dims), &device);
        (x.clone() + delta).clamp(0.0, 1.0)
    }

    /// One attack iteration: an ascent step of size `alpha` from `x_adv` along `grad`,
    /// projected back onto the ball around `x` and the box. In L∞ on the CPU backend this
    /// is one fused pass ([`crate::fastpath::linf_step`]), with the same result bit for bit.
    pub fn step(&self, x_adv: Tensor<4>, grad: Tensor<4>, alpha: f32, x: &Tensor<4>) -> Tensor<4> {
        if self.norm == Norm::Linf {
            if let Some(out) = crate::fastpath::linf_step(&x_adv, &grad, x, alpha, self.eps) {
                return out;
            }
        }
        self.project(self.ascent_step(x_adv, grad, alpha), x)
    }

    /// One steepest-ascent step of size `alpha` along `grad`: `alpha·sign(g)` in L∞,
    /// `alpha·g/‖g‖` in L2.
    pub fn ascent_step(&self, x_adv: Tensor<4>, grad: Tensor<4>, alpha: f32) -> Tensor<4> {
        x_adv + self.ascent_direction(grad).mul_scalar(alpha)
    }

    /// The unit steepest-ascent direction of `grad` for this norm.
    pub fn ascent_direction(&self, grad: Tensor<4>) -> Tensor<4> {
        match self.norm {
            Norm::Linf => grad.sign(),
            Norm::L2 => {
                let norm = per_example_l2(grad.clone());
                grad / norm.add_scalar(TINY)
            }
        }
    }

    /// The size of the largest perturbation in the batch, in this threat model's norm.
    /// Evaluation uses it to check that an attack stayed inside the ball.
    pub fn max_perturbation(&self, x_adv: &Tensor<4>, x: &Tensor<4>) -> f32 {
        let delta = x_adv.clone() - x.clone();
        let per_example = match self.norm {
            Norm::Linf => {
                let b = delta.dims()[0];
                delta.abs().reshape([b as i32, -1]).max_dim(1)
            }
            Norm::L2 => per_example_l2(delta).reshape([-1, 1]),
        };
        per_example
            .into_data()
            .try_to_vec::<f32>()
            .map(|v| v.into_iter().fold(0.0, f32::max))
            .unwrap_or(f32::NAN)
    }

    /// Short label such as `linf eps=0.1`.
    pub fn describe(&self) -> String {
        format!("{} eps={}", self.norm, self.eps)
    }
}

/// The L2 norm of each example, shaped `[batch, 1, 1, 1]` so it broadcasts over the image.
pub fn per_example_l2(t: Tensor<4>) -> Tensor<4> {
    let b = t.dims()[0] as i32;
    t.square()
        .reshape([b, -1])
        .sum_dim(1)
        .sqrt()
        .reshape([b, 1, 1, 1])
}
