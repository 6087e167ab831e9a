//! The JSON a filter receives and answers, checked strictly: a filter that answers garbage
//! is found out at its first malformed reply, not after it has skewed the figures.

use serde::Serialize;
use serde_json::Value;

/// One text sent to the filter.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Request {
    /// Unique within a run (`q1`, `q2`, ...), echoed in the reply.
    pub id: String,
    /// The text to score.
    pub text: String,
}

/// Reads one reply: its id and one probability per class. Accepts `"scores"` (one value in
/// `[0, 1]` per class), `"score"` (two classes only: probability of class 1) or `"label"`
/// (an index or one of `class_names`: a hard-label answer, returned one-hot). The error
/// says what is wrong, for the caller to attach the id to.
pub fn parse_reply(
    reply: &Value,
    num_classes: usize,
    class_names: &[String],
) -> Result<(String, Vec<f32>), String> {
    let obj = reply
        .as_object()
        .ok_or_else(|| format!("a reply must be a JSON object, got {}", short(reply)))?;
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(format!("\"id\" must be a string, got {}", short(other))),
        None => return Err(format!("reply has no \"id\": {}", short(reply))),
    };
    let scores = if let Some(v) = obj.get("scores") {
        scores(v, num_classes)
    } else if let Some(v) = obj.get("score") {
        score(v, num_classes)
    } else if let Some(v) = obj.get("label") {
        label(v, num_classes, class_names)
    } else {
        Err(format!(
            "reply has none of \"scores\", \"score\", \"label\": {}",
            short(reply)
        ))
    };
    match scores {
        Ok(s) => Ok((id, s)),
        Err(e) => Err(format!("reply to {id}: {e}")),
    }
}

fn scores(v: &Value, num_classes: usize) -> Result<Vec<f32>, String> {
    let arr = v
        .as_array()
        .ok_or_else(|| format!("\"scores\" must be an array, got {}", short(v)))?;
    if arr.len() != num_classes {
        return Err(format!(
            "\"scores\" has {} values, the data set has {num_classes} classes",
            arr.len()
        ));
    }
    arr.iter().map(probability).collect()
}

fn score(v: &Value, num_classes: usize) -> Result<Vec<f32>, String> {
    if num_classes != 2 {
        return Err(format!(
            "a single \"score\" needs two classes, the data set has {num_classes}; answer \"scores\""
        ));
    }
    let p = probability(v)?;
    Ok(vec![1.0 - p, p])
}

fn label(v: &Value, num_classes: usize, class_names: &[String]) -> Result<Vec<f32>, String> {
    let k = match v {
        Value::Number(n) => n
            .as_u64()
            .map(|k| k as usize)
            .filter(|&k| k < num_classes)
            .ok_or_else(|| format!("\"label\" {n} is not a class index below {num_classes}"))?,
        Value::String(s) => class_names
            .iter()
            .position(|c| c == s)
            .ok_or_else(|| format!("\"label\" {s:?} is none of the classes {class_names:?}"))?,
        other => {
            return Err(format!(
                "\"label\" must be an index or a class name, got {}",
                short(other)
            ))
        }
    };
    let mut one_hot = vec![0.0; num_classes];
    one_hot[k] = 1.0;
    Ok(one_hot)
}

fn probability(v: &Value) -> Result<f32, String> {
    match v.as_f64() {
        Some(p) if (0.0..=1.0).contains(&p) => Ok(p as f32),
        Some(p) => Err(format!("score {p} is not a probability in [0, 1]")),
        None => Err(format!("score {} is not a number", short(v))),
    }
}

/// A JSON value for an error message, cut short.
pub(crate) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_reply_forms() {
        let names = vec!["ham".to_string(), "spam".to_string()];
        let (id, s) = parse_reply(&json!({"id": "q1", "scores": [0.25, 0.75]}), 2, &names).unwrap();
        assert_eq!((id.as_str(), s), ("q1", vec![0.25, 0.75]));
        let (_, s) = parse_reply(&json!({"id": "q2", "score": 0.25}), 2, &names).unwrap();
        assert_eq!(s, vec![0.75, 0.25]);
        let (_, s) = parse_reply(&json!({"id": "q3", "label": "spam"}), 2, &names).unwrap();
        assert_eq!(s, vec![0.0, 1.0]);
        let (_, s) = parse_reply(&json!({"id": 4, "label": 0}), 2, &names).unwrap();
        assert_eq!(s, vec![1.0, 0.0]);
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        let bad = [
            (json!([1, 2]), "JSON object"),
            (json!({"scores": [0.5, 0.5]}), "no \"id\""),
            (json!({"id": "q1"}), "none of"),
            (json!({"id": "q1", "scores": [0.5]}), "1 values"),
            (
                json!({"id": "q1", "scores": [0.5, 1.5]}),
                "not a probability",
            ),
            (json!({"id": "q1", "scores": [0.5, "x"]}), "not a number"),
            (json!({"id": "q1", "label": 2}), "not a class index"),
            (json!({"id": "q1", "label": "eggs"}), "none of the classes"),
            (json!({"id": "q1", "score": 0.5}), "needs two classes"),
        ];
        for (i, (reply, want)) in bad.iter().enumerate() {
            let classes = if i == 8 { 3 } else { 2 };
            let err = parse_reply(reply, classes, &["ham".into(), "spam".into()]).unwrap_err();
            assert!(err.contains(want), "{reply}: {err}");
        }
    }
}
