//! Writing a model back: the original graph with new initializer values.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;

use super::graph;
use super::tensor;
use crate::error::{Error, Result};

/// Copies the ONNX file `source` to `dest` with each initializer named in `values` replaced
/// (same name, same shape, float32), atomically. Every name must exist in `source` with the
/// same number of elements: a run's weights are never written into a different graph.
pub(crate) fn write_with_weights(
    source: &Path,
    dest: &Path,
    values: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<()> {
    let fail = |message: String| Error::Onnx {
        path: source.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(source).map_err(|e| Error::io(source, e))?;
    let mut model = graph::decode(&bytes).map_err(|e| fail(e.message))?;
    drop(bytes);
    let graph = model.graph.as_mut().expect("decode checked the graph");
    let mut wanted: HashMap<&str, (&Vec<usize>, &Vec<f32>)> = values
        .iter()
        .map(|(n, s, v)| (n.as_str(), (s, v)))
        .collect();
    for init in graph.initializer.iter_mut() {
        let name = init.name.clone().unwrap_or_default();
        if let Some((shape, v)) = wanted.remove(name.as_str()) {
            let old = tensor::from_proto(init).map_err(fail)?;
            if old.shape != *shape || old.len() != v.len() {
                return Err(fail(format!(
                    "initializer '{name}' has shape {:?} in the file but {shape:?} in the model",
                    old.shape
                )));
            }
            *init = tensor::f32_proto(&name, shape, v);
        }
    }
    if let Some(name) = wanted.keys().next() {
        return Err(fail(format!(
            "the model has a weight '{name}' that the file does not: not the file it was imported from"
        )));
    }
    crate::io::write_atomic(dest, &model.encode_to_vec())
}
