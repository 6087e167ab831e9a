//! `advtrain eval` on an image run: attack its model on the test set (one attack or an
//! ensemble, optionally an ε-curve and the sanity checklist), record and print the result.

use advtrain::eval::checks::{self, ChecksConfig, Verdict};
use advtrain::eval::RobustEval;
use std::path::{Path, PathBuf};

use advtrain::data::DatasetName;
use advtrain::model::ImageModel;
use advtrain::run::{evaluate_spec, EvalRecord, EvalRequest, ImportRequest, RunConfig, RunDir};
use advtrain::threat::{Norm, ThreatModel};
use anyhow::{bail, Context, Result};
use burn::prelude::Device;

use crate::args::EvalArgs;
use crate::common;
use crate::progress::Bars;

/// Runs the evaluation `args` ask for on the image run `dir`.
pub fn run(args: &EvalArgs, dir: RunDir) -> Result<()> {
    if args.input.any() {
        bail!(
            "--input-range, --mean, --std, --input-shape and --class-names describe a model \
             given with --model; a run keeps the settings it was made with"
        );
    }
    let device = args.common.setup()?;
    let config = dir.config()?;
    let model = dir.load_model(&config, &device)?;
    common::on_pool_worker(|| evaluate(args, &dir, &config, &model, &device))
}

/// `advtrain eval --model net.onnx`: imports the file into a run directory of its own
/// (or the one an earlier evaluation of the same file made), then evaluates it as a run.
pub fn run_import(args: &EvalArgs) -> Result<()> {
    let path = args.model.as_deref().context("--model FILE.onnx")?;
    let device = args.common.setup()?;
    let request = import_request(args, path)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = path
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy());
        PathBuf::from("runs").join(stem.as_ref())
    });
    let (dir, mut config, onnx) = advtrain::run::import_onnx(&out, &request, args.force, &device)?;
    config.class_names = args.input.class_names(config.shape.num_classes)?;
    if config.class_names.is_some() {
        dir.write_config(&config)?;
    }
    let s = &config.shape;
    println!(
        "model:            {} (opset {}, {}×{}×{} images, {} classes, sha256 {})",
        path.display(),
        onnx.opset(),
        s.channels,
        s.height,
        s.width,
        s.num_classes,
        &config.onnx.as_ref().map_or("", |o| o.sha256.as_str())[..12]
    );
    println!("run directory:    {}", dir.path().display());
    let model = ImageModel::Onnx(onnx);
    common::on_pool_worker(|| evaluate(args, &dir, &config, &model, &device))
}

/// What `eval --model` asks to import: the file, its input flags, the data, the radius.
fn import_request(args: &EvalArgs, path: &Path) -> Result<ImportRequest> {
    let dataset: DatasetName = args.dataset.as_deref().unwrap_or("fashion-mnist").parse()?;
    let data_dir = match &args.data {
        Some(d) => d.clone(),
        None => dataset.default_dir().with_context(|| {
            format!(
                "{dataset} has no default location: pass --data DIR ({})",
                dataset.missing_hint()
            )
        })?,
    };
    args.spec.check_eps()?;
    let Some(eps) = args.spec.eps else {
        bail!("--model needs --eps: the radius of the threat model, in [0,1] pixel units (e.g. --eps 0.1 for Fashion-MNIST)");
    };
    let norm: Norm = match args.spec.norm.as_deref() {
        Some(n) => n.parse()?,
        None => Norm::Linf,
    };
    let threat = ThreatModel { norm, eps };
    threat.validate()?;
    Ok(ImportRequest {
        onnx: path.to_path_buf(),
        options: args.input.options()?,
        dataset,
        data_dir,
        threat,
        class_names: None,
        device: args.common.device.clone(),
    })
}

