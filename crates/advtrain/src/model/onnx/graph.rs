//! Reading an ONNX file into a graph advtrain can run: nodes in order, values numbered,
//! initializers sorted into trainable parameters, batch-norm statistics and constants,
//! and constant sub-graphs folded once.
//!
//! Everything that can be wrong with a file is found here, at load, and reported with the
//! node, the operator, the opset and the file: an operator advtrain does not run, a value
//! no node produces (a missing initializer), a truncated or corrupt file.

use std::collections::HashMap;

use prost::Message;

use super::host::HostTensor;
use super::ops::{self, SUPPORTED};
use super::proto::{self, ModelProto, NodeProto};
use super::tensor::{self, dtype};
use super::value::Value;

/// An attribute's value.
#[derive(Clone, Debug)]
pub(crate) enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Floats(Vec<f32>),
    Str(String),
    Tensor(HostTensor),
    /// A sub-graph or another kind advtrain does not read.
    Other,
}

/// A node, with its inputs and outputs as value slots.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// The node's name (or `#index` when the file gives none).
    pub name: String,
    /// The operator (`Conv`, `Relu`, …).
    pub op: String,
    /// Input slots; `None` for an omitted optional input.
    pub inputs: Vec<Option<usize>>,
    /// Output slots; `None` for an output the file does not name.
    pub outputs: Vec<Option<usize>>,
    /// Attributes by name.
    pub attrs: HashMap<String, Attr>,
    /// Slots whose last use is this node (freed after it runs).
    pub frees: Vec<usize>,
}

/// Where a float initializer ends up.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ParamSpec {
    /// The initializer's name in the file (export writes it back under this name).
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The slot it fills.
    pub slot: usize,
}

/// What the graph takes: its image input.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GraphInput {
    /// The input's name.
    pub name: String,
    /// Its dimensions; `None` where the file leaves one symbolic (the batch, usually).
    pub dims: Vec<Option<usize>>,
    /// Its slot.
    pub slot: usize,
}

/// A loaded graph.
#[derive(Debug)]
pub(crate) struct Graph {
    /// The file, for messages.
    pub file: String,
    /// The default-domain opset the file imports.
    pub opset: i64,
    /// The image input.
    pub input: GraphInput,
    /// The slot of the output read as logits.
    pub output: usize,
    /// The output's name.
    pub output_name: String,
    /// Nodes in execution order, constant sub-graphs folded away.
    pub nodes: Vec<Node>,
    /// Number of value slots.
    pub slots: usize,
    /// Constant values by slot (`None` where the value is computed at run time).
    pub constants: Vec<Option<Value>>,
    /// Trainable float initializers, in file order, with their initial values.
    pub params: Vec<ParamSpec>,
    /// Batch-norm running means and variances (updated in training mode, not trained).
    pub buffers: Vec<ParamSpec>,
    /// Which buffer fills a slot.
    pub buffer_of_slot: HashMap<usize, usize>,
}

/// The initial values of the parameters and buffers, handed to the module once and then
/// dropped, so the weights are held only on the device.
pub(crate) struct Weights {
    /// Values of [`Graph::params`], in the same order.
    pub params: Vec<Vec<f32>>,
    /// Values of [`Graph::buffers`], in the same order.
    pub buffers: Vec<Vec<f32>>,
}

/// A load error: what is wrong, where.
pub(crate) struct LoadError {
    /// The node at fault, if one is.
    pub node: Option<(String, String)>,
    /// What is wrong.
    pub message: String,
}

impl LoadError {
    fn file(message: impl Into<String>) -> Self {
        Self {
            node: None,
            message: message.into(),
        }
    }

    fn at(node: &Node, message: impl Into<String>) -> Self {
        Self {
            node: Some((node.name.clone(), node.op.clone())),
            message: message.into(),
        }
    }
}

/// Decodes `bytes` as an ONNX model.
pub(crate) fn decode(bytes: &[u8]) -> Result<ModelProto, LoadError> {
    let model = ModelProto::decode(bytes).map_err(|e| {
        LoadError::file(format!(
            "not a readable ONNX model ({e}); the file may be truncated or not ONNX"
        ))
    })?;
    if model.graph.is_none() {
        return Err(LoadError::file(
            "the file holds no graph (truncated, or not an ONNX model)",
        ));
    }
    Ok(model)
}

/// The default-domain opset a model imports.
pub(crate) fn opset_of(model: &ModelProto) -> Result<i64, LoadError> {
    model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| LoadError::file("the model imports no default-domain (ai.onnx) opset"))
}

