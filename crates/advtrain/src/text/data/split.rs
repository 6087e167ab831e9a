//! Splitting and deduplication: the seeded, stratified train/test split every loader ends
//! with, and the duplicate filter that keeps a text from landing in both parts.

use std::collections::{BTreeMap, HashSet};

use super::{CALIBRATION_STREAM, ORDER_STREAM, SPLIT_STREAM};
use crate::rng::{derived, permutation, AdvRng};
use crate::text::TextDataset;

/// Split `(train, test)` with, in each class, `round(count * test_fraction)` examples in test
/// (at least one, and at least one left in train, when the class has two or more). Depends
/// only on `seed` (a derived stream), not on any other randomness. Both parts come out in a
/// seeded random order, so `take(n)` of either is a fair sample. Stratified so that every
/// class is in both parts at its overall rate, which a plain random split cannot promise
/// for a small class or a small user file.
///
/// `test_fraction` is clamped to `[0, 1]` (NaN counts as 0); the loaders reject fractions
/// outside `(0, 1)` before calling this.
pub fn split_stratified(
    ds: &TextDataset,
    seed: u64,
    test_fraction: f64,
) -> (TextDataset, TextDataset) {
    let fraction = if test_fraction.is_nan() {
        0.0
    } else {
        test_fraction.clamp(0.0, 1.0)
    };
    let mut rng = derived(seed, SPLIT_STREAM);
    let num_classes = ds.labels.iter().map(|&l| l + 1).max().unwrap_or(0);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for class in 0..num_classes {
        let members: Vec<usize> = (0..ds.len()).filter(|&i| ds.labels[i] == class).collect();
        let n = members.len();
        let mut n_test = (n as f64 * fraction).round() as usize;
        if n >= 2 && fraction > 0.0 && fraction < 1.0 {
            n_test = n_test.clamp(1, n - 1);
        }
        let order = permutation(&mut rng, n);
        for (k, &j) in order.iter().enumerate() {
            if k < n_test {
                test.push(members[j]);
            } else {
                train.push(members[j]);
            }
        }
    }
    let mut order_rng = derived(seed, ORDER_STREAM);
    let shuffle = |idx: Vec<usize>, rng: &mut AdvRng| {
        permutation(rng, idx.len())
            .into_iter()
            .map(|k| idx[k])
            .collect::<Vec<_>>()
    };
    let train = shuffle(train, &mut order_rng);
    let test = shuffle(test, &mut order_rng);
    (ds.subset(&train), ds.subset(&test))
}

/// Drop repeated texts, keeping the first; a text seen under two different labels is
/// dropped altogether (its label is ambiguous).
/// Moves `round(n * share)` of `test`'s texts of class `benign` (chosen by `seed`, at least
/// one and at least one left when there are two or more) into a calibration set, returning
/// `(rest, calibration)`; both keep `test`'s order. The operating threshold of a data set
/// whose training negatives are synthetic is chosen on the calibration set, so it reflects
/// the benign texts of the corpus the filter is tested on, yet no tested text chose it.
pub fn hold_out_benign(
    test: &TextDataset,
    benign: usize,
    share: f64,
    seed: u64,
) -> (TextDataset, TextDataset) {
    let members: Vec<usize> = (0..test.len())
        .filter(|&i| test.labels[i] == benign)
        .collect();
    let n = members.len();
    let mut take = (n as f64 * share.clamp(0.0, 1.0)).round() as usize;
    if n >= 2 {
        take = take.clamp(1, n - 1);
    }
    let mut rng = derived(seed, CALIBRATION_STREAM);
    let mut held = vec![false; test.len()];
    for k in permutation(&mut rng, n).into_iter().take(take) {
        held[members[k]] = true;
    }
    let (calibration, rest): (Vec<usize>, Vec<usize>) = (0..test.len()).partition(|&i| held[i]);
    let mut calibration = test.subset(&calibration);
    calibration.name = format!("{} calibration", test.name);
    (test.subset(&rest), calibration)
}

pub(super) fn dedupe_labelled(texts: Vec<String>, labels: Vec<usize>) -> (Vec<String>, Vec<usize>) {
    let mut first_label: BTreeMap<&str, Option<usize>> = BTreeMap::new();
    for (t, &l) in texts.iter().zip(&labels) {
        first_label
            .entry(t.as_str())
            .and_modify(|seen| {
                if *seen != Some(l) {
                    *seen = None;
                }
            })
            .or_insert(Some(l));
    }
    let keep: HashSet<String> = first_label
        .into_iter()
        .filter(|(_, l)| l.is_some())
        .map(|(t, _)| t.to_string())
        .collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut out_t = Vec::new();
    let mut out_l = Vec::new();
    for (t, l) in texts.into_iter().zip(labels) {
        if keep.contains(&t) && seen.insert(t.clone()) {
            out_t.push(t);
            out_l.push(l);
        }
    }
    (out_t, out_l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_keeps_first_and_drops_ambiguous_texts() {
        let texts = ["a", "b", "a", "c", "c", "b"].map(String::from).to_vec();
        let (t, l) = dedupe_labelled(texts, vec![0, 1, 0, 0, 1, 1]);
        assert_eq!(t, ["a", "b"]);
        assert_eq!(l, [0, 1]);
    }

    #[test]
    fn held_out_benign_texts_leave_the_test_set_and_malicious_ones_stay() {
        let texts: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        let labels = vec![0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0];
        let ds = TextDataset {
            name: "x".into(),
            texts,
            labels,
            classes: vec!["benign".into(), "malicious".into()],
            provenance: String::new(),
        };
        let (rest, cal) = hold_out_benign(&ds, 0, 0.5, 3);
        assert_eq!(cal.len(), 4, "round(7 * 0.5) benign texts held out");
        assert!(cal.labels.iter().all(|&l| l == 0));
        assert_eq!(rest.labels.iter().filter(|&&l| l == 1).count(), 4);
        assert_eq!(rest.len() + cal.len(), ds.len());
        assert!(cal.texts.iter().all(|t| !rest.texts.contains(t)));
        assert_eq!(hold_out_benign(&ds, 0, 0.5, 3).1.texts, cal.texts, "seeded");
    }
}
