//! `--target-url`: a filter behind an HTTP endpoint. Each batch is one POST whose body is a
//! JSON array of requests (`[{"id": .., "text": ..}, ..]`); the answer is a JSON array of
//! replies, or an object holding it under `"results"`, in any order. Any status but 200,
//! a body that is not such JSON, a missing or unexpected id fails the batch.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::protocol::{parse_reply, short, Request};
use super::{Batched, Failure, TargetOptions, Transport};
use crate::error::{Error, Result};
use crate::text::TextClassifier;

/// A filter behind a URL (`advtrain eval --target-url`).
pub struct HttpTarget {
    inner: Batched<Endpoint>,
}

impl HttpTarget {
    /// A target POSTing to `url` (`http://` or `https://`). No request is made until the
    /// first batch.
    pub fn new(url: &str, num_classes: usize, options: TargetOptions) -> Result<Self> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::config(format!(
                "--target-url must start with http:// or https://, got {url:?}"
            )));
        }
        let endpoint = Endpoint {
            url: url.to_string(),
            agent: agent(options.timeout),
            timeout: options.timeout,
            num_classes,
            class_names: options.class_names.clone(),
        };
        Ok(HttpTarget {
            inner: Batched::new(endpoint, format!("url: {url}"), num_classes, options)?,
        })
    }

    /// Texts sent to the filter so far.
    pub fn queries(&self) -> u64 {
        self.inner.queries()
    }
}

impl TextClassifier for HttpTarget {
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }

    fn probabilities(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.inner.probabilities(texts)
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

struct Endpoint {
    url: String,
    agent: ureq::Agent,
    timeout: Duration,
    num_classes: usize,
    class_names: Vec<String>,
}

impl Transport for Endpoint {
    fn exchange(&mut self, batch: &[Request]) -> std::result::Result<Vec<Vec<f32>>, Failure> {
        let first = Some(batch[0].id.as_str());
        let mut response = self.agent.post(&self.url).send_json(batch).map_err(|e| {
            let msg = match e {
                ureq::Error::Timeout(_) => {
                    format!("no answer within {:.1} s", self.timeout.as_secs_f64())
                }
                e => format!("POST {} failed: {e}", self.url),
            };
            Failure::new(first, msg)
        })?;
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Failure::new(first, format!("cannot read the answer: {e}")))?;
        if status != 200 {
            return Err(Failure::new(
                first,
                format!("HTTP status {status}: {}", cut(&body)),
            ));
        }
        let value: Value = serde_json::from_str(&body).map_err(|e| {
            Failure::new(
                first,
                format!("the answer is not JSON ({e}): {}", cut(&body)),
            )
        })?;
        self.read_replies(batch, &value)
    }

    fn restart(&mut self) -> std::result::Result<(), Failure> {
        // A fresh agent: no pooled connection to a server that may have dropped it.
        self.agent = agent(self.timeout);
        Ok(())
    }
}

impl Endpoint {
    fn read_replies(
        &self,
        batch: &[Request],
        value: &Value,
    ) -> std::result::Result<Vec<Vec<f32>>, Failure> {
        let first = Some(batch[0].id.as_str());
        let replies = match value {
            Value::Array(a) => a,
            Value::Object(o) => match o.get("results") {
                Some(Value::Array(a)) => a,
                _ => {
                    return Err(Failure::new(
                        first,
                        format!(
                            "the answer is an object without a \"results\" array: {}",
                            short(value)
                        ),
                    ))
                }
            },
            _ => {
                return Err(Failure::new(
                    first,
                    format!(
                        "the answer must be a JSON array of replies: {}",
                        short(value)
                    ),
                ))
            }
        };
        let mut pending: HashMap<&str, usize> = batch
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        let mut scores = vec![Vec::new(); batch.len()];
        for reply in replies {
            let (id, s) = parse_reply(reply, self.num_classes, &self.class_names)
                .map_err(|e| Failure::new(first, e))?;
            match pending.remove(id.as_str()) {
                Some(i) => scores[i] = s,
                None => {
                    return Err(Failure::new(
                        first,
                        format!("the answer has id {id:?}, which was not asked or came twice"),
                    ))
                }
            }
        }
        if let Some(missing) = batch.iter().find(|r| pending.contains_key(r.id.as_str())) {
            return Err(Failure::new(
                Some(&missing.id),
                format!(
                    "the answer has no reply for it ({} of {} answered)",
                    batch.len() - pending.len(),
                    batch.len()
                ),
            ));
        }
        Ok(scores)
    }
}

fn cut(body: &str) -> String {
    let one_line = body.replace('\n', " ");
    if one_line.chars().count() > 120 {
        format!("{}…", one_line.chars().take(120).collect::<String>())
    } else {
        one_line
    }
}
