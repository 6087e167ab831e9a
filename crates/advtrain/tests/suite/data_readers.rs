//! Readers, the in-memory data set, the validation split, batching and augmentation.
//! Every test writes its own small files into a fresh temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use advtrain::data::cifar::{read_cifar_batch, write_cifar_batch, IMAGE_BYTES, RECORD_BYTES};
use advtrain::data::idx::{read_idx_images, read_idx_labels, write_idx_images, write_idx_labels};
use advtrain::data::{batches, load, Augment, DataError, Dataset, DatasetName, Split};
use burn::prelude::Device;
use proptest::prelude::*;

/// A fresh, empty directory unique to this test (and process).
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advtrain-data-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Raw IDX images bytes with a header that may disagree with the body.
fn idx_images_bytes(n: u32, rows: u32, cols: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x0803, n, rows, cols] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(body);
    b
}

fn idx_labels_bytes(n: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x0801, n] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(body);
    b
}

const ROWS: usize = 3;
const COLS: usize = 4;

/// Deterministic pixels including 0 and 255.
fn pixels(n: usize) -> Vec<u8> {
    (0..n * ROWS * COLS)
        .map(|i| match i % 5 {
            0 => 0,
            1 => 255,
            _ => (i * 37 % 256) as u8,
        })
        .collect()
}

/// Write a valid train and test split (5 and 2 examples) into `dir`.
fn write_valid_idx(dir: &Path, gz: bool) -> (Vec<u8>, Vec<u8>) {
    let sfx = if gz { ".gz" } else { "" };
    let train_px = pixels(5);
    write_idx_images(
        &dir.join(format!("train-images-idx3-ubyte{sfx}")),
        5,
        ROWS,
        COLS,
        &train_px,
        gz,
    )
    .unwrap();
    write_idx_labels(
        &dir.join(format!("train-labels-idx1-ubyte{sfx}")),
        &[3, 0, 9, 1, 1],
        gz,
    )
    .unwrap();
    let test_px: Vec<u8> = pixels(2).iter().map(|p| 255 - p).collect();
    write_idx_images(
        &dir.join(format!("t10k-images-idx3-ubyte{sfx}")),
        2,
        ROWS,
        COLS,
        &test_px,
        gz,
    )
    .unwrap();
    write_idx_labels(
        &dir.join(format!("t10k-labels-idx1-ubyte{sfx}")),
        &[7, 2],
        gz,
    )
    .unwrap();
    (train_px, test_px)
}

fn assert_err_names(err: &DataError, file: &str) {
    let msg = err.to_string();
    assert!(msg.contains(file), "message {msg:?} does not name {file}");
}

// ---------------------------------------------------------------- IDX

