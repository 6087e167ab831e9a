//! `advtrain eval`'s and `advtrain attack`'s flags: which attack, where, on what.

use std::path::PathBuf;

use advtrain::attack::AttackLoss;
use advtrain::eval::spec::{parse_target, AttackSpec};
use advtrain::run::RunConfig;
use advtrain::text::train::TextAttackConfig;
use advtrain::threat::{Norm, ThreatModel};
use anyhow::{bail, Context, Result};
use clap::Args;

use super::{Common, ModelInputFlags};

/// Edits per text a text attack may make unless `--budget` says otherwise.
pub const DEFAULT_TEXT_BUDGET: usize = 5;

/// How to attack. Every setting is optional: an attack's own reference default applies to
/// what is not given, and a flag that does not apply to the run's modality is refused.
#[derive(Args, Clone, Debug)]
pub struct AttackFlags {
    /// Image runs (default pgd): fgsm (fgm for l2), pgd, apgd-ce, apgd-dlr, apgd-t, fab,
    /// fab-t, square (black-box, linf and l2), autoattack (the reference ensemble, each
    /// member on the points still robust; see --version) or autoattack-fast (a cheaper
    /// screen). Text runs (default deepwordbug): deepwordbug (character edits), lookalike
    /// (homoglyph and zero-width edits only), obfuscation (spaced-out letters, separators,
    /// case mixing, full leetspeak, Unicode tag and bidi characters, word splits and
    /// joins), synonym (WordNet synonyms; needs wordnet-base), encoding (base64, rot13 or hex
    /// with a "decode this" preamble, one edit), hotflip (white-box), or none (clean only).
    #[arg(long)]
    pub attack: Option<String>,
    /// Radius (default: the run's training eps).
    #[arg(long)]
    pub eps: Option<f32>,
    /// Norm (default: the run's training norm).
    #[arg(long)]
    pub norm: Option<String>,
    /// Iterations (default: 20 for pgd; 100 for apgd-ce, apgd-dlr, apgd-t, fab and fab-t,
    /// as in AutoAttack).
    #[arg(long)]
    pub steps: Option<usize>,
    /// PGD, APGD and FAB restarts, each on the points still robust (default 1).
    #[arg(long)]
    pub restarts: Option<usize>,
    /// PGD step size (default 2.5·eps/steps).
    #[arg(long)]
    pub step_size: Option<f32>,
    /// FGSM and PGD loss: ce (default) or cw.
    #[arg(long)]
    pub loss: Option<String>,
    /// Targeted PGD: random, least-likely, or a class index.
    #[arg(long)]
    pub target: Option<String>,
    /// Square: query budget per example (default 5000). Text runs and filters: the most
    /// filter queries a word-search attack may spend on one text (default: no limit).
    #[arg(long)]
    pub queries: Option<usize>,
    /// APGD-T and FAB-T: number of target classes (default 9).
    #[arg(long)]
    pub targets: Option<usize>,
    /// autoattack's version, as in the reference: standard (APGD-CE → APGD-T → FAB-T →
    /// Square, the default), plus (adds restarts, APGD-DLR, untargeted FAB) or rand
    /// (APGD-CE and APGD-DLR with EOT over 20 samples, for models with a random forward
    /// pass).
    #[arg(long)]
    pub version: Option<String>,
    /// fgsm, pgd, apgd-*: gradient samples averaged per step (expectation over
    /// transformation, for a model with a random forward pass; default 1: off).
    #[arg(long)]
    pub eot: Option<usize>,
    /// Text runs: edits per text (default 5).
    #[arg(long)]
    pub budget: Option<usize>,
}