fn attr_of(a: &proto::AttributeProto) -> Result<Attr, String> {
    use proto::attribute_proto::AttributeType as T;
    let kind = a.r#type.and_then(|t| T::try_from(t).ok());
    Ok(match kind {
        Some(T::Float) => Attr::Float(a.f.unwrap_or(0.0)),
        Some(T::Int) => Attr::Int(a.i.unwrap_or(0)),
        Some(T::String) => Attr::Str(String::from_utf8_lossy(a.s.as_deref().unwrap_or(&[])).into()),
        Some(T::Tensor) => match &a.t {
            Some(t) => Attr::Tensor(tensor::from_proto(t)?),
            None => Attr::Other,
        },
        Some(T::Floats) => Attr::Floats(a.floats.clone()),
        Some(T::Ints) => Attr::Ints(a.ints.clone()),
        _ => Attr::Other,
    })
}

/// Numbers every value name; `""` (an omitted optional input) gets no slot.
#[derive(Default)]
struct Slots {
    ids: HashMap<String, usize>,
}

impl Slots {
    fn get_or_add(&mut self, name: &str) -> Option<usize> {
        if name.is_empty() {
            return None;
        }
        let next = self.ids.len();
        Some(*self.ids.entry(name.to_string()).or_insert(next))
    }
}

/// Input positions whose initializer is a trainable weight of the operator (the kernel of a
/// convolution, the matrices of a linear layer, the scale and shift of a normalisation).
fn is_weight_slot(op: &str, position: usize) -> bool {
    match op {
        "Conv" | "ConvTranspose" | "Gemm" | "PRelu" => position >= 1,
        "MatMul" => true,
        "BatchNormalization" | "LayerNormalization" | "InstanceNormalization" => {
            position == 1 || position == 2
        }
        _ => false,
    }
}

/// Operators whose float initializer operands are learned when they sit after a weight
/// (a bias added after `MatMul`, a position embedding, a class token) and are constants
/// before (the mean and std of an input normalisation).
fn is_elementwise_param_op(op: &str) -> bool {
    matches!(
        op,
        "Add" | "Sub" | "Mul" | "Div" | "Concat" | "Expand" | "Where"
    )
}

/// Reads a model into a graph and the initial weights.
pub(crate) fn build(file: &str, model: ModelProto) -> Result<(Graph, Weights), LoadError> {
    let opset = opset_of(&model)?;
    let g = model.graph.expect("decode checked the graph");
    let mut slots = Slots::default();
    // Initializers, by name.
    let mut inits: HashMap<String, HostTensor> = HashMap::new();
    let mut init_order = Vec::new();
    for t in &g.initializer {
        let name = t.name.clone().unwrap_or_default();
        if name.is_empty() {
            // A nameless initializer can be no node's input: refused, not assumed away.
            return Err(LoadError::file(format!(
                "initializer {} of the graph has no name",
                init_order.len()
            )));
        }
        let value = tensor::from_proto(t).map_err(LoadError::file)?;
        init_order.push(name.clone());
        inits.insert(name, value);
    }
    drop(g.initializer);
    let input = image_input(&g.input, &inits, &mut slots)?;
    let output_info = g
        .output
        .first()
        .ok_or_else(|| LoadError::file("the graph has no output"))?;
    let output_name = output_info.name.clone().unwrap_or_default();

    // Nodes, with slots; check operators and the order of definitions.
    let mut defined: Vec<bool> = Vec::new();
    let mark = |defined: &mut Vec<bool>, s: usize| {
        if defined.len() <= s {
            defined.resize(s + 1, false);
        }
        defined[s] = true;
    };
    mark(&mut defined, input.slot);
    for name in &init_order {
        let s = slots.get_or_add(name).expect("initializers have names");
        mark(&mut defined, s);
    }
    let mut nodes = Vec::with_capacity(g.node.len());
    for (i, n) in g.node.iter().enumerate() {
        let node = node_of(i, n, &mut slots).map_err(LoadError::file)?;
        check_operator(n, &node, opset)?;
        for (k, s) in node.inputs.iter().enumerate() {
            if let Some(s) = *s {
                if !defined.get(s).copied().unwrap_or(false) {
                    let name = n.input[k].clone();
                    return Err(LoadError::at(
                        &node,
                        format!(
                            "input '{name}' is neither an initializer, the graph's input, nor \
                             the output of an earlier node (a missing initializer, or nodes out \
                             of order)"
                        ),
                    ));
                }
            }
        }
        for s in node.outputs.iter().flatten() {
            mark(&mut defined, *s);
        }
        nodes.push(node);
    }
    let output = *slots
        .ids
        .get(&output_name)
        .filter(|s| defined.get(**s).copied().unwrap_or(false))
        .ok_or_else(|| {
            LoadError::file(format!(
                "the graph output '{output_name}' is produced by no node"
            ))
        })?;

    let n_slots = slots.ids.len();
    let names = slot_names(&slots);
    let (params, buffers) = classify(&nodes, &init_order, &inits, &slots);
    let mut constants: Vec<Option<HostTensor>> = vec![None; n_slots];
    // Move each initializer to where it belongs (weights to the module, the rest to the
    // constants): no copies, so a large model is held once.
    let mut take = |specs: &[ParamSpec]| -> Vec<Vec<f32>> {
        specs
            .iter()
            .map(|p| {
                inits
                    .remove(&p.name)
                    .map_or_else(Vec::new, HostTensor::into_f32s)
            })
            .collect()
    };
    let weights = Weights {
        params: take(&params),
        buffers: take(&buffers),
    };
    for (name, value) in inits {
        constants[slots.ids[&name]] = Some(value);
    }
    let nodes = fold_constants(nodes, &mut constants, opset, &names)?;
    let nodes = with_frees(nodes, output, n_slots);
    let buffer_of_slot = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| (b.slot, i))
        .collect();
    Ok((
        Graph {
            file: file.to_string(),
            opset,
            input,
            output,
            output_name,
            nodes,
            slots: n_slots,
            constants: constants.into_iter().map(|c| c.map(Value::Host)).collect(),
            params,
            buffers,
            buffer_of_slot,
        },
        weights,
    ))
}

