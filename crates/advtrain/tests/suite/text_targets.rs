//! Filters advtrain did not train, reached as a process (`--target-cmd`) or over HTTP
//! (`--target-url`): answers read strictly, and a filter that hangs, exits or answers garbage
//! gives an error naming the text it failed on, after its retries.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use advtrain::text::attack::TextAttackConfig;
use advtrain::text::evasion::{choose_threshold, EvasionRun, EvasionTarget};
use advtrain::text::evasion_files::evaluate_streamed;
use advtrain::text::target::{CommandTarget, HttpTarget, TargetOptions};
use advtrain::text::{TextClassifier, TextDataset};

fn script() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/filters/keyword.sh");
    format!("sh {}", p.display())
}

fn options(batch: usize, timeout_s: f64, retries: usize) -> TargetOptions {
    TargetOptions {
        batch,
        timeout: Duration::from_secs_f64(timeout_s),
        retries,
        class_names: vec!["ham".into(), "spam".into()],
    }
}

fn texts() -> Vec<String> {
    [
        "you are a WINNER",
        "meeting at noon",
        "lunch?",
        "winner winner",
        "notes attached",
        "the report",
        "a winner's prize",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn err_of(target: &dyn TextClassifier, texts: &[String]) -> String {
    format!("{}", target.probabilities(texts).unwrap_err())
}

#[test]
fn a_process_filter_is_scored_in_batches_and_in_order() {
    let target =
        CommandTarget::spawn(&format!("{} scores", script()), 2, options(3, 10.0, 0)).unwrap();
    let p = target.probabilities(&texts()).unwrap();
    let spam: Vec<bool> = p.iter().map(|s| s[1] > 0.5).collect();
    assert_eq!(spam, [true, false, false, true, false, false, true]);
    assert_eq!(p[0], vec![0.1, 0.9]);
    assert_eq!(target.queries(), 7);
    // The process stays up between calls.
    assert_eq!(
        target.probabilities(&texts()[1..2]).unwrap(),
        vec![vec![0.8, 0.2]]
    );
    assert_eq!(target.queries(), 8);
}

#[test]
fn a_hard_label_filter_answers_one_hot_and_its_threshold_is_one_half() {
    let target =
        CommandTarget::spawn(&format!("{} label", script()), 2, options(4, 10.0, 0)).unwrap();
    let p = target.probabilities(&texts()).unwrap();
    assert_eq!(p[0], vec![0.0, 1.0]);
    assert_eq!(p[1], vec![1.0, 0.0]);
    let val = dataset(20);
    let t = choose_threshold(EvasionTarget::BlackBox(&target), &val, 1, 0.01).unwrap();
    assert!(t.hard_label && t.threshold == 0.5, "{t:?}");
}

#[test]
fn a_filter_that_hangs_is_timed_out_naming_the_text() {
    let target =
        CommandTarget::spawn(&format!("{} sleep report", script()), 2, options(2, 0.5, 1)).unwrap();
    let started = Instant::now();
    let err = err_of(&target, &texts());
    // Two attempts of 0.5 s each, not the script's 30 s sleep.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("no answer within 0.5 s"), "{err}");
    assert!(err.contains("after 2 attempts"), "{err}");
    // "the report" is the sixth text (q6); the fresh process of the retry hangs on it too.
    assert!(err.contains("text q6 (\"the report\")"), "{err}");
}

#[test]
fn a_filter_that_exits_is_reported_with_its_status_and_stderr() {
    let target =
        CommandTarget::spawn(&format!("{} exit 2", script()), 2, options(4, 5.0, 0)).unwrap();
    let err = err_of(&target, &texts());
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("3"), "exit status 3: {err}");
    assert!(err.contains("giving up at request 2"), "stderr tail: {err}");
    assert!(err.contains("text q2"), "{err}");
}

#[test]
fn a_filter_that_prints_garbage_is_refused() {
    let target =
        CommandTarget::spawn(&format!("{} garbage 3", script()), 2, options(8, 5.0, 0)).unwrap();
    let err = err_of(&target, &texts());
    assert!(err.contains("not JSON"), "{err}");
    assert!(err.contains("this is not json"), "{err}");
}

#[test]
fn a_missing_command_is_an_error_not_a_panic() {
    let target =
        CommandTarget::spawn("advtrain-no-such-filter --x", 2, options(4, 5.0, 0)).unwrap();
    let err = err_of(&target, &texts());
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn a_retry_goes_to_a_fresh_process() {
    let flag = scratch("retry-flag");
    let _ = std::fs::remove_file(&flag);
    let cmd = format!("{} sleep-once 2 {}", script(), flag.display());
    let target = CommandTarget::spawn(&cmd, 2, options(4, 0.5, 1)).unwrap();
    let p = target.probabilities(&texts()).unwrap();
    assert_eq!(p.len(), 7);
    assert!(flag.exists());
}

fn dataset(n: usize) -> TextDataset {
    let (texts, labels) = (0..n)
        .map(|i| {
            if i % 2 == 1 {
                (format!("winner {i} of the prize draw"), 1)
            } else {
                (format!("meeting {i} notes"), 0)
            }
        })
        .unzip();
    TextDataset {
        name: "toy".into(),
        texts,
        labels,
        classes: vec!["ham".into(), "spam".into()],
        provenance: "generated".into(),
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advtrain-targets-{}-{name}", std::process::id()));
    dir
}

#[test]
fn a_crashed_filter_loses_nothing_and_the_rerun_resumes() {
    let dir = scratch("resume");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let flag = dir.join("slept");
    let cmd = format!("{} sleep-once 80 {}", script(), flag.display());
    let (val, test) = (dataset(20), dataset(24));
    let attack = TextAttackConfig::deepwordbug(2);
    let run = |target: &CommandTarget| {
        let t = EvasionTarget::BlackBox(target);
        let run = EvasionRun {
            target: t,
            target_name: format!("command: {cmd}"),
            positive: 1,
            threshold: choose_threshold(t, &val, 1, 0.1).unwrap(),
            chunk: 2,
            seed: 3,
        };
        evaluate_streamed(&dir, &run, &test, Some(&attack), None, "")
    };
    let hanging = CommandTarget::spawn(&cmd, 2, options(4, 0.5, 0)).unwrap();
    let err = run(&hanging).unwrap_err().to_string();
    assert!(err.contains("no answer within"), "{err}");
    let jsonl = dir.join("evasion-deepwordbug-b2-fpr0.1.jsonl");
    let kept = std::fs::read_to_string(&jsonl).unwrap().lines().count() - 1;
    assert!(kept > 0, "the chunks finished before the hang are on disk");
    assert!(kept < 12, "the hang came mid-run, {kept} of 12 written");
    // The same command again: it no longer hangs, and the run continues where it stopped.
    let healthy = CommandTarget::spawn(&cmd, 2, options(4, 5.0, 0)).unwrap();
    let (record, _) = run(&healthy).unwrap();
    assert_eq!(record.malicious, 12);
    assert_eq!(record.tpr_clean.value, 1.0);
    // "winner" is the only trigger: two edits always break it.
    assert_eq!(record.attack_success_rate.value, 1.0, "{record:?}");
    let lines = std::fs::read_to_string(&jsonl).unwrap().lines().count() - 1;
    assert_eq!(lines, 12);
}

/// A one-connection-at-a-time HTTP server on 127.0.0.1 answering each POST with `answer`.
fn serve(answer: fn(&serde_json::Value) -> (u16, String)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut len = None;
                let mut line = String::new();
                let mut got_request = false;
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    got_request = true;
                    let l = line.trim_end().to_ascii_lowercase();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse::<usize>().ok();
                    }
                }
                if !got_request {
                    break;
                }
                let mut body = vec![0; len.unwrap_or(0)];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let (status, text) = answer(&request);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
                    text.len()
                );
                if stream.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    format!("http://{addr}/score")
}

