//! `advtrain eval`: attack a trained run's model on the test set and record the result.

use std::path::PathBuf;

use advtrain::attack::{
    AnyAttack, Apgd, ApgdLoss, ApgdTargeted, AttackLoss, Fgsm, Pgd, Square, TargetMode,
};
use advtrain::eval::checks::{self, ChecksConfig, Verdict};
use advtrain::eval::ensemble::{self, EnsemblePreset};
use advtrain::eval::{self, CurvePoint};
use advtrain::model::ZooModel;
use advtrain::run::{files, EvalRecord, Summary};
use advtrain::threat::{Norm, ThreatModel};
use anyhow::{bail, Result};
use clap::Args;

use crate::common::{self, Common};
use crate::progress::Bars;

/// How to attack.
#[derive(Args, Clone, Debug)]
pub struct AttackSpec {
    /// fgsm (fgm for l2), pgd, apgd-ce, apgd-dlr, apgd-t, square (L-inf, black-box),
    /// autoattack (APGD-CE → APGD-T → Square on the points still robust) or autoattack-fast.
    #[arg(long, default_value = "pgd")]
    pub attack: String,
    /// Radius (default: the run's training eps).
    #[arg(long)]
    pub eps: Option<f32>,
    /// Norm (default: the run's training norm).
    #[arg(long)]
    pub norm: Option<String>,
    /// PGD iterations.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// PGD restarts (the worst case per example is kept).
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// PGD step size (default 2.5·eps/steps).
    #[arg(long)]
    pub step_size: Option<f32>,
    /// Attack loss: ce or cw.
    #[arg(long, default_value = "ce")]
    pub loss: String,
    /// Targeted PGD: random, least-likely, or a class index.
    #[arg(long)]
    pub target: Option<String>,
    /// Square: query budget per example.
    #[arg(long, default_value_t = 5000)]
    pub queries: usize,
    /// APGD-T: number of target classes.
    #[arg(long, default_value_t = 9)]
    pub targets: usize,
    /// Text runs: edits per text (default 5). Text attacks: deepwordbug (the default for
    /// text runs), lookalike (homoglyph and zero-width edits only), hotflip, or none (clean
    /// accuracy only).
    #[arg(long)]
    pub budget: Option<usize>,
}

impl AttackSpec {
    pub fn threat(&self, run: &common::LoadedRun) -> Result<ThreatModel> {
        let norm: Norm = match &self.norm {
            Some(n) => n.parse()?,
            None => run.config.train.norm,
        };
        let eps = self.eps.unwrap_or(run.config.train.eps);
        let threat = ThreatModel { norm, eps };
        threat.validate()?;
        if eps == 0.0 {
            bail!("the run was trained without an attack (eps=0): pass --eps to choose a radius");
        }
        Ok(threat)
    }

    /// File-name tag: `pgd`, `pgd-cw`, `pgd-targeted`, `fgsm`, plus `-eps<e>` when the radius
    /// differs from the training one.
    pub fn tag(&self, threat: ThreatModel, run: &common::LoadedRun) -> String {
        let mut tag = self.attack.clone();
        if self.loss != "ce" {
            tag.push_str(&format!("-{}", self.loss));
        }
        if self.target.is_some() {
            tag.push_str("-targeted");
        }
        if threat.norm != run.config.train.norm || (threat.eps - run.config.train.eps).abs() > 1e-9
        {
            tag.push_str(&format!("-{}-eps{}", threat.norm, threat.eps));
        }
        tag
    }
}

fn positive(v: usize, flag: &str) -> Result<usize> {
    if v == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(v)
}

/// The ensemble `spec` names, if it names one.
pub fn preset(spec: &AttackSpec) -> Option<EnsemblePreset> {
    match spec.attack.as_str() {
        "autoattack" => Some(EnsemblePreset::Standard),
        "autoattack-fast" => Some(EnsemblePreset::Fast),
        _ => None,
    }
}

