//! [`OnnxModel`]: an imported graph as a burn module and a [`Classifier`].

use std::path::Path;
use std::sync::Arc;

use burn::module::{Flag, Module, Param, RunningState};
use burn::prelude::{Device, Tensor, TensorData};

use super::graph::{self, Graph, LoadError};
use super::ops::{self, Ctx};
use super::proto::ModelProto;
use super::value::{Ft, Value};
use crate::error::{Error, Result};
use crate::model::{Classifier, ModelShape, Normalization};

/// The pixel range the imported model was trained on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InputRange {
    /// Pixels in `[0, 1]` (PyTorch's `ToTensor`).
    #[default]
    #[serde(rename = "0,1")]
    Unit,
    /// Pixels in `[0, 255]`.
    #[serde(rename = "0,255")]
    Byte,
}

impl std::str::FromStr for InputRange {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.replace(' ', "").as_str() {
            "0,1" => Ok(InputRange::Unit),
            "0,255" => Ok(InputRange::Byte),
            _ => Err(Error::config(format!(
                "input range '{s}': expected 0,1 or 0,255"
            ))),
        }
    }
}

/// How advtrain feeds `[0, 1]` images to an imported model: the attacks' ε stays in pixel
/// units of `[0, 1]` images whatever the model expects, because the scaling and the
/// normalisation happen inside the model.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OnnxOptions {
    /// The pixel range the model expects.
    pub input_range: InputRange,
    /// Per-channel mean/std applied (after the range scaling) before the graph, for models
    /// exported without their normalisation.
    pub normalization: Option<Normalization>,
    /// Image shape `[channels, height, width]` for a graph whose input does not say it
    /// (a flattened `[N, D]` input).
    pub image_shape: Option<[usize; 3]>,
}

/// How the graph's input is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// `[N, C, H, W]` (PyTorch).
    Nchw,
    /// `[N, H, W, C]` (TensorFlow).
    Nhwc,
    /// `[N, H, W]` (grey images without a channel).
    Hw,
    /// `[N, C·H·W]` (a flattened input).
    Flat,
}

/// What the module does to `[0, 1]` images before the graph.
#[derive(Clone, Debug)]
struct InputAdapter {
    scale: f32,
    normalization: Option<Normalization>,
    layout: Layout,
    /// The batch size the graph was exported with, when it is fixed.
    fixed_batch: Option<usize>,
}

/// An ONNX image classifier running on burn tensors.
///
/// Every float initializer that is a weight becomes a trainable parameter (kept flat, one
/// per initializer, and viewed in its shape at each forward pass), batch-norm running
/// statistics are updated in training mode, and the rest of the graph is interpreted node
/// by node on burn's operations, so attacks get input gradients and training gets
/// parameter gradients through burn's autodiff.
#[derive(Module, Debug)]
pub struct OnnxModel {
    params: Vec<Param<Tensor<1>>>,
    buffers: Vec<RunningState<Tensor<1>>>,
    training: Param<Flag>,
    #[module(skip)]
    graph: Arc<Graph>,
    #[module(skip)]
    adapter: Arc<InputAdapter>,
    #[module(skip)]
    shape: ModelShape,
}

/// An import error naming the file, and the node when one is at fault.
fn onnx_error(path: &Path, opset: Option<i64>, e: LoadError) -> Error {
    let message = match (e.node, opset) {
        (Some((name, op)), Some(v)) => format!("node '{name}' ({op}, opset {v}): {}", e.message),
        (Some((name, op)), None) => format!("node '{name}' ({op}): {}", e.message),
        (None, _) => e.message,
    };
    Error::Onnx {
        path: path.to_path_buf(),
        message,
    }
}

