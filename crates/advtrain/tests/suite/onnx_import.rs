//! ONNX import: models exported from PyTorch (`scripts/make_onnx_fixtures.py`) give
//! PyTorch's logits, input gradients and batch-norm statistics; fine-tuned weights survive
//! export and re-import; every broken file is an error that names what is wrong.

use std::path::{Path, PathBuf};

use advtrain::attack::{input_gradient, AttackLoss};
use advtrain::model::onnx::proto::{self, ModelProto};
use advtrain::model::onnx::{OnnxModel, OnnxOptions};
use advtrain::model::Classifier;
use burn::module::Module;
use burn::prelude::*;

use crate::common::{relative_error, values};
use prost::Message;
use safetensors::SafeTensors;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

/// The reference tensors PyTorch saved beside a fixture: name → (shape, values).
struct Reference(Vec<(String, Vec<usize>, Vec<f32>)>);

impl Reference {
    fn load(name: &str) -> Self {
        let bytes = std::fs::read(fixture(&format!("{name}.safetensors"))).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut out = Vec::new();
        for (key, view) in st.tensors() {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            out.push((key.to_string(), view.shape().to_vec(), values));
        }
        Reference(out)
    }

    fn get(&self, key: &str) -> (&[usize], &[f32]) {
        let (_, s, v) = self
            .0
            .iter()
            .find(|(k, ..)| k == key)
            .unwrap_or_else(|| panic!("no {key}"));
        (s, v)
    }

    fn images(&self, device: &Device) -> Tensor<4> {
        let (s, v) = self.get("x");
        Tensor::from_data(
            TensorData::new(v.to_vec(), [s[0], s[1], s[2], s[3]]),
            device,
        )
    }

    fn labels(&self, device: &Device) -> Tensor<1, Int> {
        let (_, v) = self.get("y");
        let y: Vec<i64> = v.iter().map(|&l| l as i64).collect();
        let n = y.len();
        Tensor::from_data(TensorData::new(y, [n]), device)
    }
}

fn load(name: &str) -> OnnxModel {
    OnnxModel::load(
        &fixture(&format!("{name}.onnx")),
        &OnnxOptions::default(),
        &Device::flex(),
    )
    .unwrap()
}

#[test]
fn imported_pytorch_models_give_pytorch_logits_and_input_gradients() {
    let device = Device::flex();
    for name in ["cnn_bn", "resnet", "tiny_vit", "nhwc_cnn", "flat_mlp"] {
        let model = load(name).valid();
        let r = Reference::load(name);
        let x = r.images(&device);
        let logits = values(model.logits(x.clone()));
        let err = relative_error(&logits, r.get("logits").1);
        assert!(
            err < 1e-4,
            "{name}: logits differ from PyTorch's by {err} (relative)"
        );
        let g = input_gradient(
            &model,
            x,
            r.labels(&device),
            AttackLoss::CrossEntropy,
            false,
        );
        let err = relative_error(&values(g.grad), r.get("grad").1);
        assert!(
            err < 1e-3,
            "{name}: input gradients differ from PyTorch's by {err} (relative)"
        );
        assert_eq!(model.shape().num_classes, 10, "{name}");
    }
}

#[test]
fn a_graph_exported_for_a_fixed_batch_runs_any_batch_in_chunks() {
    let model = load("flat_mlp").valid();
    let r = Reference::load("flat_mlp");
    let x = r.images(&Device::flex());
    // Six images through a graph exported for four: two chunks, the second padded.
    let six = Tensor::cat(vec![x.clone(), x.narrow(0, 0, 2)], 0);
    let logits = values(model.logits(six));
    let want = r.get("logits").1;
    assert!(relative_error(&logits[..40], want) < 1e-4);
    assert!(relative_error(&logits[40..], &want[..20]) < 1e-4);
}