#[test]
fn idx_round_trip_gzip_and_raw() {
    for gz in [true, false] {
        let dir = temp_dir(&format!("idx-roundtrip-{gz}"));
        let (train_px, test_px) = write_valid_idx(&dir, gz);

        let train = load(DatasetName::FashionMnist, &dir, Split::Train).unwrap();
        assert_eq!(train.len(), 5);
        assert_eq!((train.channels, train.height, train.width), (1, ROWS, COLS));
        assert_eq!(train.image_len(), ROWS * COLS);
        assert_eq!(train.labels, vec![3, 0, 9, 1, 1]);
        assert_eq!(train.num_classes, 10);
        assert_eq!(train.class_names[0], "T-shirt/top");
        assert_eq!(train.class_names[9], "Ankle boot");
        let expected: Vec<f32> = train_px.iter().map(|&p| p as f32 / 255.0).collect();
        assert_eq!(train.images, expected);
        assert_eq!(train.images[1], 1.0, "255 must scale to exactly 1.0");
        assert_eq!(train.images[0], 0.0);
        assert_eq!(train.class_counts(), vec![1, 2, 0, 1, 0, 0, 0, 0, 0, 1]);

        let test = load(DatasetName::Mnist, &dir, Split::Test).unwrap();
        assert_eq!(test.len(), 2);
        assert_eq!(test.labels, vec![7, 2]);
        assert_eq!(test.class_names[7], "7");
        assert_eq!(test.image(1)[0], test_px[ROWS * COLS] as f32 / 255.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn idx_gzip_detected_by_magic_not_name() {
    let dir = temp_dir("idx-magic-detect");
    // Gzipped content under the raw name, raw content under the .gz name.
    let px = pixels(2);
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        gzip(&idx_images_bytes(2, 3, 4, &px)),
    )
    .unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte.gz"),
        idx_labels_bytes(2, &[4, 5]),
    )
    .unwrap();
    let d = load(DatasetName::FashionMnist, &dir, Split::Train).unwrap();
    assert_eq!(d.labels, vec![4, 5]);
    assert_eq!(d.images[1], 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idx_prefers_gz_over_raw() {
    let dir = temp_dir("idx-prefer-gz");
    write_valid_idx(&dir, true);
    // A broken raw file next to the good .gz must not be read.
    std::fs::write(dir.join("train-images-idx3-ubyte"), b"junk").unwrap();
    assert_eq!(
        load(DatasetName::FashionMnist, &dir, Split::Train)
            .unwrap()
            .len(),
        5
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idx_bad_magic() {
    let dir = temp_dir("idx-bad-magic");
    write_valid_idx(&dir, false);
    // A labels file where the images file should be.
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx_labels_bytes(5, &[0; 5]),
    )
    .unwrap();
    let err = load(DatasetName::FashionMnist, &dir, Split::Train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadMagic {
                found: 0x801,
                expected: 0x803,
                ..
            }
        ),
        "{err:?}"
    );
    assert_err_names(&err, "train-images-idx3-ubyte");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idx_truncated_images_raw_and_gz() {
    for gz in [false, true] {
        let dir = temp_dir(&format!("idx-trunc-images-{gz}"));
        write_valid_idx(&dir, gz);
        let name = if gz {
            "train-images-idx3-ubyte.gz"
        } else {
            "train-images-idx3-ubyte"
        };
        // Header says 5 images, body holds 3.
        let raw = idx_images_bytes(5, 3, 4, &pixels(3));
        std::fs::write(dir.join(name), if gz { gzip(&raw) } else { raw }).unwrap();
        let err = load(DatasetName::FashionMnist, &dir, Split::Train).unwrap_err();
        match &err {
            DataError::Truncated { expected, got, .. } => {
                assert_eq!((*expected, *got), (16 + 5 * 12, 16 + 3 * 12));
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
        assert_err_names(&err, name);
        assert!(
            err.to_string()
                .contains("truncated: expected 76 bytes, got 52"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn idx_truncated_header() {
    let dir = temp_dir("idx-trunc-header");
    let path = dir.join("x-idx3-ubyte");
    std::fs::write(&path, [0, 0, 8, 3, 0, 0]).unwrap();
    let err = read_idx_images(&path).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 16,
                got: 6,
                ..
            }
        ),
        "{err:?}"
    );
    assert_err_names(&err, "x-idx3-ubyte");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idx_truncated_labels() {
    let dir = temp_dir("idx-trunc-labels");
    write_valid_idx(&dir, false);
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx_labels_bytes(5, &[1, 2]),
    )
    .unwrap();
    let err = load(DatasetName::FashionMnist, &dir, Split::Train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 13,
                got: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert_err_names(&err, "train-labels-idx1-ubyte");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idx_absurd_header_is_not_allocated() {
    let dir = temp_dir("idx-absurd");
    let path = dir.join("huge-idx3-ubyte");
    // 2^32-1 images of 4096x4096 (~2^56 bytes) announced, 10 bytes present: reading must
    // report truncation, not try to allocate the announced size.
    std::fs::write(&path, idx_images_bytes(u32::MAX, 4096, 4096, &[0; 10])).unwrap();
    let err = read_idx_images(&path).unwrap_err();
    assert!(
        matches!(err, DataError::Truncated { got: 26, .. }),
        "{err:?}"
    );
    // So large that the product overflows: reported as invalid.
    std::fs::write(
        &path,
        idx_images_bytes(u32::MAX, u32::MAX, u32::MAX, &[0; 10]),
    )
    .unwrap();
    let err = read_idx_images(&path).unwrap_err();
    assert!(matches!(err, DataError::Invalid { .. }), "{err:?}");
    assert_err_names(&err, "huge-idx3-ubyte");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idx_zero_dimension() {
    let dir = temp_dir("idx-zero");
    let path = dir.join("zero-idx3-ubyte");
    std::fs::write(&path, idx_images_bytes(3, 0, 4, &[])).unwrap();
    let err = read_idx_images(&path).unwrap_err();
    assert!(matches!(err, DataError::Invalid { .. }), "{err:?}");
    assert_err_names(&err, "zero-idx3-ubyte");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idx_count_mismatch_names_both_files() {
    let dir = temp_dir("idx-count");
    write_valid_idx(&dir, true);
    write_idx_labels(&dir.join("train-labels-idx1-ubyte.gz"), &[1, 2, 3, 4], true).unwrap();
    let err = load(DatasetName::FashionMnist, &dir, Split::Train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                n_images: 5,
                n_labels: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_err_names(&err, "train-images-idx3-ubyte.gz");
    assert_err_names(&err, "train-labels-idx1-ubyte.gz");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idx_trailing_bytes() {
    for gz in [false, true] {
        let dir = temp_dir(&format!("idx-trailing-{gz}"));
        write_valid_idx(&dir, gz);
        let name = if gz {
            "t10k-images-idx3-ubyte.gz"
        } else {
            "t10k-images-idx3-ubyte"
        };
        let mut body = pixels(2);
        body.extend_from_slice(&[9; 7]);
        let raw = idx_images_bytes(2, 3, 4, &body);
        std::fs::write(dir.join(name), if gz { gzip(&raw) } else { raw }).unwrap();
        let err = load(DatasetName::FashionMnist, &dir, Split::Test).unwrap_err();
        assert!(matches!(err, DataError::Invalid { .. }), "{err:?}");
        assert_err_names(&err, name);
        assert!(err.to_string().contains("trailing 7 bytes"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn idx_corrupt_gzip() {
    let dir = temp_dir("idx-gzip");
    write_valid_idx(&dir, true);
    let path = dir.join("train-labels-idx1-ubyte.gz");
    // Gzip magic followed by an invalid header.
    std::fs::write(
        &path,
        [0x1f, 0x8b, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    )
    .unwrap();
    let err = load(DatasetName::FashionMnist, &dir, Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");
    assert_err_names(&err, "train-labels-idx1-ubyte.gz");

    // A valid stream cut off half way.
    let full = gzip(&idx_images_bytes(5, 3, 4, &pixels(5)));
    let img = dir.join("train-images-idx3-ubyte.gz");
    std::fs::write(&img, &full[..full.len() / 2]).unwrap();
    let err = read_idx_images(&img).unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");
    assert_err_names(&err, "train-images-idx3-ubyte.gz");

    // A flipped byte in the CRC trailer.
    let mut bad_crc = full.clone();
    let at = bad_crc.len() - 6;
    bad_crc[at] ^= 0xff;
    std::fs::write(&img, &bad_crc).unwrap();
    let err = read_idx_images(&img).unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idx_missing_directory_has_hint() {
    let dir = temp_dir("idx-missing-dir").join("does-not-exist");
    let err = load(DatasetName::FashionMnist, &dir, Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("does-not-exist"), "{msg}");
    assert!(
        msg.contains("sudo apt-get install -y dataset-fashion-mnist"),
        "{msg}"
    );
    assert!(msg.contains("--data"), "{msg}");
    assert_eq!(
        DatasetName::FashionMnist.default_dir(),
        Some(PathBuf::from("/usr/share/datasets/fashion-mnist"))
    );
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

#[test]
fn idx_missing_file() {
    let dir = temp_dir("idx-missing-file");
    write_valid_idx(&dir, false);
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let err = load(DatasetName::Mnist, &dir, Split::Test).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err:?}");
    assert_err_names(&err, "t10k-labels-idx1-ubyte");
    // The train split is still complete.
    assert!(load(DatasetName::Mnist, &dir, Split::Train).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idx_label_out_of_range() {
    let dir = temp_dir("idx-bad-label");
    write_valid_idx(&dir, false);
    write_idx_labels(
        &dir.join("train-labels-idx1-ubyte"),
        &[1, 2, 10, 4, 5],
        false,
    )
    .unwrap();
    let err = load(DatasetName::FashionMnist, &dir, Split::Train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadLabel {
                index: 2,
                label: 10,
                num_classes: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert_err_names(&err, "train-labels-idx1-ubyte");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idx_single_file_readers() {
    let dir = temp_dir("idx-single");
    let px = pixels(2);
    let p = dir.join("im");
    write_idx_images(&p, 2, ROWS, COLS, &px, true).unwrap();
    assert_eq!(read_idx_images(&p).unwrap(), (2, ROWS, COLS, px));
    let l = dir.join("lb");
    write_idx_labels(&l, &[0, 200, 3], false).unwrap();
    // Range checks need the class count, which only the split loader knows.
    assert_eq!(read_idx_labels(&l).unwrap(), vec![0, 200, 3]);
    // Writers refuse inconsistent input.
    assert!(write_idx_images(&p, 3, ROWS, COLS, &pixels(2), false).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn not_a_directory() {
    let dir = temp_dir("not-a-dir");
    let file = dir.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = load(DatasetName::Cifar10, &file, Split::Test).unwrap_err();
    assert!(matches!(err, DataError::Invalid { .. }), "{err:?}");
    assert_err_names(&err, "plain-file");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- CIFAR-10

/// Image bytes of record `k`: channel c, pixel j holds a value depending on all three.
fn cifar_image(k: usize) -> Vec<u8> {
    (0..IMAGE_BYTES)
        .map(|j| ((j / 1024) * 80 + j % 61 + k * 3) as u8)
        .collect()
}

/// Writes 5 train batches of 2 records and a test batch of 3 into `dir`; returns the labels
/// in load order.
fn write_cifar(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut train_labels = Vec::new();
    for b in 1..=5 {
        let labels = [(2 * b - 2) as u8 % 10, (2 * b - 1) as u8 % 10];
        let images: Vec<u8> = (0..2).flat_map(|r| cifar_image(2 * (b - 1) + r)).collect();
        write_cifar_batch(&dir.join(format!("data_batch_{b}.bin")), &labels, &images).unwrap();
        train_labels.extend_from_slice(&labels);
    }
    let test_labels = vec![9, 0, 4];
    let images: Vec<u8> = (100..103).flat_map(cifar_image).collect();
    write_cifar_batch(&dir.join("test_batch.bin"), &test_labels, &images).unwrap();
    (train_labels, test_labels)
}

#[test]
fn cifar_round_trip_and_channel_order() {
    for nested in [false, true] {
        let root = temp_dir(&format!("cifar-roundtrip-{nested}"));
        let dir = if nested {
            root.join("cifar-10-batches-bin")
        } else {
            root.clone()
        };
        std::fs::create_dir_all(&dir).unwrap();
        let (train_labels, test_labels) = write_cifar(&dir);

        let train = load(DatasetName::Cifar10, &root, Split::Train).unwrap();
        assert_eq!(train.len(), 10);
        assert_eq!((train.channels, train.height, train.width), (3, 32, 32));
        assert_eq!(train.labels, train_labels);
        assert_eq!(train.class_names[0], "airplane");
        assert_eq!(train.class_names[9], "truck");
        for k in 0..10 {
            let bytes = cifar_image(k);
            let img = train.image(k);
            // [c=1, y=0, x=0] is byte 1024 of the record's image; [c=2, y=1, x=3] is 2048+35.
            assert_eq!(img[1024], bytes[1024] as f32 / 255.0);
            assert_eq!(img[2 * 1024 + 32 + 3], bytes[2048 + 35] as f32 / 255.0);
            let all: Vec<f32> = bytes.iter().map(|&b| b as f32 / 255.0).collect();
            assert_eq!(img, &all[..]);
        }

        let test = load(DatasetName::Cifar10, &root, Split::Test).unwrap();
        assert_eq!(test.labels, test_labels);
        assert_eq!(test.image(2)[0], cifar_image(102)[0] as f32 / 255.0);
        let _ = std::fs::remove_dir_all(&root);
    }
}

#[test]
fn cifar_wrong_size() {
    let dir = temp_dir("cifar-size");
    write_cifar(&dir);
    let mut bytes = std::fs::read(dir.join("test_batch.bin")).unwrap();
    bytes.truncate(2 * RECORD_BYTES + 5);
    std::fs::write(dir.join("test_batch.bin"), &bytes).unwrap();
    let err = load(DatasetName::Cifar10, &dir, Split::Test).unwrap_err();
    assert!(matches!(err, DataError::Invalid { .. }), "{err:?}");
    assert_err_names(&err, "test_batch.bin");
    assert!(
        err.to_string()
            .contains(&(2 * RECORD_BYTES + 5).to_string()),
        "{err}"
    );
    // An empty file is no data set either.
    std::fs::write(dir.join("test_batch.bin"), b"").unwrap();
    assert!(matches!(
        read_cifar_batch(&dir.join("test_batch.bin")),
        Err(DataError::Invalid { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cifar_missing_batch() {
    let dir = temp_dir("cifar-missing");
    write_cifar(&dir);
    std::fs::remove_file(dir.join("data_batch_3.bin")).unwrap();
    std::fs::remove_file(dir.join("data_batch_4.bin")).unwrap();
    let err = load(DatasetName::Cifar10, &dir, Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err:?}");
    assert_err_names(&err, "data_batch_3.bin");
    // Test split unaffected.
    assert_eq!(
        load(DatasetName::Cifar10, &dir, Split::Test).unwrap().len(),
        3
    );
    // And a missing directory gets a hint.
    let err = load(DatasetName::Cifar10, &dir.join("nope"), Split::Test).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("--data"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cifar_bad_label() {
    let dir = temp_dir("cifar-label");
    write_cifar(&dir);
    let images: Vec<u8> = (0..2).flat_map(cifar_image).collect();
    write_cifar_batch(&dir.join("data_batch_2.bin"), &[3, 10], &images).unwrap();
    let err = load(DatasetName::Cifar10, &dir, Split::Train).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadLabel {
                index: 1,
                label: 10,
                num_classes: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert_err_names(&err, "data_batch_2.bin");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- Dataset

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