/// Slot → value name, for messages.
fn slot_names(slots: &Slots) -> Vec<String> {
    let mut names = vec![String::new(); slots.ids.len()];
    for (n, &s) in &slots.ids {
        names[s] = n.clone();
    }
    names
}

/// The graph's one non-initializer input, which must be a float tensor.
fn image_input(
    inputs: &[proto::ValueInfoProto],
    inits: &HashMap<String, HostTensor>,
    slots: &mut Slots,
) -> Result<GraphInput, LoadError> {
    let real: Vec<&proto::ValueInfoProto> = inputs
        .iter()
        .filter(|i| !inits.contains_key(i.name.as_deref().unwrap_or("")))
        .collect();
    let [info] = real.as_slice() else {
        let names: Vec<&str> = real
            .iter()
            .map(|i| i.name.as_deref().unwrap_or(""))
            .collect();
        return Err(LoadError::file(format!(
            "the graph takes {} inputs ({}); advtrain needs exactly one, the image batch",
            real.len(),
            names.join(", ")
        )));
    };
    let name = info.name.clone().unwrap_or_default();
    let tensor = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(proto::type_proto::Value::TensorType(t)) => t,
        _ => return Err(LoadError::file(format!("input '{name}' is not a tensor"))),
    };
    if tensor.elem_type != Some(dtype::FLOAT) {
        return Err(LoadError::file(format!(
            "input '{name}' has ONNX element type {:?}; advtrain feeds float32 images",
            tensor.elem_type
        )));
    }
    let dims = tensor
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => {
                        Some(v as usize)
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let slot = slots
        .get_or_add(&name)
        .ok_or_else(|| LoadError::file("the input has no name"))?;
    Ok(GraphInput { name, dims, slot })
}

fn node_of(index: usize, n: &NodeProto, slots: &mut Slots) -> Result<Node, String> {
    let name = match n.name.as_deref() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => format!("#{index}"),
    };
    let mut attrs = HashMap::new();
    for a in &n.attribute {
        let value = attr_of(a).map_err(|e| format!("node '{name}': {e}"))?;
        attrs.insert(a.name.clone().unwrap_or_default(), value);
    }
    Ok(Node {
        name,
        op: n.op_type.clone().unwrap_or_default(),
        inputs: n.input.iter().map(|s| slots.get_or_add(s)).collect(),
        outputs: n.output.iter().map(|s| slots.get_or_add(s)).collect(),
        attrs,
        frees: Vec::new(),
    })
}