/// Builds the attack described by `spec` at radius `threat`.
pub fn build_attack(spec: &AttackSpec, threat: ThreatModel) -> Result<AnyAttack> {
    let loss: AttackLoss = spec.loss.parse()?;
    Ok(match spec.attack.as_str() {
        "fgsm" | "fgm" => {
            if spec.target.is_some() {
                bail!("--target needs --attack pgd");
            }
            AnyAttack::Fgsm(Fgsm::new(threat).with_loss(loss))
        }
        "pgd" => {
            if spec.steps == 0 || spec.restarts == 0 {
                bail!("--steps and --restarts must be at least 1");
            }
            let mut pgd = Pgd::new(threat)
                .steps(spec.steps)
                .restarts(spec.restarts)
                .loss(loss);
            if let Some(a) = spec.step_size {
                if !(a.is_finite() && a > 0.0) {
                    bail!("--step-size must be > 0");
                }
                pgd = pgd.step_size(a);
            }
            if let Some(t) = &spec.target {
                pgd = pgd.targeted(match t.as_str() {
                    "random" => TargetMode::Random,
                    "least-likely" => TargetMode::LeastLikely,
                    n => TargetMode::Class(n.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "--target must be random, least-likely or a class index, got '{n}'"
                        )
                    })?),
                });
            }
            AnyAttack::Pgd(pgd)
        }
        "apgd-ce" | "apgd-dlr" | "apgd" => AnyAttack::Apgd(
            Apgd::new(threat)
                .steps(positive(spec.steps, "--steps")?)
                .restarts(positive(spec.restarts, "--restarts")?)
                .loss(if spec.attack == "apgd-dlr" { ApgdLoss::Dlr } else { ApgdLoss::CrossEntropy }),
        ),
        "apgd-t" => AnyAttack::ApgdTargeted(
            ApgdTargeted::new(threat)
                .steps(positive(spec.steps, "--steps")?)
                .targets(positive(spec.targets, "--targets")?),
        ),
        "square" => {
            AnyAttack::Square(Square::new(threat).queries(positive(spec.queries, "--queries")?))
        }
        "autoattack" | "autoattack-fast" => bail!("{} is an ensemble: use it with `advtrain eval`", spec.attack),
        other => bail!(
            "unknown attack '{other}': expected fgsm, pgd, apgd-ce, apgd-dlr, apgd-t, square, autoattack or autoattack-fast"
        ),
    })
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Run directory written by `advtrain train`.
    #[arg(long)]
    pub run: PathBuf,
    #[command(flatten)]
    pub spec: AttackSpec,
    /// Also measure robust accuracy at these radii, e.g. 0,0.05,0.1,0.15,0.2.
    #[arg(long)]
    pub eps_curve: Option<String>,
    /// Override the data directory recorded in the run.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluate only the first N test examples.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also run the sanity checklist (Carlini et al. 2019) on the evaluated examples and
    /// write checks.json; use --limit to bound its cost (it attacks the set ~10 times).
    #[arg(long)]
    pub checks: bool,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if advtrain::text::run::is_text_run(&args.run) {
        return crate::cmd_text::eval(args);
    }
    let device = args.common.setup()?;
    let loaded = common::load_run(&args.run, &device)?;
    let threat = args.spec.threat(&loaded)?;
    let ensemble_preset = preset(&args.spec);
    let attack = match ensemble_preset {
        Some(_) => None,
        None => Some(build_attack(&args.spec, threat)?),
    };
    let curve_eps = args
        .eps_curve
        .as_deref()
        .map(common::parse_eps_list)
        .transpose()?;
    let test = common::run_test_set(&loaded, args.data.as_deref(), args.limit)?;
    let bars = Bars::new(args.common.quiet);
    let mut rng = advtrain::rng::seeded(args.seed);
    let batch = args.batch_size.max(1);
    let class_names = loaded.dataset.class_names();
    let (result, mut record) = match (&attack, ensemble_preset) {
        (Some(attack), _) => {
            let result = eval::evaluate(&loaded.model, &test, attack, batch, &mut rng, &bars)?;
            let iterative = matches!(
                attack,
                AnyAttack::Pgd(_) | AnyAttack::Apgd(_) | AnyAttack::ApgdTargeted(_)
            );
            let restartable = matches!(attack, AnyAttack::Pgd(_) | AnyAttack::Apgd(_));
            let record = EvalRecord::from_eval(
                &args.spec.attack,
                &result,
                iterative.then_some(args.spec.steps),
                restartable.then_some(args.spec.restarts),
                args.seed,
                &class_names,
            );
            (result, record)
        }
        (None, Some(p)) => {
            let attacks = p.attacks(threat);
            let ens = ensemble::ensemble(
                p.name(),
                &loaded.model,
                &test,
                &attacks,
                batch,
                &mut rng,
                &bars,
            )?;
            let result = ens.as_eval();
            let mut record =
                EvalRecord::from_eval(p.name(), &result, None, None, args.seed, &class_names);
            record.stages = Some(ens.stages.clone());
            record.broken_by = Some(ens.broken_by.clone());
            println!("stages:");
            for s in &ens.stages {
                println!(
                    "  {:<40} attacked {:>6}  broke {:>6}  robust after {:>7.2}%  {:>7.1} s",
                    s.attack,
                    s.attacked,
                    s.broken,
                    100.0 * s.robust_after,
                    s.seconds
                );
            }
            (result, record)
        }
        (None, None) => unreachable!("either an attack or an ensemble"),
    };
    if let Some(eps_values) = curve_eps {
        record.eps_curve = Some(curve(
            &loaded.model,
            &test,
            &args.spec,
            threat,
            &eps_values,
            batch,
            &mut rng,
            &bars,
        )?);
    }
    let mut tag = args.spec.tag(threat, &loaded);
    // A subset evaluation must not overwrite the full-test-set record.
    if args.limit.is_some() {
        tag.push_str(&format!("-n{}", test.len()));
    }
    let path = loaded.dir.join(files::eval(&tag));
    advtrain::io::write_json(&path, &record)?;
    let summary_path = loaded.dir.join(files::SUMMARY);
    if let Ok(mut summary) = advtrain::io::read_json::<Summary>(&summary_path) {
        if summary.n_test == record.n {
            summary.absorb(&record);
            advtrain::io::write_json(&summary_path, &summary)?;
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
    println!("written:          {}", path.display());
    if args.checks {
        let mut cfg = ChecksConfig::new(threat);
        cfg.steps = args.spec.steps.max(1);
        cfg.batch_size = batch;
        let results = checks::run_checks(&loaded.model, &test, &cfg, &mut rng, &bars)?;
        println!("sanity checks (n={}):", test.len());
        for c in &results {
            let tag = match c.verdict {
                Verdict::Pass => "PASS",
                Verdict::Warn => "WARN",
                Verdict::Skip => "SKIP",
            };
            println!("  {tag} {}. {}: {}", c.id, c.name, c.detail);
        }
        let checks_path = loaded.dir.join("checks.json");
        advtrain::io::write_json(&checks_path, &results)?;
        println!("written:          {}", checks_path.display());
    }
    crate::cmd_report::refresh(&loaded.dir, &device);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn curve(
    model: &ZooModel,
    test: &advtrain::data::Dataset,
    spec: &AttackSpec,
    threat: ThreatModel,
    eps_values: &[f32],
    batch: usize,
    rng: &mut advtrain::rng::AdvRng,
    bars: &Bars,
) -> Result<Vec<CurvePoint>> {
    let mut points = Vec::new();
    for &eps in eps_values {
        if eps == 0.0 {
            let clean = eval::clean_accuracy(model, test, batch, bars);
            points.push(CurvePoint { eps, robust: clean });
            continue;
        }
        let at = ThreatModel {
            norm: threat.norm,
            eps,
        };
        let robust = match preset(spec) {
            Some(p) => {
                ensemble::ensemble(p.name(), model, test, &p.attacks(at), batch, rng, bars)?.robust
            }
            None => eval::evaluate(model, test, &build_attack(spec, at)?, batch, rng, bars)?.robust,
        };
        points.push(CurvePoint { eps, robust });
    }
    Ok(points)
}
