//! FAB and FAB-T: minimal perturbations on linear models (where the minimum is analytic),
//! strength on a trained model, the ε rule (no adversarial within ε: the clean input), and
//! replayable randomness.

use crate::common;

use advtrain::attack::{Attack, Fab, FabTargeted};
use advtrain::data::synthetic;
use advtrain::eval::evaluate;
use advtrain::model::{Classifier, ModelKind};
use advtrain::progress::Silent;
use advtrain::threat::{Norm, ThreatModel};
use advtrain::train::MethodConfig;
use burn::module::{Module, Param};
use burn::nn::LinearConfig;
use burn::prelude::*;
use proptest::prelude::*;

/// A linear classifier `f(x) = Wᵀx + b` over the flattened image, with fixed weights.
#[derive(Module, Debug)]
struct Affine {
    fc: burn::nn::Linear,
}

impl Classifier for Affine {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.fc.forward(images.flatten(1, 3))
    }
}

/// A linear problem: weights `w[i·k + j]` (input i, class j), biases such that every class
/// scores about the same at the grey image 0.5, and points near 0.5 labelled by the model
/// (so all are classified correctly and their boundaries are close).
struct LinearCase {
    model: Affine,
    w: Vec<f32>,
    bias: Vec<f32>,
    x: Vec<f32>,
    labels: Vec<i64>,
    d: usize,
    k: usize,
    n: usize,
}

fn linear_case(k: usize, seed: u64) -> LinearCase {
    let (d, n) = (16, 12);
    let device = common::device();
    let mut rng = advtrain::rng::seeded(seed);
    let w = advtrain::rng::uniform_vec(&mut rng, d * k, -1.0, 1.0);
    let offsets = advtrain::rng::uniform_vec(&mut rng, k, 0.0, 0.3);
    let bias: Vec<f32> = (0..k)
        .map(|j| offsets[j] - 0.5 * (0..d).map(|i| w[i * k + j]).sum::<f32>())
        .collect();
    let x = advtrain::rng::uniform_vec(&mut rng, n * d, 0.45, 0.55);
    let model = advtrain::model::init_seeded(&device, seed, || {
        let mut fc = LinearConfig::new(d, k).init(&device);
        fc.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(w.clone(), [d, k]),
            &device,
        ));
        fc.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias.clone(), [k]),
            &device,
        )));
        Affine { fc }
    });
    let mut case = LinearCase {
        model,
        w,
        bias,
        x,
        labels: Vec::new(),
        d,
        k,
        n,
    };
    case.labels = (0..n)
        .map(|i| {
            let f = case.scores(i, &case.x[i * d..(i + 1) * d]);
            (0..k).max_by(|&a, &b| f[a].total_cmp(&f[b])).unwrap() as i64
        })
        .collect();
    case
}

impl LinearCase {
    fn scores(&self, _i: usize, x: &[f32]) -> Vec<f64> {
        (0..self.k)
            .map(|j| {
                f64::from(self.bias[j])
                    + (0..self.d)
                        .map(|i| f64::from(self.w[i * self.k + j]) * f64::from(x[i]))
                        .sum::<f64>()
            })
            .collect()
    }

    /// The minimal distance from point `i` to the other classes' region in `norm`: the
    /// smallest margin over the dual norm of the weight difference, min over classes. It is
    /// the exact minimum when the optimal step stays inside the box, which is asserted.
    fn min_distance(&self, i: usize, norm: Norm) -> f64 {
        let x = &self.x[i * self.d..(i + 1) * self.d];
        let f = self.scores(i, x);
        let y = self.labels[i] as usize;
        let mut best = (f64::INFINITY, 0.0f64);
        for j in (0..self.k).filter(|&j| j != y) {
            let dw: Vec<f64> = (0..self.d)
                .map(|p| f64::from(self.w[p * self.k + y] - self.w[p * self.k + j]))
                .collect();
            let margin = f[y] - f[j];
            let (dual, largest_step) = match norm {
                Norm::Linf => {
                    let l1 = dw.iter().map(|v| v.abs()).sum::<f64>();
                    (l1, margin / l1)
                }
                Norm::L2 => {
                    let l2 = dw.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let max = dw.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    (l2, margin / (l2 * l2) * max)
                }
            };
            let dist = margin / dual;
            if dist < best.0 {
                best = (dist, largest_step);
            }
        }
        assert!(
            best.1 < 0.4,
            "case invalid: the optimal step ({}) reaches the box",
            best.1
        );
        best.0
    }

