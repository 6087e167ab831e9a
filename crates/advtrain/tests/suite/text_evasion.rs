//! Evasion at a fixed false-positive rate: only malicious texts are attacked, the threshold
//! comes from benign validation texts alone, the attack targets the operating point, and an
//! interrupted evaluation resumes to the uninterrupted result.

use std::cell::{Cell, RefCell};

use advtrain::text::attack::TextAttackConfig;
use advtrain::text::evasion::{choose_threshold, EvasionRun, EvasionTarget, Thresholded};
use advtrain::text::evasion_files::evaluate_streamed;
use advtrain::text::run::TextSplits;
use advtrain::text::{argmax, TextClassifier, TextDataset};

/// Spam score from trigger words, every text it is asked about recorded.
struct Triggers {
    seen: RefCell<Vec<String>>,
    /// Fail (as a crashed filter would) once this many calls were made.
    fail_after: Cell<Option<usize>>,
    calls: Cell<usize>,
}

impl Triggers {
    fn new() -> Self {
        Self {
            seen: RefCell::new(Vec::new()),
            fail_after: Cell::new(None),
            calls: Cell::new(0),
        }
    }

    fn score(text: &str) -> f32 {
        let hits = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| matches!(w.to_lowercase().as_str(), "free" | "win" | "cash" | "prize"))
            .count();
        let weak = text.contains("offer") as usize;
        1.0 / (1.0 + (-(1.5 * hits as f32 + 0.3 * weak as f32 - 1.0)).exp())
    }
}

impl TextClassifier for Triggers {
    fn num_classes(&self) -> usize {
        2
    }

    fn probabilities(&self, texts: &[String]) -> advtrain::Result<Vec<Vec<f32>>> {
        self.calls.set(self.calls.get() + 1);
        if self.fail_after.get().is_some_and(|n| self.calls.get() > n) {
            return Err(advtrain::Error::config("the filter process exited (test)"));
        }
        self.seen.borrow_mut().extend(texts.iter().cloned());
        Ok(texts
            .iter()
            .map(|t| {
                let p = Self::score(t);
                vec![1.0 - p, p]
            })
            .collect())
    }
}

fn data(name: &str, n: usize, offset: usize) -> TextDataset {
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let k = i + offset;
        if k.is_multiple_of(2) {
            texts.push(format!("win free cash now, number {k}, call us"));
            labels.push(1);
        } else if k.is_multiple_of(3) {
            texts.push(format!("a special offer for the meeting {k}"));
            labels.push(0);
        } else {
            texts.push(format!("meeting notes {k} attached, see you tomorrow"));
            labels.push(0);
        }
    }
    TextDataset {
        name: name.into(),
        texts,
        labels,
        classes: vec!["ham".into(), "spam".into()],
        provenance: "generated".into(),
    }
}

fn evasion_run<'a>(model: &'a Triggers, val: &TextDataset, chunk: usize) -> EvasionRun<'a> {
    let target = EvasionTarget::BlackBox(model);
    EvasionRun {
        target,
        target_name: "triggers".into(),
        positive: 1,
        threshold: choose_threshold(target, val, 1, 0.05).unwrap(),
        chunk,
        seed: 7,
    }
}

#[test]
fn the_threshold_is_chosen_on_benign_validation_texts_only() {
    let model = Triggers::new();
    let val = data("val", 60, 1000);
    let t = choose_threshold(EvasionTarget::BlackBox(&model), &val, 1, 0.05).unwrap();
    let benign: Vec<&String> = val
        .texts
        .iter()
        .zip(&val.labels)
        .filter(|(_, &l)| l == 0)
        .map(|(t, _)| t)
        .collect();
    let seen = model.seen.borrow();
    assert_eq!(
        seen.len(),
        benign.len(),
        "only benign validation texts are scored"
    );
    assert!(seen.iter().all(|s| benign.contains(&s)));
    assert!(t.val_fpr <= 0.05, "{t:?}");
    assert_eq!(t.val_benign, benign.len());
    assert!(!t.hard_label);
    // The weak word "offer" puts a third of the benign texts above the plain ones: at 5%
    // FPR the threshold must sit above them.
    assert!(t.threshold > Triggers::score("a special offer for the meeting 3"));
}

#[test]
fn synthetic_negatives_calibrate_on_held_out_test_benign_texts_never_on_tested_ones() {
    // prompt-injection trains on synthetic benign prompts: its threshold comes from half of
    // the test corpus's benign rows, which then leave the test set.
    let splits = TextSplits::new(data("prompt-injection", 200, 0), data("x", 90, 500), 0);
    let cal = &splits.calibration;
    assert!(cal.labels.iter().all(|&l| l == 0), "benign texts only");
    let test_benign = splits.test.labels.iter().filter(|&&l| l == 0).count();
    assert_eq!(
        cal.len() + test_benign,
        45,
        "every benign test row is in one part"
    );
    assert!(cal.len().abs_diff(test_benign) <= 1, "half each");
    assert!(cal.texts.iter().all(|t| !splits.test.texts.contains(t)));
    assert_eq!(splits.test.labels.iter().filter(|&&l| l == 1).count(), 45);
    let t = choose_threshold(EvasionTarget::BlackBox(&Triggers::new()), cal, 1, 0.05).unwrap();
    assert_eq!(t.chosen_on, "x calibration");
    // Any other data set calibrates on its validation split and keeps its whole test set.
    let splits = TextSplits::new(data("spam", 200, 0), data("x", 90, 500), 0);
    assert_eq!(splits.calibration.texts, splits.val.texts);
    assert_eq!(splits.test.len(), 90);
}

