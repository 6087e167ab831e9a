//! The spatial attack of Engstrom et al. 2019 ("Exploring the landscape of spatial
//! robustness"): the worst case over a grid of rotations and translations.
//!
//! It is not an [`crate::attack::Attack`]: that trait promises an output inside an Lp ball
//! around the input, which evaluation checks, and a rotated image is nowhere near that ball.
//! Its threat model is the grid itself, so it lives here, as an evaluation, and returns the
//! transform that broke each example rather than a perturbed tensor.
//!
//! An example is robust if the model classifies it correctly clean and at every grid point.
//! The search is exhaustive and deterministic: grid points are tried in their fixed order
//! ([`SpatialGrid::points`]), all remaining examples at one point per forward batch, and an
//! example stops at the first point that misclassifies it (so the cost falls as examples
//! break). For an example that survives, the reported worst case is the point with the lowest
//! margin (true logit minus the best other logit), the first of equals.

use std::time::Instant;

use burn::prelude::{Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::attack::float_vec;
use crate::data::corrupt::rotate_translate;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval::{first_device, Accuracy};
use crate::model::Classifier;
use crate::progress::Progress;

/// One rotation-then-translation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpatialPoint {
    /// Rotation about the image centre in degrees, positive counter-clockwise as displayed.
    pub angle_deg: f32,
    /// Shift right in pixels (negative: left), applied after the rotation.
    pub dx: f32,
    /// Shift down in pixels (negative: up), applied after the rotation.
    pub dy: f32,
}

impl SpatialPoint {
    /// No rotation, no shift: the clean image.
    pub const IDENTITY: SpatialPoint = SpatialPoint {
        angle_deg: 0.0,
        dx: 0.0,
        dy: 0.0,
    };

    /// `image` (C×H×W in `[0, 1]`) transformed by this point, bilinearly with zeros outside
    /// the image, as [`rotate_translate`] does.
    pub fn apply(&self, image: &[f32], channels: usize, height: usize, width: usize) -> Vec<f32> {
        rotate_translate(
            image,
            channels,
            height,
            width,
            self.angle_deg,
            self.dx,
            self.dy,
        )
    }
}

/// The transforms searched: every combination of an angle, an x shift and a y shift.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpatialGrid {
    /// Rotation angles in degrees, in search order.
    pub angles_deg: Vec<f32>,
    /// Horizontal shifts in pixels, in search order.
    pub dx: Vec<f32>,
    /// Vertical shifts in pixels, in search order.
    pub dy: Vec<f32>,
}

impl Default for SpatialGrid {
    fn default() -> Self {
        Self::engstrom()
    }
}

impl SpatialGrid {
    /// Engstrom et al.'s box, rotations within ±30° and translations within ±3 pixels,
    /// searched every 3° (21 angles, −30 first) and every pixel (7 shifts each way, −3 first):
    /// 1,029 points.
    pub fn engstrom() -> Self {
        Self {
            angles_deg: (-10..=10).map(|k| 3.0 * k as f32).collect(),
            dx: (-3..=3).map(|k| k as f32).collect(),
            dy: (-3..=3).map(|k| k as f32).collect(),
        }
    }

    /// A grid of the given values, checked: each list non-empty and finite.
    pub fn new(angles_deg: Vec<f32>, dx: Vec<f32>, dy: Vec<f32>) -> Result<Self> {
        for (what, values) in [("angles", &angles_deg), ("dx", &dx), ("dy", &dy)] {
            if values.is_empty() {
                return Err(Error::config(format!(
                    "the spatial grid's {what} list is empty: give at least one value (0 for none)"
                )));
            }
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(Error::config(format!(
                    "the spatial grid's {what} list holds {v}, not a finite number"
                )));
            }
        }
        Ok(Self { angles_deg, dx, dy })
    }

    /// Number of grid points.
    pub fn len(&self) -> usize {
        self.angles_deg.len() * self.dx.len() * self.dy.len()
    }

    /// Whether the grid has no point (only possible for a grid built field by field).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every point in the fixed search order: angle-major, then x shift, then y shift, each in
    /// the order of its list.
    pub fn points(&self) -> impl Iterator<Item = SpatialPoint> + '_ {
        self.angles_deg.iter().flat_map(move |&angle_deg| {
            self.dx.iter().flat_map(move |&dx| {
                self.dy
                    .iter()
                    .map(move |&dy| SpatialPoint { angle_deg, dx, dy })
            })
        })
    }
}

