//! The side-effects audit of one model: what its robustness at the training threat model
//! comes with elsewhere. Common corruptions at five severities, other threat models (the
//! other norm, twice the radius, rotations and shifts), per-class disparity and calibration,
//! clean and under attack. Runs beside each other, these say what adversarial training bought
//! and what it cost; the run layer records an [`Audit`] as `audit.json`.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::calibration::{
    calibration, class_disparity, mean_confidence, model_probabilities, softmax,
    uniform_noise_like, Calibration, ClassDisparity, ECE_BINS,
};
use super::spatial::{spatial_worst_case, SpatialGrid};
use super::{clean_flags, first_device, Accuracy};
use crate::attack::{float_vec, int_vec, Attack, Pgd};
use crate::data::corrupt::{corrupt_dataset, Corruption};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::progress::Progress;
use crate::rng::AdvRng;
use crate::threat::{Norm, ThreatModel};

/// What the audit measures and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditConfig {
    /// The training threat model: robust accuracy and calibration under attack are measured
    /// here, with PGD.
    pub threat: ThreatModel,
    /// PGD steps for every gradient attack of the audit (20, as the end-of-training PGD).
    pub steps: usize,
    /// The corruptions, each at every severity 1–5.
    pub corruptions: Vec<Corruption>,
    /// The rotations and shifts of the spatial attack.
    pub grid: SpatialGrid,
    /// Uniform-noise images whose mean confidence is measured.
    pub noise_examples: usize,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Seed of the corruptions, the noise and the attacks' random starts.
    pub seed: u64,
}

impl AuditConfig {
    /// Every corruption, PGD-20, Engstrom et al.'s grid, 1,000 noise images, at `threat`.
    pub fn new(threat: ThreatModel) -> Self {
        Self {
            threat,
            steps: 20,
            corruptions: Corruption::ALL.to_vec(),
            grid: SpatialGrid::engstrom(),
            noise_examples: 1000,
            batch_size: 256,
            seed: 0,
        }
    }
}

/// The radius in the other norm that the audit attacks at, for images of `dims` values: an
/// L∞ radius ε becomes the L2 radius ε·√d/4, and an L2 radius r the L∞ radius 4r/√d. For
/// MNIST's usual L∞ 0.3 that is L2 2.1, near the L2 2.0 RobustBench-style MNIST evaluations
/// use; for Fashion-MNIST's L∞ 0.1 it is L2 0.7.
pub fn other_norm(threat: ThreatModel, dims: usize) -> ThreatModel {
    let root = (dims as f32).sqrt();
    match threat.norm {
        Norm::Linf => ThreatModel::l2(threat.eps * root / 4.0),
        Norm::L2 => ThreatModel::linf(4.0 * threat.eps / root),
    }
}

/// One corruption's accuracy at each severity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorruptionAccuracy {
    /// The corruption.
    pub corruption: Corruption,
    /// Accuracy at severities 1 to 5, in order.
    pub by_severity: Vec<Accuracy>,
}

impl CorruptionAccuracy {
    /// The mean over severities.
    pub fn mean(&self) -> f64 {
        let n = self.by_severity.len().max(1) as f64;
        self.by_severity.iter().map(|a| a.value).sum::<f64>() / n
    }
}

/// Robust accuracy under one threat model other than the training one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreatModelAccuracy {
    /// Short name: `other-norm`, `twice-eps`, `spatial`.
    pub name: String,
    /// The attack and its radius, in words.
    pub description: String,
    /// Correct clean and under the attack.
    pub robust: Accuracy,
}

/// One class's clean and robust accuracy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassRow {
    /// The class index.
    pub class: usize,
    /// Its name.
    pub name: String,
    /// Clean accuracy on its test examples.
    pub clean: Accuracy,
    /// Robust accuracy (PGD at the training threat model) on them.
    pub robust: Accuracy,
}

/// Everything the audit measured of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// How it was measured.
    pub config: AuditConfig,
    /// Test examples.
    pub n: usize,
    /// Clean accuracy.
    pub clean: Accuracy,
    /// Robust accuracy under PGD at the training threat model.
    pub robust: Accuracy,
    /// Each corruption's accuracy by severity.
    pub corruptions: Vec<CorruptionAccuracy>,
    /// The mean over every corruption and severity (the usual "mean corruption accuracy").
    pub mean_corruption_accuracy: f64,
    /// The other norm, twice the radius, and the spatial attack.
    pub threat_models: Vec<ThreatModelAccuracy>,
    /// Per class, clean and robust.
    pub per_class: Vec<ClassRow>,
    /// Worst class and spread, clean.
    pub clean_disparity: ClassDisparity,
    /// Worst class and spread, under attack.
    pub robust_disparity: ClassDisparity,
    /// Calibration on the clean test images.
    pub calibration_clean: Calibration,
    /// Calibration on their PGD adversarial versions.
    pub calibration_attacked: Calibration,
    /// Mean top-class probability on uniform-noise images (inputs of no class).
    pub noise_confidence: f64,
    /// Its standard deviation over the noise images (for the interval of a difference).
    pub noise_confidence_sd: f64,
    /// Wall-clock seconds for the whole audit.
    pub seconds: f64,
}

