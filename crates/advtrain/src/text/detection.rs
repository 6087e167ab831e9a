//! Detection metrics for binary filters, computed the way filters are tuned and compared:
//! the score threshold at a fixed false-positive rate (chosen on benign validation texts),
//! detection rate (TPR) at that threshold, and ROC and precision–recall curves with their
//! areas.
//!
//! A text is *detected* when its malicious-class score is at least the threshold. Scores
//! are the filter's probability of the malicious class; nothing here assumes calibration.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Points kept of a curve in a record: enough to draw it, small enough to read the file.
pub const CURVE_POINTS: usize = 101;

/// The smallest threshold whose false-positive rate on `benign` scores is at most `fpr`:
/// `t` such that at most `floor(fpr · n)` benign scores are `>= t`. Ties at the cut are
/// all left undetected, so the realised rate is never above the target.
pub fn threshold_at_fpr(benign: &[f32], fpr: f64) -> Result<f32> {
    if benign.is_empty() {
        return Err(Error::config(
            "no benign validation texts to choose the threshold on",
        ));
    }
    if !(0.0..1.0).contains(&fpr) || !fpr.is_finite() {
        return Err(Error::config(format!("--fpr must be in [0, 1), got {fpr}")));
    }
    if let Some(bad) = benign.iter().find(|s| !s.is_finite()) {
        return Err(Error::config(format!(
            "a benign validation score is {bad}: the filter's scores must be finite"
        )));
    }
    let mut sorted = benign.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr * sorted.len() as f64 + 1e-9).floor() as usize;
    // Every score strictly above the (allowed)-th highest is detected; the threshold sits
    // just above that score so it and its ties are not.
    let cut = sorted[allowed.min(sorted.len() - 1)];
    Ok(if allowed >= sorted.len() {
        f32::NEG_INFINITY
    } else {
        next_up(cut)
    })
}

/// The next representable f32 above `x` (`f32::next_up` is not stable on every toolchain
/// this builds with).
fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let bits = x.to_bits();
    f32::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
}

/// Share of `scores` at or above `threshold` (0 for none).
pub fn rate_at(scores: &[f32], threshold: f32) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    scores.iter().filter(|&&s| s >= threshold).count() as f64 / scores.len() as f64
}

/// A ROC or precision–recall curve and the area under it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Area under the curve: ROC AUC (trapezoids), or average precision for PR.
    pub auc: f64,
    /// `(x, y)` points in order of decreasing threshold, thinned to [`CURVE_POINTS`]:
    /// `(FPR, TPR)` for ROC, `(recall, precision)` for PR.
    pub points: Vec<[f64; 2]>,
}

/// Operating points at every distinct threshold, highest first: `(false positives, true
/// positives)` counted at `score >= threshold`.
fn operating_points(positives: &[f32], negatives: &[f32]) -> Vec<(usize, usize)> {
    let mut all: Vec<(f32, bool)> = positives
        .iter()
        .map(|&s| (s, true))
        .chain(negatives.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = vec![(0, 0)];
    let (mut fp, mut tp) = (0, 0);
    for (i, &(s, pos)) in all.iter().enumerate() {
        if pos {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_tie = all.get(i + 1).is_none_or(|n| n.0 != s);
        if last_of_tie {
            out.push((fp, tp));
        }
    }
    out
}

/// ROC curve of malicious (`positives`) against benign (`negatives`) scores. Either side
/// empty: an error, as the curve is undefined.
pub fn roc(positives: &[f32], negatives: &[f32]) -> Result<Curve> {
    check_sides(positives, negatives)?;
    let (p, n) = (positives.len() as f64, negatives.len() as f64);
    let points: Vec<[f64; 2]> = operating_points(positives, negatives)
        .into_iter()
        .map(|(fp, tp)| [fp as f64 / n, tp as f64 / p])
        .collect();
    let auc = points
        .windows(2)
        .map(|w| (w[1][0] - w[0][0]) * (w[1][1] + w[0][1]) / 2.0)
        .sum();
    Ok(Curve {
        auc,
        points: thin(points),
    })
}

/// Precision–recall curve; its area is the average precision Σ (Rᵢ − Rᵢ₋₁)·Pᵢ (no
/// interpolation, as scikit-learn's `average_precision_score`).
pub fn precision_recall(positives: &[f32], negatives: &[f32]) -> Result<Curve> {
    check_sides(positives, negatives)?;
    let p = positives.len() as f64;
    let mut points = Vec::new();
    let mut auc = 0.0;
    let mut last_recall = 0.0;
    for (fp, tp) in operating_points(positives, negatives).into_iter().skip(1) {
        let recall = tp as f64 / p;
        let precision = if tp + fp == 0 {
            1.0
        } else {
            tp as f64 / (tp + fp) as f64
        };
        auc += (recall - last_recall) * precision;
        last_recall = recall;
        points.push([recall, precision]);
    }
    Ok(Curve {
        auc,
        points: thin(points),
    })
}

fn check_sides(positives: &[f32], negatives: &[f32]) -> Result<()> {
    if positives.is_empty() || negatives.is_empty() {
        return Err(Error::config(format!(
            "a detection curve needs malicious and benign texts ({} and {} given)",
            positives.len(),
            negatives.len()
        )));
    }
    if positives.iter().chain(negatives).any(|s| !s.is_finite()) {
        return Err(Error::config("a score is not finite"));
    }
    Ok(())
}

/// At most [`CURVE_POINTS`] points, evenly spaced along the curve, first and last kept.
fn thin(points: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    if points.len() <= CURVE_POINTS {
        return points;
    }
    let last = points.len() - 1;
    (0..CURVE_POINTS)
        .map(|k| points[k * last / (CURVE_POINTS - 1)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_never_exceeds_the_target_rate() {
        let benign: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let t = threshold_at_fpr(&benign, 0.05).unwrap();
        assert!(rate_at(&benign, t) <= 0.05);
        assert_eq!(rate_at(&benign, t), 0.05);
        // All tied: nothing may be detected at a 1% target.
        let tied = vec![0.5f32; 50];
        let t = threshold_at_fpr(&tied, 0.01).unwrap();
        assert_eq!(rate_at(&tied, t), 0.0);
        assert!(threshold_at_fpr(&[], 0.01).is_err());
        assert!(threshold_at_fpr(&[0.1], 1.5).is_err());
        assert!(threshold_at_fpr(&[f32::NAN], 0.1).is_err());
    }

    #[test]
    fn curves_of_perfect_random_and_inverted_scores() {
        let pos = [0.9f32, 0.8, 0.7];
        let neg = [0.1f32, 0.2, 0.3];
        assert!((roc(&pos, &neg).unwrap().auc - 1.0).abs() < 1e-12);
        assert!((precision_recall(&pos, &neg).unwrap().auc - 1.0).abs() < 1e-12);
        assert!(roc(&neg, &pos).unwrap().auc.abs() < 1e-12);
        let same = [0.5f32; 4];
        assert!((roc(&same, &same).unwrap().auc - 0.5).abs() < 1e-12);
        // One positive ranked below one negative of two each: AUC 3/4.
        assert!((roc(&[0.9, 0.4], &[0.5, 0.1]).unwrap().auc - 0.75).abs() < 1e-12);
        // AP of ranks P N P: (1/2)·1 + (1/2)·(2/3).
        let ap = precision_recall(&[0.9, 0.5], &[0.7]).unwrap().auc;
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        assert!(roc(&[], &neg).is_err());
    }
}
