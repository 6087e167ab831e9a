//! Calibration and per-class disparity: two costs adversarial training is known to have
//! besides clean accuracy.
//!
//! - **Calibration**: expected calibration error over equal-width confidence bins (Guo et al.
//!   2017, "On calibration of modern neural networks"; 15 bins, as there), the reliability
//!   diagram's bins, and the mean confidence on inputs that carry no class at all (uniform
//!   noise), where a well-behaved model should be unsure.
//! - **Per-class disparity**: robust training can lower accuracy on some classes much more
//!   than on others (Xu et al. 2021, "To be robust or to be fair"): the worst class, the
//!   spread between best and worst, and the classes that lost most against a baseline run,
//!   each loss with a 95% interval.
//!
//! The functions take plain row-major `&[f32]` rows (probabilities or logits, one row of
//! `num_classes` per example) so that they can be tested and reused without a model;
//! [`model_probabilities`] is the one place a [`Classifier`] is run.

use serde::{Deserialize, Serialize};

use crate::attack::float_vec;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval::{first_device, Accuracy};
use crate::model::Classifier;
use crate::progress::Progress;

/// Number of confidence bins of Guo et al. 2017's expected calibration error.
pub const ECE_BINS: usize = 15;

/// One bin of a reliability diagram: the examples whose confidence lies in
/// `(lower, upper]` (the first bin also holds confidence 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge of the bin (exclusive, except 0 for the first bin).
    pub lower: f64,
    /// Upper edge of the bin (inclusive).
    pub upper: f64,
    /// Examples in the bin.
    pub count: usize,
    /// Mean confidence (largest probability) of those examples; 0 for an empty bin.
    pub mean_confidence: f64,
    /// Fraction of those examples whose predicted class is the label; 0 for an empty bin.
    pub accuracy: f64,
}

/// Calibration of a set of predictions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Examples scored.
    pub n: usize,
    /// Expected calibration error: `sum_b count_b / n * |accuracy_b - mean_confidence_b|`,
    /// a fraction in `[0, 1]`; 0 when `n` is 0.
    pub ece: f64,
    /// Maximum calibration error: the largest `|accuracy_b - mean_confidence_b|` over the
    /// non-empty bins.
    pub mce: f64,
    /// Mean confidence over all examples (above `accuracy`: over-confident).
    pub mean_confidence: f64,
    /// Accuracy of the predicted classes (argmax, first of equals).
    pub accuracy: f64,
    /// The reliability diagram, equal-width bins from 0 to 1.
    pub bins: Vec<ReliabilityBin>,
}

/// Checks that `values` holds whole rows of `num_classes` and returns their number.
fn rows(values: &[f32], num_classes: usize, what: &str) -> Result<usize> {
    if num_classes == 0 {
        return Err(Error::config(format!("{what}: the number of classes is 0")));
    }
    if !values.len().is_multiple_of(num_classes) {
        return Err(Error::config(format!(
            "{what}: {} values are not whole rows of {num_classes} classes",
            values.len()
        )));
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(Error::config(format!("{what}: a value is {v}, not finite")));
    }
    Ok(values.len() / num_classes)
}

/// Softmax of every row of `logits` (row-major, `num_classes` per row), computed stably
/// (the row's largest logit subtracted first).
pub fn softmax(logits: &[f32], num_classes: usize) -> Result<Vec<f32>> {
    rows(logits, num_classes, "logits")?;
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(num_classes) {
        let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f64> = row.iter().map(|&z| f64::from(z - top).exp()).collect();
        let total: f64 = exp.iter().sum();
        out.extend(exp.iter().map(|e| (e / total) as f32));
    }
    Ok(out)
}

/// The predicted class (first largest value) and its value.
fn top(row: &[f32]) -> (usize, f32) {
    let mut best = 0;
    for (j, &p) in row.iter().enumerate() {
        if p > row[best] {
            best = j;
        }
    }
    (best, row[best])
}

