//! The Square attack: strength without gradients, the queries it makes, its budget, and that
//! it sees through gradient masking.

use crate::common;

use std::sync::{Arc, Mutex};

use advtrain::attack::{cw_margin, Attack, Pgd, Square, SquareLoss};
use advtrain::data::{synthetic, Dataset};
use advtrain::eval::evaluate;
use advtrain::model::{Classifier, ModelKind, ZooModel};
use advtrain::progress::Silent;
use advtrain::threat::{Norm, ThreatModel};
use advtrain::train::MethodConfig;
use burn::module::Module;
use burn::prelude::*;
use proptest::prelude::*;

/// A small MLP trained normally on 4-class template images, and held-out test images (one
/// draw, split, so train and test share the templates but no examples).
fn trained_undefended(n_test: usize) -> (ZooModel, Dataset) {
    let all = synthetic::templates(800 + n_test, 4, 1, 8, 0.15, 1);
    let train = all.subset(&(0..800).collect::<Vec<_>>());
    let test = all.subset(&(800..800 + n_test).collect::<Vec<_>>());
    let model = common::quick_train(ModelKind::Mlp, &train, MethodConfig::Standard, 0.0, 6, 3);
    (model, test)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// The output stays in the ball and the box and the budget holds for any image shape
    /// (tiny, non-square, one or three channels), radius (zero, huge), norm and seed.
    #[test]
    fn square_output_is_legal_for_any_shape(
        batch in 1usize..5,
        channels in prop_oneof![Just(1usize), Just(3usize)],
        height in 1usize..10,
        width in 1usize..10,
        eps in prop_oneof![Just(0.0f32), 0.0f32..0.5, Just(3.0f32)],
        l2 in any::<bool>(),
        budget in 0usize..30,
        seed in 0u64..1000,
    ) {
        let mut rng = advtrain::rng::seeded(seed);
        let len = batch * channels * height * width;
        let images = advtrain::rng::uniform_vec(&mut rng, len, 0.0, 1.0);
        let labels: Vec<u8> = (0..batch).map(|i| (i % 3) as u8).collect();
        let data = Dataset::new(images, labels, channels, height, width, 3, Vec::new()).unwrap();
        let model = common::fresh(ModelKind::Mlp, &data, seed);
        let idx: Vec<usize> = (0..batch).collect();
        let (x, y) = data.batch(&idx, &common::device());
        let threat = if l2 {
            ThreatModel::l2(eps * (data.image_len() as f32).sqrt() / 2.0)
        } else {
            ThreatModel::linf(eps)
        };
        let (x_adv, queries, _) =
            Square::new(threat).queries(budget).perturb_with_stats(&model, x.clone(), y, &mut rng);
        prop_assert_eq!(x_adv.dims(), x.dims());
        let pert = threat.max_perturbation(&x_adv, &x);
        prop_assert!(pert <= threat.eps * (1.0 + 1e-5) + 1e-6, "{}: perturbation {}", threat.describe(), pert);
        let v = floats(&x_adv);
        prop_assert!(v.iter().all(|p| (0.0..=1.0).contains(p)), "left [0, 1]");
        prop_assert!(queries.iter().all(|&q| q <= budget && (budget == 0 || q >= 1)));
    }
}

fn floats<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn ints(t: &Tensor<1, Int>) -> Vec<i64> {
    t.to_data().convert::<i64>().try_to_vec::<i64>().unwrap()
}

#[test]
fn p_schedule_is_the_published_one() {
    let p = 0.8f32;
    let at = |it, n| Square::p_selection(p, it, n);
    // 10,000 iterations: the breakpoints themselves.
    let expected = [
        (0, 1.0),
        (10, 1.0),
        (11, 2.0),
        (50, 2.0),
        (51, 4.0),
        (200, 4.0),
        (201, 8.0),
        (500, 8.0),
        (501, 16.0),
        (1000, 16.0),
        (1001, 32.0),
        (2000, 32.0),
        (2001, 64.0),
        (4000, 64.0),
        (4001, 128.0),
        (6000, 128.0),
        (6001, 256.0),
        (8000, 256.0),
        (8001, 512.0),
        (9999, 512.0),
    ];
    for (it, div) in expected {
        assert_eq!(at(it, 10_000), p / div, "iteration {it} of 10000");
    }
    // Rescaled to 10,000: iteration 2 of 1000 is "20", iteration 1 is "10".
    assert_eq!(at(1, 1000), p);
    assert_eq!(at(2, 1000), p / 2.0);
    assert_eq!(at(999, 1000), p / 512.0);
}

