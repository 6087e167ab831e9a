//! The IDX and CIFAR-10 readers: round trips and every way a file can be wrong, each with
//! an error naming the file. Every test writes its own small files into a fresh temporary
//! directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use advtrain::data::cifar::{read_cifar_batch, write_cifar_batch, IMAGE_BYTES, RECORD_BYTES};
use advtrain::data::idx::{read_idx_images, read_idx_labels, write_idx_images, write_idx_labels};
use advtrain::data::{load, DataError, DatasetName, Split};

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
