//! The parsers of untrusted bytes, as fuzzed by `fuzz/`: every committed seed
//! (`fuzz/corpus/<target>/`) and every input the fuzzer found a crash with
//! (`fuzz/regressions/<target>/`) replayed through the fuzz targets' own code, so CI covers
//! them without the fuzzer; one test per crash fixed; and the user-file defects found
//! beside them (an unterminated CSV quote, one-class and typo labels).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use advtrain::data::npy;
use advtrain::text::data::{load_labelled_file, parse_labelled_bytes};

/// The fuzz targets' code, shared by path so that the replay runs exactly what they run.
#[path = "../../../../fuzz/src/lib.rs"]
mod harness;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn fuzz_corpora_and_regressions_replay_without_panics() {
    let mut failed = Vec::new();
    for target in harness::TARGETS {
        let seeds = files(&fuzz_dir().join("corpus").join(target));
        assert!(!seeds.is_empty(), "fuzz/corpus/{target}/ has no seeds");
        let found = files(&fuzz_dir().join("regressions").join(target));
        for path in seeds.iter().chain(&found) {
            let bytes = fs::read(path).unwrap();
            let run = std::panic::catch_unwind(|| harness::run(target, &bytes));
            if !matches!(run, Ok(true)) {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "panicked on: {failed:?}");
}

/// The seeds are valid files, so that mutations start from inputs that reach past the
/// first checks (a seed every parser refuses would fuzz only the error paths).
#[test]
fn fuzz_seeds_parse() {
    use advtrain::data::{cifar, folder, idx, Split};
    use advtrain::model::onnx::{OnnxModel, OnnxOptions};
    let seeds = |t: &str| files(&fuzz_dir().join("corpus").join(t));
    let read = |p: &PathBuf| fs::read(p).unwrap();
    for p in seeds("idx") {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let ok = if name.starts_with("images") {
            idx::parse_idx_images(&read(&p), &p).is_ok()
        } else {
            idx::parse_idx_labels(&read(&p), &p).is_ok()
        };
        assert!(ok, "{name}");
    }
    for p in seeds("cifar") {
        cifar::parse_cifar_batch(&read(&p), &p).unwrap();
    }
    for p in seeds("npy") {
        let b = read(&p);
        let cut = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let (x, y) = b[2..].split_at(cut);
        npy::parse_npy_pair(x, Path::new("x.npy"), y, Path::new("y.npy")).unwrap();
    }
    for p in seeds("npz") {
        npy::parse_npz(&read(&p), &p, Split::Test).unwrap();
    }
    for p in seeds("image") {
        folder::decode_image(&read(&p), &p, (3, 8, 8)).unwrap();
    }
    for p in seeds("safetensors") {
        let model = harness::safetensors_model().clone();
        advtrain::model::load_safetensors_bytes(model, read(&p)).unwrap();
    }
    for p in seeds("checkpoint") {
        advtrain::train::checkpoint::Checkpoint::from_bytes(&read(&p)).unwrap();
    }
    for p in seeds("text_files") {
        parse_labelled_bytes(&read(&p), &p).unwrap();
    }
    let device = burn::prelude::Device::flex();
    for p in seeds("onnx") {
        OnnxModel::from_bytes(&read(&p), &p, &OnnxOptions::default(), &device).unwrap();
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "advtrain-parser-fuzz-{}-{tag}-{n}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// An IDX header claiming 2^31 images in a 100-byte file: the body is read only as far as
/// the bytes go, so this is a truncation error with both sizes, not a 1.6 GB allocation.
#[test]
fn idx_header_claiming_billions_of_images_is_a_size_mismatch() {
    let mut bytes = advtrain::data::idx::IMAGES_MAGIC.to_be_bytes().to_vec();
    for d in [1u32 << 31, 28, 28] {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.resize(100, 0);
    let err = advtrain::data::idx::parse_idx_images(&bytes, Path::new("big-idx3-ubyte"))
        .unwrap_err()
        .to_string();
    let claimed = (1usize << 31) * 28 * 28 + 16;
    assert!(err.contains("truncated"), "{err}");
    assert!(
        err.contains(&format!("expected {claimed} bytes, got 100")),
        "{err}"
    );
}

/// A `.npy` file (format 2.0: 4-byte header length) with `header` and `body`.
fn npy_v2(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY\x02\x00".to_vec();
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    out
}

fn labels_npy() -> Vec<u8> {
    npy_v2(
        b"{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }\n",
        &[0],
    )
}

/// A header length field of 4 GiB in a 20-byte file was allocated before reading: now the
/// header is read as it arrives and the file is reported truncated, with both sizes.
#[test]
fn npy_huge_header_length_is_a_truncation_not_an_allocation() {
    let mut x = b"\x93NUMPY\x02\x00".to_vec();
    x.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    x.extend_from_slice(b"{'descr'");
    let err = npy::parse_npy_pair(&x, Path::new("x.npy"), &labels_npy(), Path::new("y.npy"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains(&(12 + 0xffff_fff0usize).to_string()), "{err}");
    assert!(err.contains(&x.len().to_string()), "{err}");
}

/// Found by the fuzz campaign of 2026-12-03: a descr of absurd size (`<f` and 19 digits)
/// overflowed computing the dtype's bit width for the error message (a panic with overflow
/// checks, a wrong number without). The error now names the descr.
#[test]
fn npy_absurd_dtype_size_is_an_error_naming_the_descr() {
    let x = npy_v2(
        b"{'descr': '<f4555555555555555555', 'fortran_order': False, 'shape': (1,), }\n",
        &[0; 8],
    );
    let err = npy::parse_npy_pair(&x, Path::new("x.npy"), &labels_npy(), Path::new("y.npy"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("<f4555555555555555555"), "{err}");
}

/// Found by the fuzz campaign of 2026-12-03 (`fuzz/regressions/onnx/`): a `Slice` whose
/// range is empty made burn's `narrow` panic while the model was probed at load. Loading
/// now fails with an error naming the Slice.
#[test]
fn onnx_empty_slice_is_an_error_not_a_panic() {
    let dir = fuzz_dir().join("regressions").join("onnx");
    let crash = files(&dir)
        .into_iter()
        .next()
        .expect("the committed ONNX crash input");
    let bytes = fs::read(&crash).unwrap();
    let device = burn::prelude::Device::flex();
    let loaded = advtrain::model::onnx::OnnxModel::from_bytes(
        &bytes,
        Path::new("model.onnx"),
        &advtrain::model::onnx::OnnxOptions::default(),
        &device,
    );
    let Err(err) = loaded else {
        panic!("a model with an empty Slice must not load");
    };
    assert!(err.to_string().contains("Slice"), "{err}");
}

/// Found by the fuzz campaign of 2026-12-03 (`fuzz/regressions/image/`, a libFuzzer
/// timeout): a 650-byte JPEG whose header claims 18,737×4,102 pixels was decoded in full
/// (seconds, hundreds of MB) before being resized to the model's input. Images beyond
/// `MAX_IMAGE_SIDE` are now refused from their header.
#[test]
fn image_claiming_huge_dimensions_is_refused_before_decoding() {
    use advtrain::data::folder;
    let dir = fuzz_dir().join("regressions").join("image");
    let input = files(&dir)
        .into_iter()
        .next()
        .expect("the committed image input");
    let bytes = fs::read(&input).unwrap();
    let start = std::time::Instant::now();
    let err = folder::decode_image(&bytes, Path::new("bomb.jpg"), (1, 28, 28))
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than advtrain decodes"), "{err}");
    assert!(err.contains("bomb.jpg"), "{err}");
    assert!(
        start.elapsed().as_secs_f64() < 1.0,
        "refusing took {:?}",
        start.elapsed()
    );
}

/// Nested parentheses in a header recursed once per level: 200 000 of them overflowed the
/// stack (an abort, not an error). The nesting is now bounded.
#[test]
fn npy_deeply_nested_header_is_an_error_not_a_stack_overflow() {
    let mut header = b"{'descr': '|u1', 'fortran_order': False, 'shape': ".to_vec();
    header.extend(std::iter::repeat_n(b'(', 200_000));
    let x = npy_v2(&header, &[]);
    let err = npy::parse_npy_pair(&x, Path::new("x.npy"), &labels_npy(), Path::new("y.npy"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nested"), "{err}");
}

/// Defect 12: a CSV quote left open ran on to the next quote, rows below, and the merged
/// text took the later row's label without a word.
#[test]
fn csv_unclosed_quote_is_an_error_naming_the_line_it_opened_on() {
    let dir = temp_dir("quote");
    let merged = dir.join("merged.csv");
    fs::write(
        &merged,
        "text,label\n\"Buy now, cheap,spam\nhello \"friend\",ham\nbye,spam\n",
    )
    .unwrap();
    let err = load_labelled_file(&merged).unwrap_err().to_string();
    assert!(err.contains("merged.csv"), "{err}");
    assert!(err.contains("line 2:"), "{err}");
    assert!(err.contains("quote"), "{err}");

    let open = dir.join("open.csv");
    fs::write(&open, "text,label\nok,ham\n\"never closed,spam\nmore,ham\n").unwrap();
    let err = load_labelled_file(&open).unwrap_err().to_string();
    assert!(err.contains("open.csv"), "{err}");
    assert!(err.contains("line 3:"), "{err}");
    assert!(err.contains("never closed"), "{err}");

    // Quoted fields that close properly, over several lines or with doubled quotes, load.
    let fine = dir.join("fine.csv");
    fs::write(
        &fine,
        "text,label\n\"two\nlines\",ham\n\"say \"\"hi\"\"\",spam\r\nplain,ham\n",
    )
    .unwrap();
    let ds = load_labelled_file(&fine).unwrap();
    assert_eq!(ds.texts, ["two\nlines", "say \"hi\"", "plain"]);
    let _ = fs::remove_dir_all(&dir);
}

/// Defect 14: a file whose rows all have one label is refused, naming the label.
#[test]
fn one_class_user_file_is_refused_naming_the_class() {
    let csv = "text,label\nwin money,spam\nfree prize,spam\n";
    let err = parse_labelled_bytes(csv.as_bytes(), Path::new("all-spam.csv"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("all-spam.csv"), "{err}");
    assert!(err.contains("'spam'"), "{err}");
    assert!(err.contains("two classes"), "{err}");

    let jsonl = "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 1}\n";
    let err = parse_labelled_bytes(jsonl.as_bytes(), Path::new("ones.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("'1'"), "{err}");
}

/// `n` CSV rows labelled `label`.
fn rows(label: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("text {label} {i},{label}\n"))
        .collect()
}

/// Defect 14: a rare label one or two edits from a common one, or beside a known pair, is
/// refused with both labels and the lines to fix.
#[test]
fn typo_labels_are_refused_naming_both_labels_and_the_lines() {
    let csv = format!(
        "text,label\n{}{}{}",
        rows("spam", 600),
        rows("spma", 3),
        rows("ham", 400)
    );
    let err = parse_labelled_bytes(csv.as_bytes(), Path::new("mail.csv"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("mail.csv"), "{err}");
    assert!(err.contains("'spma'") && err.contains("'spam'"), "{err}");
    assert!(err.contains("line 602, 603, 604"), "{err}");
    assert!(err.contains("fix the label"), "{err}");

    let csv = format!(
        "text,label\n{}{}{}",
        rows("ham", 1500),
        rows("junk", 1),
        rows("spam", 800)
    );
    let err = parse_labelled_bytes(csv.as_bytes(), Path::new("mail.csv"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("'junk'"), "{err}");
    assert!(err.contains("'ham' and 'spam'"), "{err}");
    assert!(err.contains("line 1502"), "{err}");
}

/// Rare classes that look like no other label, and close names that are both common, load.
#[test]
fn rare_but_distinct_labels_and_common_close_labels_load() {
    let csv = format!(
        "text,label\n{}{}{}",
        rows("cat", 1000),
        rows("dog", 1000),
        rows("bird", 5)
    );
    let ds = parse_labelled_bytes(csv.as_bytes(), Path::new("pets.csv")).unwrap();
    assert_eq!(ds.classes, ["bird", "cat", "dog"]);
    let csv = format!("text,label\n{}{}", rows("pos", 50), rows("neg", 50));
    assert!(parse_labelled_bytes(csv.as_bytes(), Path::new("a.csv")).is_ok());
    // Integer labels are class indices, never typos: 0 and 1 are one edit apart.
    let jsonl: String = (0..500)
        .map(|i| {
            format!(
                "{{\"text\": \"t{i}\", \"label\": {}}}\n",
                usize::from(i == 7)
            )
        })
        .collect();
    assert!(parse_labelled_bytes(jsonl.as_bytes(), Path::new("b.jsonl")).is_ok());
}

/// Writes the generated seeds under `$ADVTRAIN_FUZZ_CORPUS/<target>/` (what
/// `fuzz/make_corpus.sh` runs); ignored otherwise.
#[test]
#[ignore = "writes the fuzz seed corpus; run by fuzz/make_corpus.sh"]
fn write_seed_corpus() {
    let Some(out) = std::env::var_os("ADVTRAIN_FUZZ_CORPUS") else {
        eprintln!("ADVTRAIN_FUZZ_CORPUS is not set: nothing written");
        return;
    };
    seeds::write_all(Path::new(&out));
}

/// The seed generators, one per target; each writes a few small valid files.
mod seeds {
    use std::collections::BTreeMap;
    use std::fs;
    use std::io::Write;
    use std::path::Path;

    use advtrain::data::{cifar, idx};
    use advtrain::train::checkpoint::{Checkpoint, TrainState};

    pub fn write_all(out: &Path) {
        idx_seeds(&out.join("idx"));
        cifar_seeds(&out.join("cifar"));
        npy_seeds(&out.join("npy"));
        npz_seeds(&out.join("npz"));
        image_seeds(&out.join("image"));
        safetensors_seeds(&out.join("safetensors"));
        checkpoint_seeds(&out.join("checkpoint"));
        text_seeds(&out.join("text_files"));
    }

    fn dir(path: &Path) -> &Path {
        fs::create_dir_all(path).unwrap();
        path
    }

    fn idx_seeds(d: &Path) {
        let d = dir(d);
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|i| (i * 10) as u8).collect();
        idx::write_idx_images(&d.join("images-2x3x4"), 2, 3, 4, &pixels, false).unwrap();
        idx::write_idx_images(&d.join("images-2x3x4.gz"), 2, 3, 4, &pixels, true).unwrap();
        idx::write_idx_labels(&d.join("labels-5"), &[0, 1, 2, 9, 3], false).unwrap();
        idx::write_idx_labels(&d.join("labels-5.gz"), &[0, 1, 2, 9, 3], true).unwrap();
    }

    fn cifar_seeds(d: &Path) {
        let d = dir(d);
        let images: Vec<u8> = (0..2 * cifar::IMAGE_BYTES).map(|i| i as u8).collect();
        cifar::write_cifar_batch(&d.join("batch-2.bin"), &[3, 7], &images).unwrap();
    }

    /// A `.npy` file (format 1.0) of `descr` and `shape` holding `body`.
    pub fn npy(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    }

    fn f32_le(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// `(x, y)` pairs: uint8 N×H×W×C, float32 N×C×H×W, big-endian float64 grey in Fortran
    /// order with int64 labels.
    fn npy_pairs() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
        let u8_x = npy("|u1", false, "(2, 2, 2, 3)", &(0..24).collect::<Vec<u8>>());
        let f32_x = npy(
            "<f4",
            false,
            "(2, 1, 2, 2)",
            &f32_le(&[0.0, 0.5, 1.0, 0.25, 1.0, 0.75, 0.5, 0.0]),
        );
        let f64_be: Vec<u8> = [0.0f64, 0.5, 1.0, 0.75]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        let f64_x = npy(">f8", true, "(1, 2, 2)", &f64_be);
        let y_u8 = npy("|u1", false, "(2,)", &[0, 1]);
        let y_i64 = npy("<i8", false, "(1, 1)", &3i64.to_le_bytes());
        vec![
            ("uint8-nhwc", u8_x, y_u8.clone()),
            ("float32-nchw", f32_x, y_u8),
            ("float64-be-fortran", f64_x, y_i64),
        ]
    }

    fn npy_seeds(d: &Path) {
        let d = dir(d);
        for (name, x, y) in npy_pairs() {
            let mut seed = (x.len() as u16).to_le_bytes().to_vec();
            seed.extend_from_slice(&x);
            seed.extend_from_slice(&y);
            fs::write(d.join(format!("{name}.pair")), seed).unwrap();
        }
    }

    fn npz_seeds(d: &Path) {
        use zip::write::FileOptions;
        use zip::{CompressionMethod, ZipWriter};
        let d = dir(d);
        let pairs = npy_pairs();
        for (method, tag, names) in [
            (CompressionMethod::Stored, "stored", ("x", "y")),
            (
                CompressionMethod::Deflated,
                "deflated",
                ("x_test", "y_test"),
            ),
        ] {
            let (_, x, y) = &pairs[if tag == "stored" { 0 } else { 1 }];
            let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let options = FileOptions::default().compression_method(method);
            for (name, bytes) in [(names.0, x), (names.1, y)] {
                zip.start_file(format!("{name}.npy"), options).unwrap();
                zip.write_all(bytes).unwrap();
            }
            let bytes = zip.finish().unwrap().into_inner();
            fs::write(d.join(format!("{tag}.npz")), bytes).unwrap();
        }
    }

    fn image_seeds(d: &Path) {
        use image::{ImageFormat, Rgb, RgbImage};
        let d = dir(d);
        let img = RgbImage::from_fn(6, 4, |x, y| Rgb([(x * 40) as u8, (y * 60) as u8, 128]));
        for (format, ext) in [
            (ImageFormat::Png, "png"),
            (ImageFormat::Bmp, "bmp"),
            (ImageFormat::Jpeg, "jpg"),
        ] {
            img.save_with_format(d.join(format!("rgb-6x4.{ext}")), format)
                .unwrap();
        }
        image::DynamicImage::ImageRgb8(img)
            .to_luma8()
            .save_with_format(d.join("grey-6x4.png"), ImageFormat::Png)
            .unwrap();
    }

    fn safetensors_seeds(d: &Path) {
        let d = dir(d);
        let model = super::harness::safetensors_model();
        let bytes = advtrain::model::safetensors_bytes(model).unwrap();
        fs::write(d.join("small-cnn-1x4x4.safetensors"), bytes).unwrap();
    }

    fn checkpoint_seeds(d: &Path) {
        let d = dir(d);
        let rng = advtrain::rng::seeded(7);
        let config = serde_json::json!({"method": "pgd-at", "epochs": 2, "eps": 0.3});
        let state = TrainState::fresh(config, &rng, &rng, vec![1, 2, 3]);
        let blobs = BTreeMap::from([
            ("model".to_string(), b"weights".to_vec()),
            ("optimizer".to_string(), b"moments".to_vec()),
        ]);
        let ckpt = Checkpoint { state, blobs };
        fs::write(d.join("fresh.ckpt"), ckpt.to_bytes().unwrap()).unwrap();
    }

    fn text_seeds(d: &Path) {
        let d = dir(d);
        let files = [
            (
                "named.csv",
                "id,label,text\n1,spam,\"Buy now, \"\"cheap\"\"\nsecond line\"\n2,ham,hello there\n",
            ),
            ("indices.csv", "text,label\r\nfirst,0\r\nsecond,1\r\nthird,2\r\n"),
            (
                "named.jsonl",
                "{\"text\": \"hello\", \"label\": \"ham\"}\n\n{\"text\": \"win\", \"label\": \"spam\"}\n",
            ),
            (
                "indices.jsonl",
                "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\", \"label\": 1, \"x\": [1]}\n",
            ),
        ];
        for (name, text) in files {
            fs::write(d.join(name), text).unwrap();
        }
    }
}