/// What the search found for one example.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpatialExample {
    /// Classified correctly without a transform.
    pub clean_correct: bool,
    /// Correct clean and at every grid point.
    pub robust: bool,
    /// The first grid point that misclassifies it; for a robust example the point with the
    /// lowest margin; [`SpatialPoint::IDENTITY`] for an example already wrong clean.
    pub worst: SpatialPoint,
    /// The margin at `worst`: true-class logit minus the best other logit (negative or zero
    /// when misclassified).
    pub margin: f32,
    /// The predicted class at `worst`.
    pub prediction: u8,
}

/// The outcome of [`spatial_worst_case`] on a data set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpatialResult {
    /// The grid searched.
    pub grid: SpatialGrid,
    /// Accuracy on the untransformed images.
    pub clean: Accuracy,
    /// Fraction correct clean and at every grid point, so never above `clean`.
    pub robust: Accuracy,
    /// Per example, in data set order.
    pub examples: Vec<SpatialExample>,
    /// Images classified, the clean pass included: the search's cost, below
    /// `n * (grid points + 1)` because broken examples are skipped.
    pub images_evaluated: usize,
    /// Wall-clock seconds for the whole search.
    pub seconds: f64,
}

/// The worst case of every example of `data` over `grid` (see the module docs), `batch_size`
/// images per forward pass. The model is used in evaluation mode. Fails on an empty grid and
/// on non-finite logits.
pub fn spatial_worst_case<M: Classifier>(
    model: &M,
    data: &Dataset,
    grid: &SpatialGrid,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<SpatialResult> {
    if grid.is_empty() {
        return Err(Error::config("the spatial grid has no point"));
    }
    let start = Instant::now();
    let model = model.valid();
    let device = first_device(&model);
    let (c, h, w) = (data.channels, data.height, data.width);
    let batch_size = batch_size.max(1);
    let score = |indices: &[usize], images: Vec<f32>| -> Result<Vec<(u8, f32)>> {
        let x = Tensor::<4>::from_data(TensorData::new(images, [indices.len(), c, h, w]), &device);
        let logits = float_vec(&model.logits(x));
        if logits.iter().any(|v| !v.is_finite()) {
            return Err(Error::Diverged(
                "the model produced NaN or infinite logits".into(),
            ));
        }
        let k = logits.len() / indices.len().max(1);
        Ok(indices
            .iter()
            .zip(logits.chunks_exact(k))
            .map(|(&i, row)| prediction_and_margin(row, usize::from(data.labels[i])))
            .collect())
    };

    let mut examples = Vec::with_capacity(data.len());
    let order: Vec<usize> = (0..data.len()).collect();
    for chunk in order.chunks(batch_size) {
        let images = chunk.iter().flat_map(|&i| data.image(i).to_vec()).collect();
        for (&i, (prediction, margin)) in chunk.iter().zip(score(chunk, images)?) {
            let clean_correct = usize::from(prediction) == usize::from(data.labels[i]);
            examples.push(SpatialExample {
                clean_correct,
                robust: clean_correct,
                worst: SpatialPoint::IDENTITY,
                margin: if clean_correct { f32::INFINITY } else { margin },
                prediction,
            });
        }
    }
    let mut images_evaluated = data.len();

    let mut active: Vec<usize> = (0..data.len()).filter(|&i| examples[i].robust).collect();
    progress.begin("spatial", grid.len() as u64);
    for point in grid.points() {
        for chunk in active.chunks(batch_size) {
            let images: Vec<f32> = chunk
                .par_iter()
                .flat_map_iter(|&i| point.apply(data.image(i), c, h, w))
                .collect();
            for (&i, (prediction, margin)) in chunk.iter().zip(score(chunk, images)?) {
                let e = &mut examples[i];
                let wrong = usize::from(prediction) != usize::from(data.labels[i]);
                if wrong || margin < e.margin {
                    e.worst = point;
                    e.margin = margin;
                    e.prediction = prediction;
                }
                e.robust &= !wrong;
            }
            images_evaluated += chunk.len();
        }
        active.retain(|&i| examples[i].robust);
        let status = format!("{} of {} unbroken", active.len(), data.len());
        progress.advance(1, &status);
    }
    progress.end();

    let count = |f: fn(&SpatialExample) -> bool| examples.iter().filter(|e| f(e)).count();
    Ok(SpatialResult {
        grid: grid.clone(),
        clean: Accuracy::new(count(|e| e.clean_correct), data.len()),
        robust: Accuracy::new(count(|e| e.robust), data.len()),
        images_evaluated,
        examples,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The predicted class (the first largest logit) and the margin of class `label`.
fn prediction_and_margin(logits: &[f32], label: usize) -> (u8, f32) {
    let mut best = 0;
    for (j, &z) in logits.iter().enumerate() {
        if z > logits[best] {
            best = j;
        }
    }
    let other = logits
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != label)
        .map(|(_, &z)| z)
        .fold(f32::NEG_INFINITY, f32::max);
    (best as u8, logits[label] - other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;
    use burn::module::Module;
    use burn::prelude::Device;

    /// A horizontal bar through the centre of a 28×28 image, two rows thick and 14 long.
    fn bar() -> Vec<f32> {
        let mut img = vec![0.0; 28 * 28];
        for y in 13..=14 {
            for x in 7..21 {
                img[y * 28 + x] = 1.0;
            }
        }
        img
    }

    /// The orientation of an image's mass, in degrees counter-clockwise as displayed (from
    /// its second moments; unchanged by translation).
    fn orientation_deg(img: &[f32]) -> f32 {
        let (mut m, mut sx, mut sy) = (0.0f64, 0.0, 0.0);
        for (i, &v) in img.iter().enumerate() {
            let (y, x) = ((i / 28) as f64, (i % 28) as f64);
            m += f64::from(v);
            sx += f64::from(v) * x;
            sy += f64::from(v) * y;
        }
        let (cx, cy) = (sx / m, sy / m);
        let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
        for (i, &v) in img.iter().enumerate() {
            let (dy, dx) = ((i / 28) as f64 - cy, (i % 28) as f64 - cx);
            xx += f64::from(v) * dx * dx;
            yy += f64::from(v) * dy * dy;
            xy += f64::from(v) * dx * dy;
        }
        // y points down, so a counter-clockwise turn makes the covariance negative.
        (-0.5 * (2.0 * xy).atan2(xx - yy)).to_degrees() as f32
    }

    /// Reads its input back to the host and answers from the orientation of the mass: class 1
    /// when it is within 1.5° of `fail_at_deg`, class 0 otherwise, with a margin for class 0
    /// that is smallest near `tight_at_deg`.
    #[derive(Module, Debug)]
    struct Planted {
        fail_at_deg: f32,
        tight_at_deg: f32,
    }

    impl Classifier for Planted {
        fn logits(&self, images: Tensor<4>) -> Tensor<2> {
            let [b, _, _, _] = images.dims();
            let device = images.device();
            let pixels = float_vec(&images);
            let logits: Vec<f32> = pixels
                .chunks_exact(28 * 28)
                .flat_map(|img| {
                    // Rounded so that shifted copies (whose moments differ in the last
                    // bits) score exactly alike.
                    let a = (orientation_deg(img) * 100.0).round() / 100.0;
                    if (a - self.fail_at_deg).abs() < 1.5 {
                        [0.0, 1.0]
                    } else {
                        [1.0 + (a - self.tight_at_deg).abs() / 10.0, 0.0]
                    }
                })
                .collect();
            Tensor::from_data(TensorData::new(logits, [b, 2]), &device)
        }
    }

    fn bars(labels: Vec<u8>) -> Dataset {
        let images = labels.iter().flat_map(|_| bar()).collect();
        Dataset::new(images, labels, 1, 28, 28, 2, Vec::new()).unwrap()
    }

    fn planted(fail_at_deg: f32, tight_at_deg: f32) -> Planted {
        Planted {
            fail_at_deg,
            tight_at_deg,
        }
    }

    #[test]
    fn the_attack_finds_the_one_rotation_the_model_fails_at() {
        let data = bars(vec![0, 0, 1]);
        let model = planted(15.0, 100.0);
        let grid = SpatialGrid::engstrom();
        let r = spatial_worst_case(&model, &data, &grid, 2, &Silent).unwrap();
        let first_failure = SpatialPoint {
            angle_deg: 15.0,
            dx: -3.0,
            dy: -3.0,
        };
        for e in &r.examples[..2] {
            assert!(e.clean_correct && !e.robust, "{e:?}");
            assert_eq!(e.worst, first_failure);
            assert_eq!(e.prediction, 1);
            assert!(e.margin < 0.0);
        }
        // The third is labelled 1: wrong clean, so never searched.
        let third = r.examples[2];
        assert!(!third.clean_correct && !third.robust);
        assert_eq!(third.worst, SpatialPoint::IDENTITY);
        assert_eq!((r.clean.correct, r.robust.correct), (2, 0));
        // Broken examples are skipped: 3 clean images, then 2 per point up to 15° (the 15th
        // angle, −30 first) and its first shift.
        let before = 15 * 49;
        assert_eq!(r.images_evaluated, 3 + 2 * (before + 1));
        // No other grid point fails: searching the rest finds only 15° rotations.
        let others: Vec<f32> = grid
            .angles_deg
            .iter()
            .copied()
            .filter(|&a| a != 15.0)
            .collect();
        let rest = SpatialGrid::new(others, grid.dx.clone(), grid.dy.clone()).unwrap();
        let r = spatial_worst_case(&model, &data.take(1), &rest, 64, &Silent).unwrap();
        assert!(r.examples[0].robust, "{:?}", r.examples[0]);
    }

    #[test]
    fn a_robust_example_reports_its_lowest_margin_point() {
        let data = bars(vec![0]);
        let model = planted(1000.0, 6.0);
        let r = spatial_worst_case(&model, &data, &SpatialGrid::engstrom(), 8, &Silent).unwrap();
        let e = r.examples[0];
        assert!(e.robust);
        assert_eq!(e.worst.angle_deg, 6.0, "{e:?}");
        assert_eq!(
            (e.worst.dx, e.worst.dy),
            (-3.0, -3.0),
            "the first of equals"
        );
        assert_eq!(r.images_evaluated, 1 + 1029);
        assert_eq!(r.robust.value, 1.0);
    }

    #[test]
    fn the_default_grid_is_engstroms_box_in_a_fixed_order() {
        let grid = SpatialGrid::default();
        assert_eq!(grid.len(), 1029);
        let points: Vec<SpatialPoint> = grid.points().collect();
        assert_eq!(points.len(), 1029);
        assert_eq!(
            points[0],
            SpatialPoint {
                angle_deg: -30.0,
                dx: -3.0,
                dy: -3.0
            }
        );
        assert_eq!(points[1].dy, -2.0);
        assert_eq!(points[1028].angle_deg, 30.0);
        assert!(points.contains(&SpatialPoint::IDENTITY));
        assert!(SpatialGrid::new(vec![], vec![0.0], vec![0.0]).is_err());
        let err = SpatialGrid::new(vec![0.0], vec![f32::NAN], vec![0.0]).unwrap_err();
        assert!(err.to_string().contains("dx"), "{err}");
    }

    #[test]
    fn the_identity_point_leaves_the_image_unchanged() {
        let img: Vec<f32> = (0..3 * 5 * 7).map(|i| (i % 11) as f32 / 10.0).collect();
        assert_eq!(SpatialPoint::IDENTITY.apply(&img, 3, 5, 7), img);
        // And the planted model reads the bar as horizontal.
        assert!(orientation_deg(&bar()).abs() < 1e-4);
        let turned = SpatialPoint {
            angle_deg: 15.0,
            dx: 2.0,
            dy: -1.0,
        }
        .apply(&bar(), 1, 28, 28);
        assert!((orientation_deg(&turned) - 15.0).abs() < 0.5);
    }

    /// The audit's cost on 1,000 Fashion-MNIST test images with an untrained small CNN. Run
    /// with `cargo test --lib spatial_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing on the installed Fashion-MNIST; slow in debug builds"]
    fn spatial_timing_on_fashion_mnist() {
        use crate::model::{ModelKind, ModelShape, ZooModel};
        let dir = std::path::Path::new("/usr/share/datasets/fashion-mnist");
        let data = crate::data::load(
            crate::data::DatasetName::FashionMnist,
            dir,
            crate::data::Split::Test,
        )
        .unwrap()
        .take(1000);
        let device = Device::flex();
        let model = crate::model::init_seeded(&device, 0, || {
            ZooModel::new(
                ModelKind::SmallCnn,
                &ModelShape::fashion_mnist(),
                None,
                &device,
            )
        })
        .unwrap();
        let grid = SpatialGrid::engstrom();
        let r = spatial_worst_case(&model, &data, &grid, 500, &Silent).unwrap();
        println!(
            "spatial worst case, 1000 images x 1029 points: {:.1} s, {} images classified, \
             clean {}, robust {}",
            r.seconds,
            r.images_evaluated,
            r.clean.display(),
            r.robust.display()
        );
        // An untrained model is wrong on ~90% clean and breaks at once. The cost of a model
        // that resists: relabel every image with the model's own clean prediction, so all
        // start correct and are searched until they break.
        let own = Dataset {
            labels: r.examples.iter().map(|e| e.prediction).collect(),
            ..data
        };
        let r = spatial_worst_case(&model, &own, &grid, 500, &Silent).unwrap();
        let full = own.len() * (grid.len() + 1);
        println!(
            "own-label run: {:.1} s for {} images classified ({:.0} images/s; a fully robust \
             model would need {full}, about {:.0} s), robust {}",
            r.seconds,
            r.images_evaluated,
            r.images_evaluated as f64 / r.seconds,
            full as f64 * r.seconds / r.images_evaluated as f64,
            r.robust.display()
        );
    }
}
