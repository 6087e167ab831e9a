//! Window scoring (`Classifier::window_scorer`): the logits of an image that differs from a
//! tracked one in one window must be the model's own logits for it, up to rounding, however
//! many windows have been accepted before.

use crate::common;

use advtrain::attack::{cw_margin, Square};
use advtrain::model::window::Window;
use advtrain::model::{init_seeded, Classifier, ModelKind, ModelShape, Normalization, ZooModel};
use advtrain::threat::ThreatModel;
use burn::prelude::*;
use proptest::prelude::*;

fn small_cnn(shape: &ModelShape, normalization: Option<Normalization>, seed: u64) -> ZooModel {
    let device = common::device();
    init_seeded(&device, seed, || {
        let model = ZooModel::new(ModelKind::SmallCnn, shape, normalization, &device).unwrap();
        let probe = Tensor::<4>::zeros([1, shape.channels, shape.height, shape.width], &device);
        let _ = model.logits(probe);
        model
    })
}

fn full_logits(model: &ZooModel, images: &[f32], shape: &ModelShape) -> Vec<f32> {
    let n = images.len() / shape.image_len();
    let dims = [n, shape.channels, shape.height, shape.width];
    let x = Tensor::<4>::from_data(TensorData::new(images.to_vec(), dims), &common::device());
    model.logits(x).into_data().try_to_vec::<f32>().unwrap()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        prop_assert!(
            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{}: {} vs {}",
            what,
            g,
            w
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    /// Any image size (odd, non-square, one or three channels), with or without the model's
    /// normalisation, windows anywhere (edges included), and a chain of replacements.
    #[test]
    fn window_logits_are_the_full_pass_logits(
        channels in prop_oneof![Just(1usize), Just(3usize)],
        height in 4usize..20,
        width in 4usize..20,
        normalized in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let shape = ModelShape { channels, height, width, num_classes: 7 };
        let normalization = normalized.then(|| Normalization {
            mean: (0..channels).map(|c| 0.3 + 0.1 * c as f32).collect(),
            std: (0..channels).map(|c| 0.2 + 0.05 * c as f32).collect(),
        });
        let model = small_cnn(&shape, normalization, seed);
        let mut scorer = model
            .window_scorer([channels, height, width])
            .expect("small-cnn has a window scorer");
        prop_assert_eq!(scorer.classes(), 7);
        let mut rng = advtrain::rng::seeded(seed);
        let n = shape.image_len();
        let mut images = advtrain::rng::uniform_vec(&mut rng, 3 * n, 0.0, 1.0);
        let tracked = scorer.track(&images);
        assert_close(&tracked, &full_logits(&model, &images, &shape), "track")?;
        for step in 0..12 {
            let k = step % 3;
            let side = 1 + (seed as usize + step) % height.min(width);
            let top = (seed as usize * 7 + step * 3) % (height - side + 1);
            let left = (seed as usize * 5 + step) % (width - side + 1);
            let window = Window::square(top, left, side);
            let mut candidate = images[k * n..(k + 1) * n].to_vec();
            let fresh = advtrain::rng::uniform_vec(&mut rng, channels * side * side, 0.0, 1.0);
            let mut values = fresh.into_iter();
            for ch in 0..channels {
                for r in top..top + side {
                    for c in left..left + side {
                        candidate[ch * height * width + r * width + c] = values.next().unwrap();
                    }
                }
            }
            let mut got = vec![0.0; 7];
            scorer.logits_with_window(k, &candidate, window, &mut got);
            assert_close(&got, &full_logits(&model, &candidate, &shape), "window")?;
            if step % 2 == 0 {
                scorer.replace(k, &candidate, window);
                images[k * n..(k + 1) * n].copy_from_slice(&candidate);
            }
        }
    }
}

#[test]
fn models_without_a_window_scorer_say_so() {
    let shape = ModelShape::fashion_mnist();
    for kind in [ModelKind::Mlp, ModelKind::MadryCnn] {
        let model = ZooModel::new(kind, &shape, None, &common::device()).unwrap();
        assert!(model.window_scorer([1, 28, 28]).is_none(), "{kind}");
    }
    // A shape the small CNN was not built for: its first dense layer does not fit.
    let model = small_cnn(&shape, None, 1);
    assert!(model.window_scorer([1, 20, 20]).is_none());
}

/// Square decides success from window-scored logits; a point it reports as fooled must be
/// misclassified by the model's own forward pass, and with window scoring off the attack
/// must report the same successes (the decisions do not hinge on rounding here).
#[test]
fn square_successes_scored_by_windows_hold_in_the_full_pass() {
    let shape = ModelShape {
        channels: 1,
        height: 12,
        width: 12,
        num_classes: 4,
    };
    let model = small_cnn(&shape, None, 5);
    let mut rng = advtrain::rng::seeded(9);
    let images = advtrain::rng::uniform_vec(&mut rng, 24 * shape.image_len(), 0.0, 1.0);
    let x = Tensor::<4>::from_data(TensorData::new(images, [24, 1, 12, 12]), &common::device());
    let labels = model.logits(x.clone()).argmax(1).squeeze_dim::<1>(1);
    let square = Square::new(ThreatModel::linf(0.1)).queries(200);
    let (x_adv, queries, fooled) = square.perturb_with_stats(
        &model,
        x.clone(),
        labels.clone(),
        &mut advtrain::rng::seeded(3),
    );
    let margins = cw_margin(model.logits(x_adv), labels.clone());
    let margins = margins.into_data().try_to_vec::<f32>().unwrap();
    assert!(
        fooled.iter().any(|&f| f),
        "Square broke nothing: {margins:?}"
    );
    for (i, (&f, &m)) in fooled.iter().zip(&margins).enumerate() {
        // cw_margin is max_{j≠y} z_j − z_y: positive exactly when misclassified.
        assert_eq!(f, m > 0.0, "example {i}: fooled {f}, full-pass margin {m}");
    }
    let (_, queries_full, fooled_full) = square.window_scoring(false).perturb_with_stats(
        &model,
        x,
        labels,
        &mut advtrain::rng::seeded(3),
    );
    assert_eq!(fooled, fooled_full);
    assert_eq!(queries, queries_full);
}
