//! The verdict maths of the audit comparison: each axis's difference from the baseline with
//! its 95% interval, and the verdict read off it.

use rand::Rng as _;

use crate::eval::audit::Audit;
use crate::eval::calibration::{newcombe_difference, Calibration, ClassDisparity};
use crate::eval::Accuracy;
use crate::rng::AdvRng;

/// Draws per run of the ECE bootstrap: enough for stable 2.5/97.5 percentiles.
pub const ECE_DRAWS: usize = 2000;

/// Which way an axis improves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Accuracies.
    Higher,
    /// Calibration error, class spread, confidence on noise.
    Lower,
}

/// A run against the baseline on one axis, at 95%.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The interval excludes 0 on the better side.
    Better,
    /// The interval excludes 0 on the worse side.
    Worse,
    /// The interval holds 0.
    NoDifference,
}

impl Change {
    /// The word the report prints (never colour alone).
    pub fn word(self) -> &'static str {
        match self {
            Change::Better => "better",
            Change::Worse => "worse",
            Change::NoDifference => "no difference",
        }
    }

    pub(super) fn css(self) -> &'static str {
        match self {
            Change::Better => "better",
            Change::Worse => "worse",
            Change::NoDifference => "same",
        }
    }
}

/// A difference (this run minus the baseline) with its 95% interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Difference {
    /// This run's value minus the baseline's.
    pub delta: f64,
    /// 95% interval for `delta`.
    pub ci95: [f64; 2],
}

impl Difference {
    /// "better" or "worse" when the interval excludes 0, read by `better`.
    pub fn verdict(&self, better: Better) -> Change {
        let up = self.ci95[0] > 0.0;
        let down = self.ci95[1] < 0.0;
        match (up, down, better) {
            (true, _, Better::Higher) | (_, true, Better::Lower) => Change::Better,
            (true, _, Better::Lower) | (_, true, Better::Higher) => Change::Worse,
            _ => Change::NoDifference,
        }
    }

    fn normal(delta: f64, variance: f64) -> Self {
        let half = 1.96 * variance.max(0.0).sqrt();
        Self {
            delta,
            ci95: [delta - half, delta + half],
        }
    }
}

/// `run - baseline` with Newcombe's interval (independent samples: conservative for two runs
/// scored on the same images).
pub fn accuracy_difference(run: &Accuracy, baseline: &Accuracy) -> Difference {
    Difference {
        delta: run.value - baseline.value,
        ci95: newcombe_difference(run, baseline),
    }
}

/// A mean accuracy counted as `round(mean · n)` of `n`: the interval of a mean over
/// correlated corrupted copies of `n` images, no narrower than `n` images allow.
pub fn mean_accuracy(mean: f64, n: usize) -> Accuracy {
    let correct = (mean.clamp(0.0, 1.0) * n as f64).round() as usize;
    Accuracy::new(correct.min(n), n)
}

/// Difference of two mean accuracies over `n_run` and `n_baseline` images: the exact
/// difference of the means, with the width of Newcombe's interval for the
/// [`mean_accuracy`] counts on either side (rounding to counts must not hide a difference
/// smaller than one image, nor invent one).
pub fn mean_difference(run: f64, n_run: usize, baseline: f64, n_baseline: usize) -> Difference {
    let counted = accuracy_difference(
        &mean_accuracy(run, n_run),
        &mean_accuracy(baseline, n_baseline),
    );
    let delta = run - baseline;
    Difference {
        delta,
        ci95: [
            delta - (counted.delta - counted.ci95[0]),
            delta + (counted.ci95[1] - counted.delta),
        ],
    }
}

/// Variance of a proportion's estimate, with Agresti and Coull's two successes and two
/// failures added: the plain p(1 − p)/n is 0 for a class at 0% or 100%, whose accuracy is
/// not known exactly either; away from the edges the two agree. 0 without examples.
fn proportion_variance(a: &Accuracy) -> f64 {
    if a.n == 0 {
        return 0.0;
    }
    let n = a.n as f64 + 4.0;
    let p = (a.correct as f64 + 2.0) / n;
    p * (1.0 - p) / n
}

/// Difference of two runs' class spreads (best − worst accuracy), normal approximation: the
/// spread's variance is the best and the worst class's variances summed, and the two runs'
/// variances add.
pub fn spread_difference(run: &ClassDisparity, baseline: &ClassDisparity) -> Difference {
    let variance =
        |d: &ClassDisparity| proportion_variance(&d.best) + proportion_variance(&d.worst);
    Difference::normal(
        run.spread - baseline.spread,
        variance(run) + variance(baseline),
    )
}

/// Difference of mean confidence on uniform noise, normal approximation over the `m` noise
/// images of each audit.
pub fn noise_confidence_difference(run: &Audit, baseline: &Audit) -> Difference {
    let term = |a: &Audit| a.noise_confidence_sd.powi(2) / a.config.noise_examples.max(1) as f64;
    Difference::normal(
        run.noise_confidence - baseline.noise_confidence,
        term(run) + term(baseline),
    )
}

