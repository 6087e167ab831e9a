//! End to end on generated spam-like data: DeepWordBug breaks a standard-trained model on
//! held-out texts, adversarial training (and canonicalisation, against look-alike and
//! invisible characters) gives accuracy back under the same attack, with fixed seeds.

use crate::common;
use advtrain::progress::Silent;
use advtrain::rng;
use advtrain::text::canon::Canonicalizer;
use advtrain::text::edits::EditKind;
use advtrain::text::eval::evaluate_text;
use advtrain::text::model::{TextModel, TextModelConfig, TextModelKind};
use advtrain::text::train::{
    train_text, train_text_with, TextAttackConfig, TextEpochRecord, TextMethod, TextTrainConfig,
};
use advtrain::text::TextDataset;
use advtrain::train::{checkpoint, CheckpointOptions};
use burn::prelude::Device;
use rand::Rng;

const LONG_TRIGGERS: [&str; 6] = [
    "winner", "jackpot", "casino", "lottery", "bitcoin", "viagra",
];
/// Short trigger words: one look-alike character touches most of their n-grams.
const SHORT_TRIGGERS: [&str; 6] = ["win", "cash", "sex", "pill", "loan", "xxx"];

fn toy(n: usize, seed: u64) -> TextDataset {
    toy_with(n, seed, &LONG_TRIGGERS)
}

fn toy_with(n: usize, seed: u64, triggers: &[&str]) -> TextDataset {
    let mut rng = rng::seeded(seed);
    let filler = [
        "meeting", "tomorrow", "report", "lunch", "project", "thanks", "review", "notes",
        "schedule", "call", "team", "update", "budget", "draft", "agenda", "office",
    ];
    let (mut texts, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let label = i % 2;
        let mut words: Vec<&str> = (0..6)
            .map(|_| filler[rng.random_range(0..filler.len())])
            .collect();
        if label == 1 {
            let at = rng.random_range(0..words.len());
            words[at] = triggers[rng.random_range(0..triggers.len())];
        }
        texts.push(words.join(" "));
        labels.push(label);
    }
    TextDataset {
        name: "toy".into(),
        texts,
        labels,
        classes: vec!["ham".into(), "spam".into()],
        provenance: "generated".into(),
    }
}

fn config(method: TextMethod, canonicalizer: Canonicalizer) -> TextTrainConfig {
    let mut model = TextModelConfig::new(TextModelKind::NgramBag, 2);
    model.dim = 16;
    model.encoder = advtrain::text::encode::TextEncoder::Ngrams {
        buckets: 1 << 14,
        min_n: 2,
        max_n: 4,
        max_chars: 256,
    };
    TextTrainConfig {
        model,
        method,
        canonicalizer,
        epochs: 8,
        batch_size: 16,
        lr: 0.02,
        seed: 1,
        schedule: advtrain::train::Schedule::Constant,
        monitor: advtrain::text::train::text_monitor(),
        fpr: 0.01,
    }
}

fn robust_accuracy(
    cfg: &TextTrainConfig,
    train: &TextDataset,
    test: &TextDataset,
    attack: &TextAttackConfig,
) -> (f64, f64) {
    let device = Device::flex();
    let trained = train_text(cfg, train, None, &device, &Silent, &mut |_, _| Ok(())).unwrap();
    let model = TextModel::new(cfg.model.clone(), cfg.canonicalizer, &trained.net, &device);
    let (record, results) = evaluate_text(&model, test, Some(attack), 7).unwrap();
    for r in &results {
        assert!(r.edits.len() <= attack.budget());
    }
    (record.clean_accuracy, record.robust_accuracy)
}

#[test]
fn adversarial_training_raises_accuracy_under_deepwordbug() {
    let train = toy(400, 1);
    let test = toy(120, 2);
    let attack = TextAttackConfig::deepwordbug(2);
    let (clean_std, robust_std) = robust_accuracy(
        &config(TextMethod::Standard, Canonicalizer::none()),
        &train,
        &test,
        &attack,
    );
    assert!(clean_std >= 0.95, "standard clean accuracy {clean_std}");
    assert!(
        robust_std <= clean_std - 0.2,
        "DeepWordBug should break the standard model: clean {clean_std}, under attack {robust_std}"
    );
    let adv = TextMethod::Adversarial {
        attack: attack.clone(),
        lambda: 1.0,
        fraction: 1.0,
        warmup_epochs: 1,
    };
    let (clean_adv, robust_adv) =
        robust_accuracy(&config(adv, Canonicalizer::none()), &train, &test, &attack);
    assert!(
        clean_adv >= 0.9,
        "adversarially trained clean accuracy {clean_adv}"
    );
    assert!(
        robust_adv >= robust_std + 0.15,
        "adversarial training should raise accuracy under attack: standard {robust_std}, adversarial {robust_adv}"
    );
}