/// Calibration of `probabilities` (row-major, `num_classes` per example, e.g. from
/// [`softmax`]) against `labels`, over `bins` equal-width confidence bins ([`ECE_BINS`] for
/// the usual ECE). Confidence is the largest probability of a row; rows need not sum to 1
/// exactly. Errors on ragged rows, non-finite values, a label count that does not match, a
/// label out of range, or `bins == 0`.
pub fn calibration(
    probabilities: &[f32],
    num_classes: usize,
    labels: &[u8],
    bins: usize,
) -> Result<Calibration> {
    let n = rows(probabilities, num_classes, "probabilities")?;
    if bins == 0 {
        return Err(Error::config("calibration needs at least one bin"));
    }
    if labels.len() != n {
        return Err(Error::config(format!(
            "{n} rows of probabilities but {} labels",
            labels.len()
        )));
    }
    if let Some(&l) = labels.iter().find(|&&l| usize::from(l) >= num_classes) {
        return Err(Error::config(format!(
            "label {l} is out of range for {num_classes} classes"
        )));
    }
    let mut count = vec![0usize; bins];
    let mut conf_sum = vec![0.0f64; bins];
    let mut correct = vec![0usize; bins];
    for (row, &label) in probabilities.chunks_exact(num_classes).zip(labels) {
        let (pred, conf) = top(row);
        let conf = f64::from(conf).clamp(0.0, 1.0);
        // Bin b holds (b / B, (b + 1) / B]; confidence 0 goes to the first.
        let b = ((conf * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[b] += 1;
        conf_sum[b] += conf;
        correct[b] += usize::from(pred == usize::from(label));
    }
    let bins: Vec<ReliabilityBin> = (0..bins)
        .map(|b| {
            let k = count[b];
            let per = |x: f64| if k == 0 { 0.0 } else { x / k as f64 };
            ReliabilityBin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                count: k,
                mean_confidence: per(conf_sum[b]),
                accuracy: per(correct[b] as f64),
            }
        })
        .collect();
    let gap = |b: &ReliabilityBin| (b.accuracy - b.mean_confidence).abs();
    let weight = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Ok(Calibration {
        n,
        ece: bins.iter().map(|b| weight(b.count) * gap(b)).sum(),
        mce: bins
            .iter()
            .filter(|b| b.count > 0)
            .map(gap)
            .fold(0.0, f64::max),
        mean_confidence: weight(1) * conf_sum.iter().sum::<f64>(),
        accuracy: weight(correct.iter().sum()),
        bins,
    })
}

/// [`calibration`] of the softmax of `logits`.
pub fn calibration_from_logits(
    logits: &[f32],
    num_classes: usize,
    labels: &[u8],
    bins: usize,
) -> Result<Calibration> {
    calibration(&softmax(logits, num_classes)?, num_classes, labels, bins)
}

/// Mean confidence (largest probability) over the rows of `probabilities`: on inputs of no
/// class (uniform noise, say) a value near `1 / num_classes` is modest and a value near 1 is
/// over-confident. 0 for no rows.
pub fn mean_confidence(probabilities: &[f32], num_classes: usize) -> Result<f64> {
    let n = rows(probabilities, num_classes, "probabilities")?;
    if n == 0 {
        return Ok(0.0);
    }
    let total: f64 = probabilities
        .chunks_exact(num_classes)
        .map(|row| f64::from(top(row).1))
        .sum();
    Ok(total / n as f64)
}

/// Softmax probabilities of `model` (in evaluation mode) on every example of `data`,
/// row-major, `batch_size` images per forward pass, in data set order. Fails on non-finite
/// logits.
pub fn model_probabilities<M: Classifier>(
    model: &M,
    data: &Dataset,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<Vec<f32>> {
    let model = model.valid();
    let device = first_device(&model);
    let order: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::new();
    progress.begin("calibration", data.len() as u64);
    for chunk in order.chunks(batch_size.max(1)) {
        let (x, _) = data.batch(chunk, &device);
        let logits = model.logits(x);
        let k = logits.dims()[1];
        let logits = float_vec(&logits);
        if logits.iter().any(|v| !v.is_finite()) {
            return Err(Error::Diverged(
                "the model produced NaN or infinite logits".into(),
            ));
        }
        out.extend(softmax(&logits, k)?);
        progress.advance(chunk.len() as u64, "");
    }
    progress.end();
    Ok(out)
}

/// `n` images of `like`'s shape with every pixel uniform in `[0, 1)`, drawn from `seed`,
/// all labelled 0: inputs of no class, for [`mean_confidence`].
pub fn uniform_noise_like(like: &Dataset, n: usize, seed: u64) -> Result<Dataset> {
    let mut rng = crate::rng::seeded(seed);
    let images = crate::rng::uniform_vec(&mut rng, n * like.image_len(), 0.0, 1.0);
    Ok(Dataset::new(
        images,
        vec![0; n],
        like.channels,
        like.height,
        like.width,
        like.num_classes,
        like.class_names.clone(),
    )?)
}

// ---------------------------------------------------------------------------------------
// Per-class disparity.
// ---------------------------------------------------------------------------------------

/// The confusion table of `predictions` against `labels`: row-major `num_classes`² counts,
/// entry `[true class][predicted class]`.
pub fn confusion_matrix(
    labels: &[u8],
    predictions: &[u8],
    num_classes: usize,
) -> Result<Vec<usize>> {
    if labels.len() != predictions.len() {
        return Err(Error::config(format!(
            "{} labels but {} predictions",
            labels.len(),
            predictions.len()
        )));
    }
    let mut table = vec![0; num_classes * num_classes];
    for (&l, &p) in labels.iter().zip(predictions) {
        let (l, p) = (usize::from(l), usize::from(p));
        if l >= num_classes || p >= num_classes {
            return Err(Error::config(format!(
                "class {} is out of range for {num_classes} classes",
                l.max(p)
            )));
        }
        table[l * num_classes + p] += 1;
    }
    Ok(table)
}

/// Accuracy of each true class (the diagonal over the row sums) of a row-major confusion
/// table, each with its Wilson interval.
pub fn per_class_accuracy(confusion: &[usize], num_classes: usize) -> Result<Vec<Accuracy>> {
    if num_classes == 0 || confusion.len() != num_classes * num_classes {
        return Err(Error::config(format!(
            "a confusion table of {} entries is not {num_classes}x{num_classes}",
            confusion.len()
        )));
    }
    Ok(confusion
        .chunks_exact(num_classes)
        .enumerate()
        .map(|(c, row)| Accuracy::new(row[c], row.iter().sum()))
        .collect())
}

/// How unevenly accuracy is spread over the classes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassDisparity {
    /// The class with the lowest accuracy (the first of equals), among classes with examples.
    pub worst_class: usize,
    /// Its accuracy.
    pub worst: Accuracy,
    /// The class with the highest accuracy (the first of equals).
    pub best_class: usize,
    /// Its accuracy.
    pub best: Accuracy,
    /// `best.value - worst.value`, a fraction in `[0, 1]`.
    pub spread: f64,
}

/// The worst class, the best class and the spread between them. Classes without examples
/// are left out (they have no accuracy); an error if none has any.
pub fn class_disparity(per_class: &[Accuracy]) -> Result<ClassDisparity> {
    let scored: Vec<(usize, &Accuracy)> = per_class
        .iter()
        .enumerate()
        .filter(|(_, a)| a.n > 0)
        .collect();
    let Some(&(first, _)) = scored.first() else {
        return Err(Error::config(
            "no class has an example: per-class disparity is undefined",
        ));
    };
    let (mut worst, mut best) = (first, first);
    for &(c, a) in &scored {
        if a.value < per_class[worst].value {
            worst = c;
        }
        if a.value > per_class[best].value {
            best = c;
        }
    }
    Ok(ClassDisparity {
        worst_class: worst,
        worst: per_class[worst],
        best_class: best,
        best: per_class[best],
        spread: per_class[best].value - per_class[worst].value,
    })
}

/// A class's accuracy loss from a baseline run to this one.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassDrop {
    /// The class.
    pub class: usize,
    /// Its accuracy in the baseline run.
    pub baseline: Accuracy,
    /// Its accuracy in this run.
    pub current: Accuracy,
    /// `baseline.value - current.value` (negative: the class gained).
    pub drop: f64,
    /// 95% interval for `drop`: Newcombe's hybrid score interval ([`newcombe_difference`]).
    pub ci95: [f64; 2],
}

