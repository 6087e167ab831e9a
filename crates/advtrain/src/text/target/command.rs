//! `--target-cmd`: a filter as a long-running process speaking JSON lines on stdin/stdout.
//!
//! The process is started once (`sh -c COMMAND`, in its own process group so that killing it
//! also kills what the shell started) and fed one batch at a time. Reading its stdout and
//! writing its stdin happen on their own threads, so a filter that stops reading or stops
//! answering cannot block advtrain past the timeout: the whole group is killed and, if
//! retries are left, started again. Its stderr is kept (the last lines) for the error
//! message when it fails.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::protocol::{parse_reply, short, Request};
use super::{Batched, Failure, TargetOptions, Transport};
use crate::error::{Error, Result};
use crate::text::TextClassifier;

/// Lines of the filter's stderr kept for error messages.
const STDERR_TAIL: usize = 12;

/// A filter run as a process (`advtrain eval --target-cmd`).
pub struct CommandTarget {
    inner: Batched<Process>,
}

impl CommandTarget {
    /// Starts `command` under `sh -c`. Fails if it cannot be started; a filter that starts
    /// and then dies is found out at the first batch.
    pub fn spawn(command: &str, num_classes: usize, options: TargetOptions) -> Result<Self> {
        let reads = Replies {
            num_classes,
            class_names: options.class_names.clone(),
        };
        let process =
            Process::start(command, options.timeout, reads).map_err(|f| Error::Target {
                target: format!("command: {command}"),
                message: f.message,
            })?;
        Ok(CommandTarget {
            inner: Batched::new(process, format!("command: {command}"), num_classes, options)?,
        })
    }

    /// Texts sent to the filter so far.
    pub fn queries(&self) -> u64 {
        self.inner.queries()
    }
}

impl TextClassifier for CommandTarget {
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }

    fn probabilities(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.inner.probabilities(texts)
    }
}

/// What a reply is checked against.
#[derive(Clone)]
struct Replies {
    num_classes: usize,
    class_names: Vec<String>,
}

/// One running filter process and the threads around it.
struct Process {
    command: String,
    timeout: Duration,
    replies: Replies,
    child: Child,
    to_stdin: Option<Sender<Vec<u8>>>,
    from_stdout: Receiver<String>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Signalled when the stderr reader reaches the end of the pipe.
    stderr_done: Receiver<()>,
}

impl Process {
    fn start(
        command: &str,
        timeout: Duration,
        replies: Replies,
    ) -> std::result::Result<Self, Failure> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .map_err(|e| Failure::new(None, format!("cannot start `sh -c {command}`: {e}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (stderr, stderr_done) = stderr_tail(child.stderr.take().expect("piped stderr"));
        Ok(Process {
            command: command.to_string(),
            timeout,
            replies,
            child,
            to_stdin: Some(writer(stdin)),
            from_stdout: reader(stdout),
            stderr,
            stderr_done,
        })
    }

    /// Kills the process group and reaps the child.
    fn stop(&mut self) {
        self.to_stdin = None;
        // The child leads its own process group (process_group(0)): a negative pid signals
        // the whole group, the shell and whatever it started.
        #[cfg(unix)]
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -KILL -- -{} 2>/dev/null", self.child.id()))
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Why the process went quiet: its exit status if it has one, and its last stderr lines.
    fn died(&mut self, id: Option<&str>, what: &str) -> Failure {
        let status = match wait_briefly(&mut self.child) {
            Some(s) => {
                // The reader thread may not have read its last lines yet: give it a moment
                // to reach the end of the pipe, so the error quotes what the filter said.
                let _ = self.stderr_done.recv_timeout(Duration::from_secs(1));
                format!("the filter exited ({s})")
            }
            None => "the filter closed its stdout".to_string(),
        };
        Failure::new(id, format!("{what}: {status}{}", self.stderr_lines()))
    }

    fn stderr_lines(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        if tail.is_empty() {
            String::new()
        } else {
            let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
            format!("; its stderr ended with:\n    {}", lines.join("\n    "))
        }
    }
}

impl Transport for Process {
    fn exchange(&mut self, batch: &[Request]) -> std::result::Result<Vec<Vec<f32>>, Failure> {
        let mut bytes = Vec::new();
        for r in batch {
            serde_json::to_writer(&mut bytes, r).expect("a request serialises");
            bytes.push(b'\n');
        }
        let sent = self
            .to_stdin
            .as_ref()
            .is_some_and(|tx| tx.send(bytes).is_ok());
        if !sent {
            return Err(self.died(Some(&batch[0].id), "cannot write to the filter"));
        }
        let deadline = Instant::now() + self.timeout;
        let mut pending: HashMap<&str, usize> = batch
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        let mut scores = vec![Vec::new(); batch.len()];
        while !pending.is_empty() {
            let first = batch
                .iter()
                .find(|r| pending.contains_key(r.id.as_str()))
                .map(|r| r.id.as_str());
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.from_stdout.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    let msg = format!("no answer within {:.1} s", self.timeout.as_secs_f64());
                    self.stop();
                    return Err(Failure::new(first, format!("{msg}{}", self.stderr_lines())));
                }
                Err(RecvTimeoutError::Disconnected) => return Err(self.died(first, "no answer")),
            };
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
                Failure::new(
                    first,
                    format!(
                        "the filter printed a line that is not JSON ({e}): {}",
                        cut(&line)
                    ),
                )
            })?;
            let (id, s) = parse_reply(&value, self.replies.num_classes, &self.replies.class_names)
                .map_err(|e| Failure::new(first, e))?;
            match pending.remove(id.as_str()) {
                Some(i) => scores[i] = s,
                None => {
                    return Err(Failure::new(
                        first,
                        format!(
                            "the filter answered id {id:?}, which is not awaited: {}",
                            short(&value)
                        ),
                    ))
                }
            }
        }
        Ok(scores)
    }

    fn restart(&mut self) -> std::result::Result<(), Failure> {
        self.stop();
        // The old process is reaped; assigning drops it at once.
        *self = Process::start(&self.command, self.timeout, self.replies.clone())?;
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Closing stdin is the filter's signal to finish; give it a moment, then kill.
        self.to_stdin = None;
        if wait_briefly(&mut self.child).is_none() {
            self.stop();
        }
    }
}

fn wait_briefly(child: &mut Child) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + Duration::from_millis(500);
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

fn writer(mut stdin: std::process::ChildStdin) -> Sender<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        for bytes in rx {
            if stdin.write_all(&bytes).and_then(|_| stdin.flush()).is_err() {
                break; // the filter is gone; the reader side reports it
            }
        }
    });
    tx
}

fn reader(stdout: std::process::ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn stderr_tail(stderr: std::process::ChildStderr) -> (Arc<Mutex<VecDeque<String>>>, Receiver<()>) {
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let keep = Arc::clone(&tail);
    let (done, stderr_done) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut t = keep.lock().unwrap_or_else(|p| p.into_inner());
            if t.len() == STDERR_TAIL {
                t.pop_front();
            }
            t.push_back(line);
        }
        let _ = done.send(());
    });
    (tail, stderr_done)
}

fn cut(line: &str) -> String {
    if line.chars().count() > 80 {
        format!("{}…", line.chars().take(80).collect::<String>())
    } else {
        line.to_string()
    }
}
