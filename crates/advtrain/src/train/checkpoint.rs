//! Crash-safe training checkpoints.
//!
//! A checkpoint holds everything the next batch depends on: weights, optimiser state, the
//! position in the epoch, every random generator, the attack step scale, the monitor's best
//! checkpoint and the metrics so far. A resumed run therefore continues exactly where the
//! checkpoint was taken, and on a deterministic backend ends bit-identical to a run that was
//! never interrupted.
//!
//! File layout (`checkpoint.ckpt`, little-endian):
//! `"ADVCKPT1"`, u64 JSON length, the JSON [`TrainState`], u32 blob count, then per blob
//! u32 name length, name, u64 length, bytes; last a u32 CRC-32 of everything before it.
//! A truncated or corrupt file fails its length or checksum test and is reported; the
//! previous checkpoint (`checkpoint.prev.ckpt`) is kept beside it for that case. Each file
//! is written to a temporary name, fsynced and renamed, so a crash never leaves a
//! half-written file under either name.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::{list_param_ids, Module, ModuleMapper, Param, ParamId};
use burn::prelude::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::monitor::MonitorEvent;
use super::EpochMetrics;
use crate::error::{Error, Result};
use crate::rng::RngState;

/// The newest checkpoint of a run directory.
pub const CHECKPOINT: &str = "checkpoint.ckpt";
/// The one before it, kept in case the newest is damaged.
pub const PREVIOUS: &str = "checkpoint.prev.ckpt";

const MAGIC: &[u8; 8] = b"ADVCKPT1";
/// Version of [`TrainState`]'s layout.
pub const FORMAT_VERSION: u32 = 1;

/// The monitor's best checkpoint so far (by validation PGD accuracy).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestRecord {
    /// 1-based epoch whose end it was taken at.
    pub epoch: usize,
    /// What "best" was judged by (validation PGD accuracy for adversarial methods, clean
    /// accuracy otherwise), and its value.
    pub criterion: String,
    /// The criterion's value at that epoch, a fraction in `[0, 1]`; a later epoch replaces
    /// this record only by beating it strictly.
    pub value: f64,
    /// Validation clean accuracy at that epoch (`None` without a validation split).
    pub val_clean_accuracy: Option<f64>,
    /// Validation robust accuracy at that epoch (`None` when robustness was not measured);
    /// the monitor's PGD-drop alarm compares against it.
    pub val_pgd_accuracy: Option<f64>,
}

/// Where training stands, as plain data (the checkpoint's JSON part).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Layout version of this record; [`Checkpoint::from_bytes`] accepts only
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The configuration the run was started with, as the task records it (a resume must
    /// match it).
    pub config: serde_json::Value,
    /// 0-based index of the epoch in progress (`config.epochs` when training is done).
    pub epoch: usize,
    /// Batches of that epoch already trained on.
    pub batch: usize,
    /// The main generator before the epoch's shuffle (the shuffle is replayed from it).
    pub rng_epoch_start: RngState,
    /// The main generator now.
    pub rng: RngState,
    /// The generator of validation and monitor attacks.
    pub val_rng: RngState,
    /// Running sums of the epoch in progress: the batches' mean losses, each weighted by
    /// its number of examples.
    pub loss_sum: f64,
    /// Examples of the epoch so far that the method's step counted as correct.
    pub correct: usize,
    /// Examples of the epoch trained on so far.
    pub seen: usize,
    /// Wall-clock seconds spent on the epoch in progress before this checkpoint (summed
    /// over the processes that ran it).
    pub epoch_seconds: f64,
    /// Of those, seconds in the batch loop (no end-of-epoch validation): the denominator of
    /// the epoch's images per second.
    pub train_seconds: f64,
    /// Seconds of training spent before this checkpoint (all epochs).
    pub total_seconds: f64,
    /// Multiplier on the method's attack step size (reduced by rollbacks).
    pub step_scale: f32,
    /// Rollbacks the monitor has made so far in the run.
    pub rollbacks: usize,
    /// Metrics of every finished epoch, in order.
    pub history: Vec<EpochMetrics>,
    /// Monitor events of the epoch in progress.
    pub pending_events: Vec<MonitorEvent>,
    /// Health checks taken inside the epoch in progress (`monitor.every_batches`), moved
    /// into its metrics at the epoch's end.
    pub pending_checks: Vec<super::monitor::HealthCheck>,
    /// The best checkpoint so far (`None` before the first validation that measured one).
    pub best: Option<BestRecord>,
    /// The highest gradient alignment the monitor has seen.
    #[serde(default)]
    pub best_alignment: Option<f64>,
    /// The model's parameter ids in traversal order (the optimiser state is keyed by them).
    pub param_ids: Vec<u64>,
    /// Why the monitor stopped the run, if it did.
    pub stopped: Option<String>,
    /// Learning rate of the last batch trained (recorded in the epoch's metrics).
    #[serde(default)]
    pub last_lr: f64,
    /// ε of the last batch trained (recorded in the epoch's metrics).
    #[serde(default)]
    pub last_eps: f32,
    /// Fingerprint of the training and validation data (`TrainTask::data_fingerprint`); a
    /// resume on other data is refused. Checkpoints written before it existed have none.
    #[serde(default)]
    pub data_sha256: Option<String>,
}

