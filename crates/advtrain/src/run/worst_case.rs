//! `summary.json`'s robust accuracy: the per-point worst case over every evaluation of the
//! run at its training threat model. A point counts as robust only if every one of those
//! evaluations left it robust; the minimum of their accuracies would overstate robustness
//! whenever two attacks break different points.

use super::{EvalFile, EvalRecord, Summary};
use crate::eval::Accuracy;

/// The evaluations combined and the robust accuracy they give together.
#[derive(Clone, Debug, PartialEq)]
pub struct WorstCase {
    /// Correct clean and robust under every combined evaluation.
    pub robust: Accuracy,
    /// The files whose per-point flags were combined.
    pub combined: Vec<String>,
    /// The attacks they ran, as their records describe them.
    pub attacks: Vec<String>,
    /// Evaluations at the same threat model left out, each with the reason.
    pub left_out: Vec<String>,
}

/// Combines the evaluations of `evals` at `reference`'s threat model on `reference`'s
/// points: the same labels and the same clean predictions (so the same model and data);
/// others, such as a `--limit` evaluation of a subset or one of an earlier model, are left
/// out and named. `reference` must be one of `evals` (the newest evaluation).
pub fn worst_case(evals: &[EvalFile], reference: &EvalRecord) -> WorstCase {
    let n = reference.n;
    let mut robust = vec![true; n];
    let (mut combined, mut attacks, mut left_out) = (Vec::new(), Vec::new(), Vec::new());
    for e in evals {
        let r = &e.record;
        if r.norm != reference.norm || (r.eps - reference.eps).abs() > 1e-6 {
            continue;
        }
        let differ = |a: &Option<String>, b: &Option<String>| a.is_some() && b.is_some() && a != b;
        let why = if r.n != n || r.per_example.labels != reference.per_example.labels {
            Some(format!("other points (n = {})", r.n))
        } else if differ(&r.test_data_sha256, &reference.test_data_sha256) {
            Some("other test data (its fingerprint differs)".to_string())
        } else if differ(&r.model_sha256, &reference.model_sha256) {
            Some("another model (its weights' hash differs)".to_string())
        } else if r.per_example.clean_correct != reference.per_example.clean_correct {
            Some("another model (its clean predictions differ)".to_string())
        } else if r.per_example.robust_correct.len() != n {
            Some("damaged per-example flags".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            left_out.push(format!("{}: {why}", e.file));
            continue;
        }
        for (acc, &flag) in robust.iter_mut().zip(&r.per_example.robust_correct) {
            *acc &= flag == 1;
        }
        combined.push(e.file.clone());
        attacks.push(r.attack_description.clone());
    }
    let correct = robust.iter().filter(|&&r| r).count();
    WorstCase {
        robust: Accuracy::new(if combined.is_empty() { 0 } else { correct }, n),
        combined,
        attacks,
        left_out,
    }
}

impl Summary {
    /// Folds the run's evaluations in, with `newest` (one of `evals`) as the reference:
    /// its clean accuracy becomes the headline's, and when it is at the training threat
    /// model the robust accuracy becomes the per-point worst case ([`worst_case`]) over
    /// every evaluation there on the same points.
    pub fn combine(&mut self, evals: &[EvalFile], newest: &EvalRecord) {
        self.clean_accuracy = newest.clean_accuracy;
        self.clean_ci95 = newest.clean_ci95;
        self.n_test = newest.n;
        if newest.norm != self.norm || (newest.eps - self.eps).abs() > 1e-6 {
            return;
        }
        let worst = worst_case(evals, newest);
        if worst.combined.is_empty() {
            return;
        }
        self.robust_accuracy = Some(worst.robust.value);
        self.robust_ci95 = Some(worst.robust.ci95);
        self.robust_attack = Some(if worst.attacks.len() == 1 {
            worst.attacks[0].clone()
        } else {
            format!(
                "per-point worst case of {} evaluations: {}",
                worst.attacks.len(),
                worst.attacks.join(" + ")
            )
        });
        self.robust_combined = worst.combined;
        self.robust_left_out = worst.left_out;
    }
}