/// Difference of expected calibration errors with a parametric bootstrap from the
/// reliability bins: each draw redraws every bin's accuracy as Binomial(count, accuracy) /
/// count (confidences fixed) and recomputes ECE; the interval is the 2.5 and 97.5
/// percentiles of the `draws` differences, shifted by the bootstrap's estimate of its own
/// bias. The shift matters: |accuracy − confidence| of a redrawn bin is above the observed
/// one on average, most for small bins, so without it a well-calibrated run on few images
/// would look worse than one on many whatever their calibration.
pub fn ece_difference(
    run: &Calibration,
    baseline: &Calibration,
    draws: usize,
    seed: u64,
) -> Difference {
    let delta = run.ece - baseline.ece;
    let draws = draws.max(1);
    let mut rng = crate::rng::seeded(seed);
    let mut diffs: Vec<f64> = (0..draws)
        .map(|_| redrawn_ece(run, &mut rng) - redrawn_ece(baseline, &mut rng))
        .collect();
    let bias = diffs.iter().sum::<f64>() / draws as f64 - delta;
    diffs.sort_by(f64::total_cmp);
    let at = |q: f64| diffs[(q * (draws - 1) as f64).round() as usize] - bias;
    Difference {
        delta,
        ci95: [at(0.025), at(0.975)],
    }
}

/// One bootstrap draw of `calibration`'s ECE.
fn redrawn_ece(calibration: &Calibration, rng: &mut AdvRng) -> f64 {
    let n: usize = calibration.bins.iter().map(|b| b.count).sum();
    if n == 0 {
        return 0.0;
    }
    calibration
        .bins
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| {
            // Redrawn from Agresti and Coull's shrunk accuracy: a bin 100% (or 0%) accurate
            // would otherwise never vary; the bias correction takes out the shift.
            let correct = (b.accuracy * b.count as f64).round();
            let p = (correct + 2.0) / (b.count as f64 + 4.0);
            let accuracy = binomial(rng, b.count, p) as f64 / b.count as f64;
            b.count as f64 / n as f64 * (accuracy - b.mean_confidence).abs()
        })
        .sum()
}

/// A Binomial(`n`, `p`) draw: summed coin flips for small `n`, inversion of the CDF when
/// the variance is small, else the rounded normal approximation (variance ≥ 25, where it is
/// accurate to well under the percentiles' own noise). A few thousand draws over 15 bins of a
/// 10,000-image test set stay in milliseconds this way.
fn binomial(rng: &mut AdvRng, n: usize, p: f64) -> usize {
    if p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    if n <= 64 {
        return (0..n).filter(|_| rng.random::<f64>() < p).count();
    }
    let q = p.min(1.0 - p);
    let variance = n as f64 * q * (1.0 - q);
    let k = if variance >= 25.0 {
        let z = standard_normal(rng);
        (n as f64 * q + variance.sqrt() * z)
            .round()
            .clamp(0.0, n as f64) as usize
    } else {
        binomial_inversion(rng, n, q)
    };
    if q < p {
        n - k
    } else {
        k
    }
}

/// Inversion of the Binomial(`n`, `q`) CDF by sequential search (`q ≤ 1/2`, `nq` small).
fn binomial_inversion(rng: &mut AdvRng, n: usize, q: f64) -> usize {
    let u: f64 = rng.random();
    let ratio = q / (1.0 - q);
    let mut prob = (n as f64 * (1.0 - q).ln()).exp();
    let (mut k, mut cdf) = (0, prob);
    while u > cdf && k < n {
        prob *= (n - k) as f64 / (k + 1) as f64 * ratio;
        k += 1;
        cdf += prob;
    }
    k
}

