//! The in-memory data set: its invariants, subsets and counts, the validation split,
//! batching and augmentation, on small generated images.

use advtrain::data::{batches, Augment, DataError, Dataset, DatasetName};
use burn::prelude::Device;
use proptest::prelude::*;

/// `n` 1×2×3 images; image i has all pixels equal to `i / n` (so images are identifiable).
fn toy(n: usize) -> Dataset {
    let images: Vec<f32> = (0..n).flat_map(|i| vec![i as f32 / n as f32; 6]).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    Dataset::new(images, labels, 1, 2, 3, 10, Vec::new()).unwrap()
}

fn ids(d: &Dataset, n: usize) -> Vec<usize> {
    (0..d.len())
        .map(|i| (d.image(i)[0] * n as f32).round() as usize)
        .collect()
}

#[test]
fn dataset_new_validates() {
    let ok = Dataset::new(
        vec![0.5; 12],
        vec![0, 1],
        1,
        2,
        3,
        2,
        vec!["a".into(), "b".into()],
    );
    assert!(ok.is_ok());
    let cases: Vec<(Vec<f32>, Vec<u8>, usize)> = vec![
        (vec![0.5; 11], vec![0, 1], 2),                    // length mismatch
        (vec![0.5; 12], vec![0, 2], 2),                    // label out of range
        (vec![0.5, 1.5, 0.5, 0.5, 0.5, 0.5], vec![0], 2),  // pixel > 1
        (vec![0.5, -0.1, 0.5, 0.5, 0.5, 0.5], vec![0], 2), // pixel < 0
        (vec![f32::NAN, 0.5, 0.5, 0.5, 0.5, 0.5], vec![0], 2), // NaN
        (vec![0.5; 6], vec![0], 0),                        // no classes
    ];
    for (images, labels, classes) in cases {
        let err = Dataset::new(images.clone(), labels.clone(), 1, 2, 3, classes, Vec::new())
            .expect_err(&format!("accepted {images:?} {labels:?} {classes}"));
        assert!(err.to_string().contains("<memory>"), "{err}");
    }
    assert!(matches!(
        Dataset::new(vec![0.5; 12], vec![0, 2], 1, 2, 3, 2, Vec::new()),
        Err(DataError::BadLabel {
            index: 1,
            label: 2,
            ..
        })
    ));
    // Wrong number of class names.
    assert!(Dataset::new(vec![0.5; 6], vec![0], 1, 2, 3, 2, vec!["a".into()]).is_err());
    // Zero dimension.
    assert!(Dataset::new(vec![], vec![], 1, 0, 3, 2, Vec::new()).is_err());
}

#[test]
fn subset_take_and_counts() {
    let d = toy(20);
    assert_eq!(d.len(), 20);
    assert!(!d.is_empty());
    assert_eq!(d.image_len(), 6);
    let s = d.subset(&[5, 1, 5]);
    assert_eq!(ids(&s, 20), vec![5, 1, 5]);
    assert_eq!(s.labels, vec![5, 1, 5]);
    assert_eq!(ids(&d.take(3), 20), vec![0, 1, 2]);
    assert_eq!(d.take(1000).len(), 20);
    assert!(d.take(0).is_empty());
    assert_eq!(d.class_counts(), vec![2; 10]);
    assert_eq!(
        d.subset(&[3, 3, 4]).class_counts(),
        vec![0, 0, 0, 2, 1, 0, 0, 0, 0, 0]
    );
}

#[test]
fn split_validation_properties() {
    let n = 50;
    let d = toy(n);
    let (train, val) = d.split_validation(10, 7).unwrap();
    assert_eq!((train.len(), val.len()), (40, 10));
    let (train2, val2) = d.split_validation(10, 7).unwrap();
    assert_eq!(ids(&train, n), ids(&train2, n));
    assert_eq!(ids(&val, n), ids(&val2, n));
    let (_, val3) = d.split_validation(10, 8).unwrap();
    assert_ne!(
        ids(&val, n),
        ids(&val3, n),
        "another seed must give another split"
    );

    let mut all: Vec<usize> = ids(&train, n).into_iter().chain(ids(&val, n)).collect();
    let vset: std::collections::HashSet<usize> = ids(&val, n).into_iter().collect();
    assert!(
        ids(&train, n).iter().all(|i| !vset.contains(i)),
        "train and val overlap"
    );
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
    // Labels travel with their images.
    for (i, id) in ids(&val, n).into_iter().enumerate() {
        assert_eq!(val.labels[i] as usize, id % 10);
    }
    // Not just the first or last n_val examples.
    assert_ne!(ids(&val, n), (0..10).collect::<Vec<_>>());
    assert_ne!(ids(&val, n), (40..50).collect::<Vec<_>>());

    assert!(matches!(
        d.split_validation(50, 7),
        Err(DataError::Invalid { .. })
    ));
    assert!(matches!(
        d.split_validation(51, 7),
        Err(DataError::Invalid { .. })
    ));
    let (t0, v0) = d.split_validation(0, 7).unwrap();
    assert_eq!((t0.len(), v0.len()), (50, 0));
}