impl TrainState {
    /// The state of a run about to start.
    pub fn fresh(
        config: serde_json::Value,
        rng: &crate::rng::AdvRng,
        val_rng: &crate::rng::AdvRng,
        param_ids: Vec<u64>,
    ) -> Self {
        TrainState {
            format_version: FORMAT_VERSION,
            config,
            epoch: 0,
            batch: 0,
            rng_epoch_start: RngState::of(rng),
            rng: RngState::of(rng),
            val_rng: RngState::of(val_rng),
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
            epoch_seconds: 0.0,
            train_seconds: 0.0,
            total_seconds: 0.0,
            step_scale: 1.0,
            rollbacks: 0,
            history: Vec::new(),
            pending_events: Vec::new(),
            pending_checks: Vec::new(),
            best: None,
            best_alignment: None,
            param_ids,
            stopped: None,
            last_lr: 0.0,
            last_eps: 0.0,
            data_sha256: None,
        }
    }

    /// Moves on to the next epoch: its running sums start at zero.
    pub fn next_epoch(&mut self, total_seconds: f64) {
        self.epoch += 1;
        self.batch = 0;
        self.loss_sum = 0.0;
        self.correct = 0;
        self.seen = 0;
        self.epoch_seconds = 0.0;
        self.train_seconds = 0.0;
        self.total_seconds = total_seconds;
    }
}

/// A checkpoint: its state and its binary parts (`model`, `optimizer`, and optionally
/// `best_model`, `best_optimizer`, `free_delta`).
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Where training stands (the file's JSON part).
    pub state: TrainState,
    /// Binary parts by name: weights and optimiser state as serialised bytes, plus any a
    /// task saves (see [`crate::train::TrainTask::save_state`]); `from_bytes` insists on
    /// `model` and `optimizer`.
    pub blobs: BTreeMap<String, Vec<u8>>,
}

impl Checkpoint {
    /// The file's bytes, checksum included.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(&self.state)
            .map_err(|e| Error::config(format!("cannot encode checkpoint state: {e}")))?;
        let mut out = Vec::with_capacity(
            json.len() + self.blobs.values().map(|b| b.len() + 64).sum::<usize>() + 64,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&(self.blobs.len() as u32).to_le_bytes());
        for (name, bytes) in &self.blobs {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Parses and verifies a checkpoint file's bytes; the error says what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() < MAGIC.len() + 12 {
            return Err(format!("truncated: only {} bytes", bytes.len()));
        }
        if &bytes[..8] != MAGIC {
            return Err("not an advtrain checkpoint (bad magic)".into());
        }
        let (body, tail) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(tail.try_into().expect("4 bytes"));
        let mut r = Reader {
            bytes: body,
            pos: 8,
        };
        let json_len = r.u64()? as usize;
        let json = r.take(json_len)?;
        let count = r.u32()? as usize;
        let mut blobs = BTreeMap::new();
        for _ in 0..count {
            let name_len = r.u32()? as usize;
            let name = String::from_utf8(r.take(name_len)?.to_vec())
                .map_err(|_| "corrupt: blob name is not UTF-8".to_string())?;
            let len = r.u64()? as usize;
            blobs.insert(name, r.take(len)?.to_vec());
        }
        if r.pos != body.len() {
            return Err(format!(
                "corrupt: {} unexpected bytes before the checksum",
                body.len() - r.pos
            ));
        }
        let actual = crc32fast::hash(body);
        if actual != stored {
            return Err(format!(
                "checksum mismatch (stored {stored:08x}, computed {actual:08x}): the file is corrupt"
            ));
        }
        let state: TrainState =
            serde_json::from_slice(json).map_err(|e| format!("corrupt state record: {e}"))?;
        if state.format_version != FORMAT_VERSION {
            return Err(format!(
                "format version {} is not the supported {FORMAT_VERSION}",
                state.format_version
            ));
        }
        for needed in ["model", "optimizer"] {
            if !blobs.contains_key(needed) {
                return Err(format!("incomplete: no '{needed}' part"));
            }
        }
        Ok(Checkpoint { state, blobs })
    }

    /// How far training had got: (epoch, batch).
    pub fn position(&self) -> (usize, usize) {
        (self.state.epoch, self.state.batch)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "truncated: needs {} more bytes at offset {}, file has {}",
                n,
                self.pos,
                self.bytes.len() + 4
            )),
        }
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
}