#[test]
fn only_malicious_texts_are_attacked_and_benign_ones_never_change() {
    let model = Triggers::new();
    let val = data("val", 60, 1000);
    let test = data("test", 40, 0);
    let run = evasion_run(&model, &val, 4);
    let attack = TextAttackConfig::deepwordbug(3);
    model.seen.borrow_mut().clear();
    let (record, examples) = run
        .evaluate(&test, Some(&attack), Vec::new(), &mut |_| Ok(()))
        .unwrap();
    assert!(!examples.is_empty());
    for e in &examples {
        assert_eq!(
            test.labels[e.index], 1,
            "benign text {} was attacked",
            e.index
        );
        assert_eq!(e.result.original, test.texts[e.index]);
    }
    // Every text the filter saw is a test text as given, or an edit of a malicious one.
    let benign: Vec<&String> = (0..test.len())
        .filter(|&i| test.labels[i] == 0)
        .map(|i| &test.texts[i])
        .collect();
    for s in model.seen.borrow().iter() {
        let edited_benign = !test.texts.contains(s)
            && benign
                .iter()
                .any(|b| advtrain::text::edits::edit_distance(b, s) <= 3);
        assert!(!edited_benign, "a benign text was modified: {s:?}");
    }
    assert_eq!(record.malicious, 20);
    assert_eq!(record.benign, 20);
    assert_eq!(record.tpr_clean.value, 1.0);
    // Three trigger words, three edits: every detected text is evaded.
    assert!(record.attack_success_rate.value > 0.9, "{record:?}");
    assert!(record.tpr_attacked.value < 0.1);
    assert!(record.mean_edits >= 1.0 && record.mean_edits <= 3.0);
    assert!(record.mean_queries_per_success >= 1.0);
    assert!(record.roc_clean.auc > record.roc_attacked.auc);
    // Benign texts are never attacked, so the false-positive side cannot move.
    assert_eq!(
        record.accuracy_clean.correct - record.accuracy_attacked.correct,
        record.tpr_clean.correct - record.tpr_attacked.correct
    );
}

#[test]
fn the_attack_stops_at_the_operating_point_not_at_one_half() {
    let model = Triggers::new();
    for t in [0.2f32, 0.5, 0.9] {
        let shifted = Thresholded::new(&model, 1, t);
        for text in ["free", "free cash", "hello", "win win win free", "offer"] {
            let p = Triggers::score(text);
            let q = shifted.probabilities(&[text.to_string()]).unwrap();
            assert_eq!(
                argmax(&q[0]) == 1,
                p >= t,
                "{text} at {t}: p {p}, q {:?}",
                q[0]
            );
            assert!((q[0][0] + q[0][1] - 1.0).abs() < 1e-6);
        }
    }
}

#[test]
fn an_interrupted_evaluation_resumes_to_the_uninterrupted_result() {
    let val = data("val", 60, 1000);
    let test = data("test", 40, 0);
    let attack = TextAttackConfig::deepwordbug(3);
    let whole_dir = tempfile_dir("whole");
    let whole_model = Triggers::new();
    let run = evasion_run(&whole_model, &val, 4);
    let (whole, _) = evaluate_streamed(&whole_dir, &run, &test, Some(&attack), None, "").unwrap();

    let dir = tempfile_dir("resumed");
    let crashing = Triggers::new();
    let run = evasion_run(&crashing, &val, 4);
    // Clean scoring, then a few attack calls, then the "process" dies.
    crashing.fail_after.set(Some(crashing.calls.get() + 12));
    let err = evaluate_streamed(&dir, &run, &test, Some(&attack), None, "").unwrap_err();
    assert!(err.to_string().contains("exited"), "{err}");
    assert!(
        err.to_string().contains("while attacking test texts"),
        "{err}"
    );
    let streamed =
        std::fs::read_to_string(dir.join("evasion-deepwordbug-b3-fpr0.05.jsonl")).unwrap();
    let kept = streamed.lines().count() - 1;
    assert!(
        kept > 0 && kept < 20,
        "{kept} examples streamed before the crash"
    );

    let healthy = Triggers::new();
    let run = evasion_run(&healthy, &val, 4);
    let (resumed, _) = evaluate_streamed(&dir, &run, &test, Some(&attack), None, "").unwrap();
    let strip = |mut r: advtrain::text::evasion::EvasionRecord| {
        r.seconds = 0.0;
        r
    };
    assert_eq!(strip(resumed), strip(whole));
    assert!(
        healthy.calls.get() < whole_model.calls.get(),
        "the resumed run skipped the streamed chunks"
    );
}

#[test]
fn detection_needs_two_classes_and_a_valid_rate() {
    let model = Triggers::new();
    let mut three = data("val", 10, 0);
    three.classes.push("other".into());
    assert!(choose_threshold(EvasionTarget::BlackBox(&model), &three, 1, 0.01).is_err());
    let val = data("val", 10, 0);
    let err = choose_threshold(EvasionTarget::BlackBox(&model), &val, 1, 1.0).unwrap_err();
    assert!(err.to_string().contains("fpr"), "{err}");
}

fn tempfile_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "advtrain-evasion-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