#[test]
fn batch_norm_in_training_mode_matches_pytorch_statistics() {
    let device = Device::flex();
    let r = Reference::load("cnn_bn");
    let model = load("cnn_bn").train();
    let logits = values(model.logits(r.images(&device)));
    let err = relative_error(&logits, r.get("train_logits").1);
    assert!(err < 1e-4, "training-mode logits differ by {err}");
    let mut checked = 0;
    for (name, _, v) in model.initializer_values() {
        for prefix in ["running_mean.", "running_var."] {
            let key = format!("{prefix}{name}");
            if let Some((_, _, want)) = r.0.iter().find(|(k, ..)| *k == key) {
                let err = relative_error(&v, want);
                assert!(err < 1e-4, "{prefix}{name} differs from PyTorch's by {err}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4, "two batch norms, a mean and a variance each");
}

#[test]
fn input_gradients_of_an_imported_model_match_finite_differences() {
    let device = Device::flex();
    let model = load("resnet").valid();
    let r = Reference::load("resnet");
    let x = r.images(&device).narrow(0, 0, 2);
    let y = r.labels(&device).narrow(0, 0, 2);
    let loss_at = |x: Tensor<4>| -> f64 {
        let logits = model.logits(x);
        let l = AttackLoss::CrossEntropy
            .objective(logits, y.clone(), false)
            .sum();
        l.into_scalar::<f32>() as f64
    };
    let g = input_gradient(
        &model,
        x.clone(),
        y.clone(),
        AttackLoss::CrossEntropy,
        false,
    )
    .grad;
    // Along a unit direction d half along the gradient, half random:
    // (L(x + h·d) − L(x − h·d)) / 2h ≈ ∇L·d.
    let unit = |t: Tensor<4>| {
        let norm = t.clone().powf_scalar(2.0).sum().sqrt().into_scalar::<f32>();
        t.div_scalar(norm)
    };
    let noise = Tensor::<4>::random(
        x.dims(),
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let d = unit(unit(g.clone()) + unit(noise));
    let analytic = (g * d.clone()).sum().into_scalar::<f32>() as f64;
    let h = 1e-2;
    let numeric =
        (loss_at(x.clone() + d.clone().mul_scalar(h)) - loss_at(x - d.mul_scalar(h))) / (2.0 * h);
    let rel = (analytic - numeric).abs() / analytic.abs().max(1e-6);
    assert!(
        rel < 1e-2,
        "analytic {analytic} vs finite differences {numeric}"
    );
}

#[test]
fn fine_tuned_weights_survive_export_and_reimport() {
    let device = Device::flex();
    let r = Reference::load("cnn_bn");
    let mut model = load("cnn_bn").train();
    let mut optim = burn::optim::SgdConfig::new().init();
    let (x, y) = (r.images(&device), r.labels(&device));
    for _ in 0..2 {
        let logits = model.logits(x.clone());
        let loss = AttackLoss::CrossEntropy
            .objective(logits, y.clone(), false)
            .mean();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.1, model, grads);
    }
    let tuned = model.valid();
    let before = values(load("cnn_bn").valid().logits(x.clone()));
    let after = values(tuned.logits(x.clone()));
    assert!(
        relative_error(&after, &before) > 1e-3,
        "the steps changed the model"
    );
    let dir = tempdir();
    let out = dir.join("tuned.onnx");
    tuned.write_onnx(&fixture("cnn_bn.onnx"), &out).unwrap();
    let back = OnnxModel::load(&out, &OnnxOptions::default(), &device)
        .unwrap()
        .valid();
    assert_eq!(
        values(back.logits(x)),
        after,
        "re-imported outputs are identical"
    );
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "advtrain-onnx-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The message of the error loading `bytes` as a model gives.
fn load_error(bytes: &[u8]) -> String {
    let dir = tempdir();
    let path = dir.join(format!("m{}.onnx", bytes.len()));
    std::fs::write(&path, bytes).unwrap();
    let e = OnnxModel::load(&path, &OnnxOptions::default(), &Device::flex()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "names the file: {msg}"
    );
    msg
}

fn cnn_proto() -> ModelProto {
    ModelProto::decode(std::fs::read(fixture("cnn_bn.onnx")).unwrap().as_slice()).unwrap()
}

#[test]
fn broken_files_are_errors_that_name_the_problem() {
    let missing = OnnxModel::load(
        Path::new("/nonexistent/net.onnx"),
        &OnnxOptions::default(),
        &Device::flex(),
    );
    assert!(missing.unwrap_err().to_string().contains("file not found"));

    let bytes = std::fs::read(fixture("cnn_bn.onnx")).unwrap();
    let truncated = load_error(&bytes[..bytes.len() / 2]);
    assert!(truncated.contains("truncated"), "{truncated}");
    let noise = load_error(b"this is not a protobuf at all, just text");
    assert!(
        noise.contains("not a readable ONNX model") || noise.contains("no graph"),
        "{noise}"
    );

    let mut m = cnn_proto();
    let g = m.graph.as_mut().unwrap();
    g.node[1].op_type = Some("LSTM".into());
    let name = g.node[1].name.clone().unwrap();
    let msg = load_error(&m.encode_to_vec());
    assert!(
        msg.contains("operator LSTM (opset 13) is not supported"),
        "{msg}"
    );
    assert!(msg.contains(&format!("node '{name}'")), "{msg}");

    let mut m = cnn_proto();
    let g = m.graph.as_mut().unwrap();
    let dropped = g.initializer.remove(0).name.unwrap();
    let msg = load_error(&m.encode_to_vec());
    assert!(
        msg.contains(&format!("input '{dropped}'")) && msg.contains("missing initializer"),
        "{msg}"
    );

    let mut m = cnn_proto();
    m.graph.as_mut().unwrap().node[0].domain = Some("com.microsoft".into());
    assert!(load_error(&m.encode_to_vec()).contains("domain 'com.microsoft'"));

    let mut m = cnn_proto();
    let g = m.graph.as_mut().unwrap();
    let extra = proto::ValueInfoProto {
        name: Some("mask".into()),
        ..g.input[0].clone()
    };
    g.input.push(extra);
    assert!(load_error(&m.encode_to_vec()).contains("takes 2 inputs (input, mask)"));

    // A Gemm whose weight does not fit the flattened features: found by the probe batch.
    let mut m = cnn_proto();
    let g = m.graph.as_mut().unwrap();
    let w = g
        .initializer
        .iter_mut()
        .find(|t| t.dims == vec![10, 784])
        .unwrap();
    w.dims = vec![20, 392];
    let msg = load_error(&m.encode_to_vec());
    assert!(
        msg.contains("(Gemm, opset 13)") && msg.contains("Gemm of"),
        "{msg}"
    );
}