/// Writes `ckpt` as the newest checkpoint of `dir`; the one it replaces becomes the
/// previous one. Each step is atomic, so at any moment at least one complete checkpoint
/// exists under one of the two names.
pub fn write(dir: &Path, ckpt: &Checkpoint) -> Result<()> {
    let bytes = ckpt.to_bytes()?;
    let next = dir.join(".checkpoint.next.ckpt");
    crate::io::write_atomic(&next, &bytes)?;
    let current = dir.join(CHECKPOINT);
    if current.exists() {
        crate::io::rename(&current, &dir.join(PREVIOUS)).map_err(|e| Error::io(&current, e))?;
    }
    crate::io::rename(&next, &current).map_err(|e| Error::io(&current, e))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads and verifies one checkpoint file.
pub fn read(path: &Path) -> Result<Checkpoint> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    Checkpoint::from_bytes(&bytes).map_err(|message| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    })
}

/// The most advanced valid checkpoint of `dir`, with a warning for each damaged one it
/// passed over. Errors if there is none, naming what was wrong with each file.
pub fn load_latest(dir: &Path) -> Result<(Checkpoint, PathBuf, Vec<String>)> {
    let candidates = [
        dir.join(CHECKPOINT),
        dir.join(".checkpoint.next.ckpt"),
        dir.join(PREVIOUS),
    ];
    let mut warnings = Vec::new();
    let mut best: Option<(Checkpoint, PathBuf)> = None;
    for path in candidates.iter().filter(|p| p.exists()) {
        match read(path) {
            Ok(c) => {
                if best
                    .as_ref()
                    .is_none_or(|(b, _)| c.position() > b.position())
                {
                    best = Some((c, path.clone()));
                }
            }
            Err(e) => warnings.push(format!("{e}; skipping it")),
        }
    }
    match best {
        Some((c, p)) => Ok((c, p, warnings)),
        None if warnings.is_empty() => Err(Error::Checkpoint {
            path: dir.join(CHECKPOINT),
            message: "no checkpoint in this run directory (was it trained by an older advtrain, or did it fail before its first checkpoint?)".into(),
        }),
        None => Err(Error::Checkpoint {
            path: dir.join(CHECKPOINT),
            message: format!("no usable checkpoint: {}", warnings.join("; ")),
        }),
    }
}

/// The module's parameter ids, in traversal order.
pub fn param_ids<M: Module>(module: &M) -> Vec<u64> {
    list_param_ids(module)
        .into_iter()
        .map(|id| id.val())
        .collect()
}

/// Gives the module's parameters the ids `ids` (traversal order), so an optimiser state
/// saved with those ids applies to a freshly built module.
pub fn assign_param_ids<M: Module>(module: M, ids: &[u64]) -> Result<M> {
    let have = list_param_ids(&module).len();
    if have != ids.len() {
        return Err(Error::config(format!(
            "checkpoint has {} parameters, the model {have}",
            ids.len()
        )));
    }
    let mut mapper = IdMapper { ids, next: 0 };
    Ok(module.map(&mut mapper))
}

struct IdMapper<'a> {
    ids: &'a [u64],
    next: usize,
}

impl IdMapper<'_> {
    fn id(&mut self) -> ParamId {
        let id = ParamId::from(self.ids[self.next]);
        self.next += 1;
        id
    }
}

impl ModuleMapper for IdMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.id(), value, mapper)
    }
    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.id(), value, mapper)
    }
    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<D, Bool>>,
    ) -> Param<Tensor<D, Bool>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.id(), value, mapper)
    }
}