    fn tensors(&self) -> (Tensor<4>, Tensor<1, Int>) {
        let device = common::device();
        let x = Tensor::<4>::from_data(TensorData::new(self.x.clone(), [self.n, 1, 4, 4]), &device);
        let y =
            Tensor::<1, Int>::from_data(TensorData::new(self.labels.clone(), [self.n]), &device);
        (x, y)
    }

    /// Per point: the distance of the attack's output and whether it is misclassified.
    fn outcome(&self, x_adv: &Tensor<4>, norm: Norm) -> Vec<(f64, bool)> {
        let adv = x_adv.to_data().try_to_vec::<f32>().unwrap();
        (0..self.n)
            .map(|i| {
                let row = &adv[i * self.d..(i + 1) * self.d];
                let clean = &self.x[i * self.d..(i + 1) * self.d];
                let diffs = row.iter().zip(clean).map(|(a, b)| f64::from(a - b));
                let dist = match norm {
                    Norm::Linf => diffs.fold(0.0f64, |m, v| m.max(v.abs())),
                    Norm::L2 => diffs.map(|v| v * v).sum::<f64>().sqrt(),
                };
                let f = self.scores(i, row);
                let pred = (0..self.k).max_by(|&a, &b| f[a].total_cmp(&f[b])).unwrap();
                (dist, pred as i64 != self.labels[i])
            })
            .collect()
    }
}

/// Checks that every point was broken at a distance within 3% of the analytic minimum.
fn assert_near_minimal<A: Attack>(case: &LinearCase, attack: &A, norm: Norm) {
    let (x, y) = case.tensors();
    let x_adv = attack.perturb(&case.model, x, y, &mut advtrain::rng::seeded(1));
    for (i, (dist, broken)) in case.outcome(&x_adv, norm).into_iter().enumerate() {
        let opt = case.min_distance(i, norm);
        assert!(broken, "{}: point {i} not broken", attack.name());
        assert!(
            dist >= opt * (1.0 - 1e-3),
            "{}: point {i} at {dist} below the analytic minimum {opt}: the test is wrong",
            attack.name()
        );
        assert!(
            dist <= opt * 1.03,
            "{}: point {i} at {dist}, minimum {opt}",
            attack.name()
        );
    }
}

#[test]
fn fab_finds_the_minimal_l2_perturbation_of_a_linear_classifier() {
    for (k, seed) in [(2, 1), (4, 2)] {
        let case = linear_case(k, seed);
        assert_near_minimal(&case, &Fab::new(ThreatModel::l2(5.0)), Norm::L2);
    }
}

#[test]
fn fab_finds_the_minimal_linf_perturbation_of_a_linear_classifier() {
    for (k, seed) in [(2, 3), (4, 4)] {
        let case = linear_case(k, seed);
        assert_near_minimal(&case, &Fab::new(ThreatModel::linf(1.0)), Norm::Linf);
    }
}

#[test]
fn fab_t_finds_the_minimal_perturbation_of_a_two_class_linear_classifier() {
    // With two classes the one target is the closest boundary.
    let case = linear_case(2, 5);
    assert_near_minimal(&case, &FabTargeted::new(ThreatModel::l2(5.0)), Norm::L2);
    assert_near_minimal(&case, &FabTargeted::new(ThreatModel::linf(1.0)), Norm::Linf);
}

