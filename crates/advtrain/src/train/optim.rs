//! Optimisers and learning-rate schedules.
//!
//! The schedule is a pure function of training progress, so resuming a run or changing the
//! epoch count never leaves it in a hidden state.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, ModuleOptimizer, SgdConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which optimiser updates the parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OptimizerConfig {
    /// SGD with (PyTorch-style, undampened) momentum and L2 weight decay.
    Sgd {
        /// Momentum coefficient in `[0, 1)` (default 0.9); 0 turns momentum off.
        momentum: f64,
        /// L2 penalty added to each gradient as `weight_decay · θ` (default 5e-4); 0 turns
        /// it off.
        weight_decay: f64,
        /// Nesterov momentum instead of the classical kind (default `false`).
        nesterov: bool,
    },
    /// Adam with optional L2 weight decay.
    Adam {
        /// L2 penalty added to each gradient (coupled, not AdamW's decoupled decay);
        /// 0 turns it off.
        weight_decay: f64,
    },
}

impl OptimizerConfig {
    /// SGD, momentum 0.9, weight decay 5e-4: the usual adversarial-training setting.
    pub fn sgd() -> Self {
        OptimizerConfig::Sgd {
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
        }
    }

    /// Adam without weight decay.
    pub fn adam() -> Self {
        OptimizerConfig::Adam { weight_decay: 0.0 }
    }

    /// Short name for records.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd { .. } => "sgd",
            OptimizerConfig::Adam { .. } => "adam",
        }
    }

    /// Checks that momentum is in `[0, 1)` and weight decay finite and `>= 0`.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| {
            Err(Error::config(format!(
                "optimizer {what} must be finite and >= 0, got {v}"
            )))
        };
        match *self {
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
                ..
            } => {
                if !(momentum.is_finite() && (0.0..1.0).contains(&momentum)) {
                    return Err(Error::config(format!(
                        "SGD momentum must be in [0, 1), got {momentum}"
                    )));
                }
                if !(weight_decay.is_finite() && weight_decay >= 0.0) {
                    return bad("weight decay", weight_decay);
                }
            }
            OptimizerConfig::Adam { weight_decay } => {
                if !(weight_decay.is_finite() && weight_decay >= 0.0) {
                    return bad("weight decay", weight_decay);
                }
            }
        }
        Ok(())
    }

    /// The burn optimiser.
    pub fn build(&self) -> ModuleOptimizer {
        match *self {
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
                nesterov,
            } => {
                let mut cfg = SgdConfig::new();
                if momentum > 0.0 {
                    cfg = cfg.with_momentum(Some(
                        MomentumConfig::new()
                            .with_momentum(momentum)
                            .with_dampening(0.0)
                            .with_nesterov(nesterov),
                    ));
                }
                if weight_decay > 0.0 {
                    cfg = cfg.with_weight_decay(Some(WeightDecayConfig::new(weight_decay as f32)));
                }
                cfg.init()
            }
            OptimizerConfig::Adam { weight_decay } => {
                let mut cfg = AdamConfig::new();
                if weight_decay > 0.0 {
                    cfg = cfg.with_weight_decay(Some(WeightDecayConfig::new(weight_decay as f32)));
                }
                cfg.init()
            }
        }
    }
}

/// How the learning rate moves over training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// Multiply by `factor` at each milestone (fractions of training, e.g. 0.5 and 0.75).
    Piecewise {
        /// Points of training, as fractions in `[0, 1]` of all iterations, where the rate
        /// is multiplied by `factor`.
        milestones: Vec<f64>,
        /// Multiplier applied at each milestone passed (default 0.1); must be `> 0`.
        factor: f64,
    },
    /// Linear warm-up from 0 to the base rate over the first `peak` fraction of training,
    /// then linear decay to 0 (the cyclic schedule of Wong et al. 2020).
    OneCycle {
        /// Fraction of training, in `(0, 1)`, at which the rate peaks (default 0.4).
        peak: f64,
    },
}

impl Schedule {
    /// Milestones at 50% and 75% of training, factor 0.1 (Madry/Rice style).
    pub fn piecewise() -> Self {
        Schedule::Piecewise {
            milestones: vec![0.5, 0.75],
            factor: 0.1,
        }
    }

    /// One cycle peaking at 40% of training.
    pub fn one_cycle() -> Self {
        Schedule::OneCycle { peak: 0.4 }
    }