impl OnnxModel {
    /// Loads an ONNX image classifier.
    ///
    /// The graph is checked once here: every operator must be one advtrain runs, every value
    /// must be produced before it is used, and a forward pass on a zero batch must give
    /// logits `[batch, classes]`. The weights are read into the device's memory and the
    /// file's copy is dropped.
    pub fn load(path: &Path, options: &OnnxOptions, device: &Device) -> Result<Self> {
        if !path.exists() {
            return Err(Error::Onnx {
                path: path.to_path_buf(),
                message: "file not found".into(),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let proto = graph::decode(&bytes).map_err(|e| onnx_error(path, None, e))?;
        drop(bytes);
        Self::from_proto(proto, path, options, device)
    }

    /// [`OnnxModel::load`] on a file already read into memory (`path` names it in errors);
    /// the caller keeps its bytes (to copy the file, say) without a second copy here.
    pub fn from_bytes(
        bytes: &[u8],
        path: &Path,
        options: &OnnxOptions,
        device: &Device,
    ) -> Result<Self> {
        let proto = graph::decode(bytes).map_err(|e| onnx_error(path, None, e))?;
        Self::from_proto(proto, path, options, device)
    }

    /// The model of a decoded file.
    fn from_proto(
        proto: ModelProto,
        path: &Path,
        options: &OnnxOptions,
        device: &Device,
    ) -> Result<Self> {
        let opset = graph::opset_of(&proto).map_err(|e| onnx_error(path, None, e))?;
        let (graph, weights) = graph::build(&path.display().to_string(), proto)
            .map_err(|e| onnx_error(path, Some(opset), e))?;
        let adapter = adapter_for(&graph, options).map_err(|m| Error::Onnx {
            path: path.to_path_buf(),
            message: m,
        })?;
        let flat = |v: Vec<f32>| {
            let n = v.len();
            Tensor::<1>::from_data(TensorData::new(v, [n]), device)
        };
        let params = weights
            .params
            .into_iter()
            .map(|v| Param::from_tensor(flat(v)))
            .collect();
        let buffers = weights
            .buffers
            .into_iter()
            .map(|v| RunningState::new(flat(v)))
            .collect();
        let [c, h, w] = adapter.image_shape;
        let mut model = OnnxModel {
            params,
            buffers,
            training: Param::from_bool(true),
            graph: Arc::new(graph),
            adapter: Arc::new(adapter.adapter),
            shape: ModelShape {
                channels: c,
                height: h,
                width: w,
                num_classes: 0,
            },
        };
        model.shape.num_classes = model.probe_classes(path, device)?;
        Ok(model)
    }

    /// Runs a zero batch through the graph to find the number of classes (and any error a
    /// real batch would meet).
    fn probe_classes(&self, path: &Path, device: &Device) -> Result<usize> {
        let s = &self.shape;
        let n = self.adapter.fixed_batch.unwrap_or(2);
        let x = Tensor::<4>::zeros(
            [n, s.channels, s.height, s.width],
            &device.clone().without_autodiff(),
        );
        let logits = self.valid().try_logits(x).map_err(|message| Error::Onnx {
            path: path.to_path_buf(),
            message,
        })?;
        let [_, k] = logits.dims();
        if k < 2 {
            return Err(Error::Onnx {
                path: path.to_path_buf(),
                message: format!(
                    "the output '{}' has {k} value per image; a classifier needs at least 2 logits",
                    self.graph.output_name
                ),
            });
        }
        Ok(k)
    }

    /// The images and classes the model takes and scores.
    pub fn shape(&self) -> &ModelShape {
        &self.shape
    }

    /// The file's default-domain opset.
    pub fn opset(&self) -> i64 {
        self.graph.opset
    }

    /// Names and shapes of the trainable initializers, in file order.
    pub fn parameter_names(&self) -> Vec<(String, Vec<usize>)> {
        self.graph
            .params
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect()
    }

    /// Names of the batch-norm running statistics.
    pub fn buffer_names(&self) -> Vec<String> {
        self.graph.buffers.iter().map(|b| b.name.clone()).collect()
    }

    /// The current values of every parameter and running statistic, by initializer name
    /// (what [`write_onnx`](Self::write_onnx) writes back).
    pub fn initializer_values(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let read = |t: Tensor<1>| {
            t.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_default()
        };
        let g = &self.graph;
        let params = g
            .params
            .iter()
            .zip(&self.params)
            .map(|(s, p)| (s.name.clone(), s.shape.clone(), read(p.val())));
        let buffers = g
            .buffers
            .iter()
            .zip(&self.buffers)
            .map(|(s, b)| (s.name.clone(), s.shape.clone(), read(b.value_sync())));
        params.chain(buffers).collect()
    }

    /// Writes `source` (the file this model was imported from) to `dest` with the
    /// initializers replaced by this model's current weights and batch-norm statistics:
    /// the same graph, the fine-tuned values. Written atomically.
    pub fn write_onnx(&self, source: &Path, dest: &Path) -> Result<()> {
        super::export::write_with_weights(source, dest, &self.initializer_values())
    }

    /// Logits, or the node that failed and why.
    pub fn try_logits(&self, images: Tensor<4>) -> std::result::Result<Tensor<2>, String> {
        let [n, ..] = images.dims();
        let x = self.adapt(images);
        match self.adapter.fixed_batch {
            Some(k) if k != n => self.run_in_chunks(x, n, k),
            _ => self.run(x, n),
        }
    }

    /// Runs a graph exported for a fixed batch of `k` over `n` images, `k` at a time (the
    /// last chunk padded with zeros and cut).
    fn run_in_chunks(&self, x: Ft, n: usize, k: usize) -> std::result::Result<Tensor<2>, String> {
        let dims = x.dims();
        let mut outs = Vec::new();
        let mut start = 0;
        while start < n {
            let len = k.min(n - start);
            let mut chunk = super::value::map_ft!(x.clone(), t => t.narrow(0, start, len));
            if len < k {
                let mut pad_dims = dims.clone();
                pad_dims[0] = k - len;
                let zeros = Ft::R1(Tensor::<1>::zeros(
                    [pad_dims.iter().product::<usize>()],
                    &x.device(),
                ))
                .reshape(&pad_dims)?;
                chunk = concat_batch(chunk, zeros)?;
            }
            outs.push(self.run(chunk, k)?.narrow(0, 0, len));
            start += len;
        }
        Ok(Tensor::cat(outs, 0))
    }

    /// `[0, 1]` images as the graph takes them: scaled, normalised, laid out.
    fn adapt(&self, images: Tensor<4>) -> Ft {
        let a = &self.adapter;
        let mut x = images;
        if a.scale != 1.0 {
            x = x.mul_scalar(a.scale);
        }
        if let Some(n) = &a.normalization {
            x = n.apply(x);
        }
        let [n, c, h, w] = x.dims();
        match a.layout {
            Layout::Nchw => Ft::R4(x),
            Layout::Nhwc => Ft::R4(x.permute([0, 2, 3, 1])),
            Layout::Hw => Ft::R3(x.reshape([n, h, w])),
            Layout::Flat => Ft::R2(x.reshape([n, c * h * w])),
        }
    }

    /// Runs the graph on a prepared batch of `n`.
    fn run(&self, x: Ft, n: usize) -> std::result::Result<Tensor<2>, String> {
        let g = &*self.graph;
        let device = x.device();
        let mut env: Vec<Option<Value>> = (0..g.slots).map(|_| None).collect();
        env[g.input.slot] = Some(Value::Float(x));
        for (spec, p) in g.params.iter().zip(&self.params) {
            env[spec.slot] = Some(Value::Float(Ft::R1(p.val()).reshape(&spec.shape)?));
        }
        for (spec, b) in g.buffers.iter().zip(&self.buffers) {
            env[spec.slot] = Some(Value::Float(Ft::R1(b.value_sync().to_device(&device))));
        }
        let ctx = Ctx {
            device: device.clone(),
            opset: g.opset,
            training: self.training.is_enabled(),
            buffers: &self.buffers,
            buffer_of_slot: &g.buffer_of_slot,
        };
        for node in &g.nodes {
            let inputs: Vec<Option<&Value>> = node
                .inputs
                .iter()
                .map(|s| s.and_then(|s| env[s].as_ref().or(g.constants[s].as_ref())))
                .collect();
            if let Some(k) = node
                .inputs
                .iter()
                .zip(&inputs)
                .position(|(s, v)| s.is_some() && v.is_none())
            {
                return Err(format!(
                    "node '{}' ({}): input {k} was never computed",
                    node.name, node.op
                ));
            }
            let outputs = ops::eval(node, &inputs, &ctx).map_err(|e| {
                format!("node '{}' ({}, opset {}): {e}", node.name, node.op, g.opset)
            })?;
            for (s, v) in node.outputs.iter().zip(outputs) {
                if let Some(s) = s {
                    env[*s] = Some(v);
                }
            }
            for s in &node.frees {
                env[*s] = None;
            }
        }
        let out = env[g.output]
            .take()
            .ok_or_else(|| format!("the output '{}' was not computed", g.output_name))?;
        let Value::Float(out) = out else {
            return Err(format!(
                "the output '{}' does not depend on the image",
                g.output_name
            ));
        };
        let dims = out.dims();
        let k: usize = dims.iter().skip(1).product();
        if dims.first() != Some(&n) || dims.iter().skip(2).any(|&d| d != 1) {
            return Err(format!(
                "the output '{}' has shape {dims:?}; advtrain needs logits [{n}, classes]",
                g.output_name
            ));
        }
        Ok(out.typed([n, k]))
    }
}

/// Two batches one after the other.
fn concat_batch(a: Ft, b: Ft) -> std::result::Result<Ft, String> {
    super::value::by_rank!(a.rank(), D => {
        use super::value::IntoFt;
        Ok(Tensor::cat(vec![a.lift::<D>()?, b.lift::<D>()?], 0).ft())
    })
}

impl Classifier for OnnxModel {
    /// # Panics
    /// If the graph fails on this batch (it ran on a zero batch at load, so only a graph whose
    /// shapes depend on the batch in a way the probe did not meet fails here); the message
    /// names the node. [`OnnxModel::try_logits`] returns the error instead.
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.try_logits(images)
            .unwrap_or_else(|e| panic!("{}: {e}", self.graph.file))
    }
}

/// Most values the load-time probe batch may hold (256 Mi floats, 1 GiB): the image shape
/// and a fixed batch size come from the file, and a few bytes can claim `[1e6, 3, 1e6, 1e6]`,
/// which would be allocated before anything else fails.
const MAX_PROBE_VALUES: usize = 1 << 28;

/// An error unless a probe batch of images of `shape` (`batch` of them, or 2) is of a size
/// that can be allocated.
fn check_probe_size(
    name: &str,
    shape: [usize; 3],
    batch: Option<usize>,
) -> std::result::Result<(), String> {
    let values = shape
        .iter()
        .try_fold(batch.unwrap_or(2), |acc, &d| acc.checked_mul(d));
    match values {
        Some(v) if v > 0 && v <= MAX_PROBE_VALUES => Ok(()),
        _ => Err(format!(
            "input '{name}' takes {} images of {}x{}x{}: more than the {MAX_PROBE_VALUES} \
             values a batch may hold, or none",
            batch.unwrap_or(2),
            shape[0],
            shape[1],
            shape[2]
        )),
    }
}

/// The adapter and the image shape a graph input implies.
struct Adapted {
    adapter: InputAdapter,
    image_shape: [usize; 3],
}

/// Reads the layout and image shape from the graph's input.
fn adapter_for(graph: &Graph, options: &OnnxOptions) -> std::result::Result<Adapted, String> {
    let dims = &graph.input.dims;
    let name = &graph.input.name;
    let known = |d: &[Option<usize>]| d.iter().copied().collect::<Option<Vec<usize>>>();
    let channel_like = |d: Option<usize>| matches!(d, Some(1) | Some(3));
    let (layout, shape) = match dims.len() {
        4 => {
            let nhwc = !channel_like(dims[1]) && channel_like(dims[3]);
            let s = known(&dims[1..]).ok_or_else(|| {
                format!("input '{name}' has symbolic image dimensions {dims:?}; advtrain needs them fixed")
            })?;
            if nhwc {
                (Layout::Nhwc, [s[2], s[0], s[1]])
            } else {
                (Layout::Nchw, [s[0], s[1], s[2]])
            }
        }
        3 => {
            let s = known(&dims[1..])
                .ok_or_else(|| format!("input '{name}' has symbolic dimensions {dims:?}"))?;
            (Layout::Hw, [1, s[0], s[1]])
        }
        2 => {
            let d = dims[1].ok_or_else(|| format!("input '{name}' has a symbolic size"))?;
            let shape = match options.image_shape {
                Some(s) if s.iter().product::<usize>() == d => s,
                Some(s) => return Err(format!("--input-shape {s:?} has {} pixels; input '{name}' takes {d}", s.iter().product::<usize>())),
                None if d == 784 => [1, 28, 28],
                None if d == 3072 => [3, 32, 32],
                None => return Err(format!("input '{name}' is flat ({d} values); give the image shape (--input-shape C,H,W)")),
            };
            (Layout::Flat, shape)
        }
        _ => {
            return Err(format!(
                "input '{name}' has shape {dims:?}; advtrain feeds image batches [N, C, H, W]"
            ))
        }
    };
    check_probe_size(name, shape, dims.first().copied().flatten())?;
    if let Some(n) = &options.normalization {
        if n.mean.len() != shape[0] || n.std.len() != shape[0] {
            return Err(format!(
                "--mean/--std give {} values for {} channels",
                n.mean.len(),
                shape[0]
            ));
        }
    }
    Ok(Adapted {
        adapter: InputAdapter {
            scale: match options.input_range {
                InputRange::Unit => 1.0,
                InputRange::Byte => 255.0,
            },
            normalization: options.normalization.clone(),
            layout,
            fixed_batch: dims.first().copied().flatten(),
        },
        image_shape: shape,
    })
}