/// Square, with no gradient at all, breaks an undefended model about as well as PGD, in both
/// norms. (L2 Square is the weaker of the two on these tiny 8×8 images, where its
/// square-window bumps are coarse, hence the looser margin.)
#[test]
fn square_breaks_an_undefended_model_without_gradients() {
    let (model, test) = trained_undefended(150);
    let mut rng = advtrain::rng::seeded(9);
    for (threat, pgd_steps, slack) in [
        (ThreatModel::linf(0.2), 20, 0.1),
        (ThreatModel::l2(2.0), 30, 0.2),
    ] {
        let pgd = evaluate(
            &model,
            &test,
            &Pgd::new(threat).steps(pgd_steps),
            150,
            &mut rng,
            &Silent,
        )
        .unwrap();
        let square_attack = Square::new(threat).queries(1000);
        let square = evaluate(&model, &test, &square_attack, 150, &mut rng, &Silent).unwrap();
        println!(
            "{}: clean {:.3}, PGD-{pgd_steps} {:.3}, {} {:.3} ({:.2}s)",
            threat.describe(),
            pgd.clean.value,
            pgd.robust.value,
            square_attack.name(),
            square.robust.value,
            square.seconds
        );
        assert!(
            pgd.clean.value > 0.95,
            "model did not learn: {}",
            pgd.clean.value
        );
        assert!(
            pgd.robust.value <= pgd.clean.value - 0.4,
            "{}: PGD should succeed here (clean {}, PGD {})",
            threat.describe(),
            pgd.clean.value,
            pgd.robust.value
        );
        assert!(
            square.robust.value <= square.clean.value - 0.4,
            "{}: Square barely moved the model: clean {} square {}",
            threat.describe(),
            square.clean.value,
            square.robust.value
        );
        assert!(
            square.robust.value <= pgd.robust.value + slack,
            "{}: Square {} much weaker than PGD {}",
            threat.describe(),
            square.robust.value,
            pgd.robust.value
        );
        assert!(square.max_perturbation <= threat.eps * (1.0 + 1e-5) + 1e-6);
    }
}

/// Every batch a [`Recorder`] was asked about, and whether it could carry a gradient.
type Log = Arc<Mutex<Vec<(bool, Vec<f32>)>>>;

/// A classifier that records every batch it is asked about, and whether that batch could
/// carry a gradient.
#[derive(Module, Debug)]
struct Recorder {
    inner: ZooModel,
    #[module(skip)]
    log: Log,
}

impl Classifier for Recorder {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let tracked = images.is_autodiff() || images.is_require_grad();
        self.log.lock().unwrap().push((tracked, floats(&images)));
        self.inner.logits(images)
    }
}

/// Distance between two images in the threat model's norm.
fn dist(norm: Norm, a: &[f32], b: &[f32]) -> f32 {
    let d = a.iter().zip(b).map(|(p, q)| p - q);
    match norm {
        Norm::Linf => d.map(f32::abs).fold(0.0, f32::max),
        Norm::L2 => d.map(|v| v * v).sum::<f32>().sqrt(),
    }
}

/// Up to `want` test examples, taken in the order `candidates`, pairwise more than
/// `2·ε + 0.01` apart in the threat model's norm, so that every point of an ε-ball belongs
/// to exactly one of them.
fn far_apart(test: &Dataset, candidates: &[usize], threat: ThreatModel, want: usize) -> Vec<usize> {
    let mut picked: Vec<usize> = Vec::new();
    for &i in candidates {
        if picked
            .iter()
            .all(|&j| dist(threat.norm, test.image(i), test.image(j)) > 2.0 * threat.eps + 0.01)
        {
            picked.push(i);
        }
        if picked.len() == want {
            break;
        }
    }
    picked
}