#[test]
fn batch_tensors_match_images() {
    let d = toy(8);
    let device = Device::flex();
    let idx = [6, 2, 2, 7];
    let (x, y) = d.batch(&idx, &device);
    assert_eq!(x.dims(), [4, 1, 2, 3]);
    assert_eq!(y.dims(), [4]);
    let xs = x.into_data().try_to_vec::<f32>().unwrap();
    let expected: Vec<f32> = idx.iter().flat_map(|&i| d.image(i).to_vec()).collect();
    assert_eq!(xs, expected);
    let ys: Vec<i64> = y.into_data().iter::<i64>().collect();
    assert_eq!(ys, vec![6, 2, 2, 7]);

    // Without augmentation the augmented path is the plain one.
    let mut rng = advtrain::rng::seeded(1);
    let (xa, ya) = d.batch_augmented(&idx, &Augment::none(), &mut rng, &device);
    assert_eq!(xa.into_data().try_to_vec::<f32>().unwrap(), expected);
    assert_eq!(ya.into_data().iter::<i64>().collect::<Vec<_>>(), ys);
}

#[test]
fn batch_augmented_flips_some_images() {
    // One 1x2x3 image with distinct pixels; flips mirror each row.
    let img = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
    let mirrored = [0.3, 0.2, 0.1, 0.6, 0.5, 0.4];
    let d = Dataset::new(img.repeat(16), vec![0; 16], 1, 2, 3, 10, Vec::new()).unwrap();
    let aug = Augment {
        crop_padding: 0,
        horizontal_flip: true,
    };
    let mut rng = advtrain::rng::seeded(3);
    let idx: Vec<usize> = (0..16).collect();
    let (x, _) = d.batch_augmented(&idx, &aug, &mut rng, &Device::flex());
    let xs = x.into_data().try_to_vec::<f32>().unwrap();
    let (mut same, mut flipped) = (0, 0);
    for chunk in xs.chunks(6) {
        if chunk == &img[..] {
            same += 1;
        } else if chunk == &mirrored[..] {
            flipped += 1;
        } else {
            panic!("unexpected augmented image {chunk:?}");
        }
    }
    assert!(same > 0 && flipped > 0, "same {same}, flipped {flipped}");
}

#[test]
fn batches_cover_order() {
    let order: Vec<usize> = (0..10).rev().collect();
    let b: Vec<&[usize]> = batches(&order, 4).collect();
    assert_eq!(b, vec![&[9, 8, 7, 6][..], &[5, 4, 3, 2][..], &[1, 0][..]]);
}

// ---------------------------------------------------------------- names

