//! A deployed filter as an attack target: a process (`--target-cmd`) or an HTTP service
//! (`--target-url`) that advtrain did not train and can reach only through its answers.
//!
//! Both speak the same JSON protocol (docs/text-targets.md). A request is
//! `{"id": "q17", "text": "..."}`; a reply names the same id and carries either
//! `"scores": [p_0, .., p_{k-1}]` (one probability per class), `"score": p` (two classes
//! only: the probability of class 1), or `"label": k` / `"label": "spam"` for a filter that
//! answers with a label only (a hard-label filter; the label becomes a one-hot score).
//!
//! Texts go out in batches of [`TargetOptions::batch`]; each batch must be answered in full
//! within [`TargetOptions::timeout`]. A batch that fails (the filter crashed, hung, or
//! answered garbage) is sent again to a fresh connection up to [`TargetOptions::retries`]
//! times; after that the error names the offending text's id and the first characters of
//! the text, and the attack stops with it. Nothing already computed is lost: the evaluation
//! streams each finished chunk to the run directory (`text::evasion_files`).

mod command;
mod http;
mod protocol;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub use command::CommandTarget;
pub use http::HttpTarget;
pub use protocol::{parse_reply, Request};

use crate::error::{Error, Result};

/// How texts are sent to a filter and how long it may take.
#[derive(Clone, Debug)]
pub struct TargetOptions {
    /// Texts per request (one batch of JSON lines, or one HTTP POST).
    pub batch: usize,
    /// Time a whole batch may take to be answered.
    pub timeout: Duration,
    /// How many times a failed batch is sent again (to a restarted process or a new
    /// connection) before the error is reported.
    pub retries: usize,
    /// Class names, in class-index order, so that a filter may answer `"label": "spam"`.
    pub class_names: Vec<String>,
}

impl Default for TargetOptions {
    fn default() -> Self {
        TargetOptions {
            batch: 32,
            timeout: Duration::from_secs(30),
            retries: 2,
            class_names: Vec::new(),
        }
    }
}

/// Why one exchange with the filter failed: the id of the text at fault when one is (the
/// first unanswered one for a timeout, the one whose reply is malformed for garbage).
#[derive(Debug)]
pub(crate) struct Failure {
    pub id: Option<String>,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(id: Option<&str>, message: impl Into<String>) -> Self {
        Failure {
            id: id.map(str::to_string),
            message: message.into(),
        }
    }
}

/// One way of reaching a filter: send a batch, get one score vector per request, in
/// request order. `restart` starts over (a new process, a new connection) after a failure.
pub(crate) trait Transport: Send {
    fn exchange(&mut self, batch: &[Request]) -> std::result::Result<Vec<Vec<f32>>, Failure>;
    fn restart(&mut self) -> std::result::Result<(), Failure>;
}

/// Batching, ids, retries and query counting, shared by both targets.
pub(crate) struct Batched<T: Transport> {
    transport: Mutex<T>,
    name: String,
    num_classes: usize,
    options: TargetOptions,
    next_id: AtomicU64,
}

impl<T: Transport> Batched<T> {
    pub(crate) fn new(
        transport: T,
        name: String,
        num_classes: usize,
        options: TargetOptions,
    ) -> Result<Self> {
        if num_classes < 2 {
            return Err(Error::config(format!(
                "a filter needs at least two classes, got {num_classes}"
            )));
        }
        if options.batch == 0 {
            return Err(Error::config("the target's batch size must be at least 1"));
        }
        if !options.class_names.is_empty() && options.class_names.len() != num_classes {
            return Err(Error::config(format!(
                "{} class names for a filter with {num_classes} classes",
                options.class_names.len()
            )));
        }
        Ok(Batched {
            transport: Mutex::new(transport),
            name,
            num_classes,
            options,
            next_id: AtomicU64::new(0),
        })
    }

    /// Texts sent so far (each text of each batch counts once, retries not counted).
    pub(crate) fn queries(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
    }

    pub(crate) fn probabilities(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.options.batch) {
            let batch: Vec<Request> = chunk
                .iter()
                .map(|t| Request {
                    id: format!("q{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1),
                    text: t.clone(),
                })
                .collect();
            out.extend(self.send(&batch)?);
        }
        Ok(out)
    }

    /// One batch, retried on a fresh transport after each failure.
    fn send(&self, batch: &[Request]) -> Result<Vec<Vec<f32>>> {
        let mut transport = self.transport.lock().unwrap_or_else(|p| p.into_inner());
        let attempts = self.options.retries + 1;
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                if let Err(f) = transport.restart() {
                    return Err(self.error(batch, f, attempt));
                }
            }
            match transport.exchange(batch) {
                Ok(scores) => return Ok(scores),
                Err(f) => last = Some(f),
            }
        }
        let f = last.expect("at least one attempt");
        // Leave a fresh transport behind, so a caller that goes on after the error (the
        // next chunk of a resumed run) does not meet a dead process.
        let _ = transport.restart();
        Err(self.error(batch, f, attempts))
    }

    fn error(&self, batch: &[Request], f: Failure, attempts: usize) -> Error {
        let text =
            f.id.as_deref()
                .and_then(|id| batch.iter().find(|r| r.id == id))
                .map(|r| format!(" ({})", preview(&r.text)))
                .unwrap_or_default();
        let id =
            f.id.as_deref()
                .map(|id| format!("text {id}{text}: "))
                .unwrap_or_default();
        let tries = if attempts == 1 {
            "1 attempt".to_string()
        } else {
            format!("{attempts} attempts")
        };
        Error::Target {
            target: self.name.clone(),
            message: format!("{id}{} (after {tries})", f.message),
        }
    }

    pub(crate) fn num_classes(&self) -> usize {
        self.num_classes
    }
}

/// The first characters of a text, quoted, for an error message.
fn preview(text: &str) -> String {
    const N: usize = 48;
    let head: String = text.chars().take(N).collect();
    if text.chars().count() > N {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}
