//! The end of an image training run: clean test accuracy, the final PGD at the training
//! threat model, the best checkpoint measured beside the last one, and the [`Summary`] that
//! gathers them. Computed here, written by [`RunDir::write_final`], printed by the caller.

use super::dir::RunDir;
use super::{files, BestCheckpoint, EvalFile, EvalRecord, RunConfig, Summary};
use crate::attack::Pgd;
use crate::data::Dataset;
use crate::error::Result;
use crate::eval::spec::{AttackKind, AttackSpec};
use crate::eval::{self, Accuracy, RobustEval};
use crate::model::Classifier;
use crate::progress::Progress;
use crate::train::{Trained, BEST_MODEL};

/// The tag of the final PGD's record with the reference settings (20 steps, 1 restart),
/// `eval-pgd.json`: a later `advtrain eval` with the default attack replaces it.
pub const FINAL_TAG: &str = "pgd";

/// The tag of `config`'s final PGD: [`FINAL_TAG`], or the tag `advtrain eval` gives the same
/// PGD ([`AttackSpec::tag`]) when the run asked for other steps or restarts, so a
/// `--final-steps 5` record never sits in the PGD-20 file.
pub fn final_tag(config: &RunConfig) -> String {
    let spec = AttackSpec {
        steps: config.final_steps,
        restarts: config.final_restarts,
        ..AttackSpec::new(AttackKind::Pgd)
    };
    let threat = config.train.threat();
    spec.tag(threat, threat)
}

/// Stream of [`crate::rng::derived`] for the final PGD: the same for the final and the best
/// model, so their robust accuracies are comparable.
const FINAL_STREAM: u64 = 3;

/// What the end-of-training evaluation measured.
#[derive(Clone, Debug)]
pub struct FinalEvaluation {
    /// The run's headline numbers, ready to write.
    pub summary: Summary,
    /// Clean test accuracy of the final model.
    pub clean: Accuracy,
    /// The final PGD's result (`None`: ε = 0 or `final_steps = 0`).
    pub robust: Option<RobustEval>,
    /// Its record, `eval-pgd.json`.
    pub record: Option<EvalRecord>,
    /// The best checkpoint, when the monitor kept one.
    pub best: Option<BestOutcome>,
}

/// The best checkpoint beside the final model.
#[derive(Clone, Debug)]
pub struct BestOutcome {
    /// Its record (also in the summary).
    pub record: BestCheckpoint,
    /// Whether it is the final model itself (then it was not measured twice).
    pub is_final: bool,
    /// Its clean test accuracy, when measured apart from the final model.
    pub clean: Option<Accuracy>,
    /// Its robust test accuracy under the final PGD, when measured apart.
    pub robust: Option<RobustEval>,
}

/// Evaluates a finished run on `test`: the final model clean and under PGD
/// (`config.final_steps` steps, `config.final_restarts` restarts, at the training threat
/// model), and the best checkpoint the same way unless it is the final model.
pub fn final_evaluation<M: Classifier>(
    config: &RunConfig,
    trained: &Trained<M>,
    test: &Dataset,
    progress: &dyn Progress,
) -> Result<FinalEvaluation> {
    let t = &config.train;
    let batch = t.batch_size.max(256);
    let clean = eval::clean_accuracy(&trained.model, test, batch, progress);
    let mut summary = Summary {
        method: t.method.name().to_string(),
        model: config.model_name(),
        dataset: config.dataset.clone(),
        norm: t.norm,
        eps: t.eps,
        epochs: t.epochs,
        train_seconds: trained.seconds,
        clean_accuracy: clean.value,
        clean_ci95: clean.ci95,
        robust_accuracy: None,
        robust_ci95: None,
        robust_attack: None,
        robust_combined: Vec::new(),
        robust_left_out: Vec::new(),
        n_test: test.len(),
        test_data_sha256: Some(test.fingerprint()),
        best_checkpoint: None,
        stopped_early: trained.stopped.clone(),
        rollbacks: trained.rollbacks,
    };
    let robust = final_pgd(config, &trained.model, test, progress)?;
    let record = match &robust {
        Some(result) => {
            let class_names = config.class_names_or(test);
            let mut record = EvalRecord::from_eval(
                FINAL_TAG,
                result,
                Some(config.final_steps),
                Some(config.final_restarts),
                t.seed,
                &class_names,
            );
            record.test_data_sha256 = Some(test.fingerprint());
            let file = EvalFile {
                file: files::eval(&final_tag(config)),
                record: record.clone(),
            };
            summary.combine(&[file], &record);
            Some(record)
        }
        None => None,
    };
    let best = best_outcome(config, trained, test, &summary, clean, progress)?;
    summary.best_checkpoint = best.as_ref().map(|b| b.record.clone());
    Ok(FinalEvaluation {
        summary,
        clean,
        robust,
        record,
        best,
    })
}

