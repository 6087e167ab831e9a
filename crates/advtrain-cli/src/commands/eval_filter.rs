//! `advtrain eval --target-cmd COMMAND | --target-url URL`: a filter advtrain did not train,
//! attacked through its answers only. The threshold is chosen at `--fpr` on the benign
//! validation texts of the data set's training side, the malicious test texts are attacked
//! chunk by chunk and every chunk is streamed to `--out`, so a filter that crashes or hangs
//! costs at most the chunk in flight and the next run with the same settings continues.

use std::path::PathBuf;
use std::time::Duration;

use advtrain::text::evasion::{choose_threshold, EvasionRun, EvasionTarget};
use advtrain::text::evasion_files::evaluate_streamed;
use advtrain::text::run::{load_text_data, TextSplits};
use advtrain::text::target::{CommandTarget, HttpTarget, TargetOptions};
use advtrain::text::TextClassifier;
use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::args::EvalArgs;
use crate::common;

/// Malicious texts per chunk for a filter: a crash loses at most this many attacks.
const FILTER_CHUNK: usize = 8;

/// What was evaluated, written to `target.json` in the output directory.
#[derive(Serialize)]
struct TargetRecord<'a> {
    target: String,
    dataset: &'a str,
    data: &'a std::path::Path,
    classes: &'a [String],
    advtrain_version: &'a str,
}

/// Evaluates the filter `args` name.
pub fn run(args: &EvalArgs) -> Result<()> {
    if args.eps_curve.is_some() || args.checks || args.audit {
        bail!("--eps-curve, --checks and --audit apply to image runs only");
    }
    let attack = args.spec.text_attack()?;
    let fpr = args.filter.fpr()?;
    let (dataset, data_path) =
        common::text_data_source(args.dataset.as_deref(), args.data.clone())?;
    // Split seed 0, as `advtrain train` splits by default: the filter meets the same test
    // texts as the models trained here.
    let (all_train, test) = load_text_data(&dataset, &data_path, 0, None)?;
    let splits = TextSplits::new(all_train, test, 0);
    let test = match args.limit {
        Some(n) => splits.test.take(n),
        None => splits.test.clone(),
    };
    let suffix = match args.limit {
        Some(n) if n < splits.test.len() => format!("-n{n}"),
        _ => String::new(),
    };
    let target = connect(args, &test.classes)?;
    let name = describe(args);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("filter-{dataset}")));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    advtrain::io::write_json(
        &out.join("target.json"),
        &TargetRecord {
            target: name.clone(),
            dataset: &dataset,
            data: &data_path,
            classes: &test.classes,
            advtrain_version: advtrain::VERSION,
        },
    )?;
    let black_box = EvasionTarget::BlackBox(target.as_ref());
    let threshold = choose_threshold(black_box, &splits.calibration, 1, fpr)
        .context("choosing the threshold on the benign calibration texts")?;
    let evasion = EvasionRun {
        target: black_box,
        target_name: name,
        positive: 1,
        threshold,
        chunk: args.filter.chunk.unwrap_or(FILTER_CHUNK),
        seed: args.seed,
    };
    let (record, path) = evaluate_streamed(&out, &evasion, &test, attack.as_ref(), None, &suffix)?;
    common::print_evasion_record(&record);
    println!("written:          {}", path.display());
    Ok(())
}

fn options(args: &EvalArgs, classes: &[String]) -> Result<TargetOptions> {
    let f = &args.filter;
    let mut o = TargetOptions {
        class_names: classes.to_vec(),
        ..TargetOptions::default()
    };
    if let Some(s) = f.target_timeout {
        if !(s > 0.0 && s.is_finite()) {
            bail!("--target-timeout must be a positive number of seconds, got {s}");
        }
        o.timeout = Duration::from_secs_f64(s);
    }
    if let Some(b) = f.target_batch {
        if b == 0 {
            bail!("--target-batch must be at least 1");
        }
        o.batch = b;
    }
    if let Some(r) = f.target_retries {
        o.retries = r;
    }
    Ok(o)
}

fn connect(args: &EvalArgs, classes: &[String]) -> Result<Box<dyn TextClassifier>> {
    let options = options(args, classes)?;
    let f = &args.filter;
    Ok(match (&f.target_cmd, &f.target_url) {
        (Some(cmd), None) => Box::new(
            CommandTarget::spawn(cmd, classes.len(), options)
                .with_context(|| format!("starting --target-cmd {cmd:?}"))?,
        ),
        (None, Some(url)) => Box::new(HttpTarget::new(url, classes.len(), options)?),
        _ => bail!("give one of --target-cmd and --target-url"),
    })
}

fn describe(args: &EvalArgs) -> String {
    match (&args.filter.target_cmd, &args.filter.target_url) {
        (Some(cmd), _) => format!("command: {cmd}"),
        (_, Some(url)) => format!("url: {url}"),
        _ => String::new(),
    }
}
