//! The report's adversarial-example grid: the run's own model attacked with PGD-20 at its
//! training radius on the first test images, so a reader sees what ε buys on real inputs.

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::data::RunReport;
use super::examples::{adversarial_grid, AdversarialExamples};
use crate::attack::{float_vec, int_vec, Attack, Pgd};
use crate::data::Dataset;
use crate::model::Classifier;
use crate::rng::AdvRng;
use crate::run::{files, RunDir};
use crate::threat::ThreatModel;

/// How many test images the report's grid shows.
pub const REPORT_EXAMPLES: usize = 8;
/// PGD iterations for the report's grid.
pub const REPORT_PGD_STEPS: usize = 20;

fn labels(t: &Tensor<1, Int>) -> Vec<u8> {
    int_vec(t).into_iter().map(|v| v as u8).collect()
}

/// Images per attacked batch in [`craft_examples`]: what bounds its memory whatever the
/// number of examples asked for (`advtrain attack -n 100000` used to attack them all in one
/// batch).
pub const CRAFT_BATCH: usize = 256;

/// Attacks the test examples `indices` of `data` with `attack` and keeps what a person
/// looks at: both images, the labels, both predictions and the confidence in the
/// adversarial one. The model runs in evaluation mode, on [`CRAFT_BATCH`] images at a time.
/// The report's grid and `advtrain attack` both go through here, so they show the same
/// thing.
pub fn craft_examples<M: Classifier, A: Attack>(
    model: &M,
    data: &Dataset,
    indices: &[usize],
    attack: &A,
    rng: &mut AdvRng,
    device: &Device,
) -> AdversarialExamples {
    let model = model.valid();
    let mut out = AdversarialExamples {
        channels: data.channels,
        height: data.height,
        width: data.width,
        clean: Vec::new(),
        adversarial: Vec::new(),
        labels: Vec::new(),
        clean_pred: Vec::new(),
        adv_pred: Vec::new(),
        adv_confidence: Vec::new(),
        eps: attack.threat().eps,
    };
    for chunk in indices.chunks(CRAFT_BATCH) {
        let n = chunk.len();
        let (x, y) = data.batch(chunk, device);
        let x_adv = attack.perturb(&model, x.clone(), y.clone(), rng);
        let clean_pred = model.logits(x.clone()).argmax(1).reshape([n]);
        let probs = softmax(model.logits(x_adv.clone()), 1);
        let (conf, adv_pred) = probs.max_dim_with_indices(1);
        out.clean.extend(float_vec(&x));
        out.adversarial.extend(float_vec(&x_adv));
        out.labels.extend(labels(&y));
        out.clean_pred.extend(labels(&clean_pred));
        out.adv_pred.extend(labels(&adv_pred.reshape([n])));
        out.adv_confidence.extend(float_vec(&conf.reshape([n])));
    }
    out
}

/// Attacks the first [`REPORT_EXAMPLES`] test images of the run's data set with PGD-20 at
/// the run's ε and returns the grid as PNG bytes. `Err` says in one line why there is no
/// grid (no config, data not readable, no model, no ε); it is a note, not a failure.
pub fn report_examples(run: &RunReport, device: &Device) -> Result<Vec<u8>, String> {
    let config = run
        .config
        .as_ref()
        .ok_or_else(|| format!("no {} in the run directory", files::CONFIG))?;
    if run.summary.eps.is_nan() || run.summary.eps <= 0.0 {
        return Err("the run has no attack radius (ε = 0)".into());
    }
    let run_dir = RunDir::open(&run.dir).map_err(|e| e.to_string())?;
    if !config.is_import_only() && !run_dir.file(files::MODEL).is_file() {
        return Err(format!("no {} in the run directory", files::MODEL));
    }
    let test = config.test_set(None, None).map_err(|e| {
        format!(
            "the run's data ({}) is not readable: {e}",
            config.data_dir.display()
        )
    })?;
    let n = test.len().min(REPORT_EXAMPLES);
    if n == 0 {
        return Err("the test set is empty".into());
    }
    let model = run_dir
        .load_model(config, device)
        .map_err(|e| e.to_string())?
        .valid();
    let threat = ThreatModel {
        norm: run.summary.norm,
        eps: run.summary.eps,
    };
    let attack = Pgd::new(threat).steps(REPORT_PGD_STEPS);
    let idx: Vec<usize> = (0..n).collect();
    let mut rng = crate::rng::seeded(0);
    let ex = craft_examples(&model, &test, &idx, &attack, &mut rng, device);
    let grid = adversarial_grid(&ex, &config.class_names_or(&test));
    let mut png = Vec::new();
    grid.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode the grid as PNG: {e}"))?;
    Ok(png)
}
