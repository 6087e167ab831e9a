//! PyTorch state dicts: torch modules' weights (`scripts/make_pytorch_fixtures.py`, from the
//! definitions in `scripts/torch_zoo.py`) load into the zoo and give PyTorch's logits, with
//! and without normalisation; exporting them again gives PyTorch's tensors back, under the
//! same keys; every kind exports exactly the keys, shapes and dtypes of its torch module's
//! `state_dict()`; a file that does not fit says which keys are missing, unexpected or of
//! the wrong shape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use advtrain::error::Error;
use advtrain::model::{
    init_seeded, load_pytorch_state_dict, save_pytorch_state_dict, Classifier, ModelKind,
    ModelShape, Normalization, ZooModel,
};
use burn::prelude::*;

use crate::common::{relative_error, values};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pytorch")
        .join(name)
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advtrain-pytorch-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A SafeTensors file's tensors: name → (dtype, shape, bytes).
type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

fn read_tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, v)| (name, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn write_tensors(path: &Path, tensors: &Tensors) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The shapes `scripts/make_pytorch_fixtures.py` gave the weight fixtures (small and not
/// square, so that channel and flatten orders show).
fn fixture_shape(kind: ModelKind) -> ModelShape {
    let (channels, height, width) = match kind {
        ModelKind::SmallCnn => (2, 8, 12),
        ModelKind::Mlp => (3, 4, 5),
        _ => unreachable!("no weight fixture for {kind}"),
    };
    ModelShape {
        channels,
        height,
        width,
        num_classes: 10,
    }
}

/// A fresh model of `kind` with seeded weights (other than the fixture's).
fn fresh(kind: ModelKind, shape: &ModelShape, normalization: Option<Normalization>) -> ZooModel {
    let device = Device::flex();
    init_seeded(&device, 7, || {
        ZooModel::new(kind, shape, normalization, &device).unwrap()
    })
}

fn loaded(kind: ModelKind, normalization: Option<Normalization>) -> ZooModel {
    let model = fresh(kind, &fixture_shape(kind), normalization);
    load_pytorch_state_dict(model, &fixture(&format!("{kind}.safetensors"))).unwrap()
}

fn logits_of(model: &ZooModel, io: &Tensors) -> Vec<f32> {
    let (_, shape, data) = &io["x"];
    let x = Tensor::<4>::from_data(
        TensorData::new(f32s(data), [shape[0], shape[1], shape[2], shape[3]]),
        &Device::flex(),
    );
    values(model.logits(x))
}

fn check_torch_logits(kind: ModelKind) {
    let io = read_tensors(&fixture(&format!("{kind}.io.safetensors")));
    let want = f32s(&io["logits"].2);
    let err = relative_error(&logits_of(&loaded(kind, None), &io), &want);
    assert!(err < 1e-4, "{kind}: logits differ from PyTorch's by {err}");
    eprintln!("{kind}: logits within {err:.1e} (relative) of PyTorch's");

    // The same weights behind torch_zoo's normalisation and advtrain's.
    let normalization = Normalization {
        mean: f32s(&io["mean"].2),
        std: f32s(&io["std"].2),
    };
    let want = f32s(&io["logits_normalized"].2);
    let got = logits_of(&loaded(kind, Some(normalization)), &io);
    let err = relative_error(&got, &want);
    assert!(
        err < 1e-4,
        "{kind}: normalised logits differ from PyTorch's by {err}"
    );
}

#[test]
fn small_cnn_from_pytorch_gives_torchs_logits() {
    check_torch_logits(ModelKind::SmallCnn);
}

#[test]
fn mlp_from_pytorch_gives_torchs_logits() {
    check_torch_logits(ModelKind::Mlp);
}

fn check_export_gives_torchs_tensors_back(kind: ModelKind) {
    let dir = scratch(&format!("round-trip-{kind}"));
    let path = dir.join("exported.safetensors");
    save_pytorch_state_dict(&loaded(kind, None), &path).unwrap();
    let (got, want) = (
        read_tensors(&path),
        read_tensors(&fixture(&format!("{kind}.safetensors"))),
    );
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (key, tensor) in &want {
        assert!(got[key] == *tensor, "{kind}: {key} differs from PyTorch's");
    }
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap();
    assert_eq!(metadata["format"], "pt");
    assert_eq!(metadata["advtrain.model"], kind.as_str());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn small_cnn_export_gives_torchs_tensors_back() {
    check_export_gives_torchs_tensors_back(ModelKind::SmallCnn);
}

#[test]
fn mlp_export_gives_torchs_tensors_back() {
    check_export_gives_torchs_tensors_back(ModelKind::Mlp);
}

/// Every kind exports exactly the keys, shapes and dtypes of its torch module's
/// `state_dict()` (`keys.json`), batch norms' int64 zero counters included; and loads back
/// what it exported.
#[test]
fn every_kind_exports_torchs_keys_and_shapes() {
    let keys: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("keys.json")).unwrap()).unwrap();
    let dir = scratch("keys");
    for kind in ModelKind::ALL {
        let entry = &keys[kind.as_str()];
        let dim = |name: &str| entry["shape"][name].as_u64().unwrap() as usize;
        let shape = ModelShape {
            channels: dim("channels"),
            height: dim("height"),
            width: dim("width"),
            num_classes: dim("num_classes"),
        };
        let want: BTreeMap<String, (String, Vec<usize>)> = entry["state_dict"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, t)| {
                let dims = t["shape"].as_array().unwrap();
                let dims = dims.iter().map(|d| d.as_u64().unwrap() as usize).collect();
                (
                    key.clone(),
                    (t["dtype"].as_str().unwrap().to_string(), dims),
                )
            })
            .collect();

        let device = Device::flex();
        let model = ZooModel::new(kind, &shape, None, &device).unwrap();
        let path = dir.join(format!("{kind}.safetensors"));
        save_pytorch_state_dict(&model, &path).unwrap();
        let exported = read_tensors(&path);
        let got: BTreeMap<String, (String, Vec<usize>)> = exported
            .iter()
            .map(|(key, (dtype, dims, _))| {
                let dtype = match dtype {
                    Dtype::F32 => "float32",
                    Dtype::I64 => "int64",
                    other => panic!("{kind}: {key} is {other:?}"),
                };
                (key.clone(), (dtype.to_string(), dims.clone()))
            })
            .collect();
        assert_eq!(got, want, "{kind}: keys, dtypes and shapes");
        for (key, (dtype, _, data)) in &exported {
            if *dtype == Dtype::I64 {
                assert!(key.ends_with(".num_batches_tracked"), "{key}");
                assert_eq!(data.as_slice(), &0i64.to_le_bytes(), "{key}");
            }
        }

        // Back in: another model of the kind takes exactly these weights.
        let other = fresh(kind, &shape, None);
        let other = load_pytorch_state_dict(other, &path).unwrap();
        let again = dir.join(format!("{kind}.again.safetensors"));
        save_pytorch_state_dict(&other, &again).unwrap();
        assert!(read_tensors(&again) == exported, "{kind}: round trip");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The error a broken copy of the small-cnn fixture gives, as text.
fn load_error(test: &str, kind: ModelKind, edit: impl FnOnce(&mut Tensors)) -> String {
    let dir = scratch(test);
    let path = dir.join("broken.safetensors");
    let mut tensors = read_tensors(&fixture(&format!("{kind}.safetensors")));
    edit(&mut tensors);
    write_tensors(&path, &tensors);
    let err = load_pytorch_state_dict(fresh(kind, &fixture_shape(kind), None), &path)
        .expect_err("a broken state dict loads");
    assert!(
        matches!(&err, Error::ModelFile { path: p, .. } if *p == path),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
    err.to_string()
}

#[test]
fn a_missing_key_is_named() {
    let message = load_error("missing", ModelKind::SmallCnn, |t| {
        t.remove("fc2.bias");
    });
    assert!(
        message.contains("missing keys: fc2.bias") && !message.contains("unexpected"),
        "{message}"
    );
}

#[test]
fn an_unexpected_key_is_named() {
    let message = load_error("unexpected", ModelKind::Mlp, |t| {
        t.insert(
            "fc4.weight".into(),
            (Dtype::F32, vec![2], f32_bytes(&[1.0, 2.0])),
        );
    });
    assert!(
        message.contains("unexpected keys: fc4.weight") && !message.contains("missing"),
        "{message}"
    );
}

#[test]
fn a_wrong_shape_is_named() {
    // fc1.weight as burn stores it, [in, out]: PyTorch's layout is [out, in].
    let message = load_error("shape", ModelKind::SmallCnn, |t| {
        let w = t.get_mut("fc1.weight").unwrap();
        w.1 = vec![w.1[1], w.1[0]];
    });
    assert!(
        message.contains("fc1.weight has shape [192, 100] in the file, [100, 192] in the model"),
        "{message}"
    );
}

#[test]
fn a_wrong_dtype_and_an_absent_file_are_named() {
    let message = load_error("dtype", ModelKind::Mlp, |t| {
        let b = t.get_mut("fc3.bias").unwrap();
        b.0 = Dtype::I32;
    });
    assert!(
        message.contains("fc3.bias is I32 in the file, not a float dtype"),
        "{message}"
    );

    let path = scratch("absent").join("none.safetensors");
    let err = load_pytorch_state_dict(
        fresh(ModelKind::Mlp, &fixture_shape(ModelKind::Mlp), None),
        &path,
    )
    .unwrap_err();
    assert!(err.to_string().contains("file not found"), "{err}");
}

/// A torch-trained ResNet's file without its batch counters (as a non-strict export might
/// write it) is refused like PyTorch's strict load refuses it, naming them.
#[test]
fn batch_counters_are_required() {
    let dir = scratch("counters");
    let path = dir.join("resnet.safetensors");
    let model = ZooModel::new(
        ModelKind::PreactResnet18,
        &ModelShape::cifar10(),
        None,
        &Device::flex(),
    )
    .unwrap();
    save_pytorch_state_dict(&model, &path).unwrap();
    let mut tensors = read_tensors(&path);
    tensors.retain(|k, _| !k.ends_with("layer2.0.bn1.num_batches_tracked"));
    write_tensors(&path, &tensors);
    let err = load_pytorch_state_dict(model, &path).unwrap_err();
    assert!(
        err.to_string()
            .contains("missing keys: layer2.0.bn1.num_batches_tracked"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Not in CI: the files of the by-hand check against PyTorch (see the report of the change
/// that added this file). With `ADVTRAIN_TORCH_CHECK_DIR=DIR`, for every kind at its usual
/// shape, writes `DIR/KIND.safetensors` (a seeded model, exported) and `DIR/KIND.io.safetensors`
/// (4 images `x`, the normalisation `mean`/`std` and advtrain's `logits`); and where
/// `DIR/KIND.torch.safetensors` is there (a torch module's state dict), loads it into the same
/// normalised architecture and writes its logits for the same images to
/// `DIR/KIND.torch-logits.safetensors`.
#[test]
#[ignore]
fn torch_check_by_hand() {
    let dir = PathBuf::from(std::env::var("ADVTRAIN_TORCH_CHECK_DIR").expect("set the dir"));
    std::fs::create_dir_all(&dir).unwrap();
    let device = Device::flex();
    for kind in ModelKind::ALL {
        let shape = match kind {
            ModelKind::PreactResnet18 => ModelShape::cifar10(),
            _ => ModelShape::fashion_mnist(),
        };
        let c = shape.channels;
        let normalization = Normalization {
            mean: (0..c).map(|i| 0.3 + 0.1 * i as f32).collect(),
            std: (0..c).map(|i| 0.25 + 0.05 * i as f32).collect(),
        };
        let n = 4 * shape.image_len();
        let pixels: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.618_034).fract() * 0.9 + 0.05).min(1.0))
            .collect();
        let x = Tensor::<4>::from_data(
            TensorData::new(pixels.clone(), [4, c, shape.height, shape.width]),
            &device,
        );
        let model = init_seeded(&device, 3, || {
            ZooModel::new(kind, &shape, Some(normalization.clone()), &device).unwrap()
        });
        save_pytorch_state_dict(&model, &dir.join(format!("{kind}.safetensors"))).unwrap();
        let logits = values(model.logits(x.clone()));
        let io: Tensors = [
            (
                "x".to_string(),
                (
                    Dtype::F32,
                    vec![4, c, shape.height, shape.width],
                    f32_bytes(&pixels),
                ),
            ),
            (
                "mean".into(),
                (Dtype::F32, vec![c], f32_bytes(&normalization.mean)),
            ),
            (
                "std".into(),
                (Dtype::F32, vec![c], f32_bytes(&normalization.std)),
            ),
            (
                "logits".into(),
                (Dtype::F32, vec![4, shape.num_classes], f32_bytes(&logits)),
            ),
        ]
        .into_iter()
        .collect();
        write_tensors(&dir.join(format!("{kind}.io.safetensors")), &io);

        let torch = dir.join(format!("{kind}.torch.safetensors"));
        if torch.exists() {
            let model = load_pytorch_state_dict(model, &torch).unwrap();
            let logits = values(model.logits(x));
            let out: Tensors = [(
                "logits".to_string(),
                (Dtype::F32, vec![4, shape.num_classes], f32_bytes(&logits)),
            )]
            .into_iter()
            .collect();
            write_tensors(&dir.join(format!("{kind}.torch-logits.safetensors")), &out);
        }
    }
}