/// Every input the model is ever asked about lies in the threat model around its own clean
/// image and in [0, 1], carries no gradient tracking (even when the caller's input does), and
/// the reported query counts are exactly the calls the model saw. The clean images are more
/// than 2ε apart, so each queried input is within ε of exactly one of them.
#[test]
fn square_never_queries_outside_the_ball() {
    let all = synthetic::templates(1100, 4, 1, 8, 0.15, 1);
    let train = all.subset(&(0..800).collect::<Vec<_>>());
    let test = all.subset(&(800..1100).collect::<Vec<_>>());
    let inner = common::quick_train(ModelKind::Mlp, &train, MethodConfig::Standard, 0.0, 1, 3);
    let device = common::device();
    // Prefer the examples of smallest clean margin, so that some break within the budget at a
    // radius small enough for the balls to be disjoint.
    let all: Vec<usize> = (0..test.len()).collect();
    let (x_all, y_all) = test.batch(&all, &device);
    let margins: Vec<f32> = floats(&cw_margin(inner.valid().logits(x_all), y_all));
    let mut order = all.clone();
    order.sort_by(|&a, &b| margins[b].total_cmp(&margins[a]));
    let log = Arc::new(Mutex::new(Vec::new()));
    // In L2 the balls must be small to be disjoint, too small to break the
    // trained model within the budget; an untrained one breaks, which is all this test needs.
    let trained = Recorder {
        inner,
        log: log.clone(),
    };
    let untrained = Recorder {
        inner: common::fresh(ModelKind::Mlp, &test, 5),
        log: log.clone(),
    };
    for (threat, want, model) in [
        (ThreatModel::linf(0.2), 32, &trained),
        (ThreatModel::l2(0.3), 24, &untrained),
    ] {
        let picked = far_apart(&test, &order, threat, want);
        assert_eq!(picked.len(), want, "not enough well-separated examples");
        let data = test.subset(&picked);
        let idx: Vec<usize> = (0..data.len()).collect();
        let (x, y) = data.batch(&idx, &device);
        let n = data.image_len();
        log.lock().unwrap().clear();
        let attack = Square::new(threat).queries(1000);
        let mut rng = advtrain::rng::seeded(11);
        // Hand the attack an autodiff-enabled input: it must still query on plain tensors.
        let (x_adv, queries, fooled) =
            attack.perturb_with_stats(model, x.clone().autodiff(), y.clone(), &mut rng);
        let batches = log.lock().unwrap().clone();
        let mut seen = vec![0usize; data.len()];
        let mut rows = 0usize;
        for (tracked, batch) in &batches {
            assert!(
                !tracked,
                "{}: the model was queried with autodiff on",
                threat.describe()
            );
            for row in batch.chunks(n) {
                rows += 1;
                assert!(
                    row.iter().all(|v| (0.0..=1.0).contains(v)),
                    "{}: a queried input left [0, 1]",
                    threat.describe()
                );
                let owners: Vec<usize> = (0..data.len())
                    .filter(|&i| dist(threat.norm, row, data.image(i)) <= threat.eps + 1e-6)
                    .collect();
                assert_eq!(
                    owners.len(),
                    1,
                    "{}: a queried input is within eps of {} clean images",
                    threat.describe(),
                    owners.len()
                );
                seen[owners[0]] += 1;
            }
        }
        println!(
            "{}: {} model calls, {rows} images, {} of {} fooled, queries min {} max {}",
            threat.describe(),
            batches.len(),
            fooled.iter().filter(|&&f| f).count(),
            data.len(),
            queries.iter().min().unwrap(),
            queries.iter().max().unwrap()
        );
        assert_eq!(
            seen,
            queries,
            "{}: reported queries differ from the calls the model saw",
            threat.describe()
        );
        assert!(
            threat.max_perturbation(&x_adv.without_autodiff(), &x)
                <= threat.eps * (1.0 + 1e-5) + 1e-6,
            "{}: output outside the ball",
            threat.describe()
        );
        // The attack ran on shrinking subsets: some examples broke early, the model was
        // called with fewer rows than the batch.
        assert!(
            fooled.iter().any(|&f| f),
            "{}: nothing broken",
            threat.describe()
        );
        assert!(
            batches.iter().any(|(_, b)| b.len() < n * data.len()),
            "{}: every call used the full batch",
            threat.describe()
        );
    }
}