#[test]
fn canonicalisation_defeats_lookalike_and_invisible_edits() {
    let train = toy_with(300, 3, &SHORT_TRIGGERS);
    let test = toy_with(100, 4, &SHORT_TRIGGERS);
    let attack = TextAttackConfig::DeepWordBug {
        budget: 4,
        kinds: vec![EditKind::Homoglyph, EditKind::ZeroWidth],
        max_words: 32,
        max_queries: 0,
    };
    let (clean_plain, robust_plain) = robust_accuracy(
        &config(TextMethod::Standard, Canonicalizer::none()),
        &train,
        &test,
        &attack,
    );
    let (clean_canon, robust_canon) = robust_accuracy(
        &config(TextMethod::Standard, Canonicalizer::all()),
        &train,
        &test,
        &attack,
    );
    assert!(
        robust_plain <= clean_plain - 0.2,
        "look-alike edits should hurt the plain model: clean {clean_plain}, under attack {robust_plain}"
    );
    assert_eq!(
        robust_canon, clean_canon,
        "canonicalisation must undo homoglyph and zero-width edits exactly"
    );
}

/// A text run that crashes mid-epoch and resumes from its newest checkpoint ends with the
/// metrics and weights of a run never interrupted, for every text method (adversarial
/// training's attacked texts come back from the checkpoint, embedding-AT's random draws
/// from the restored generator).
#[test]
fn crashed_text_run_resumes_bit_identical() {
    let train = toy(200, 5);
    let val = toy(40, 6);
    let methods = [
        TextMethod::Standard,
        TextMethod::Adversarial {
            attack: TextAttackConfig::deepwordbug(2),
            lambda: 1.0,
            fraction: 0.5,
            warmup_epochs: 1,
        },
        TextMethod::EmbeddingAt {
            eps: 0.5,
            steps: 2,
            lambda: 1.0,
        },
    ];
    for method in methods {
        let mut cfg = config(method.clone(), Canonicalizer::none());
        cfg.epochs = 3;
        cfg.monitor.max_examples = Some(10);
        let device = Device::flex();
        let mut full = Vec::new();
        let uninterrupted = train_text(&cfg, &train, Some(&val), &device, &Silent, &mut |r, _| {
            full.push(r.clone());
            Ok(())
        })
        .unwrap();

        let dir = std::env::temp_dir().join(format!(
            "advtrain-text-resume-{}-{}",
            method.name(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let options = CheckpointOptions {
            checkpoint_dir: Some(&dir),
            checkpoint_batches: Some(4),
            ..Default::default()
        };
        let crash = train_text_with(
            &cfg,
            &train,
            Some(&val),
            options,
            &device,
            &Silent,
            &mut |r, _| {
                if r.epoch == 2 {
                    return Err(advtrain::Error::config("simulated crash"));
                }
                Ok(())
            },
        );
        assert!(crash.is_err(), "{}", method.name());
        let (ckpt, _, _) = checkpoint::load_latest(&dir).unwrap();
        // 200 texts / 16 = 13 batches: the newest checkpoint of epoch 2 is at batch 12.
        assert_eq!(ckpt.position(), (1, 12), "{}", method.name());
        let options = CheckpointOptions {
            checkpoint_dir: Some(&dir),
            resume: Some(ckpt),
            ..Default::default()
        };
        let resumed = train_text_with(
            &cfg,
            &train,
            Some(&val),
            options,
            &device,
            &Silent,
            &mut |_, _| Ok(()),
        )
        .unwrap();
        let strip = |h: &[TextEpochRecord]| -> Vec<TextEpochRecord> {
            h.iter()
                .cloned()
                .map(|mut r| {
                    r.seconds = 0.0;
                    r.attack_seconds = 0.0;
                    r
                })
                .collect()
        };
        assert_eq!(
            strip(&resumed.history),
            strip(&uninterrupted.history),
            "{}",
            method.name()
        );
        assert_eq!(strip(&full), strip(&uninterrupted.history));
        assert!(
            common::tensors_by_name(&resumed.net) == common::tensors_by_name(&uninterrupted.net),
            "{}: resumed weights differ",
            method.name()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