impl AttackFlags {
    /// The image attack these flags describe, each setting not given at its attack's
    /// default ([`AttackSpec::new`]). `--budget` is a text flag and is refused here.
    pub fn image_spec(&self) -> Result<AttackSpec> {
        if self.budget.is_some() {
            bail!("--budget applies to text runs only (this is an image run)");
        }
        let name = self.attack.as_deref().unwrap_or("pgd");
        let base = match &self.version {
            Some(v) if name == "autoattack" => AttackSpec::autoattack(v)?,
            Some(_) => bail!("--version applies to --attack autoattack only, not {name}"),
            None => AttackSpec::named(name)?,
        };
        let loss: AttackLoss = match &self.loss {
            Some(l) => l.parse()?,
            None => base.loss,
        };
        let target = self.target.as_deref().map(parse_target).transpose()?;
        Ok(AttackSpec {
            steps: self.steps.unwrap_or(base.steps),
            restarts: self.restarts.unwrap_or(base.restarts),
            step_size: self.step_size,
            loss,
            target,
            queries: self.queries.unwrap_or(base.queries),
            targets: self.targets.unwrap_or(base.targets),
            eot: self.eot.unwrap_or(base.eot),
            ..base
        })
    }

    /// The attack for a text run (default DeepWordBug); `None` for `--attack none`. Image
    /// attack flags are refused: silently ignoring them would report a different attack
    /// than the one asked for.
    pub fn text_attack(&self) -> Result<Option<TextAttackConfig>> {
        let image_only = [
            ("--eps", self.eps.is_some()),
            ("--norm", self.norm.is_some()),
            ("--steps", self.steps.is_some()),
            ("--restarts", self.restarts.is_some()),
            ("--step-size", self.step_size.is_some()),
            ("--loss", self.loss.is_some()),
            ("--target", self.target.is_some()),
            ("--targets", self.targets.is_some()),
            ("--version", self.version.is_some()),
            ("--eot", self.eot.is_some()),
        ];
        let given: Vec<&str> = image_only
            .iter()
            .filter(|(_, g)| *g)
            .map(|(f, _)| *f)
            .collect();
        if !given.is_empty() {
            bail!(
                "{} appl{} to image runs only; a text run's attack takes --attack and --budget",
                given.join(", "),
                if given.len() == 1 { "ies" } else { "y" }
            );
        }
        let budget = self.budget.unwrap_or(DEFAULT_TEXT_BUDGET);
        let attack = match self.attack.as_deref().unwrap_or("deepwordbug") {
            "none" | "clean" => return Ok(None),
            name => TextAttackConfig::from_name(name, budget)?,
        };
        Ok(Some(match self.queries {
            Some(0) => bail!("--queries must be at least 1 (leave it out for no limit)"),
            Some(q) => match attack {
                TextAttackConfig::DeepWordBug { .. } => attack.with_max_queries(q),
                other => bail!(
                    "--queries bounds the word-search attacks (deepwordbug, lookalike, obfuscation, synonym), not {}",
                    other.name()
                ),
            },
            None => attack,
        }))
    }

    /// The threat model: `--norm` and `--eps` over the run's training ones.
    pub fn threat(&self, config: &RunConfig) -> Result<ThreatModel> {
        self.check_eps()?;
        let norm: Option<Norm> = self.norm.as_deref().map(str::parse).transpose()?;
        Ok(config.attack_threat(norm, self.eps)?)
    }
}

impl AttackFlags {
    /// Refuses `--eps 0`: an attack with no room to move measures clean accuracy, which
    /// every evaluation reports anyway (it used to be blamed on the run, "trained without
    /// an attack", whatever it was trained with).
    pub fn check_eps(&self) -> Result<()> {
        if self.eps == Some(0.0) {
            bail!(
                "--eps must be > 0 for a robustness evaluation (eps 0 is clean accuracy, \
                 which every evaluation reports; --eps-curve may include 0)"
            );
        }
        Ok(())
    }
}