/// Every class's drop from `baseline` to `current` (per-class accuracies of two runs, same
/// class order), largest drop first (ties by class). Classes without examples in either run
/// are left out. Errors if the two lists differ in length.
pub fn class_drops(baseline: &[Accuracy], current: &[Accuracy]) -> Result<Vec<ClassDrop>> {
    if baseline.len() != current.len() {
        return Err(Error::config(format!(
            "the baseline has {} classes but this run {}",
            baseline.len(),
            current.len()
        )));
    }
    let mut drops: Vec<ClassDrop> = baseline
        .iter()
        .zip(current)
        .enumerate()
        .filter(|(_, (b, c))| b.n > 0 && c.n > 0)
        .map(|(class, (&b, &c))| ClassDrop {
            class,
            baseline: b,
            current: c,
            drop: b.value - c.value,
            ci95: newcombe_difference(&b, &c),
        })
        .collect();
    drops.sort_by(|a, b| b.drop.total_cmp(&a.drop).then(a.class.cmp(&b.class)));
    Ok(drops)
}

/// 95% interval for the difference of two proportions `a.value - b.value`: Newcombe's
/// hybrid score interval (Newcombe 1998, "Interval estimation for the difference between
/// independent proportions", method 10), built from the two Wilson intervals each
/// [`Accuracy`] carries: `d - sqrt((a - a_lo)² + (b_hi - b)²)` to
/// `d + sqrt((a_hi - a)² + (b - b_lo)²)`. Unlike the Wald interval it stays inside
/// `[-1, 1]` and keeps its coverage near 0 and 1.
///
/// It treats the two as independent samples. Two runs scored on the same test images are
/// paired, and their per-example outcomes are usually positively correlated, which makes the
/// true interval narrower: this one is then conservative.
pub fn newcombe_difference(a: &Accuracy, b: &Accuracy) -> [f64; 2] {
    let d = a.value - b.value;
    let [a_lo, a_hi] = a.ci95;
    let [b_lo, b_hi] = b.ci95;
    let low = d - ((a.value - a_lo).powi(2) + (b_hi - b.value).powi(2)).sqrt();
    let high = d + ((a_hi - a.value).powi(2) + (b.value - b_lo).powi(2)).sqrt();
    [low.max(-1.0), high.min(1.0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of `k` probabilities whose largest is `conf` on class `pred`, the rest shared.
    fn row(k: usize, pred: usize, conf: f32) -> Vec<f32> {
        let rest = (1.0 - conf) / (k - 1) as f32;
        (0..k)
            .map(|j| if j == pred { conf } else { rest })
            .collect()
    }

    /// `n` examples at confidence `conf`, `correct` of them predicted right (label 0, wrong
    /// ones predict class 1).
    fn block(k: usize, conf: f32, n: usize, correct: usize) -> (Vec<f32>, Vec<u8>) {
        let probs = (0..n)
            .flat_map(|i| row(k, usize::from(i >= correct), conf))
            .collect();
        (probs, vec![0; n])
    }

    fn join(blocks: &[(Vec<f32>, Vec<u8>)]) -> (Vec<f32>, Vec<u8>) {
        (
            blocks.iter().flat_map(|b| b.0.clone()).collect(),
            blocks.iter().flat_map(|b| b.1.clone()).collect(),
        )
    }

    #[test]
    fn a_perfectly_calibrated_set_has_no_calibration_error() {
        let (p, l) = join(&[
            block(10, 0.3, 10, 3),
            block(10, 0.5, 10, 5),
            block(10, 0.7, 20, 14),
            block(10, 0.9, 10, 9),
            block(10, 1.0, 5, 5),
        ]);
        let c = calibration(&p, 10, &l, ECE_BINS).unwrap();
        assert!(c.ece < 1e-6, "{}", c.ece);
        assert!(c.mce < 1e-6);
        assert_eq!(c.n, 55);
        assert_eq!(c.bins.len(), 15);
        assert_eq!(c.bins.iter().map(|b| b.count).sum::<usize>(), 55);
        // 0.7 lies in (0.6667, 0.7333]: the 11th bin.
        assert_eq!(c.bins[10].count, 20);
        assert!((c.bins[10].accuracy - 0.7).abs() < 1e-9);
        assert_eq!(c.bins[14].count, 5, "confidence 1 is in the last bin");
    }

    #[test]
    fn an_overconfident_set_has_the_hand_computed_error() {
        // 4 examples at 0.95 with 2 right: gap 0.45; 6 at 0.55 with 3 right: gap 0.05.
        // ECE = 0.4 * 0.45 + 0.6 * 0.05 = 0.21; MCE = 0.45.
        let (p, l) = join(&[block(10, 0.95, 4, 2), block(10, 0.55, 6, 3)]);
        let c = calibration(&p, 10, &l, ECE_BINS).unwrap();
        assert!((c.ece - 0.21).abs() < 1e-6, "{}", c.ece);
        assert!((c.mce - 0.45).abs() < 1e-6);
        assert!((c.mean_confidence - 0.71).abs() < 1e-6);
        assert!((c.accuracy - 0.5).abs() < 1e-12);
        // One bin only: the overconfidence of the whole set.
        let (p, l) = block(4, 0.9, 10, 6);
        let c = calibration(&p, 4, &l, ECE_BINS).unwrap();
        assert!((c.ece - 0.3).abs() < 1e-6);
    }

    #[test]
    fn logits_go_through_a_stable_softmax() {
        let logits = [1000.0, 1000.0, 0.0, -5.0, 0.0, 5.0];
        let p = softmax(&logits, 3).unwrap();
        assert!((p[0] - 0.5).abs() < 1e-6 && p[2] < 1e-30);
        assert!((p[3..].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let c = calibration_from_logits(&logits, 3, &[0, 2], ECE_BINS).unwrap();
        assert_eq!(c.accuracy, 1.0);
        assert!((mean_confidence(&p, 3).unwrap() - f64::from(p[0] + p[5]) / 2.0).abs() < 1e-6);
        assert!(softmax(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(calibration(&p, 3, &[0], ECE_BINS).is_err(), "label count");
        assert!(
            calibration(&p, 3, &[0, 3], ECE_BINS).is_err(),
            "label range"
        );
    }

    #[test]
    fn disparity_of_a_hand_made_confusion_table() {
        // True class per row; 3 classes.
        #[rustfmt::skip]
        let baseline = [
            90, 5, 5,
            10, 80, 10,
            2, 3, 45,
        ];
        #[rustfmt::skip]
        let current = [
            70, 20, 10,
            10, 78, 12,
            25, 0, 25,
        ];
        let b = per_class_accuracy(&baseline, 3).unwrap();
        let c = per_class_accuracy(&current, 3).unwrap();
        assert_eq!((c[0].correct, c[0].n), (70, 100));
        let d = class_disparity(&c).unwrap();
        assert_eq!((d.worst_class, d.best_class), (2, 1));
        assert!((d.spread - (0.78 - 0.5)).abs() < 1e-12);
        let drops = class_drops(&b, &c).unwrap();
        let order: Vec<usize> = drops.iter().map(|d| d.class).collect();
        assert_eq!(order, [2, 0, 1], "largest drop first: 0.40, 0.20, 0.02");
        assert!((drops[0].drop - 0.4).abs() < 1e-12);
        for d in &drops {
            assert!(d.ci95[0] <= d.drop && d.drop <= d.ci95[1], "{d:?}");
        }
        assert!(
            drops[0].ci95[0] > 0.0,
            "a 40-point drop on 50 examples is significant"
        );
        assert!(
            drops[2].ci95[0] < 0.0,
            "a 2-point drop on 100 examples is not"
        );
        // The confusion table from labels and predictions.
        let t = confusion_matrix(&[0, 0, 1, 2], &[0, 1, 1, 0], 3).unwrap();
        assert_eq!(t, [1, 1, 0, 0, 1, 0, 1, 0, 0]);
        assert!(class_disparity(&[Accuracy::new(0, 0)]).is_err());
    }

    #[test]
    fn newcombe_interval_matches_the_published_example() {
        // Newcombe 1998, Table II, example (a): 56/70 - 48/80, method 10: [0.0524, 0.3339].
        let ci = newcombe_difference(&Accuracy::new(56, 70), &Accuracy::new(48, 80));
        assert!(
            (ci[0] - 0.0524).abs() < 5e-4 && (ci[1] - 0.3339).abs() < 5e-4,
            "{ci:?}"
        );
        // Identical proportions: symmetric about 0.
        let ci = newcombe_difference(&Accuracy::new(5, 10), &Accuracy::new(5, 10));
        assert!((ci[0] + ci[1]).abs() < 1e-12);
    }

    #[test]
    fn uniform_noise_has_the_shape_of_the_data() {
        let like = Dataset::new(vec![0.5; 2 * 12], vec![0, 1], 3, 2, 2, 2, Vec::new()).unwrap();
        let noise = uniform_noise_like(&like, 5, 1).unwrap();
        assert_eq!((noise.len(), noise.image_len()), (5, 12));
        assert!(noise.images.iter().all(|v| (0.0..1.0).contains(v)));
    }
}
