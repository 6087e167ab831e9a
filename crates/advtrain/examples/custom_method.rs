//! A training method of your own, trained by advtrain's loop.
//!
//! The method here is "adversarial training on the worse of FGSM and Gaussian noise": per
//! example it keeps whichever perturbation has the higher loss. It is written as a
//! `TrainStep`, the one seam every built-in method uses too, so it gets the whole training
//! loop for free: learning-rate schedule, ε warm-up, the health monitor with rollback,
//! checkpoints, bit-identical `--resume` and the best checkpoint.
//!
//! ```text
//! cargo run --release -p advtrain --example custom_method
//! ```

use advtrain::attack::{cross_entropy, Attack, Fgsm, Pgd};
use advtrain::data::synthetic;
use advtrain::eval::evaluate;
use advtrain::model::{Classifier, ModelKind, ModelShape, ZooModel};
use advtrain::progress::Silent;
use advtrain::train::{
    count_correct, fit, CheckpointOptions, ImageBatch, ImageTask, MethodConfig, NoObserver,
    OptimizerConfig, Schedule, StepContext, StepOutput, TrainConfig, TrainStep,
};
use burn::prelude::*;

/// Trains on the worse (per example) of an FGSM point and a Gaussian-noise point of the
/// ε-ball.
struct WorstOfFgsmAndNoise;

impl<M: Classifier> TrainStep<M, ImageBatch> for WorstOfFgsmAndNoise {
    fn step(
        &mut self,
        model: M,
        (x, y): ImageBatch,
        ctx: &mut StepContext<'_>,
    ) -> advtrain::Result<StepOutput<M>> {
        let threat = ctx.threat;
        // Attacks run on the model without parameter gradients (see advtrain::attack).
        let x_fgsm = Fgsm::new(threat).perturb(&model, x.clone(), y.clone(), ctx.rng);
        let dims = x.dims();
        let noise = advtrain::rng::normal_vec(ctx.rng, dims.iter().product());
        let noise = Tensor::<4>::from_data(TensorData::new(noise, dims), ctx.device);
        let x_noise = threat.project(x.clone() + noise.mul_scalar(threat.eps / 2.0), &x);
        // The per-example losses of both, without gradients, pick the worse point.
        let eval = model.valid();
        let per_example = |xa: Tensor<4>| cross_entropy(eval.logits(xa), y.clone());
        let fgsm_worse = per_example(x_fgsm.clone())
            .greater_equal(per_example(x_noise.clone()))
            .reshape([dims[0], 1, 1, 1]);
        let x_adv = x_noise.mask_where(fgsm_worse, x_fgsm);

        let logits = model.logits(x_adv);
        let loss = cross_entropy(logits.clone(), y.clone()).mean();
        let value = ctx.loss_value(&loss)?; // a clear error on NaN, before any update
        let correct = count_correct(logits.without_autodiff(), y);
        Ok(StepOutput {
            model: ctx.update(model, loss),
            loss: value,
            correct,
        })
    }
}

fn main() -> advtrain::Result<()> {
    let device = Device::flex();
    let all = synthetic::robust_vs_nonrobust(3000, 7);
    let train = all.subset(&(0..2000).collect::<Vec<_>>());
    let val = all.subset(&(2000..2400).collect::<Vec<_>>());
    let test = all.subset(&(2400..3000).collect::<Vec<_>>());
    let shape = ModelShape {
        channels: 1,
        height: 8,
        width: 8,
        num_classes: 2,
    };

    // Everything but the method comes from the usual configuration.
    let mut config = TrainConfig::new(MethodConfig::Standard, 0.15);
    config.epochs = 4;
    config.batch_size = 64;
    config.lr = 3e-3;
    config.optimizer = OptimizerConfig::adam();
    config.schedule = Schedule::Constant;
    config.val_pgd_steps = 5;

    let pgd = Pgd::new(config.threat()).steps(20).restarts(2);
    for (name, custom) in [("standard", false), ("worst-of-fgsm-and-noise", true)] {
        device.seed(1);
        let model = ZooModel::new(ModelKind::Mlp, &shape, None, &device)?;
        let mut task = if custom {
            ImageTask::with_step(&train, &val, &config, Box::new(WorstOfFgsmAndNoise), name)
        } else {
            ImageTask::new(&train, &val, &config)
        };
        let trained = fit(
            &mut task,
            model,
            CheckpointOptions::default(),
            &device,
            &Silent,
            &mut NoObserver,
        )?;
        let mut rng = advtrain::rng::seeded(0);
        let r = evaluate(&trained.model, &test, &pgd, 256, &mut rng, &Silent)?;
        println!(
            "{name:>24}: clean {}  PGD-20 {}  (best checkpoint: epoch {})",
            r.clean.display(),
            r.robust.display(),
            trained.best.map_or(0, |b| b.epoch)
        );
    }
    Ok(())
}