/// `advtrain eval`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["run", "model", "target_cmd", "target_url"])))]
pub struct EvalArgs {
    /// Run directory written by `advtrain train` (or by an earlier `eval --model`). With
    /// --audit, repeat it to audit several runs one after the other (then compare them with
    /// `advtrain report RUN...`).
    #[arg(long, conflicts_with = "model", value_name = "RUN_DIR")]
    pub run: Vec<PathBuf>,
    /// Your own image classifier as an ONNX file: evaluated without a training run (a run
    /// directory is made for it, see --out; needs --eps).
    #[arg(long, value_name = "FILE.onnx")]
    pub model: Option<PathBuf>,
    /// With --model, --target-cmd or --target-url: the directory to write (default
    /// runs/<file name> for a model); evaluating the same model or filter again adds to it,
    /// and an interrupted filter evaluation continues from what it streamed there.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// With --model: the data set: fashion-mnist (default), mnist, cifar10, npy (--data
    /// DIR with test.npz or x_test.npy + y_test.npy) or image-folder (--data DIR with one
    /// sub-directory of images per class, resized and centre-cropped to the model's input).
    /// With --target-cmd/--target-url: spam-assassin, prompt-injection, or file (--data
    /// FILE.csv|FILE.jsonl of text,label rows).
    #[arg(long)]
    pub dataset: Option<String>,
    /// With --model: overwrite a run directory that holds something else.
    #[arg(long, requires = "model")]
    pub force: bool,
    #[command(flatten)]
    pub filter: FilterFlags,
    #[command(flatten)]
    pub input: ModelInputFlags,
    #[command(flatten)]
    pub spec: AttackFlags,
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
    /// Discard the saved state of an interrupted evaluation with the same tag
    /// (partial-eval-<tag>.json) instead of resuming from it.
    #[arg(long)]
    pub fresh: bool,
    /// Also run the sanity checklist (Carlini et al. 2019 and AutoAttack's own checks) on
    /// the evaluated examples and write checks.json: 1 accuracy falls with eps, 2 unbounded
    /// attack reaches ~0%, 3 PGD beats FGSM, 4 PGD beats Square, 5 twice the budget changes
    /// little, 6 gradients finite and non-zero, 7 batch-independent predictions, 8
    /// deterministic forward pass, 9 logits not probabilities, 10 PGD beats random noise,
    /// 11 PGD beats transfer from a standard model (trained once for 2 epochs and cached in
    /// the run as surrogate-standard.safetensors, or --transfer-from). Use --limit to bound
    /// its cost: it attacks the set ~12 times.
    #[arg(long)]
    pub checks: bool,
    /// Audit the side effects of the model's training instead of one evaluation, and
    /// write audit.json: accuracy on 14 common corruptions at 5 severities (MNIST-C /
    /// CIFAR-10-C), robust accuracy under the other norm (L2 eps*sqrt(d)/4 for an L-inf
    /// run, the reverse for L2), twice the radius and a rotation/shift grid (±30°, ±3
    /// pixels), worst-class accuracy and class spread, calibration (ECE, reliability
    /// diagram) clean and under PGD, and confidence on uniform noise. The report's "What
    /// adversarial training bought and cost" puts audited runs side by side. An
    /// imported model: `eval --model net.onnx --eps E` first, then --audit on its run.
    #[arg(long, conflicts_with = "model")]
    pub audit: bool,
    /// The transfer check's surrogate: this run's model instead of a standard model trained
    /// for the purpose (same input shape and classes required).
    #[arg(long, value_name = "RUN_DIR", requires = "checks")]
    pub transfer_from: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

/// Text filters: the operating point, and a filter advtrain did not train as the target.
#[derive(Args, Clone, Debug, Default)]
pub struct FilterFlags {
    /// Text runs and filters with two classes: the false-positive rate the filter is
    /// evaluated at; the threshold is chosen on benign texts held out of the test (default 0.01).
    #[arg(long)]
    pub fpr: Option<f64>,
    /// Attack a filter run as a process: COMMAND (run with sh -c) reads JSON lines
    /// {"id":..,"text":..} on stdin and answers each with {"id":..,"scores":[..]},
    /// {"id":..,"score":p} or {"id":..,"label":k} on stdout (docs/text-targets.md).
    #[arg(long, value_name = "COMMAND", conflicts_with_all = ["run", "model", "target_url"])]
    pub target_cmd: Option<String>,
    /// Attack a filter behind HTTP: POST a JSON array of {"id","text"} objects, answered
    /// by a JSON array of answers as for --target-cmd.
    #[arg(long, value_name = "URL", conflicts_with_all = ["run", "model"])]
    pub target_url: Option<String>,
    /// Seconds a filter may take per call before it is restarted (default 30).
    #[arg(long, value_name = "SECONDS")]
    pub target_timeout: Option<f64>,
    /// Texts per call to the filter (default 32).
    #[arg(long, value_name = "N")]
    pub target_batch: Option<usize>,
    /// Restarts (re-sends) of a failed call before giving up (default 2).
    #[arg(long, value_name = "N")]
    pub target_retries: Option<usize>,
    /// Malicious texts attacked per chunk, each chunk streamed to the output directory as
    /// soon as it is done (default 32 for a run's model, 8 for a filter).
    #[arg(long, value_name = "N")]
    pub chunk: Option<usize>,
}

impl FilterFlags {
    /// `--fpr`, checked, or the default.
    pub fn fpr(&self) -> Result<f64> {
        let fpr = self.fpr.unwrap_or(advtrain::text::evasion::DEFAULT_FPR);
        if !(0.0..1.0).contains(&fpr) {
            bail!("--fpr must be in [0, 1), got {fpr}");
        }
        Ok(fpr)
    }