/// Refuses operators advtrain does not run, and other domains.
fn check_operator(n: &NodeProto, node: &Node, opset: i64) -> Result<(), LoadError> {
    let domain = n.domain.as_deref().unwrap_or("");
    if !domain.is_empty() && domain != "ai.onnx" {
        return Err(LoadError::at(
            node,
            format!(
                "operator domain '{domain}' is not supported (only the default ONNX domain is)"
            ),
        ));
    }
    if !SUPPORTED.contains(&node.op.as_str()) {
        return Err(LoadError::at(
            node,
            format!(
                "operator {} (opset {opset}) is not supported; supported: {}",
                node.op,
                SUPPORTED.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Sorts float initializers into trainable parameters and batch-norm statistics; the rest
/// stay constants. A float initializer is a parameter when it is an operator's weight, or an
/// operand (of two or more elements) of an elementwise operator that runs after a weight.
fn classify(
    nodes: &[Node],
    init_order: &[String],
    inits: &HashMap<String, HostTensor>,
    slots: &Slots,
) -> (Vec<ParamSpec>, Vec<ParamSpec>) {
    let is_float = |name: &str| {
        matches!(
            inits.get(name).map(|t| &t.data),
            Some(super::host::HostData::F32(_))
        )
    };
    let slot_of = |name: &str| slots.ids[name];
    let init_slots: HashMap<usize, &str> = init_order
        .iter()
        .map(|n| (slot_of(n), n.as_str()))
        .collect();
    let mut param_slots = std::collections::HashSet::new();
    let mut buffer_slots = std::collections::HashSet::new();
    // Slots computed after some weight (their values depend on learned parameters).
    let mut learned = vec![false; slots.ids.len()];
    for node in nodes {
        let mut after_weight = false;
        for (k, s) in node.inputs.iter().enumerate() {
            let Some(s) = *s else { continue };
            if let Some(name) = init_slots.get(&s) {
                if !is_float(name) {
                    continue;
                }
                if node.op == "BatchNormalization" && (k == 3 || k == 4) {
                    buffer_slots.insert(s);
                } else if is_weight_slot(&node.op, k) {
                    param_slots.insert(s);
                    after_weight = true;
                }
            } else if learned[s] {
                after_weight = true;
            }
        }
        if after_weight && is_elementwise_param_op(&node.op) {
            for s in node.inputs.iter().flatten() {
                if let Some(name) = init_slots.get(s) {
                    if is_float(name) && inits[*name].len() >= 2 {
                        param_slots.insert(*s);
                    }
                }
            }
        }
        if after_weight {
            for s in node.outputs.iter().flatten() {
                learned[*s] = true;
            }
        }
    }
    let specs = |set: &std::collections::HashSet<usize>| -> Vec<ParamSpec> {
        init_order
            .iter()
            .filter(|n| set.contains(&slot_of(n)))
            .map(|n| ParamSpec {
                name: n.clone(),
                shape: inits[n].shape.clone(),
                slot: slot_of(n),
            })
            .collect()
    };
    let buffers = specs(&buffer_slots);
    param_slots.retain(|s| !buffer_slots.contains(s));
    (specs(&param_slots), buffers)
}

/// Evaluates, once, every node whose inputs are all constants, and drops it.
fn fold_constants(
    nodes: Vec<Node>,
    constants: &mut [Option<HostTensor>],
    opset: i64,
    names: &[String],
) -> Result<Vec<Node>, LoadError> {
    let mut kept = Vec::with_capacity(nodes.len());
    for node in nodes {
        let inputs: Option<Vec<Option<&HostTensor>>> = node
            .inputs
            .iter()
            .map(|s| match s {
                None => Some(None),
                Some(s) => constants[*s].as_ref().map(Some),
            })
            .collect();
        let folded = match inputs {
            Some(inputs) if ops::host_evaluable(&node.op) => {
                Some(ops::eval_host(&node, &inputs, opset).map_err(|e| {
                    LoadError::at(
                        &node,
                        format!(
                            "{e} (folding constants of '{}')",
                            first_output(&node, names)
                        ),
                    )
                })?)
            }
            _ => None,
        };
        match folded {
            Some(outputs) => {
                for (s, v) in node.outputs.iter().zip(outputs) {
                    if let Some(s) = s {
                        constants[*s] = Some(v);
                    }
                }
            }
            None => kept.push(node),
        }
    }
    Ok(kept)
}

fn first_output<'a>(node: &Node, names: &'a [String]) -> &'a str {
    node.outputs
        .iter()
        .flatten()
        .next()
        .map_or("", |s| names[*s].as_str())
}

/// Records, on each node, the runtime slots it is the last user of.
fn with_frees(mut nodes: Vec<Node>, output: usize, slots: usize) -> Vec<Node> {
    let mut last = vec![None; slots];
    for (i, n) in nodes.iter().enumerate() {
        for s in n.inputs.iter().flatten() {
            last[*s] = Some(i);
        }
    }
    for (s, l) in last.iter().enumerate() {
        if let Some(i) = l {
            if s != output {
                nodes[*i].frees.push(s);
            }
        }
    }
    nodes
}