/// Audits `model` on `test` as `config` says (see the module docs). `progress` shows each
/// part with its ETA.
pub fn audit<M: Classifier>(
    model: &M,
    test: &Dataset,
    config: &AuditConfig,
    progress: &dyn Progress,
) -> Result<Audit> {
    if test.is_empty() {
        return Err(Error::config("the audit needs at least one test example"));
    }
    config.threat.validate()?;
    let start = Instant::now();
    let batch = config.batch_size.max(1);
    // One clean pass serves both accuracy and calibration.
    let clean_probabilities = model_probabilities(model, test, batch, progress)?;
    let k = test.num_classes;
    let clean_flags: Vec<bool> = clean_probabilities
        .chunks_exact(k)
        .zip(&test.labels)
        .map(|(row, &label)| argmax(row) == usize::from(label))
        .collect();
    let clean = count(&clean_flags);
    let mut rng = crate::rng::derived(config.seed, 0xA0D1);
    let attacked = attacked_pass(model, test, config, &clean_flags, &mut rng, progress)?;
    let corruptions = corruption_accuracies(model, test, config, progress)?;
    let mean_corruption_accuracy = mean_of(&corruptions);
    let threat_models = other_threat_models(model, test, config, &mut rng, progress)?;
    let per_class = per_class_rows(test, &clean_flags, &attacked.robust_flags);
    let noise = uniform_noise_like(test, config.noise_examples.max(1), config.seed)?;
    let noise_probabilities = model_probabilities(model, &noise, batch, progress)?;
    Ok(Audit {
        config: config.clone(),
        n: test.len(),
        clean,
        robust: count(&attacked.robust_flags),
        corruptions,
        mean_corruption_accuracy,
        threat_models,
        clean_disparity: class_disparity(&per_class.iter().map(|r| r.clean).collect::<Vec<_>>())?,
        robust_disparity: class_disparity(&per_class.iter().map(|r| r.robust).collect::<Vec<_>>())?,
        per_class,
        calibration_clean: calibration(&clean_probabilities, k, &test.labels, ECE_BINS)?,
        calibration_attacked: calibration(&attacked.probabilities, k, &test.labels, ECE_BINS)?,
        noise_confidence: mean_confidence(&noise_probabilities, k)?,
        noise_confidence_sd: top_probability_sd(&noise_probabilities, k),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The PGD pass at the training threat model: per example robust (correct clean and on its
/// adversarial version) and the adversarial version's probabilities, for calibration.
struct Attacked {
    robust_flags: Vec<bool>,
    probabilities: Vec<f32>,
}

fn attacked_pass<M: Classifier>(
    model: &M,
    test: &Dataset,
    config: &AuditConfig,
    clean_flags: &[bool],
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Attacked> {
    let model = model.valid();
    let device = first_device(&model);
    let pgd = Pgd::new(config.threat).steps(config.steps);
    let order: Vec<usize> = (0..test.len()).collect();
    let (mut robust_flags, mut probabilities) = (Vec::new(), Vec::new());
    progress.begin("audit: PGD at the training radius", test.len() as u64);
    for chunk in order.chunks(config.batch_size.max(1)) {
        let (x, y) = test.batch(chunk, &device);
        let x_adv = pgd.perturb(&model, x.clone(), y.clone(), rng);
        let moved = config.threat.max_perturbation(&x_adv, &x);
        if moved > config.threat.eps * (1.0 + 1e-4) + 1e-6 {
            return Err(Error::config(format!(
                "PGD left its threat model ({} > eps {}): not scored",
                moved, config.threat.eps
            )));
        }
        let logits = model.logits(x_adv);
        let k = logits.dims()[1];
        let values = float_vec(&logits);
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::Diverged(
                "the model produced NaN or infinite logits on adversarial inputs".into(),
            ));
        }
        let probs = softmax(&values, k)?;
        let labels = int_vec(&y);
        for (i, (row, label)) in probs.chunks_exact(k).zip(labels).enumerate() {
            let pred = argmax(row);
            robust_flags.push(clean_flags[chunk[i]] && pred as i64 == label);
        }
        probabilities.extend(probs);
        progress.advance(chunk.len() as u64, "");
    }
    progress.end();
    Ok(Attacked {
        robust_flags,
        probabilities,
    })
}

/// Accuracy on every corruption at every severity.
fn corruption_accuracies<M: Classifier>(
    model: &M,
    test: &Dataset,
    config: &AuditConfig,
    progress: &dyn Progress,
) -> Result<Vec<CorruptionAccuracy>> {
    config
        .corruptions
        .iter()
        .map(|&corruption| {
            let by_severity = (1..=5u8)
                .map(|severity| {
                    let corrupted = corrupt_dataset(test, corruption, severity, config.seed)?;
                    let flags = clean_flags(model, &corrupted, config.batch_size, progress);
                    Ok(count(&flags))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(CorruptionAccuracy {
                corruption,
                by_severity,
            })
        })
        .collect()
}

/// The other norm and twice the radius (PGD), and the spatial grid.
fn other_threat_models<M: Classifier>(
    model: &M,
    test: &Dataset,
    config: &AuditConfig,
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<Vec<ThreatModelAccuracy>> {
    let batch = config.batch_size.max(1);
    let mut out = Vec::new();
    let twice = ThreatModel {
        norm: config.threat.norm,
        eps: 2.0 * config.threat.eps,
    };
    for (name, threat) in [
        ("other-norm", other_norm(config.threat, test.image_len())),
        ("twice-eps", twice),
    ] {
        let pgd = Pgd::new(threat).steps(config.steps);
        let result = super::evaluate(model, test, &pgd, batch, rng, progress)?;
        out.push(ThreatModelAccuracy {
            name: name.into(),
            description: pgd.name(),
            robust: result.robust,
        });
    }
    let spatial = spatial_worst_case(model, test, &config.grid, batch, progress)?;
    out.push(ThreatModelAccuracy {
        name: "spatial".into(),
        description: format!(
            "worst of {} rotations and shifts (Engstrom et al. 2019)",
            config.grid.len()
        ),
        robust: spatial.robust,
    });
    Ok(out)
}

fn per_class_rows(test: &Dataset, clean: &[bool], robust: &[bool]) -> Vec<ClassRow> {
    (0..test.num_classes)
        .map(|class| {
            let of = |flags: &[bool]| {
                let (mut hits, mut n) = (0, 0);
                for (&label, &f) in test.labels.iter().zip(flags) {
                    if usize::from(label) == class {
                        n += 1;
                        hits += usize::from(f);
                    }
                }
                Accuracy::new(hits, n)
            };
            ClassRow {
                class,
                name: test.class_names[class].clone(),
                clean: of(clean),
                robust: of(robust),
            }
        })
        .collect()
}

fn count(flags: &[bool]) -> Accuracy {
    Accuracy::new(flags.iter().filter(|&&f| f).count(), flags.len())
}

fn mean_of(corruptions: &[CorruptionAccuracy]) -> f64 {
    let all: Vec<f64> = corruptions
        .iter()
        .flat_map(|c| c.by_severity.iter().map(|a| a.value))
        .collect();
    all.iter().sum::<f64>() / all.len().max(1) as f64
}

/// Standard deviation of the top-class probability over the rows of `probabilities`.
fn top_probability_sd(probabilities: &[f32], k: usize) -> f64 {
    let tops: Vec<f64> = probabilities
        .chunks_exact(k.max(1))
        .map(|row| f64::from(row[argmax(row)]))
        .collect();
    let n = tops.len().max(1) as f64;
    let mean = tops.iter().sum::<f64>() / n;
    (tops.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n).sqrt()
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_norm_radius_is_stated_and_round_trips() {
        let l2 = other_norm(ThreatModel::linf(0.3), 784);
        assert_eq!(l2.norm, Norm::L2);
        assert!((l2.eps - 2.1).abs() < 1e-5, "{}", l2.eps);
        let back = other_norm(l2, 784);
        assert_eq!(back.norm, Norm::Linf);
        assert!((back.eps - 0.3).abs() < 1e-6);
    }

    #[test]
    fn per_class_rows_count_each_class_apart() {
        let data = Dataset::new(
            vec![0.0; 4],
            vec![0, 0, 1, 1],
            1,
            1,
            1,
            2,
            vec!["a".into(), "b".into()],
        )
        .unwrap();
        let rows = per_class_rows(
            &data,
            &[true, true, true, false],
            &[true, false, false, false],
        );
        assert_eq!(rows[0].clean, Accuracy::new(2, 2));
        assert_eq!(rows[0].robust, Accuracy::new(1, 2));
        assert_eq!(rows[1].clean, Accuracy::new(1, 2));
        assert_eq!(rows[1].robust, Accuracy::new(0, 2));
    }
}
