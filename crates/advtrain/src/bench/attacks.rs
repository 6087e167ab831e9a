//! Evaluation benchmarks: whole attacks of a *trained* model on fixed test points, timed
//! end to end (AutoAttack, Square, APGD-T).
//!
//! The throughput workloads of the parent module use random weights and random inputs,
//! which is right for a training step (its cost does not depend on what the weights are)
//! and wrong for an evaluation: an attack's cost is decided by how many points stay robust
//! and for how long, so it is only meaningful on a model that has something to defend. The
//! model and the points are the caller's (`advtrain bench --run DIR --limit N` takes a
//! trained run and the first N points of its test set), and the PyTorch peer
//! (`bench/peer_pytorch.py --run DIR`) attacks the same weights on the same points.
//!
//! Each attack runs as the evaluation runs it: on the points the model classifies correctly
//! when clean (the ensemble's stages each on those still robust), in batches of
//! `batch_size`, with the evaluation's checks of the threat model. Its robust accuracy is
//! reported beside its time, so a faster attack cannot hide being a weaker one.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::attack::{AnyAttack, ApgdTargeted, Square};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval::ensemble::{ensemble, EnsemblePreset, Stage};
use crate::model::Classifier;
use crate::progress::Silent;
use crate::rng;
use crate::threat::ThreatModel;

use super::median_min_max;

/// One timed attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackWorkload {
    /// AutoAttack `standard`: APGD-CE, APGD-T (9 targets × 100), FAB-T (9 × 100), Square
    /// (5,000 queries), each on the points still robust.
    Autoattack,
    /// Square with 5,000 queries, the schedule rescaled to the budget (the standalone
    /// defaults of the authors' code and of torchattacks' `Square`).
    Square,
    /// APGD-T with AutoAttack's budget: 100 iterations towards each of the 9 most likely
    /// other classes (torchattacks' `APGDT(steps=100, n_classes=10)`).
    ApgdT,
}

impl AttackWorkload {
    /// Every attack workload, in the order they are run and reported.
    pub const ALL: [AttackWorkload; 3] = [
        AttackWorkload::Autoattack,
        AttackWorkload::Square,
        AttackWorkload::ApgdT,
    ];

    /// Kebab-case name as used by `--workloads`, in tables and in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            AttackWorkload::Autoattack => "autoattack",
            AttackWorkload::Square => "square",
            AttackWorkload::ApgdT => "apgd-t",
        }
    }

    /// The attacks this workload runs in sequence at `threat`.
    pub fn attacks(&self, threat: ThreatModel) -> Vec<AnyAttack> {
        match self {
            AttackWorkload::Autoattack => EnsemblePreset::Standard.attacks(threat),
            AttackWorkload::Square => vec![AnyAttack::Square(Square::new(threat))],
            AttackWorkload::ApgdT => vec![AnyAttack::ApgdTargeted(ApgdTargeted::new(threat))],
        }
    }
}

impl fmt::Display for AttackWorkload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttackWorkload {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        AttackWorkload::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown attack workload '{s}': expected autoattack, square or apgd-t"
                ))
            })
    }
}

/// What to attack and how often.
#[derive(Clone, Debug)]
pub struct AttackBenchConfig {
    /// The attacks to time, in [`AttackWorkload::ALL`] order whatever the order given.
    pub workloads: Vec<AttackWorkload>,
    /// The threat model every attack uses.
    pub threat: ThreatModel,
    /// Points per attacked batch (the evaluation's `--batch-size`, default 256).
    pub batch_size: usize,
    /// Timed runs of each attack over all the points (each is a whole evaluation, so 1 is
    /// the default); the median, fastest and slowest are reported.
    pub reps: usize,
    /// Seeds the attacks' randomness; every repetition starts from the same seed.
    pub seed: u64,
}

