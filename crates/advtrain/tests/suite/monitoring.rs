//! Training that watches itself: checkpoints survive crashes and damage, resume continues
//! exactly, non-finite losses stop cleanly, and the health monitor catches catastrophic
//! overfitting.

use crate::common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use advtrain::attack::Pgd;
use advtrain::data::{synthetic, Dataset};
use advtrain::eval::evaluate;
use advtrain::model::{self, Classifier, ModelKind, ZooModel};
use advtrain::progress::Silent;
use advtrain::threat::ThreatModel;
use advtrain::train::{
    self, checkpoint, CheckpointOptions, CollapsePolicy, EpochMetrics, EpochObserver, MethodConfig,
    MonitorEvent, NoObserver, OptimizerConfig, Schedule, TrainConfig,
};
use advtrain::Error;
use burn::prelude::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advtrain-monitor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn small_config(method: &str, epochs: usize) -> TrainConfig {
    let mut config = TrainConfig::new(MethodConfig::default_for(method).unwrap(), 0.1);
    if let MethodConfig::Free { replays, .. } = &mut config.method {
        *replays = 2;
    }
    config.epochs = epochs;
    config.batch_size = 40;
    config.lr = 3e-3;
    config.optimizer = OptimizerConfig::adam();
    config.schedule = Schedule::Constant;
    config.seed = 9;
    config
}

/// Fails the run at the end of epoch `fail_at` (a crash after some checkpoints).
struct CrashAt {
    fail_at: usize,
    seen: Vec<EpochMetrics>,
}

impl<M> EpochObserver<M> for CrashAt {
    fn on_epoch(&mut self, m: &EpochMetrics, _: &M) -> advtrain::Result<()> {
        if m.epoch == self.fail_at {
            return Err(Error::config("simulated crash"));
        }
        self.seen.push(m.clone());
        Ok(())
    }
}