#[test]
fn a_minimal_adversarial_beyond_eps_is_not_returned() {
    // ε at 90% of each point's minimal distance: nothing can be broken, all stay clean.
    let case = linear_case(4, 6);
    for norm in [Norm::L2, Norm::Linf] {
        let smallest = (0..case.n)
            .map(|i| case.min_distance(i, norm))
            .fold(f64::INFINITY, f64::min);
        let threat = ThreatModel {
            norm,
            eps: (0.9 * smallest) as f32,
        };
        let (x, y) = case.tensors();
        let x_adv =
            Fab::new(threat).perturb(&case.model, x.clone(), y, &mut advtrain::rng::seeded(2));
        let moved = (x_adv - x).abs().max().into_scalar::<f32>();
        assert_eq!(moved, 0.0, "{norm}: a point moved");
    }
}

/// A small MLP trained normally on 4-class template images: accurate and not robust.
fn trained_undefended() -> (advtrain::model::ZooModel, advtrain::data::Dataset) {
    let all = synthetic::templates(900, 4, 1, 8, 0.15, 1);
    let train = all.subset(&(0..800).collect::<Vec<_>>());
    let test = all.subset(&(800..900).collect::<Vec<_>>());
    let model = common::quick_train(ModelKind::Mlp, &train, MethodConfig::Standard, 0.0, 6, 3);
    (model, test)
}

#[test]
fn fab_and_fab_t_break_an_undefended_model_at_a_large_eps() {
    let (model, test) = trained_undefended();
    let mut rng = advtrain::rng::seeded(4);
    for threat in [ThreatModel::linf(0.3), ThreatModel::l2(3.0)] {
        let attacks = [
            advtrain::attack::AnyAttack::Fab(Fab::new(threat).steps(50)),
            advtrain::attack::AnyAttack::FabTargeted(FabTargeted::new(threat).steps(50)),
        ];
        for attack in &attacks {
            let r = evaluate(&model, &test, attack, 64, &mut rng, &Silent).unwrap();
            assert!(
                r.clean.value > 0.9,
                "model did not learn: {}",
                r.clean.value
            );
            assert!(
                r.robust.value <= 0.05,
                "{}: robust {} (clean {})",
                attack.name(),
                r.robust.value,
                r.clean.value
            );
            assert!(r.max_perturbation <= threat.eps * (1.0 + 1e-5));
        }
    }
}

#[test]
fn eps_zero_leaves_robust_accuracy_at_clean_accuracy() {
    let (model, test) = trained_undefended();
    let mut rng = advtrain::rng::seeded(5);
    for threat in [ThreatModel::linf(0.0), ThreatModel::l2(0.0)] {
        let fab = evaluate(
            &model,
            &test,
            &Fab::new(threat).steps(10).restarts(2),
            64,
            &mut rng,
            &Silent,
        )
        .unwrap();
        assert_eq!(fab.robust.value, fab.clean.value, "{}", threat.describe());
        let fab_t = evaluate(
            &model,
            &test,
            &FabTargeted::new(threat).steps(10),
            64,
            &mut rng,
            &Silent,
        )
        .unwrap();
        assert_eq!(
            fab_t.robust.value,
            fab_t.clean.value,
            "{}",
            threat.describe()
        );
        assert_eq!(fab_t.max_perturbation, 0.0);
    }
}

