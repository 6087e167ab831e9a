//! The training seam: a method of the user's own, written as a `TrainStep`, trains through
//! the same loop as the built-in methods, with its state checkpointed and resumed exactly.

use crate::common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use advtrain::attack::cross_entropy;
use advtrain::data::synthetic;
use advtrain::model::{Classifier, ModelKind, ZooModel};
use advtrain::progress::Silent;
use advtrain::train::{
    checkpoint, count_correct, fit, CheckpointOptions, EpochMetrics, EpochObserver, ImageBatch,
    ImageTask, MethodConfig, NoObserver, OptimizerConfig, Schedule, StepContext, StepOutput,
    TrainConfig, TrainStep,
};
use advtrain::Error;
use burn::prelude::*;

/// Gaussian-noise training (σ on every pixel) that counts its calls and carries the count
/// through checkpoints, as a stateful method must.
struct NoisyStep {
    sigma: f32,
    calls: Rc<Cell<usize>>,
}

impl<M: Classifier> TrainStep<M, ImageBatch> for NoisyStep {
    fn step(
        &mut self,
        model: M,
        (x, y): ImageBatch,
        ctx: &mut StepContext<'_>,
    ) -> advtrain::Result<StepOutput<M>> {
        self.calls.set(self.calls.get() + 1);
        let dims = x.dims();
        let noise = advtrain::rng::normal_vec(ctx.rng, dims.iter().product());
        let noise = Tensor::<4>::from_data(TensorData::new(noise, dims), ctx.device);
        let logits = model.logits((x + noise.mul_scalar(self.sigma)).clamp(0.0, 1.0));
        let loss = cross_entropy(logits.clone(), y.clone()).mean();
        let value = ctx.loss_value(&loss)?;
        let correct = count_correct(logits.without_autodiff(), y);
        Ok(StepOutput {
            model: ctx.update(model, loss),
            loss: value,
            correct,
        })
    }

    fn is_adversarial(&self) -> bool {
        false
    }

    fn save_state(&self, blobs: &mut BTreeMap<String, Vec<u8>>) -> advtrain::Result<()> {
        blobs.insert(
            "calls".into(),
            (self.calls.get() as u64).to_le_bytes().to_vec(),
        );
        Ok(())
    }

    fn load_state(
        &mut self,
        blobs: &BTreeMap<String, Vec<u8>>,
        _: &Device,
    ) -> advtrain::Result<()> {
        let bytes = blobs
            .get("calls")
            .expect("the checkpoint keeps the step's state");
        self.calls
            .set(u64::from_le_bytes(bytes.as_slice().try_into().unwrap()) as usize);
        Ok(())
    }
}

fn config() -> TrainConfig {
    let mut config = TrainConfig::new(MethodConfig::Standard, 0.0);
    config.epochs = 3;
    config.batch_size = 50;
    config.lr = 3e-3;
    config.optimizer = OptimizerConfig::adam();
    config.schedule = Schedule::Constant;
    config.seed = 5;
    config
}

/// Fails the run at the end of epoch `fail_at`.
struct CrashAt(usize);

impl<M> EpochObserver<M> for CrashAt {
    fn on_epoch(&mut self, m: &EpochMetrics, _: &M) -> advtrain::Result<()> {
        if m.epoch == self.0 {
            return Err(Error::config("simulated crash"));
        }
        Ok(())
    }
}

#[test]
fn a_custom_train_step_trains_through_the_shared_loop() {
    let all = synthetic::robust_vs_nonrobust(1200, 3);
    let train = all.subset(&(0..1000).collect::<Vec<_>>());
    let val = all.subset(&(1000..1200).collect::<Vec<_>>());
    let config = config();
    let calls = Rc::new(Cell::new(0));
    let step = NoisyStep {
        sigma: 0.05,
        calls: calls.clone(),
    };
    let mut task = ImageTask::with_step(&train, &val, &config, Box::new(step), "noisy");
    let model = common::fresh(ModelKind::Mlp, &train, 1);
    let trained = fit(
        &mut task,
        model,
        CheckpointOptions::default(),
        &common::device(),
        &Silent,
        &mut NoObserver,
    )
    .unwrap();
    assert_eq!(
        calls.get(),
        3 * 20,
        "one call per batch: 3 epochs of 20 batches"
    );
    assert_eq!(trained.history.len(), 3);
    let last = trained.history.last().unwrap();
    assert!(
        last.val_clean_accuracy.unwrap() > 0.9,
        "the custom method did not learn: {last:?}"
    );
    // Not adversarial: the best checkpoint is judged by clean accuracy, and no robust
    // validation is run.
    assert_eq!(
        trained.best.as_ref().unwrap().criterion,
        "validation clean accuracy"
    );
    assert!(last.val_robust_accuracy.is_none());
}

#[test]
fn a_custom_step_resumes_bit_identical_with_its_state() {
    let all = synthetic::robust_vs_nonrobust(700, 4);
    let train = all.subset(&(0..600).collect::<Vec<_>>());
    let val = all.subset(&(600..700).collect::<Vec<_>>());
    let config = config();
    let run = |observer: &mut dyn EpochObserver<ZooModel>, options: CheckpointOptions<'_>, seed| {
        let calls = Rc::new(Cell::new(0));
        let step = NoisyStep {
            sigma: 0.05,
            calls: calls.clone(),
        };
        let mut task = ImageTask::with_step(&train, &val, &config, Box::new(step), "noisy");
        let model = common::fresh(ModelKind::Mlp, &train, seed);
        let result = fit(
            &mut task,
            model,
            options,
            &common::device(),
            &Silent,
            observer,
        );
        (result, calls.get())
    };
    let (uninterrupted, calls) = run(&mut NoObserver, CheckpointOptions::default(), 2);
    let uninterrupted = uninterrupted.unwrap();
    assert_eq!(calls, 36);

    let dir = std::env::temp_dir().join(format!("advtrain-custom-step-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let options = CheckpointOptions {
        checkpoint_dir: Some(&dir),
        checkpoint_batches: Some(5),
        ..Default::default()
    };
    let (crashed, _) = run(&mut CrashAt(2), options, 2);
    assert!(crashed.is_err());
    let (ckpt, _, _) = checkpoint::load_latest(&dir).unwrap();
    assert_eq!(
        ckpt.position(),
        (1, 10),
        "12 batches an epoch, checkpoints every 5"
    );
    let options = CheckpointOptions {
        checkpoint_dir: Some(&dir),
        resume: Some(ckpt),
        ..Default::default()
    };
    // Other initial weights: everything must come from the checkpoint.
    let (resumed, calls) = run(&mut NoObserver, options, 99);
    let resumed = resumed.unwrap();
    assert_eq!(
        calls, 36,
        "the step's own state came back from the checkpoint"
    );
    assert_eq!(
        common::without_times(&resumed.history),
        common::without_times(&uninterrupted.history)
    );
    assert!(
        common::tensors_by_name(&resumed.model) == common::tensors_by_name(&uninterrupted.model)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
