//! Reading a node's attributes with the operator's defaults.

use super::graph::{Attr, Node};
use super::host::HostTensor;

impl Node {
    /// An integer attribute, or `default`.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(Attr::Int(v)) => Ok(*v),
            Some(other) => Err(format!(
                "attribute {name} should be an integer, is {other:?}"
            )),
        }
    }

    /// A list-of-integers attribute, if present.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(Attr::Int(v)) => Ok(Some(vec![*v])),
            Some(other) => Err(format!("attribute {name} should be integers, is {other:?}")),
        }
    }

    /// A float attribute, or `default`.
    pub fn float(&self, name: &str, default: f32) -> Result<f32, String> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(Attr::Float(v)) => Ok(*v),
            Some(Attr::Int(v)) => Ok(*v as f32),
            Some(other) => Err(format!("attribute {name} should be a float, is {other:?}")),
        }
    }

    /// A string attribute, or `default`.
    pub fn string(&self, name: &str, default: &str) -> Result<String, String> {
        match self.attrs.get(name) {
            None => Ok(default.to_string()),
            Some(Attr::Str(v)) => Ok(v.clone()),
            Some(other) => Err(format!("attribute {name} should be a string, is {other:?}")),
        }
    }

    /// A tensor attribute, if present.
    pub fn tensor(&self, name: &str) -> Option<&HostTensor> {
        match self.attrs.get(name) {
            Some(Attr::Tensor(t)) => Some(t),
            _ => None,
        }
    }

    /// The value of a `Constant` node, from whichever attribute holds it.
    pub fn constant_value(&self) -> Result<HostTensor, String> {
        use super::host::HostData;
        if let Some(t) = self.tensor("value") {
            return Ok(t.clone());
        }
        match (
            self.attrs.get("value_float"),
            self.attrs.get("value_floats"),
            self.attrs.get("value_int"),
            self.attrs.get("value_ints"),
        ) {
            (Some(Attr::Float(v)), ..) => Ok(HostTensor::scalar_f32(*v)),
            (_, Some(Attr::Floats(v)), ..) => {
                HostTensor::new(vec![v.len()], HostData::F32(v.clone()))
            }
            (_, _, Some(Attr::Int(v)), _) => HostTensor::new(vec![], HostData::I64(vec![*v])),
            (_, _, _, Some(Attr::Ints(v))) => Ok(HostTensor::ints(v.clone())),
            _ => Err("Constant without a value attribute advtrain reads (sparse or string)".into()),
        }
    }
}
