//! `advtrain eval --audit` on an image run: the side-effects audit of its model (common
//! corruptions, other threat models, per-class disparity, calibration), printed and recorded
//! as `audit.json`, which the report's "What adversarial training bought and cost" shows
//! beside the other runs given to it.

use advtrain::eval::audit::{audit, Audit, AuditConfig};
use advtrain::eval::Accuracy;
use advtrain::model::ImageModel;
use advtrain::run::{RunConfig, RunDir, Task};
use anyhow::{bail, Context, Result};
use burn::prelude::Device;

use crate::args::EvalArgs;
use crate::common::{self, is_own_test_data};
use crate::progress::Bars;

/// Audits each run `--run` names, one after the other (each under its own lock).
pub fn run(args: &EvalArgs) -> Result<()> {
    if args.run.is_empty() {
        bail!("--audit needs --run RUN_DIR (repeat it for several runs)");
    }
    if args.input.any() {
        bail!(
            "--input-range, --mean, --std, --input-shape and --class-names describe a model \
             given with --model; a run keeps the settings it was made with"
        );
    }
    refuse_other_flags(args)?;
    let device = args.common.setup()?;
    for path in &args.run {
        let dir = RunDir::open_for_writing(path, "eval --audit")?;
        if dir.task() != Task::Image {
            bail!(
                "{} is a text run: the audit (corruptions, spatial attack, calibration under \
                 PGD) applies to image classifiers",
                path.display()
            );
        }
        let config = dir.config()?;
        let model = dir.load_model(&config, &device)?;
        audit_run(args, &dir, &config, &model, &device)?;
    }
    if args.run.len() > 1 {
        let names: Vec<String> = args.run.iter().map(|p| p.display().to_string()).collect();
        println!("compare them:     advtrain report {}", names.join(" "));
    }
    Ok(())
}

/// Audits the model of the image run `dir` as `args` say, then writes `audit.json` (or
/// `audit-n<N>.json` for `--limit`, `audit-data<hash>.json` for other data) and the report.
fn audit_run(
    args: &EvalArgs,
    dir: &RunDir,
    config: &RunConfig,
    model: &ImageModel,
    device: &Device,
) -> Result<()> {
    let threat = args.spec.threat(config)?;
    let test = config.test_set(args.data.as_deref(), args.limit)?;
    if test.is_empty() {
        bail!("no test points to audit (--limit 0, or an empty test set)");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1, got 0");
    }
    let own_data = is_own_test_data(dir, config, args, &test)?;
    let mut cfg = AuditConfig::new(threat);
    if let Some(steps) = args.spec.steps {
        cfg.steps = steps.max(1);
    }
    cfg.batch_size = args.batch_size;
    cfg.seed = args.seed;
    let bars = Bars::new(args.common.quiet);
    let result = audit(model, &test, &cfg, &bars)?;
    // Printed before anything is written, as every evaluation is.
    print_audit(dir, &result);
    let path = dir
        .write_audit(&result, &test.fingerprint(), own_data, args.limit.is_some())
        .with_context(|| {
            format!(
                "the audit above was not written to {}",
                dir.path().display()
            )
        })?;
    println!("written:          {}", path.display());
    common::print_report(advtrain::report::refresh_run(dir.path(), device));
    Ok(())
}

/// The audit runs its own attacks at the run's threat model: attack choices, ε-curves and
/// the checklist are other evaluations, refused rather than silently ignored.
fn refuse_other_flags(args: &EvalArgs) -> Result<()> {
    let s = &args.spec;
    let given = [
        ("--attack", s.attack.is_some()),
        ("--restarts", s.restarts.is_some()),
        ("--step-size", s.step_size.is_some()),
        ("--loss", s.loss.is_some()),
        ("--target", s.target.is_some()),
        ("--queries", s.queries.is_some()),
        ("--targets", s.targets.is_some()),
        ("--version", s.version.is_some()),
        ("--eot", s.eot.is_some()),
        ("--budget", s.budget.is_some()),
        ("--eps-curve", args.eps_curve.is_some()),
        ("--checks", args.checks),
        ("--fresh", args.fresh),
    ];
    let refused: Vec<&str> = given.iter().filter(|(_, g)| *g).map(|(f, _)| *f).collect();
    if !refused.is_empty() {
        bail!(
            "{} do(es) not apply to --audit: the audit attacks with PGD (--steps, default 20) \
             at the run's threat model (--eps/--norm override it), its other radii and a \
             rotation/shift grid; run the other evaluations without --audit",
            refused.join(", ")
        );
    }
    Ok(())
}

fn pct(a: &Accuracy) -> String {
    format!("{:<24}", a.display())
}

fn print_audit(dir: &RunDir, a: &Audit) {
    let t = a.config.threat;
    println!(
        "audit of {} (n={}, PGD-{} at {} eps={}), {:.0} s:",
        dir.path().display(),
        a.n,
        a.config.steps,
        t.norm,
        t.eps,
        a.seconds
    );
    println!("  {:<20} {}", "clean accuracy", pct(&a.clean));
    let robust = format!("robust (PGD-{})", a.config.steps);
    println!("  {robust:<20} {}", pct(&a.robust));
    for m in &a.threat_models {
        println!("  {:<20} {} {}", m.name, pct(&m.robust), m.description);
    }
    println!(
        "  corruptions          {:.2}% mean over {} corruptions x 5 severities",
        100.0 * a.mean_corruption_accuracy,
        a.corruptions.len()
    );
    if let Some(worst) = a
        .corruptions
        .iter()
        .min_by(|x, y| x.mean().total_cmp(&y.mean()))
    {
        println!(
            "  worst corruption     {:.2}% {} (mean over severities)",
            100.0 * worst.mean(),
            worst.corruption.name()
        );
    }
    let name = |c: usize| a.per_class.get(c).map_or("?", |r| r.name.as_str());
    println!(
        "  worst class          {:.2}% clean ({}), {:.2}% robust ({}); spread {:.1} / {:.1} points",
        100.0 * a.clean_disparity.worst.value,
        name(a.clean_disparity.worst_class),
        100.0 * a.robust_disparity.worst.value,
        name(a.robust_disparity.worst_class),
        100.0 * a.clean_disparity.spread,
        100.0 * a.robust_disparity.spread
    );
    println!(
        "  calibration (ECE)    {:.4} clean, {:.4} under attack",
        a.calibration_clean.ece, a.calibration_attacked.ece
    );
    println!(
        "  noise confidence     {:.4} mean top-class probability on {} uniform-noise images",
        a.noise_confidence, a.config.noise_examples
    );
}