    /// Whether a filter advtrain did not train is the target.
    pub fn has_target(&self) -> bool {
        self.target_cmd.is_some() || self.target_url.is_some()
    }
}

impl EvalArgs {
    /// Refuses the flags that make no sense with `--run` (they describe what to evaluate
    /// without a run).
    pub fn check_run_flags(&self) -> Result<()> {
        if !self.run.is_empty() && (self.out.is_some() || self.dataset.is_some()) {
            bail!("--out and --dataset apply to --model, --target-cmd and --target-url; a run has its own");
        }
        Ok(())
    }

    /// The run directory `--run` names (given unless `--model` is).
    pub fn run_dir(&self) -> Result<&std::path::Path> {
        match &self.run[..] {
            [one] => Ok(one),
            [] => anyhow::bail!("give --run RUN_DIR or --model FILE.onnx"),
            [..] => anyhow::bail!(
                "--run is given {} times: several runs are accepted only with --audit",
                self.run.len()
            ),
        }
    }

    /// `--eps-curve` as radii.
    pub fn curve(&self) -> Result<Option<Vec<f32>>> {
        self.eps_curve.as_deref().map(parse_eps_list).transpose()
    }
}

/// `advtrain attack`.
#[derive(Args, Debug)]
pub struct AttackArgs {
    /// Run directory written by `advtrain train`.
    #[arg(long)]
    pub run: PathBuf,
    #[command(flatten)]
    pub spec: AttackFlags,
    /// Output directory for adversarial.safetensors and grid.png (text runs: pairs.jsonl
    /// and pairs.html). Files already there are refused unless --force.
    #[arg(long, default_value = "adv")]
    pub out: PathBuf,
    /// Overwrite the output files if they exist.
    #[arg(long)]
    pub force: bool,
    /// How many test images to attack (all are saved; grid.png draws only the first 64).
    #[arg(long, short = 'n', default_value_t = 16)]
    pub count: usize,
    /// Index of the first test image.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Override the data directory recorded in the run.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub common: Common,
}

/// Parses a comma-separated list of radii; a radius given twice is refused (each would
/// get its own, different, number from its own random starts).
pub fn parse_eps_list(s: &str) -> Result<Vec<f32>> {
    let radii: Vec<f32> = s
        .split(',')
        .map(|v| {
            let e: f32 = v
                .trim()
                .parse()
                .with_context(|| format!("bad eps '{v}' in --eps-curve"))?;
            if !e.is_finite() || e < 0.0 {
                bail!("eps {e} in --eps-curve must be finite and >= 0");
            }
            Ok(e)
        })
        .collect::<Result<_>>()?;
    for (i, e) in radii.iter().enumerate() {
        if radii[..i].contains(e) {
            bail!("eps {e} appears twice in --eps-curve");
        }
    }
    Ok(radii)
}