/// The evaluation `args` ask for, of `model`, recorded in `dir`.
fn evaluate(
    args: &EvalArgs,
    dir: &RunDir,
    config: &RunConfig,
    model: &ImageModel,
    device: &Device,
) -> Result<()> {
    let threat = args.spec.threat(config)?;
    let spec = args.spec.image_spec()?;
    spec.check_classes(config.shape.num_classes)?;
    let curve = args.curve()?;
    let test = config.test_set(args.data.as_deref(), args.limit)?;
    if test.is_empty() {
        bail!("no test points to evaluate (--limit 0, or an empty test set): nothing would be measured");
    }
    let bars = Bars::new(args.common.quiet);
    let mut rng = advtrain::rng::seeded(args.seed);
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1, got 0");
    }
    let batch = args.batch_size;
    let mut tag = spec.tag(threat, config.train.threat());
    // A subset evaluation must not overwrite the full-test-set record, nor one on other
    // data the run's own.
    if args.limit.is_some() {
        tag.push_str(&format!("-n{}", test.len()));
    }
    let own_data = common::is_own_test_data(dir, config, args, &test)?;
    if !own_data {
        tag.push_str(&format!("-data{}", &test.fingerprint()[..8]));
    }
    let state_file = dir.eval_state_file(&tag);
    if args.fresh {
        dir.clear_eval_state(&tag)?;
    } else if state_file.exists() {
        println!("resuming:         {}", state_file.display());
    }
    let request = EvalRequest {
        spec: &spec,
        threat,
        eps_curve: curve.as_deref(),
        batch_size: batch,
        seed: args.seed,
        state_file: Some(&state_file),
    };
    let class_names = config.class_names_or(&test);
    let done = evaluate_spec(model, &test, request, &class_names, &mut rng, &bars).map_err(
        |e| match e {
            // The weights were checked finite at load: name the file the outputs came from.
            advtrain::Error::Diverged(why) => anyhow::anyhow!(
                "{why} although every weight in {} is finite: the model's computation \
                 overflows (or divides by zero) on these inputs",
                weights_file(dir, config).display()
            ),
            other => anyhow::Error::from(other).context(resume_hint(&state_file)),
        },
    )?;
    // Printed before anything is written: a run directory that cannot be written (read-only,
    // full disk) must not cost the user the numbers just computed.
    print_eval(&done.result, &done.record, threat);
    let recorded = dir
        .record_eval(&tag, &done.record, own_data)
        .with_context(|| {
            format!(
                "the result above was not written to {}",
                dir.path().display()
            )
        })?;
    dir.clear_eval_state(&tag)?;
    println!("written:          {}", recorded.path.display());
    if let Some(why) = &recorded.summary_kept {
        println!("summary.json:     unchanged ({why})");
    }
    if args.checks {
        let mut cfg = ChecksConfig::new(threat);
        if let Some(steps) = args.spec.steps {
            cfg.steps = steps.max(1);
        }
        cfg.batch_size = batch;
        let surrogate = advtrain::run::checks_surrogate(
            dir,
            config,
            args.data.as_deref(),
            args.transfer_from.as_deref(),
            device,
            &bars,
        )?;
        let results = checks::run_checks_with_surrogate(
            model,
            &surrogate.model,
            &test,
            &cfg,
            &mut rng,
            &bars,
        )?;
        println!("sanity checks (n={}):", test.len());
        println!("  transfer surrogate: {}", surrogate.origin);
        for c in &results {
            let tag = match c.verdict {
                Verdict::Pass => "PASS",
                Verdict::Warn => "WARN",
                Verdict::Skip => "SKIP (not run)",
            };
            println!("  {tag} {}. {}: {}", c.id, c.name, c.detail);
        }
        let checks_path = dir
            .write_checks(&results, test.len(), done.record.test_data_sha256.clone())
            .with_context(|| {
                format!(
                    "the checks above were not written to {}",
                    dir.path().display()
                )
            })?;
        println!("written:          {}", checks_path.display());
    }
    common::print_report(advtrain::report::refresh_run(dir.path(), device));
    Ok(())
}

/// The file the evaluated weights came from.
fn weights_file(dir: &RunDir, config: &RunConfig) -> PathBuf {
    let trained = dir.file(advtrain::run::files::MODEL);
    if config.is_import_only() && !trained.exists() {
        dir.file(advtrain::run::files::ONNX)
    } else {
        trained
    }
}

/// What to do after a failed evaluation, given its state file.
fn resume_hint(state_file: &std::path::Path) -> String {
    if state_file.exists() {
        format!(
            "the evaluation stopped; its progress is kept in {} (run the same command to \
             resume, or add --fresh to start over)",
            state_file.display()
        )
    } else {
        "the evaluation stopped".to_string()
    }
}

/// The evaluation's figures: an ensemble's stages, the accuracies, the ε-curve.
fn print_eval(result: &RobustEval, record: &EvalRecord, threat: ThreatModel) {
    if let Some(stages) = &record.stages {
        println!("stages:");
        for s in stages {
            println!(
                "  {:<40} attacked {:>6}  broke {:>6}  robust after {:>7.2}%  {:>7.1} s",
                s.attack,
                s.attacked,
                s.broken,
                100.0 * s.robust_after,
                s.seconds
            );
        }
    }
    println!("attack:           {}", result.attack);
    println!("examples:         {}", result.n);
    println!("clean accuracy:   {}", result.clean.display());
    println!("robust accuracy:  {}", result.robust.display());
    println!(
        "max perturbation: {:.5} ({} norm)",
        result.max_perturbation, threat.norm
    );
    println!("time:             {:.1} s", result.seconds);
    if let Some(points) = &record.eps_curve {
        println!("accuracy vs eps:");
        for p in points {
            println!("  eps {:<8} {}", p.eps, p.robust.display());
        }
    }
}