#[test]
fn dataset_names() {
    for name in DatasetName::ALL {
        assert_eq!(name.as_str().parse::<DatasetName>().unwrap(), name);
        assert_eq!(name.class_names().len(), 10);
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, format!("\"{}\"", name.as_str()));
        assert_eq!(serde_json::from_str::<DatasetName>(&json).unwrap(), name);
    }
    assert_eq!(
        "cifar-10".parse::<DatasetName>().unwrap(),
        DatasetName::Cifar10
    );
    assert_eq!(
        "Fashion-MNIST".parse::<DatasetName>().unwrap(),
        DatasetName::FashionMnist
    );
    let err = "imagenet".parse::<DatasetName>().unwrap_err().to_string();
    for valid in ["imagenet", "fashion-mnist", "mnist", "cifar10"] {
        assert!(err.contains(valid), "{err}");
    }
    assert_eq!(DatasetName::Mnist.default_dir(), None);
    assert_eq!(DatasetName::Cifar10.default_dir(), None);
    assert_eq!(
        DatasetName::Mnist.class_names(),
        (0..10).map(|d| d.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(DatasetName::FashionMnist.class_names()[6], "Shirt");
    assert_eq!(DatasetName::Cifar10.class_names()[3], "cat");
}

// ---------------------------------------------------------------- augmentation

/// A 2-channel 5x6 image with distinct, strictly positive pixels.
fn distinct_image() -> Vec<f32> {
    (0..60).map(|i| (i + 1) as f32 / 61.0).collect()
}

#[test]
fn augment_none_is_identity() {
    let aug = Augment::none();
    assert!(!aug.is_active());
    let img = distinct_image();
    for seed in 0..10 {
        let mut out = img.clone();
        aug.apply(&mut out, 2, 5, 6, &mut advtrain::rng::seeded(seed));
        assert_eq!(out, img);
    }
    let std28 = Augment::standard(28);
    assert_eq!((std28.crop_padding, std28.horizontal_flip), (2, true));
    assert_eq!(Augment::standard(32).crop_padding, 4);
    assert!(std28.is_active());
}

#[test]
fn augment_flip_mirrors_rows() {
    let aug = Augment {
        crop_padding: 0,
        horizontal_flip: true,
    };
    let img = distinct_image();
    let (c, h, w) = (2, 5, 6);
    let mirrored: Vec<f32> = img
        .chunks(w)
        .flat_map(|row| row.iter().rev().copied())
        .collect();
    let (mut same, mut flipped) = (0, 0);
    for seed in 0..32 {
        let mut out = img.clone();
        aug.apply(&mut out, c, h, w, &mut advtrain::rng::seeded(seed));
        if out == img {
            same += 1;
        } else {
            assert_eq!(out, mirrored, "seed {seed}: neither original nor mirror");
            flipped += 1;
            // Flipping the flipped image gives the original back.
            let mut twice = out.clone();
            for row in twice.chunks_mut(w) {
                row.reverse();
            }
            assert_eq!(twice, img);
        }
    }
    assert!(same > 4 && flipped > 4, "same {same}, flipped {flipped}");
}

#[test]
fn augment_crop_is_a_zero_filled_shift() {
    let p = 2;
    let aug = Augment {
        crop_padding: p,
        horizontal_flip: false,
    };
    let img = distinct_image();
    let (c, h, w) = (2usize, 5usize, 6usize);
    let mut changed = 0;
    let mut shifts = std::collections::HashSet::new();
    for seed in 0..40 {
        let mut out = img.clone();
        aug.apply(&mut out, c, h, w, &mut advtrain::rng::seeded(seed));
        assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
        // Nonzero pixels form a sub-multiset of the original's.
        let mut orig: Vec<u32> = img.iter().map(|v| v.to_bits()).collect();
        let mut nz: Vec<u32> = out
            .iter()
            .filter(|v| **v != 0.0)
            .map(|v| v.to_bits())
            .collect();
        orig.sort_unstable();
        nz.sort_unstable();
        let mut it = orig.iter();
        assert!(
            nz.iter().all(|x| it.any(|y| y == x)),
            "seed {seed}: not a sub-multiset"
        );
        // The output is the input shifted by one (dy, dx) in [-p, p]^2, same for all channels.
        let found = (-(p as isize)..=p as isize)
            .flat_map(|dy| (-(p as isize)..=p as isize).map(move |dx| (dy, dx)))
            .find(|&(dy, dx)| {
                (0..c).all(|ch| {
                    (0..h).all(|y| {
                        (0..w).all(|x| {
                            let (sy, sx) = (y as isize + dy, x as isize + dx);
                            let v = out[ch * h * w + y * w + x];
                            if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                                v == 0.0
                            } else {
                                v == img[ch * h * w + sy as usize * w + sx as usize]
                            }
                        })
                    })
                })
            });
        let shift = found.unwrap_or_else(|| panic!("seed {seed}: output is not a shifted input"));
        shifts.insert(shift);
        if out != img {
            changed += 1;
        }
    }
    assert!(changed > 20, "crop changed only {changed} of 40 images");
    assert!(shifts.len() > 8, "only {} distinct offsets", shifts.len());
}

#[test]
fn augment_is_deterministic_per_seed() {
    let aug = Augment::standard(28);
    let img = distinct_image();
    let run = |seed| {
        let mut out = img.clone();
        aug.apply(&mut out, 2, 5, 6, &mut advtrain::rng::seeded(seed));
        out
    };
    assert_eq!(run(11), run(11));
}

#[test]
fn augment_serde_defaults() {
    let a: Augment = serde_json::from_str("{\"horizontal_flip\": true}").unwrap();
    assert_eq!(
        a,
        Augment {
            crop_padding: 0,
            horizontal_flip: true
        }
    );
    let s = Augment::standard(32);
    let back: Augment = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

proptest! {
    #[test]
    fn augment_output_in_unit_range(
        c in 1usize..4,
        h in 1usize..9,
        w in 1usize..9,
        pad in 0usize..6,
        flip in any::<bool>(),
        seed in any::<u64>(),
        raw in proptest::collection::vec(0.0f32..=1.0, 8 * 8 * 3),
    ) {
        let n = c * h * w;
        let mut img = raw[..n].to_vec();
        let aug = Augment { crop_padding: pad, horizontal_flip: flip };
        aug.apply(&mut img, c, h, w, &mut advtrain::rng::seeded(seed));
        prop_assert_eq!(img.len(), n);
        prop_assert!(img.iter().all(|v| (0.0..=1.0).contains(v)));
        // The pixel mass can only drop (crop zero-fills) or stay (flip permutes).
        let before: f64 = raw[..n].iter().map(|&v| v as f64).sum();
        let after: f64 = img.iter().map(|&v| v as f64).sum();
        prop_assert!(after <= before + 1e-4);
        if pad == 0 {
            prop_assert!((after - before).abs() < 1e-4);
        }
    }
}

#[test]
fn debug_is_a_summary() {
    let d = toy(1000);
    let s = format!("{d:?}");
    assert!(s.len() < 400, "Debug output is {} chars", s.len());
    assert!(s.contains("len: 1000"), "{s}");
}
