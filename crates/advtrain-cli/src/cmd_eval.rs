//! `advtrain eval`: attack a trained run's model on the test set and record the result.

use std::path::PathBuf;

use advtrain::attack::{Attack, AttackLoss, Fgsm, Pgd, TargetMode};
use advtrain::eval::{self, CurvePoint};
use advtrain::model::ZooModel;
use advtrain::run::{self, files, EvalRecord, Summary};
use advtrain::threat::{Norm, ThreatModel};
use anyhow::{bail, Result};
use clap::Args;

use crate::common::{self, Common};
use crate::progress::Bars;

/// How to attack.
#[derive(Args, Clone, Debug)]
pub struct AttackSpec {
    /// fgsm (fgm for l2) or pgd.
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

/// A concrete attack chosen at run time.
pub enum AnyAttack {
    Fgsm(Fgsm),
    Pgd(Pgd),
}

impl Attack for AnyAttack {
    fn name(&self) -> String {
        match self {
            AnyAttack::Fgsm(a) => a.name(),
            AnyAttack::Pgd(a) => a.name(),
        }
    }
    fn threat(&self) -> ThreatModel {
        match self {
            AnyAttack::Fgsm(a) => a.threat(),
            AnyAttack::Pgd(a) => a.threat(),
        }
    }
    fn perturb<M: advtrain::model::Classifier>(
        &self,
        model: &M,
        x: burn::prelude::Tensor<4>,
        y: burn::prelude::Tensor<1, burn::prelude::Int>,
        rng: &mut advtrain::rng::AdvRng,
    ) -> burn::prelude::Tensor<4> {
        match self {
            AnyAttack::Fgsm(a) => a.perturb(model, x, y, rng),
            AnyAttack::Pgd(a) => a.perturb(model, x, y, rng),
        }
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
        other => bail!("unknown attack '{other}': expected fgsm or pgd (more in later versions)"),
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
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.common.setup()?;
    let loaded = common::load_run(&args.run, &device)?;
    let threat = args.spec.threat(&loaded)?;
    let attack = build_attack(&args.spec, threat)?;
    let curve_eps = args
        .eps_curve
        .as_deref()
        .map(common::parse_eps_list)
        .transpose()?;
    let test = common::run_test_set(&loaded, args.data.as_deref(), args.limit)?;
    let bars = Bars::new(args.common.quiet);
    let mut rng = advtrain::rng::seeded(args.seed);
    let batch = args.batch_size.max(1);
    let result = eval::evaluate(&loaded.model, &test, &attack, batch, &mut rng, &bars)?;
    let is_pgd = matches!(attack, AnyAttack::Pgd(_));
    let mut record = EvalRecord::from_eval(
        &args.spec.attack,
        &result,
        is_pgd.then_some(args.spec.steps),
        is_pgd.then_some(args.spec.restarts),
        args.seed,
        &loaded.dataset.class_names(),
    );
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
    let tag = args.spec.tag(threat, &loaded);
    let path = loaded.dir.join(files::eval(&tag));
    run::write_json(&path, &record)?;
    let summary_path = loaded.dir.join(files::SUMMARY);
    if let Ok(mut summary) = run::read_json::<Summary>(&summary_path) {
        if summary.n_test == record.n {
            summary.absorb(&record);
            run::write_json(&summary_path, &summary)?;
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
        let attack = build_attack(
            spec,
            ThreatModel {
                norm: threat.norm,
                eps,
            },
        )?;
        let r = eval::evaluate(model, test, &attack, batch, rng, bars)?;
        points.push(CurvePoint {
            eps,
            robust: r.robust,
        });
    }
    Ok(points)
}