fn keyword_replies(request: &serde_json::Value) -> Vec<serde_json::Value> {
    request
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let spam = r["text"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("winner");
            serde_json::json!({"id": r["id"], "score": if spam { 0.9 } else { 0.2 }})
        })
        .collect()
}

#[test]
fn an_http_filter_is_scored_in_batches() {
    let url = serve(|req| {
        let mut replies = keyword_replies(req);
        replies.reverse(); // any order
        (200, serde_json::json!({ "results": replies }).to_string())
    });
    let target = HttpTarget::new(&url, 2, options(3, 5.0, 0)).unwrap();
    let p = target.probabilities(&texts()).unwrap();
    let spam: Vec<bool> = p.iter().map(|s| s[1] > 0.5).collect();
    assert_eq!(spam, [true, false, false, true, false, false, true]);
    assert!((p[1][0] - 0.8).abs() < 1e-6);
    assert_eq!(target.queries(), 7);
}

#[test]
fn an_http_filter_that_fails_is_reported() {
    let url = serve(|_| (500, "{\"error\": \"model not loaded\"}".into()));
    let err = err_of(
        &HttpTarget::new(&url, 2, options(4, 5.0, 1)).unwrap(),
        &texts(),
    );
    assert!(
        err.contains("HTTP status 500") && err.contains("model not loaded"),
        "{err}"
    );
    assert!(
        err.contains("after 2 attempts") && err.contains("text q1"),
        "{err}"
    );

    let url = serve(|req| {
        let mut replies = keyword_replies(req);
        replies.pop();
        (200, serde_json::Value::Array(replies).to_string())
    });
    let err = err_of(
        &HttpTarget::new(&url, 2, options(4, 5.0, 0)).unwrap(),
        &texts(),
    );
    assert!(
        err.contains("text q4 (\"winner winner\")") && err.contains("no reply"),
        "{err}"
    );

    let url = serve(|_| (200, "<html>oops</html>".into()));
    let err = err_of(
        &HttpTarget::new(&url, 2, options(4, 5.0, 0)).unwrap(),
        &texts(),
    );
    assert!(err.contains("not JSON") && err.contains("oops"), "{err}");

    let url = serve(|req| {
        std::thread::sleep(Duration::from_secs(3));
        (
            200,
            serde_json::Value::Array(keyword_replies(req)).to_string(),
        )
    });
    let err = err_of(
        &HttpTarget::new(&url, 2, options(4, 0.5, 0)).unwrap(),
        &texts(),
    );
    assert!(err.contains("no answer within 0.5 s"), "{err}");

    let refused = "http://127.0.0.1:9/score"; // discard port: nothing listens
    let err = err_of(
        &HttpTarget::new(refused, 2, options(4, 2.0, 0)).unwrap(),
        &texts(),
    );
    assert!(
        err.contains("POST http://127.0.0.1:9/score failed"),
        "{err}"
    );
    assert!(HttpTarget::new("ftp://x", 2, options(4, 2.0, 0)).is_err());
}