#[test]
fn same_seed_gives_the_same_output_and_restarts_only_add() {
    let data = synthetic::templates(16, 4, 1, 6, 0.3, 7);
    let model = common::fresh(ModelKind::Mlp, &data, 7);
    let (x, y) = data.batch(&(0..16).collect::<Vec<_>>(), &common::device());
    for threat in [ThreatModel::linf(0.05), ThreatModel::l2(0.3)] {
        let fab = Fab::new(threat).steps(10).restarts(3);
        let run = |seed| {
            let out = fab.perturb(
                &model,
                x.clone(),
                y.clone(),
                &mut advtrain::rng::seeded(seed),
            );
            out.to_data().try_to_vec::<f32>().unwrap()
        };
        assert_eq!(
            run(3),
            run(3),
            "{}: same seed, different output",
            threat.describe()
        );

        // The first run starts at the clean input, so more restarts never break fewer points.
        let broken = |attack: &Fab| {
            let out = attack.perturb(&model, x.clone(), y.clone(), &mut advtrain::rng::seeded(3));
            let pred = model.logits(out).argmax(1).reshape([16]);
            let clean = model.logits(x.clone()).argmax(1).reshape([16]);
            let (pred, clean, y) = (
                pred.to_data().convert::<i64>().try_to_vec::<i64>().unwrap(),
                clean
                    .to_data()
                    .convert::<i64>()
                    .try_to_vec::<i64>()
                    .unwrap(),
                y.to_data().convert::<i64>().try_to_vec::<i64>().unwrap(),
            );
            (0..16)
                .filter(|&i| clean[i] == y[i] && pred[i] != y[i])
                .count()
        };
        assert!(broken(&fab) >= broken(&Fab::new(threat).steps(10)));
    }
}

#[test]
fn names_carry_the_settings() {
    let threat = ThreatModel::linf(0.1);
    assert_eq!(Fab::new(threat).name(), "fab-100x1 linf eps=0.1");
    assert_eq!(
        FabTargeted::new(threat).name(),
        "fab-t-100x9targets linf eps=0.1"
    );
    assert_eq!(
        FabTargeted::new(threat).restarts(2).steps(20).name(),
        "fab-t-20x9targetsx2 linf eps=0.1"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    /// FAB's output stays inside the ε-ball and the box for random radii, norms, shapes and
    /// seeds, and a point it moves is misclassified.
    #[test]
    fn fab_stays_in_ball_and_box(
        batch in 1usize..5,
        channels in prop_oneof![Just(1usize), Just(3usize)],
        size in 4usize..7,
        eps in 0.0f32..0.6,
        l2 in any::<bool>(),
        targeted in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let data = synthetic::templates(batch, 3, channels, size, 0.3, seed);
        let model = common::fresh(ModelKind::Mlp, &data, seed);
        let device = common::device();
        let (x, y) = data.batch(&(0..batch).collect::<Vec<_>>(), &device);
        let threat = if l2 {
            ThreatModel { norm: Norm::L2, eps: eps * (data.image_len() as f32).sqrt() / 2.0 }
        } else {
            ThreatModel::linf(eps)
        };
        let mut rng = advtrain::rng::seeded(seed);
        let x_adv = if targeted {
            FabTargeted::new(threat).steps(5).restarts(2).perturb(&model, x.clone(), y.clone(), &mut rng)
        } else {
            Fab::new(threat).steps(5).restarts(2).perturb(&model, x.clone(), y.clone(), &mut rng)
        };
        prop_assert_eq!(x_adv.dims(), x.dims());
        let pert = threat.max_perturbation(&x_adv, &x);
        prop_assert!(pert <= threat.eps * (1.0 + 1e-5), "perturbation {} > {}", pert, threat.eps);
        let lo = x_adv.clone().min().into_scalar::<f32>();
        let hi = x_adv.clone().max().into_scalar::<f32>();
        prop_assert!(lo >= 0.0 && hi <= 1.0, "left [0,1]: {} {}", lo, hi);

        let moved = (x_adv.clone() - x).abs().reshape([batch as i32, -1]).max_dim(1)
            .reshape([batch]).to_data().try_to_vec::<f32>().unwrap();
        let pred = model.logits(x_adv).argmax(1).reshape([batch]).to_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        let y = y.to_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        for i in 0..batch {
            prop_assert!(moved[i] == 0.0 || pred[i] != y[i], "point {} moved but is not adversarial", i);
        }
    }
}
