//! Data-parallel training across several devices, for any method with one update per batch.
//!
//! Each device (a *rank*) gets a contiguous share of the batch and a replica of the model
//! forked from it, and runs the whole method there: the attack's input-gradient passes and
//! the loss. Each rank's parameter gradients are moved to the first device, averaged
//! weighted by share size (so the update is the full batch's mean-loss gradient), and one
//! optimiser step updates the model on the first device; the next batch forks fresh replicas
//! from it, so the ranks never drift apart.
//!
//! Why not burn's all-reduce: burn 0.22's collective server (CUDA/NCCL only) synchronises at
//! the end of *every* backward pass of the backend, and a rank whose attack backward ends
//! while another rank has parameter gradients queued waits for that reduction, which cannot
//! start until the first rank reaches its own training backward: a deadlock that depends on
//! timing. Here the ranks share nothing while they attack, and the only meeting point is the
//! join before averaging, so there is nothing to deadlock. docs/gpu.md has the design and
//! what it costs (a weight copy per rank per batch).
//!
//! Batch norm: each replica normalises with its own share's statistics (as PyTorch's DDP
//! does without SyncBatchNorm), and the running statistics kept are the first rank's.

use std::ops::Range;

use burn::module::{ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::{Device, Tensor};
use rand::Rng as _;

use super::step::{
    at_step_scale, count_correct, ImageBatch, StepContext, StepOutput, TrainStep, TrainingMethod,
};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::rng;

/// A [`TrainingMethod`] run data-parallel over `devices` (the first is where the model lives).
pub struct DataParallel<T> {
    method: T,
    devices: Vec<Device>,
}

impl<T> DataParallel<T> {
    /// `method` over `devices`; the model being trained must live on `devices[0]`. At least
    /// two devices (one is plain training).
    pub fn new(method: T, devices: Vec<Device>) -> Result<Self> {
        if devices.len() < 2 {
            return Err(Error::config(format!(
                "data-parallel training needs at least 2 devices, got {}",
                devices.len()
            )));
        }
        Ok(Self { method, devices })
    }
}

/// Contiguous shares of `n` examples over `ranks`, sizes differing by at most one; ranks
/// that would get nothing (a batch smaller than the rank count) are left out.
pub fn shard_ranges(n: usize, ranks: usize) -> Vec<Range<usize>> {
    let ranks = ranks.max(1);
    let (base, extra) = (n / ranks, n % ranks);
    let mut start = 0;
    (0..ranks)
        .map(|r| {
            let len = base + usize::from(r < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// What one rank sends back: its gradients (on the first device), its mean loss, its correct
/// count and how many examples it had.
struct RankOutput {
    grads: GradientsParams,
    loss: f64,
    correct: usize,
    examples: usize,
}

/// One rank's work: the method's loss on its share against `replica`, and the gradients.
#[allow(clippy::too_many_arguments)]
fn run_rank<M: Classifier, T: TrainingMethod>(
    method: &T,
    replica: &M,
    (x, y): ImageBatch,
    device: &Device,
    home: &Device,
    threat: crate::threat::ThreatModel,
    seed: u64,
) -> RankOutput {
    let data_device = device.clone().without_autodiff();
    let (x, y) = (x.to_device(&data_device), y.to_device(&data_device));
    let examples = y.dims()[0];
    let mut rank_rng = rng::seeded(seed);
    let out = method.batch_loss(replica, x, y.clone(), threat, &mut rank_rng);
    let loss = f64::from(out.loss.clone().into_scalar::<f32>());
    let correct = count_correct(out.logits, y);
    let grads = GradientsParams::from_grads(out.loss.backward(), replica)
        .to_device(&home.clone().without_autodiff(), replica);
    RankOutput {
        grads,
        loss,
        correct,
        examples,
    }
}

impl<M: Classifier + 'static, T: TrainingMethod + Sync> TrainStep<M, ImageBatch>
    for DataParallel<T>
{
    fn step(
        &mut self,
        model: M,
        (x, y): ImageBatch,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput<M>> {
        let mut scaled = None;
        let method = at_step_scale(&self.method, ctx, &mut scaled);
        let ranges = shard_ranges(x.dims()[0], self.devices.len());
        // One seed per rank from the run's generator, so a resumed run repeats every attack.
        let seeds: Vec<u64> = ranges.iter().map(|_| ctx.rng.random()).collect();
        let share = |r: &Range<usize>| {
            (
                x.clone().narrow(0, r.start, r.len()),
                y.clone().narrow(0, r.start, r.len()),
            )
        };
        let (home, threat) = (&self.devices[0], ctx.threat);
        let outputs: Vec<RankOutput> = std::thread::scope(|scope| {
            let others: Vec<_> = ranges
                .iter()
                .enumerate()
                .skip(1)
                .map(|(r, range)| {
                    let device = &self.devices[r];
                    let replica = model.clone().fork(device);
                    let batch = share(range);
                    let seed = seeds[r];
                    scope.spawn(move || {
                        run_rank(method, &replica, batch, device, home, threat, seed)
                    })
                })
                .collect();
            let first = run_rank(
                method,
                &model,
                share(&ranges[0]),
                home,
                home,
                threat,
                seeds[0],
            );
            let mut all = vec![first];
            for handle in others {
                all.push(handle.join().map_err(|_| {
                    Error::config("a data-parallel rank panicked (see the message above)")
                })?);
            }
            Ok::<_, Error>(all)
        })?;
        self.update(model, outputs, ctx)
    }
}

impl<T> DataParallel<T> {
    /// Averages the ranks' gradients (weighted by examples) and updates `model` once.
    fn update<M: Classifier>(
        &self,
        model: M,
        outputs: Vec<RankOutput>,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput<M>> {
        let total: usize = outputs.iter().map(|o| o.examples).sum();
        let loss: f64 = outputs
            .iter()
            .map(|o| o.loss * o.examples as f64)
            .sum::<f64>()
            / total as f64;
        // The divergence check (and its message) of a single-device step, before any update.
        let loss = ctx.loss_value(&Tensor::<1>::from_floats([loss as f32], ctx.device))?;
        let correct = outputs.iter().map(|o| o.correct).sum();
        let mut average = WeightedAverage {
            ranks: outputs
                .into_iter()
                .map(|o| (o.grads, o.examples as f32 / total as f32))
                .collect(),
            out: GradientsParams::new(),
        };
        model.visit(&mut average);
        let model = ctx.optimizer.step(ctx.lr, model, average.out);
        Ok(StepOutput {
            model,
            loss,
            correct,
        })
    }
}

/// Sums each parameter's gradients over the ranks, each scaled by its rank's weight.
struct WeightedAverage {
    ranks: Vec<(GradientsParams, f32)>,
    out: GradientsParams,
}

impl ModuleVisitor for WeightedAverage {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let mut sum: Option<Tensor<D>> = None;
        for (grads, weight) in &mut self.ranks {
            if let Some(g) = grads.remove::<D>(param.id) {
                let g = g * *weight;
                sum = Some(match sum {
                    Some(s) => s + g,
                    None => g,
                });
            }
        }
        if let Some(s) = sum {
            self.out.register(param.id, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FgsmRs, OptimizerConfig, Standard};
    use super::*;
    use crate::model::{init_seeded, ModelKind, ModelShape, ZooModel};
    use crate::threat::ThreatModel;
    use burn::module::Module;
    use burn::prelude::{Int, TensorData};

    fn batch(n: usize, device: &Device) -> ImageBatch {
        let mut r = rng::seeded(11);
        let x = rng::uniform_vec(&mut r, n * 784, 0.0, 1.0);
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
        (
            Tensor::<4>::from_data(TensorData::new(x, [n, 1, 28, 28]), device),
            Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device),
        )
    }

    /// One step of `step` from `model` on `data`; the logits of the result on the batch.
    fn one_step(
        mut step: Box<dyn TrainStep<ZooModel, ImageBatch>>,
        model: ZooModel,
        data: ImageBatch,
        eps: f32,
    ) -> (Vec<f32>, StepOutput<ZooModel>) {
        let device = Device::flex();
        let mut optimizer = OptimizerConfig::sgd().build();
        let mut run_rng = rng::seeded(0);
        let mut ctx = StepContext {
            optimizer: &mut optimizer,
            lr: 0.1,
            threat: ThreatModel::linf(eps),
            step_scale: 1.0,
            rng: &mut run_rng,
            device: &device,
            epoch: 0,
            batch: 0,
            kept: "",
        };
        let out = step.step(model, data.clone(), &mut ctx).unwrap();
        let logits = out
            .model
            .valid()
            .logits(data.0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        (logits, out)
    }

    fn small_cnn(device: &Device) -> ZooModel {
        let shape = ModelShape::fashion_mnist();
        init_seeded(device, 5, || {
            ZooModel::new(ModelKind::SmallCnn, &shape, None, device)
        })
        .unwrap()
        .train()
    }

    #[test]
    fn two_ranks_update_the_model_as_one_device_does_on_the_whole_batch() {
        // 7 examples: shares of 4 and 3, so the weighting by share size is what makes the
        // average the whole batch's mean-loss gradient. small-cnn has no batch norm.
        let device = Device::flex();
        let model = small_cnn(&device);
        let data = batch(7, &device);
        let before = model
            .valid()
            .logits(data.0.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let (single, one) = one_step(Box::new(Standard), model.clone(), data.clone(), 0.0);
        let parallel_step = DataParallel::new(Standard, vec![device.clone(), device.clone()]);
        let (parallel, two) = one_step(Box::new(parallel_step.unwrap()), model, data, 0.0);
        let diff = single
            .iter()
            .zip(&parallel)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            diff < 1e-5,
            "data-parallel and single-device steps differ by {diff}"
        );
        let moved = before
            .iter()
            .zip(&single)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(moved > 1e-3, "the step did not change the model ({moved})");
        assert!(
            (one.loss - two.loss).abs() < 1e-5,
            "{} vs {}",
            one.loss,
            two.loss
        );
        assert_eq!(one.correct, two.correct);
    }

    #[test]
    fn an_adversarial_method_trains_on_three_ranks() {
        let device = Device::flex();
        let model = small_cnn(&device);
        let method = FgsmRs {
            alpha_factor: 1.25,
            random_start: true,
        };
        let step = DataParallel::new(method, vec![device.clone(); 3]).unwrap();
        let (logits, out) = one_step(Box::new(step), model, batch(8, &device), 0.1);
        assert!(out.loss.is_finite() && out.correct <= 8);
        assert!(logits.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn shares_cover_the_batch_in_order_and_differ_by_at_most_one() {
        assert_eq!(shard_ranges(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(shard_ranges(8, 2), vec![0..4, 4..8]);
        // Fewer examples than ranks: the empty ranks are left out.
        assert_eq!(shard_ranges(2, 4), vec![0..1, 1..2]);
        assert!(shard_ranges(0, 2).is_empty());
    }

    #[test]
    fn one_device_is_refused() {
        let e = DataParallel::new(super::super::Standard, vec![Device::flex()]).err();
        assert!(e.is_some_and(|e| e.to_string().contains("at least 2 devices")));
    }
}