/// The final PGD on `model`, or `None` when the run asks for none.
fn final_pgd<M: Classifier>(
    config: &RunConfig,
    model: &M,
    test: &Dataset,
    progress: &dyn Progress,
) -> Result<Option<RobustEval>> {
    let t = &config.train;
    if config.final_steps == 0 || t.eps <= 0.0 {
        return Ok(None);
    }
    let attack = Pgd::new(t.threat())
        .steps(config.final_steps)
        .restarts(config.final_restarts);
    let mut rng = crate::rng::derived(t.seed, FINAL_STREAM);
    let batch = t.batch_size.max(256);
    Ok(Some(eval::evaluate(
        model, test, &attack, batch, &mut rng, progress,
    )?))
}

/// The best checkpoint's record, measured on `test` unless it is the final model (then the
/// final model's figures in `summary` are its own).
fn best_outcome<M: Classifier>(
    config: &RunConfig,
    trained: &Trained<M>,
    test: &Dataset,
    summary: &Summary,
    clean: Accuracy,
    progress: &dyn Progress,
) -> Result<Option<BestOutcome>> {
    let Some(best) = &trained.best else {
        return Ok(None);
    };
    let last = trained.history.last();
    let last_value = last.and_then(|m| {
        if best.criterion.contains("PGD") {
            m.val_robust_accuracy
        } else {
            m.val_clean_accuracy
        }
    });
    let mut record = BestCheckpoint {
        epoch: best.epoch,
        file: BEST_MODEL.to_string(),
        why: format!(
            "highest {} ({:.2}%) over {} epochs",
            best.criterion,
            100.0 * best.value,
            trained.history.len()
        ),
        criterion: best.criterion.clone(),
        val_value: best.value,
        last_epoch_val_value: last_value,
        test_clean_accuracy: None,
        test_robust_accuracy: None,
        test_robust_ci95: None,
    };
    let is_final = last.is_some_and(|m| m.epoch == best.epoch)
        && trained.stopped.is_none()
        && trained.rollbacks == 0;
    let (mut best_clean, mut best_robust) = (None, None);
    if is_final {
        record.test_clean_accuracy = Some(clean.value);
        record.test_robust_accuracy = summary.robust_accuracy;
        record.test_robust_ci95 = summary.robust_ci95;
    } else if let Some(model) = &trained.best_model {
        let batch = config.train.batch_size.max(256);
        let c = eval::clean_accuracy(model, test, batch, progress);
        record.test_clean_accuracy = Some(c.value);
        best_clean = Some(c);
        best_robust = final_pgd(config, model, test, progress)?;
        if let Some(r) = &best_robust {
            record.test_robust_accuracy = Some(r.robust.value);
            record.test_robust_ci95 = Some(r.robust.ci95);
        }
    }
    Ok(Some(BestOutcome {
        record,
        is_final,
        clean: best_clean,
        robust: best_robust,
    }))
}

impl RunDir {
    /// Writes what [`final_evaluation`] measured: the final PGD's record (if it ran) and
    /// `summary.json`, whose robust accuracy is then the per-point worst case over every
    /// evaluation of these weights on these test points, so resuming a finished run keeps
    /// the stronger attacks evaluated since it ended.
    pub fn write_final(&self, fin: &FinalEvaluation) -> Result<()> {
        let mut summary = fin.summary.clone();
        if let Some(record) = &fin.record {
            let config = self.config()?;
            let record = self.stamp(record)?;
            self.write_stamped(&final_tag(&config), &record)?;
            summary.combine(&self.evals()?, &record);
        }
        self.write_summary(&summary)
    }
}