/// A crash in the middle of training, then a resume from the newest checkpoint (taken
/// mid-epoch), ends with exactly the metrics and weights of a run never interrupted.
#[test]
fn resume_mid_epoch_matches_uninterrupted_run() {
    for method in ["fgsm-rs", "free", "pgd-at"] {
        let data = synthetic::templates(360, 3, 1, 8, 0.25, 4);
        let (train_set, val) = data.split_validation(60, 1).unwrap();
        let config = small_config(method, 3);
        let uninterrupted = train::train(
            common::fresh(ModelKind::SmallCnn, &train_set, 3),
            &train_set,
            &val,
            &config,
            &common::device(),
            &Silent,
            &mut NoObserver,
        )
        .unwrap();

        let dir = scratch(&format!("resume-{method}"));
        let mut crash = CrashAt {
            fail_at: 2,
            seen: Vec::new(),
        };
        let options = CheckpointOptions {
            checkpoint_dir: Some(&dir),
            checkpoint_batches: Some(3),
            ..Default::default()
        };
        let err = train::train_with(
            common::fresh(ModelKind::SmallCnn, &train_set, 3),
            &train_set,
            &val,
            &config,
            options,
            &common::device(),
            &Silent,
            &mut crash,
        )
        .err()
        .expect("the observer crashes the run");
        assert!(err.to_string().contains("simulated crash"), "{err}");

        let (ckpt, _, warnings) = checkpoint::load_latest(&dir).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        // 300 examples / 40 = 8 batches; the last checkpoint of epoch 2 is at batch 6.
        assert_eq!(ckpt.position(), (1, 6), "{method}");
        assert_eq!(ckpt.state.history.len(), 1);

        let options = CheckpointOptions {
            checkpoint_dir: Some(&dir),
            checkpoint_batches: Some(3),
            resume: Some(ckpt),
            ..Default::default()
        };
        // A model with other initial weights: everything must come from the checkpoint.
        let resumed = train::train_with(
            common::fresh(ModelKind::SmallCnn, &train_set, 77),
            &train_set,
            &val,
            &config,
            options,
            &common::device(),
            &Silent,
            &mut NoObserver,
        )
        .unwrap();
        assert_eq!(
            common::without_times(&resumed.history),
            common::without_times(&uninterrupted.history),
            "{method}: resumed metrics differ"
        );
        assert!(
            common::tensors_by_name(&resumed.model)
                == common::tensors_by_name(&uninterrupted.model),
            "{method}: resumed weights differ"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A truncated or bit-flipped newest checkpoint is detected by its length or checksum and
/// the previous one is used instead; a resume with none usable fails with a clear error.
#[test]
fn damaged_checkpoint_is_refused_and_previous_used() {
    let data = synthetic::templates(200, 3, 1, 8, 0.25, 5);
    let (train_set, val) = data.split_validation(40, 1).unwrap();
    let config = small_config("fgsm-rs", 2);
    let dir = scratch("damaged");
    let options = CheckpointOptions {
        checkpoint_dir: Some(&dir),
        ..Default::default()
    };
    train::train_with(
        common::fresh(ModelKind::Mlp, &train_set, 3),
        &train_set,
        &val,
        &config,
        options,
        &common::device(),
        &Silent,
        &mut NoObserver,
    )
    .unwrap();
    let newest = dir.join(checkpoint::CHECKPOINT);
    let previous = dir.join(checkpoint::PREVIOUS);
    assert_eq!(checkpoint::read(&newest).unwrap().position(), (2, 0));
    assert_eq!(checkpoint::read(&previous).unwrap().position(), (1, 0));

    let good = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &good[..good.len() / 2]).unwrap();
    let err = checkpoint::read(&newest).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    let (ckpt, path, warnings) = checkpoint::load_latest(&dir).unwrap();
    assert_eq!(path, previous);
    assert_eq!(ckpt.position(), (1, 0));
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("checkpoint.ckpt"), "{warnings:?}");

    let mut flipped = good.clone();
    let mid = flipped.len() / 3;
    flipped[mid] ^= 0x40;
    std::fs::write(&newest, &flipped).unwrap();
    let err = checkpoint::read(&newest).unwrap_err().to_string();
    assert!(err.contains("checksum") || err.contains("corrupt"), "{err}");
    assert_eq!(checkpoint::load_latest(&dir).unwrap().0.position(), (1, 0));

    std::fs::write(&previous, b"ADVCKPT1 not really").unwrap();
    let err = checkpoint::load_latest(&dir).unwrap_err().to_string();
    assert!(err.contains("no usable checkpoint"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

static POISON_CALLS: AtomicUsize = AtomicUsize::new(0);

/// A model whose logits turn to NaN after a number of forward passes: a stand-in for an
/// exploding run.
#[derive(Module, Debug)]
struct Poisoned {
    inner: ZooModel,
}

const POISON_AFTER: usize = 7;

impl Classifier for Poisoned {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let calls = POISON_CALLS.fetch_add(1, Ordering::SeqCst);
        let logits = self.inner.logits(images);
        if calls >= POISON_AFTER {
            logits.mul_scalar(f32::NAN)
        } else {
            logits
        }
    }
}

/// A NaN loss stops the run with a message naming the epoch, batch and the checkpoint kept;
/// that checkpoint is the last good one, with finite weights.
#[test]
fn nan_loss_stops_cleanly_and_keeps_last_good_checkpoint() {
    let data: Dataset = synthetic::templates(160, 3, 1, 8, 0.25, 6);
    let empty = data.take(0);
    let config = small_config("standard", 3);
    let dir = scratch("nan");
    let model = Poisoned {
        inner: common::fresh(ModelKind::Mlp, &data, 3),
    };
    let options = CheckpointOptions {
        checkpoint_dir: Some(&dir),
        ..Default::default()
    };
    // 160 / 40 = 4 batches per epoch, one forward each: call 7 is epoch 2, batch 4.
    let err = train::train_with(
        model,
        &data,
        &empty,
        &config,
        options,
        &common::device(),
        &Silent,
        &mut NoObserver,
    )
    .err()
    .expect("a NaN loss must stop training");
    let msg = err.to_string();
    assert!(matches!(err, Error::Diverged(_)), "{msg}");
    assert!(
        msg.contains("NaN") && msg.contains("epoch 2, batch 4"),
        "{msg}"
    );
    assert!(
        msg.contains("last good checkpoint (after epoch 1)"),
        "{msg}"
    );
    let (ckpt, _, _) = checkpoint::load_latest(&dir).unwrap();
    assert_eq!(ckpt.position(), (1, 0));
    let restored = model::load_safetensors_bytes(
        Poisoned {
            inner: common::fresh(ModelKind::Mlp, &data, 0),
        },
        ckpt.blobs["model"].clone(),
    )
    .unwrap();
    let probe = Tensor::<4>::ones([2, 1, 8, 8], &common::device()).mul_scalar(0.5);
    let values = restored
        .inner
        .logits(probe)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Plain FGSM training (no random start) at a large ε on the robust-vs-non-robust data:
/// validation PGD accuracy reaches ~87% and then collapses within an epoch while FGSM
/// accuracy stays high, the signature of catastrophic overfitting.
fn collapse_run(policy: CollapsePolicy) -> (train::Trained<ZooModel>, f64) {
    let data = synthetic::robust_vs_nonrobust(3600, 3);
    let (train_set, val) = data.take(3000).split_validation(500, 1).unwrap();
    let test = data.subset(&(3000..3600).collect::<Vec<_>>());
    let mut config = TrainConfig::new(
        MethodConfig::FgsmRs {
            alpha_factor: 1.0,
            random_start: false,
        },
        0.2,
    );
    config.epochs = 6;
    config.batch_size = 64;
    config.lr = 3e-3;
    config.optimizer = OptimizerConfig::adam();
    config.schedule = Schedule::Constant;
    config.monitor.on_collapse = policy;
    let trained = train::train(
        common::fresh(ModelKind::Mlp, &train_set, 1),
        &train_set,
        &val,
        &config,
        &common::device(),
        &Silent,
        &mut NoObserver,
    )
    .unwrap();
    let mut rng = advtrain::rng::seeded(4);
    let pgd = Pgd::new(ThreatModel::linf(0.2)).steps(20);
    let robust = evaluate(&trained.model, &test, &pgd, 256, &mut rng, &Silent)
        .unwrap()
        .robust
        .value;
    (trained, robust)
}

fn events(t: &train::Trained<ZooModel>, kind: &str) -> Vec<MonitorEvent> {
    t.history
        .iter()
        .flat_map(|m| m.events.iter().filter(|e| e.kind == kind).cloned())
        .collect()
}

#[test]
fn catastrophic_overfitting_raises_the_alarm_and_rollback_recovers() {
    let (ignored, ignored_robust) = collapse_run(CollapsePolicy::Ignore);
    let best = ignored
        .history
        .iter()
        .filter_map(|m| m.val_robust_accuracy)
        .fold(0.0, f64::max);
    let collapsed = ignored
        .history
        .iter()
        .filter_map(|m| m.val_robust_accuracy)
        .fold(1.0, f64::min);
    let alarm = events(&ignored, "alarm");
    assert!(
        !alarm.is_empty(),
        "no alarm although validation PGD accuracy went from {best:.3} to {collapsed:.3}: {:?}",
        ignored.history
    );
    assert!(alarm[0].message.contains("PGD"), "{alarm:?}");
    assert!(events(&ignored, "rollback").is_empty());
    let at = alarm[0].epoch;
    let m = &ignored.history[at - 1];
    assert!(
        m.val_fgsm_pgd_gap.unwrap() > 0.2,
        "FGSM should stay high while PGD collapses: {m:?}"
    );

    let (rolled, rolled_robust) = collapse_run(CollapsePolicy::Rollback);
    let rollbacks = events(&rolled, "rollback");
    assert!(!rollbacks.is_empty(), "{:?}", rolled.history);
    assert!(rollbacks[0]
        .message
        .contains("restored the best checkpoint"));
    assert!(rolled.rollbacks >= 1);
    assert!(rolled.history.last().unwrap().step_scale < 1.0);
    let last = rolled.history.last().unwrap().val_robust_accuracy.unwrap();
    assert!(
        last > collapsed + 0.2 && rolled_robust > collapsed + 0.2,
        "rollback ended at validation PGD {last:.3}, test PGD {rolled_robust:.3}; the collapse was at {collapsed:.3} (ignore policy: test {ignored_robust:.3})"
    );

    let (stopped, _) = collapse_run(CollapsePolicy::Stop);
    assert!(stopped.stopped.is_some());
    assert_eq!(stopped.history.len(), at, "stops at the alarm's epoch");
    assert!(stopped.best.as_ref().unwrap().epoch < at);
}