    /// Short name for records: `"constant"`, `"piecewise"` or `"one-cycle"`.
    pub fn name(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Piecewise { .. } => "piecewise",
            Schedule::OneCycle { .. } => "one-cycle",
        }
    }

    /// Checks milestones are fractions in `[0, 1]`, the factor positive and the peak in
    /// `(0, 1)`.
    pub fn validate(&self) -> Result<()> {
        match self {
            Schedule::Constant => Ok(()),
            Schedule::Piecewise { milestones, factor } => {
                if milestones.iter().any(|m| !(0.0..=1.0).contains(m)) {
                    return Err(Error::config(
                        "piecewise milestones must be fractions in [0, 1]",
                    ));
                }
                if !(factor.is_finite() && *factor > 0.0) {
                    return Err(Error::config("piecewise factor must be > 0"));
                }
                Ok(())
            }
            Schedule::OneCycle { peak } => {
                if !(*peak > 0.0 && *peak < 1.0) {
                    return Err(Error::config("one-cycle peak must be in (0, 1)"));
                }
                Ok(())
            }
        }
    }

    /// The rate of optimiser step `step` (0-based) of `total_steps`: what the training loop
    /// uses. One-cycle is read at the step's midpoint, `(step + ½) / total`: read at its
    /// start, the first step of every run had rate 0 (it starts at 0), and a run of one
    /// step (`--batch-size` ≥ the training set, one epoch) never changed its weights. At
    /// the midpoint every step has a positive rate, the first and the last a small one.
    /// Constant and piecewise are read at the step's start, as before (their rates are
    /// positive everywhere, and a milestone keeps applying from the same step).
    pub fn lr_at_step(&self, base: f64, step: f64, total_steps: f64) -> f64 {
        let total = total_steps.max(1.0);
        let progress = match self {
            Schedule::OneCycle { .. } => (step + 0.5) / total,
            Schedule::Constant | Schedule::Piecewise { .. } => step / total,
        };
        self.lr(base, progress)
    }

    /// The rate at `progress` in `[0, 1]` (fraction of all training iterations done).
    /// One-cycle is 0 at both ends: a training loop reads it through [`Schedule::lr_at_step`].
    pub fn lr(&self, base: f64, progress: f64) -> f64 {
        let p = progress.clamp(0.0, 1.0);
        match self {
            Schedule::Constant => base,
            Schedule::Piecewise { milestones, factor } => {
                let passed = milestones.iter().filter(|&&m| p >= m).count() as i32;
                base * factor.powi(passed)
            }
            Schedule::OneCycle { peak } => {
                if p < *peak {
                    base * p / peak
                } else {
                    base * (1.0 - p) / (1.0 - peak)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_gives_every_step_a_positive_rate() {
        let s = Schedule::one_cycle();
        for total in 1..=50 {
            for step in 0..total {
                let lr = s.lr_at_step(0.1, step as f64, total as f64);
                assert!(lr > 0.0 && lr <= 0.1, "step {step} of {total}: lr {lr}");
            }
        }
        // One step: the midpoint of training, on the way down from the peak at 40%.
        let one = s.lr_at_step(0.1, 0.0, 1.0);
        assert!((one - 0.1 * 0.5 / 0.6).abs() < 1e-12, "{one}");
    }

    #[test]
    fn one_cycle_still_peaks_at_its_peak() {
        let s = Schedule::one_cycle();
        let rates: Vec<f64> = (0..100)
            .map(|i| s.lr_at_step(1.0, i as f64, 100.0))
            .collect();
        let peak = (0..100)
            .max_by(|&a, &b| rates[a].total_cmp(&rates[b]))
            .unwrap();
        assert!((39..=40).contains(&peak), "peak at step {peak}");
        assert!(
            (rates[0] - rates[99]).abs() < 0.01,
            "{} vs {}",
            rates[0],
            rates[99]
        );
    }

    #[test]
    fn constant_and_piecewise_steps_are_read_at_their_start() {
        let p = Schedule::piecewise();
        for total in [4.0, 5.0, 7.0] {
            for step in 0..total as usize {
                let step = step as f64;
                assert_eq!(p.lr_at_step(0.1, step, total), p.lr(0.1, step / total));
            }
        }
        assert_eq!(Schedule::Constant.lr_at_step(0.3, 0.0, 1.0), 0.3);
    }
}