/// No example gets more queries than the budget; the same seed gives the same result; the
/// `fooled` flags agree with the model on the returned points.
#[test]
fn square_respects_its_budget_and_is_deterministic() {
    let (model, test) = trained_undefended(100);
    let model = model.valid();
    let device = common::device();
    let idx: Vec<usize> = (0..test.len()).collect();
    let (x, y) = test.batch(&idx, &device);
    let labels = ints(&y);
    // A small radius and budget, so that some examples survive and use all their queries.
    for (threat, loss) in [
        (ThreatModel::linf(0.2), SquareLoss::Margin),
        (ThreatModel::linf(0.2), SquareLoss::CrossEntropy),
        (ThreatModel::l2(1.5), SquareLoss::Margin),
    ] {
        let budget = 40;
        let attack = Square::new(threat).queries(budget).loss(loss);
        let run = |seed| {
            let mut rng = advtrain::rng::seeded(seed);
            attack.perturb_with_stats(&model, x.clone(), y.clone(), &mut rng)
        };
        let (a, qa, fa) = run(5);
        let (b, qb, fb) = run(5);
        let (c, _, _) = run(6);
        assert_eq!(
            floats(&a),
            floats(&b),
            "{}: same seed, different output",
            attack.name()
        );
        assert_eq!(qa, qb);
        assert_eq!(fa, fb);
        assert_ne!(
            floats(&a),
            floats(&c),
            "{}: the seed is not used",
            attack.name()
        );
        let max = *qa.iter().max().unwrap();
        println!(
            "{}: queries min {} max {max}, {} fooled of {}",
            attack.name(),
            qa.iter().min().unwrap(),
            fa.iter().filter(|&&f| f).count(),
            qa.len()
        );
        assert!(
            max <= budget,
            "{}: an example got {max} > {budget} queries",
            attack.name()
        );
        assert_eq!(
            max,
            budget,
            "{}: no example used the whole budget",
            attack.name()
        );
        assert!(qa.iter().all(|&q| q >= 1));
        // Examples marked fooled are misclassified at the returned point and vice versa.
        let pred = ints(&model.logits(a).argmax(1).reshape([labels.len()]));
        for i in 0..labels.len() {
            assert_eq!(
                fa[i],
                pred[i] != labels[i],
                "{}: example {i}",
                attack.name()
            );
            // An example still unbroken used its whole budget; a broken one stopped early.
            if !fa[i] {
                assert_eq!(qa[i], budget);
            }
        }
    }
    // Restarts add a fresh budget for the examples still unbroken, and never more.
    let attack = Square::new(ThreatModel::linf(0.2)).queries(40).restarts(3);
    let mut rng = advtrain::rng::seeded(5);
    let (_, q, f) = attack.perturb_with_stats(&model, x.clone(), y.clone(), &mut rng);
    assert!(q.iter().all(|&q| q <= 120));
    assert!(q.iter().zip(&f).all(|(&q, &f)| f || q == 120));
    // A zero budget asks nothing.
    let (same, q, f) = Square::new(ThreatModel::linf(0.1))
        .queries(0)
        .perturb_with_stats(&model, x.clone(), y.clone(), &mut advtrain::rng::seeded(1));
    assert_eq!(floats(&same), floats(&x));
    assert!(q.iter().all(|&q| q == 0) && f.iter().all(|&f| !f));
}

/// Rounds its input to 4 grey levels before an undefended model: the input gradient is zero
/// almost everywhere, so gradient attacks are blind, but the model is no more robust.
#[derive(Module, Debug)]
struct Quantized {
    inner: ZooModel,
}

impl Classifier for Quantized {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.inner
            .logits(images.mul_scalar(3.0).round().div_scalar(3.0))
    }
}

fn quantize(data: &Dataset) -> Dataset {
    let mut q = data.clone();
    q.images
        .iter_mut()
        .for_each(|v| *v = (*v * 3.0).round() / 3.0);
    q
}

#[test]
fn square_sees_through_gradient_masking() {
    let all = synthetic::templates(950, 4, 1, 8, 0.15, 1);
    let train = quantize(&all.subset(&(0..800).collect::<Vec<_>>()));
    let test = all.subset(&(800..950).collect::<Vec<_>>());
    let inner = common::quick_train(ModelKind::Mlp, &train, MethodConfig::Standard, 0.0, 6, 3);
    let model = Quantized { inner };
    let threat = ThreatModel::linf(0.2);
    let mut rng = advtrain::rng::seeded(3);
    let pgd = evaluate(
        &model,
        &test,
        &Pgd::new(threat).steps(20),
        150,
        &mut rng,
        &Silent,
    )
    .unwrap();
    let square_attack = Square::new(threat).queries(1000);
    let square = evaluate(&model, &test, &square_attack, 150, &mut rng, &Silent).unwrap();
    println!(
        "quantized model, {}: clean {:.3}, PGD-20 {:.3}, {} {:.3}",
        threat.describe(),
        pgd.clean.value,
        pgd.robust.value,
        square_attack.name(),
        square.robust.value
    );
    assert!(
        pgd.clean.value > 0.9,
        "quantized model did not learn: {}",
        pgd.clean.value
    );
    assert!(
        pgd.robust.value >= pgd.clean.value - 0.2,
        "PGD was not blinded by the rounding (clean {}, PGD {}): the test does not test masking",
        pgd.clean.value,
        pgd.robust.value
    );
    assert!(
        square.robust.value <= pgd.robust.value - 0.4,
        "Square {} not clearly below PGD {} on a gradient-masked model",
        square.robust.value,
        pgd.robust.value
    );
}