/// One standard normal draw (Box–Muller).
fn standard_normal(rng: &mut AdvRng) -> f64 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::audit::tests::{audit, calibration};

    #[test]
    fn a_clear_accuracy_difference_is_better_or_worse_and_equal_ones_are_not() {
        let low = Accuracy::new(700, 1000);
        let high = Accuracy::new(850, 1000);
        assert_eq!(
            accuracy_difference(&high, &low).verdict(Better::Higher),
            Change::Better
        );
        assert_eq!(
            accuracy_difference(&low, &high).verdict(Better::Higher),
            Change::Worse
        );
        let same = accuracy_difference(&low, &low);
        assert_eq!(same.verdict(Better::Higher), Change::NoDifference);
        assert!(same.ci95[0] < 0.0 && same.ci95[1] > 0.0);
        // Lower-is-better axes read the same interval the other way.
        assert_eq!(
            accuracy_difference(&high, &low).verdict(Better::Lower),
            Change::Worse
        );
        // A mean is counted on n images.
        assert_eq!(mean_accuracy(0.8234, 1000), Accuracy::new(823, 1000));
        // Means one image apart keep their difference, with the counted interval's width.
        let d = mean_difference(0.6481, 120, 0.6494, 120);
        assert!((d.delta + 0.0013).abs() < 1e-12, "{d:?}");
        let counted = accuracy_difference(&Accuracy::new(78, 120), &Accuracy::new(78, 120));
        assert!((d.ci95[1] - d.ci95[0] - (counted.ci95[1] - counted.ci95[0])).abs() < 1e-12);
    }

    #[test]
    fn spread_and_noise_intervals_follow_the_normal_approximation() {
        let cal = calibration([0.55, 0.75, 0.95], [300, 300, 400]);
        let a = audit(0.8, 0.5, cal.clone());
        let b = audit(0.8, 0.5, cal);
        let d = spread_difference(&a.clean_disparity, &b.clean_disparity);
        assert!(d.delta.abs() < 1e-12 && d.verdict(Better::Lower) == Change::NoDifference);
        // Spread 0.1 each; best 425 of 500, worst 375 of 500, two runs.
        let var = |k: f64| (k + 2.0) / 504.0 * (1.0 - (k + 2.0) / 504.0) / 504.0;
        let v = 2.0 * (var(425.0) + var(375.0));
        assert!((d.ci95[1] - 1.96 * v.sqrt()).abs() < 1e-9, "{d:?}");
        // Every class at 100% in both runs: still an interval, not a point.
        let perfect = audit(0.95, 0.5, calibration([0.55, 0.75, 0.95], [1, 1, 1]));
        let d = spread_difference(&perfect.clean_disparity, &perfect.clean_disparity);
        assert!(d.ci95[1] > 0.01, "{d:?}");
        let mut c = b.clone();
        c.noise_confidence = 0.9;
        let d = noise_confidence_difference(&c, &a);
        assert!((d.delta - 0.4).abs() < 1e-12);
        let half = 1.96 * (2.0 * 0.01 / 1000.0f64).sqrt();
        assert!((d.ci95[0] - (0.4 - half)).abs() < 1e-9);
        assert_eq!(d.verdict(Better::Lower), Change::Worse);
    }

    #[test]
    fn the_ece_bootstrap_holds_zero_for_equal_bins_and_excludes_it_for_very_different_ones() {
        let calibrated = calibration([0.55, 0.75, 0.95], [3000, 3000, 4000]);
        let d = ece_difference(&calibrated, &calibrated, ECE_DRAWS, 1);
        assert!(d.ci95[0] < 0.0 && d.ci95[1] > 0.0, "{d:?}");
        assert_eq!(d.verdict(Better::Lower), Change::NoDifference);
        let overconfident = calibration([0.3, 0.45, 0.6], [3000, 3000, 4000]);
        let d = ece_difference(&overconfident, &calibrated, ECE_DRAWS, 1);
        assert!((d.delta - overconfident.ece).abs() < 1e-12);
        assert!(d.ci95[0] > 0.2, "{d:?}");
        assert_eq!(d.verdict(Better::Lower), Change::Worse);
        // Same seed, same interval.
        assert_eq!(d, ece_difference(&overconfident, &calibrated, ECE_DRAWS, 1));
        // Bins 100% accurate in both runs still vary.
        let sure = calibration([1.0, 1.0, 1.0], [100, 100, 100]);
        let d = ece_difference(&sure, &sure, ECE_DRAWS, 3);
        assert!(d.ci95[0] < -0.005 && d.ci95[1] > 0.005, "{d:?}");
        // Calibrated on 60 images or on 60,000: no difference, once the bootstrap's upward
        // bias on small bins is taken out.
        let small = calibration([0.55, 0.75, 0.95], [20, 20, 20]);
        let large = calibration([0.55, 0.75, 0.95], [20_000, 20_000, 20_000]);
        let d = ece_difference(&small, &large, ECE_DRAWS, 2);
        assert_eq!(d.verdict(Better::Lower), Change::NoDifference, "{d:?}");
    }

    #[test]
    fn binomial_draws_have_the_right_mean_and_variance_on_every_path() {
        let mut rng = crate::rng::seeded(7);
        for (n, p) in [(40, 0.3), (500, 0.01), (500, 0.995), (10_000, 0.4)] {
            let draws: Vec<f64> = (0..4000).map(|_| binomial(&mut rng, n, p) as f64).collect();
            let mean = draws.iter().sum::<f64>() / draws.len() as f64;
            let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
            let (m, v) = (n as f64 * p, n as f64 * p * (1.0 - p));
            assert!(
                (mean - m).abs() < 4.0 * (v / 4000.0).sqrt() + 1e-9,
                "{n} {p}: {mean}"
            );
            assert!((var / v - 1.0).abs() < 0.15, "{n} {p}: {var} vs {v}");
            assert!(draws.iter().all(|&d| (0.0..=n as f64).contains(&d)));
        }
        assert_eq!(binomial(&mut rng, 10, 0.0), 0);
        assert_eq!(binomial(&mut rng, 10, 1.0), 10);
    }
}