/// The timing and the outcome of one attack workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackMeasurement {
    /// The attacked model's name (e.g. the run directory).
    pub model: String,
    /// The workload's name ([`AttackWorkload::as_str`]).
    pub workload: String,
    /// Test points given to the attack (clean-misclassified ones included, not attacked).
    pub points: usize,
    /// Wall-clock seconds of the whole attack at the median repetition, clean pass
    /// included.
    pub seconds_median: f64,
    /// Seconds of the fastest repetition.
    pub seconds_min: f64,
    /// Seconds of the slowest repetition.
    pub seconds_max: f64,
    /// Points per second at the median repetition.
    pub points_per_s_median: f64,
    /// Clean accuracy on the points.
    pub clean_accuracy: f64,
    /// Robust accuracy after the attack (the same in every repetition: the seed is fixed).
    pub robust_accuracy: f64,
    /// The attack stages of the last repetition (one for a single attack): points
    /// attacked, broken and seconds each.
    pub stages: Vec<Stage>,
}

/// Times each configured attack on `model` over `data`; `on_done` is called after each.
pub fn bench_attacks<M: Classifier>(
    name: &str,
    model: &M,
    data: &Dataset,
    config: &AttackBenchConfig,
    on_done: &mut dyn FnMut(&AttackMeasurement),
) -> Result<Vec<AttackMeasurement>> {
    if config.reps == 0 {
        return Err(Error::config("--attack-reps must be >= 1"));
    }
    if config.batch_size == 0 {
        return Err(Error::config("--attack-batch must be >= 1"));
    }
    if data.is_empty() {
        return Err(Error::config(
            "no test points to attack (--limit 0, or an empty test set)",
        ));
    }
    config.threat.validate()?;
    let mut out = Vec::new();
    for workload in AttackWorkload::ALL {
        if !config.workloads.contains(&workload) {
            continue;
        }
        let attacks = workload.attacks(config.threat);
        let mut times = Vec::with_capacity(config.reps);
        let mut last = None;
        for _ in 0..config.reps {
            let mut rng = rng::seeded(config.seed);
            let start = Instant::now();
            let result = ensemble(
                workload.as_str(),
                model,
                data,
                &attacks,
                config.batch_size,
                &mut rng,
                &Silent,
            )?;
            times.push(start.elapsed().as_secs_f64());
            last = Some(result);
        }
        let result = last.expect("reps >= 1");
        let (median, min, max) = median_min_max(&times);
        let m = AttackMeasurement {
            model: name.to_string(),
            workload: workload.as_str().to_string(),
            points: data.len(),
            seconds_median: median,
            seconds_min: min,
            seconds_max: max,
            points_per_s_median: data.len() as f64 / median,
            clean_accuracy: result.clean.value,
            robust_accuracy: result.robust.value,
            stages: result.stages,
        };
        on_done(&m);
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_names_round_trip_and_unknown_ones_are_refused() {
        for w in AttackWorkload::ALL {
            assert_eq!(w.as_str().parse::<AttackWorkload>().unwrap(), w);
        }
        let err = "fab".parse::<AttackWorkload>().unwrap_err().to_string();
        assert!(err.contains("autoattack, square or apgd-t"), "{err}");
    }

    #[test]
    fn the_autoattack_workload_is_the_standard_ensemble() {
        let threat = ThreatModel::linf(0.1);
        let names = |w: AttackWorkload| -> Vec<String> {
            w.attacks(threat)
                .iter()
                .map(crate::attack::Attack::name)
                .collect()
        };
        let standard: Vec<String> = EnsemblePreset::Standard
            .attacks(threat)
            .iter()
            .map(crate::attack::Attack::name)
            .collect();
        assert_eq!(names(AttackWorkload::Autoattack), standard);
        assert_eq!(
            names(AttackWorkload::Square),
            ["square-5000 linf eps=0.1 p_init=0.8"]
        );
        assert!(names(AttackWorkload::ApgdT)[0].starts_with("apgd-t-100x9targets"));
    }
}
