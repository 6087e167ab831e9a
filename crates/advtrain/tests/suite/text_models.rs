//! Text encoders and models: token spans and `retoken` agree with re-tokenising, token
//! gradients agree with finite differences, padding never changes a prediction, training
//! learns a separable toy task, the embedding perturbation stays in its ball, and a model
//! survives a save/load round trip.

use advtrain::progress::Silent;
use advtrain::rng;
use advtrain::text::canon::Canonicalizer;
use advtrain::text::encode::TextEncoder;
use advtrain::text::model::{batch_tensors, TextModel, TextModelConfig, TextModelKind, TextNet};
use advtrain::text::train::{
    embedding_perturbation, init_net, train_text, TextMethod, TextTrainConfig,
};
use advtrain::text::{TextDataset, WhiteBoxText};
use burn::prelude::*;
use proptest::prelude::*;
use rand::Rng;

fn device() -> Device {
    Device::flex()
}

fn encoders() -> Vec<TextEncoder> {
    vec![
        TextEncoder::chars(40),
        TextEncoder::Ngrams {
            buckets: 1000,
            min_n: 1,
            max_n: 4,
            max_chars: 40,
        },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// HotFlip scores a substitution from the tokens whose span covers it, using `retoken`;
    /// that is only sound if `retoken` gives exactly what re-tokenising gives, and tokens not
    /// covering the position keep their ids.
    #[test]
    fn retoken_matches_retokenising(
        text in "[a-zA-Z0-9 .,é\u{200b}]{0,50}",
        pos in 0usize..50,
        sub in prop::sample::select(vec!['a', 'Z', ' ', '7', 'é', '\u{430}']),
    ) {
        let chars: Vec<char> = text.chars().collect();
        prop_assume!(!chars.is_empty());
        let pos = pos % chars.len();
        let mut modified = chars.clone();
        modified[pos] = sub;
        for enc in encoders() {
            let before = enc.tokens(&chars);
            let after = enc.tokens(&modified);
            prop_assert_eq!(before.len(), after.len());
            for (b, a) in before.iter().zip(&after) {
                prop_assert_eq!((b.start, b.end), (a.start, a.end));
                prop_assert_eq!(enc.retoken(&modified, b), a.id);
                if !(b.start..b.end).contains(&pos) {
                    prop_assert_eq!(b.id, a.id);
                }
            }
        }
    }
}

#[test]
fn encoders_truncate_and_bound_ids() {
    let text: Vec<char> = "Hello, World! ünïcödé\u{200b}".repeat(10).chars().collect();
    for enc in encoders() {
        let toks = enc.tokens(&text);
        assert!(!toks.is_empty());
        assert!(toks.iter().all(|t| t.end <= 40 && t.start < t.end));
        let (ids, mask, t) = enc.batch_ids(&[toks.clone(), Vec::new()]);
        assert_eq!(t, toks.len());
        assert!(ids
            .iter()
            .all(|&i| i >= 0 && (i as usize) < enc.vocab_size()));
        assert_eq!(mask.iter().filter(|&&m| m == 1.0).count(), toks.len());
    }
    assert!(TextEncoder::chars(0).validate().is_err());
    assert!(TextEncoder::Ngrams {
        buckets: 10,
        min_n: 3,
        max_n: 2,
        max_chars: 5
    }
    .validate()
    .is_err());
}

fn small_config(kind: TextModelKind) -> TextModelConfig {
    let mut c = TextModelConfig::new(kind, 2);
    c.dim = 8;
    c.channels = 8;
    c.encoder = match kind {
        TextModelKind::NgramBag => TextEncoder::Ngrams {
            buckets: 4096,
            min_n: 2,
            max_n: 4,
            max_chars: 200,
        },
        TextModelKind::CharCnn | TextModelKind::Transformer => TextEncoder::chars(200),
    };
    c
}

/// The cross-entropy of `label` for `text` with token `i`'s embedding moved by `h` along
/// coordinate `k`.
fn loss_with_shift(model: &TextModel, text: &str, label: usize, i: usize, k: usize, h: f32) -> f64 {
    let device = device();
    let toks = model.text_tokens(text);
    let (ids, mask) = batch_tensors(&model.config.encoder, std::slice::from_ref(&toks), &device);
    let emb = model.net().embed(ids);
    let [_, t, d] = emb.dims();
    let mut shift = vec![0.0f32; t * d];
    shift[i * d + k] = h;
    let emb = emb + Tensor::<3>::from_data(TensorData::new(shift, [1, t, d]), &device);
    let logits = model.net().head(emb, mask);
    let logp = burn::tensor::activation::log_softmax(logits, 1)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    -(logp[label] as f64)
}

#[test]
fn token_gradients_match_finite_differences() {
    for kind in [TextModelKind::NgramBag, TextModelKind::CharCnn] {
        let config = small_config(kind);
        let net = init_net(&config, 3, &device()).unwrap();
        let model = TextModel::new(config, Canonicalizer::none(), &net, &device());
        let text = "Win a FREE prize now, click here!";
        let grads = model.token_gradients(&[text.to_string()], &[1]);
        let toks = model.text_tokens(text);
        let d = model.embedding_dim();
        assert_eq!(grads[0].len(), toks.len() * d);
        let mut rng = rng::seeded(9);
        let h = 1e-2f32;
        for _ in 0..12 {
            let i = rng.random_range(0..toks.len());
            let k = rng.random_range(0..d);
            let numeric = (loss_with_shift(&model, text, 1, i, k, h)
                - loss_with_shift(&model, text, 1, i, k, -h))
                / (2.0 * h as f64);
            let analytic = grads[0][i * d + k] as f64;
            assert!(
                (numeric - analytic).abs() <= 2e-3 + 0.05 * analytic.abs(),
                "{kind}: token {i} coord {k}: finite difference {numeric}, gradient {analytic}"
            );
        }
    }
}

#[test]
fn padding_does_not_change_predictions() {
    for kind in [TextModelKind::NgramBag, TextModelKind::CharCnn] {
        let config = small_config(kind);
        let net = init_net(&config, 4, &device()).unwrap();
        let mut model = TextModel::new(config, Canonicalizer::none(), &net, &device());
        let short = "hi".to_string();
        let long = "a much longer text that forces padding of the short one".to_string();
        model.batch_size = 1;
        let alone = model.probabilities_infallible(std::slice::from_ref(&short));
        model.batch_size = 8;
        let batched = model.probabilities_infallible(&[short, long]);
        for (a, b) in alone[0].iter().zip(&batched[0]) {
            assert!((a - b).abs() < 1e-5, "{kind}: {a} vs {b}");
        }
    }
}

/// Spam-like toy data: class 1 texts contain a trigger word.
fn toy_data(n: usize, seed: u64) -> TextDataset {
    let mut rng = rng::seeded(seed);
    let filler = [
        "meeting", "tomorrow", "report", "lunch", "project", "thanks", "review", "notes",
        "schedule", "call", "team", "update",
    ];
    let triggers = ["winner", "prize", "viagra", "casino"];
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let label = i % 2;
        let mut words: Vec<&str> = (0..8)
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

#[test]
fn standard_training_learns_a_keyword_task() {
    let train = toy_data(200, 1);
    let test = toy_data(100, 2);
    for kind in [TextModelKind::NgramBag, TextModelKind::CharCnn] {
        let config = TextTrainConfig {
            model: small_config(kind),
            method: TextMethod::Standard,
            canonicalizer: Canonicalizer::none(),
            epochs: 8,
            batch_size: 16,
            lr: 0.02,
            seed: 0,
            schedule: advtrain::train::Schedule::Constant,
            monitor: advtrain::text::train::text_monitor(),
            fpr: 0.01,
        };
        let mut epochs = 0;
        let trained = train_text(
            &config,
            &train,
            Some(&test),
            &device(),
            &Silent,
            &mut |_, _| {
                epochs += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(epochs, 8);
        let acc = trained.history.last().unwrap().val_accuracy.unwrap();
        assert!(acc >= 0.9, "{kind}: held-out accuracy {acc}");
    }
}

#[test]
fn embedding_perturbation_stays_in_its_ball() {
    let config = small_config(TextModelKind::CharCnn);
    let device = device();
    let net = init_net(&config, 5, &device).unwrap();
    let model = TextModel::new(config.clone(), Canonicalizer::none(), &net, &device);
    let texts = ["short one", "a rather longer second text here"];
    let toks: Vec<_> = texts.iter().map(|t| model.text_tokens(t)).collect();
    let (ids, mask) = batch_tensors(&config.encoder, &toks, &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device);
    let eps = 0.2;
    let delta = embedding_perturbation(
        &net,
        ids.clone(),
        mask.clone(),
        y,
        eps,
        3,
        &mut rng::seeded(0),
    );
    let emb = net.embed(ids);
    let [b, t, d] = emb.dims();
    let m: Vec<f32> = mask.into_data().try_to_vec().unwrap();
    let e: Vec<f32> = emb.into_data().try_to_vec().unwrap();
    let dl: Vec<f32> = delta.into_data().try_to_vec().unwrap();
    for i in 0..b {
        let (mut en, mut dn) = (0.0f64, 0.0f64);
        for j in 0..t {
            for k in 0..d {
                let idx = (i * t + j) * d + k;
                if m[i * t + j] == 0.0 {
                    assert_eq!(dl[idx], 0.0, "padding must not be perturbed");
                }
                en += (e[idx] * e[idx] * m[i * t + j]) as f64;
                dn += (dl[idx] * dl[idx]) as f64;
            }
        }
        assert!(
            dn.sqrt() <= eps * en.sqrt() * (1.0 + 1e-4),
            "text {i}: |δ| {} > {}",
            dn.sqrt(),
            eps * en.sqrt()
        );
        assert!(dn > 0.0);
    }
}

#[test]
fn save_and_load_round_trip() {
    let config = small_config(TextModelKind::NgramBag);
    let device = device();
    let net = init_net(&config, 6, &device).unwrap();
    let dir = std::env::temp_dir().join(format!("advtrain-text-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    advtrain::model::save_safetensors(&net, &path).unwrap();
    let fresh = init_net(&config, 7, &device).unwrap();
    let loaded: TextNet = advtrain::model::load_safetensors(fresh, &path).unwrap();
    let a = TextModel::new(config.clone(), Canonicalizer::none(), &net, &device);
    let b = TextModel::new(config, Canonicalizer::none(), &loaded, &device);
    let t = vec!["some text to classify".to_string()];
    assert_eq!(
        a.probabilities_infallible(&t),
        b.probabilities_infallible(&t)
    );
    std::fs::remove_dir_all(&dir).ok();
}
