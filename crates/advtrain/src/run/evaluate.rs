//! An evaluation as a run records it: an [`AttackSpec`] run on a data set, with its
//! ε-curve if asked for, turned into the [`EvalRecord`] that `eval-<tag>.json` holds.

use std::path::Path;

use super::EvalRecord;
use crate::data::Dataset;
use crate::error::Error;
use crate::error::Result;
use crate::eval::resume::EvalState;
use crate::eval::spec::AttackSpec;
use crate::eval::spec::Checkpoint;
use crate::eval::RobustEval;
use crate::io::{read_json, write_atomic};
use crate::model::Classifier;
use crate::progress::Progress;
use crate::rng::AdvRng;
use crate::threat::ThreatModel;

/// What to evaluate and how.
#[derive(Clone, Copy, Debug)]
pub struct EvalRequest<'a> {
    /// The attack (or ensemble).
    pub spec: &'a AttackSpec,
    /// Where it attacks.
    pub threat: ThreatModel,
    /// Also measure robust accuracy at these radii (same norm), if given.
    pub eps_curve: Option<&'a [f32]>,
    /// Examples per forward pass.
    pub batch_size: usize,
    /// The seed `rng` was made from, written into the record so it can be replayed.
    pub seed: u64,
    /// Keep the attack's state in this file after every batch and resume from it if it
    /// exists ([`crate::eval::resume`]); `None`: not resumable.
    pub state_file: Option<&'a Path>,
}

/// An evaluation's result and its record.
#[derive(Clone, Debug)]
pub struct SpecEvaluation {
    /// What the attack (or ensemble) measured.
    pub result: RobustEval,
    /// The record to write (with the ensemble's stages and the ε-curve, if any).
    pub record: EvalRecord,
}

/// Runs `request` on `model` over `data` and builds its record. `rng` is drawn from in
/// order (the attack, then the curve), so the caller can go on using it for further
/// measurements on the same stream, as `advtrain eval --checks` does.
pub fn evaluate_spec<M: Classifier>(
    model: &M,
    data: &Dataset,
    request: EvalRequest<'_>,
    class_names: &[String],
    rng: &mut AdvRng,
    progress: &dyn Progress,
) -> Result<SpecEvaluation> {
    let EvalRequest {
        spec,
        threat,
        batch_size,
        seed,
        ..
    } = request;
    let saved = match request.state_file {
        Some(path) if path.exists() => Some(read_state(path)?),
        _ => None,
    };
    let mut save = |state: &EvalState| match request.state_file {
        Some(path) => write_state(path, state),
        None => Ok(()),
    };
    let checkpoint = Checkpoint {
        saved,
        save: &mut save,
    };
    let outcome = spec.run_resumable(model, data, threat, batch_size, checkpoint, rng, progress)?;
    let result = outcome.eval;
    let mut record = match &outcome.ensemble {
        Some(ens) => {
            let mut record =
                EvalRecord::from_eval(&ens.name, &result, None, None, seed, class_names);
            record.stages = Some(ens.stages.clone());
            record.broken_by = Some(ens.broken_by.clone());
            record
        }
        None => EvalRecord::from_eval(
            &spec.name,
            &result,
            spec.kind.is_iterative().then_some(spec.steps),
            spec.kind.has_restarts().then_some(spec.restarts),
            seed,
            class_names,
        ),
    };
    record.test_data_sha256 = Some(data.fingerprint());
    if let Some(eps_values) = request.eps_curve {
        let norm = threat.norm;
        record.eps_curve =
            Some(spec.curve(model, data, norm, eps_values, batch_size, rng, progress)?);
    }
    Ok(SpecEvaluation { result, record })
}

/// A saved evaluation state, with an error that says what to do with a damaged one.
fn read_state(path: &Path) -> Result<EvalState> {
    read_json(path).map_err(|e| {
        Error::config(format!(
            "cannot resume from {}: {e}; delete it (or pass --fresh) to start the evaluation over",
            path.display()
        ))
    })
}

/// Writes the state atomically: a process killed mid-write leaves the previous state.
fn write_state(path: &Path, state: &EvalState) -> Result<()> {
    let bytes = serde_json::to_vec(state).map_err(|e| Error::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}
