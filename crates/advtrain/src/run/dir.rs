//! [`RunDir`]: the one type that creates, opens, reads and writes a run directory, for image
//! and text runs alike, so every front end (the CLI, the report, a library user) agrees on
//! what a run holds and what "starting over" removes.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use burn::module::Module;
use burn::prelude::Device;
use burn::store::ModuleSnapshot;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{files, EvalRecord, RunConfig, RunModelKind, Summary};
use crate::error::{Error, Result};
use crate::eval::checks::Check;
use crate::io::{append_jsonl, read_json, read_jsonl, read_toml, write_atomic, write_json};
use crate::model::onnx::OnnxModel;
use crate::model::{self, ImageModel, ZooModel};
use crate::train::checkpoint::{self, Checkpoint};
use crate::train::{EpochMetrics, EpochObserver};

/// Where [`checkpoint::write`] stages a checkpoint before renaming it into place; a kill at
/// the wrong moment leaves it behind, and [`checkpoint::load_latest`] reads it.
const NEXT_CHECKPOINT: &str = ".checkpoint.next.ckpt";

/// What a run trains: the `task` key of `config.toml`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// An image classifier (`crate::run::RunConfig`). The default, because run
    /// directories written before the key existed are image runs.
    #[default]
    Image,
    /// A text classifier (`crate::text::run::TextRunConfig`).
    Text,
}

impl Task {
    /// The name in `config.toml` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Image => "image",
            Task::Text => "text",
        }
    }

    /// The task of a new run: `task` if given, else text for the named text data sets
    /// ([`crate::text::data::KNOWN_DATASETS`]) and image for everything else, so
    /// `--dataset spam-assassin` needs no `--task text`.
    pub fn infer(task: Option<&str>, dataset: Option<&str>) -> Result<Task> {
        match task {
            Some(t) => t.parse(),
            None => Ok(match dataset {
                Some(d) if crate::text::data::KNOWN_DATASETS.contains(&d) => Task::Text,
                _ => Task::Image,
            }),
        }
    }
}

impl FromStr for Task {
    type Err = Error;

    /// `image` or `text`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "image" => Ok(Task::Image),
            "text" => Ok(Task::Text),
            other => Err(Error::config(format!(
                "unknown --task '{other}': expected 'image' or 'text'"
            ))),
        }
    }
}

impl fmt::Display for Task {
    /// The name in `config.toml`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One evaluation record with the file it came from (its name is the evaluation's tag).
#[derive(Clone, Debug)]
pub struct EvalFile {
    /// The file name, e.g. `eval-pgd.json`.
    pub file: String,
    /// Its content.
    pub record: EvalRecord,
}

/// A run directory. Created empty by [`RunDir::create`] or found by [`RunDir::open`]; every
/// file it holds is reached through it (the names are in [`files`]).
///
/// A writer holds the directory's lock ([`RunDir::create`], [`RunDir::open_for_writing`]):
/// two `advtrain train` into one `--out` would otherwise leave the config of one and the
/// weights of the other, and an `eval` during training would score intermediate weights.
/// Readers that only read (the report) take no lock: every file is replaced atomically.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
    task: Task,
    lock: Option<Arc<RunLock>>,
}

impl PartialEq for RunDir {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.task == other.task
    }
}

impl Eq for RunDir {}

impl RunDir {
    /// Prepares `path` for a new run of `task`. A directory that already holds a run (a
    /// `config.toml` or a `model.safetensors`) is refused unless `force`; with `force`,
    /// every result of the previous model is removed first (weights, metrics, summary,
    /// checkpoints, the best model, evaluations, checks, text examples, the report), so
    /// nothing from it can be mistaken for a result of the new one. Other files are kept.
    pub fn create(path: impl Into<PathBuf>, task: Task, force: bool) -> Result<Self> {
        let path = path.into();
        if Self::holds_run(&path) && !force {
            return Err(Error::Record {
                path,
                message: "already holds a run; choose another --out or pass --force to \
                          overwrite it"
                    .into(),
            });
        }
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        let lock = RunLock::acquire(&path, "train")?;
        if Self::holds_run(&path) {
            if !force {
                return Err(Error::Record {
                    path,
                    message: "already holds a run; choose another --out or pass --force to \
                              overwrite it"
                        .into(),
                });
            }
            remove_results(&path)?;
        }
        remove_stale_temporaries(&path)?;
        Ok(Self {
            path,
            task,
            lock: Some(Arc::new(lock)),
        })
    }

    /// [`RunDir::open`], holding the directory's lock for `purpose` (e.g. `"eval"`) until
    /// the last clone of the returned value is dropped. Refused, naming the holder, while
    /// another process writes the run. Temporary files a killed writer left are removed.
    pub fn open_for_writing(path: impl Into<PathBuf>, purpose: &str) -> Result<Self> {
        let mut dir = Self::open(path)?;
        dir.lock = Some(Arc::new(RunLock::acquire(&dir.path, purpose)?));
        remove_stale_temporaries(&dir.path)?;
        Ok(dir)
    }

    /// Whether this value holds the directory's lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// Opens an existing run; its task comes from `config.toml` (no `task` key: an image
    /// run). Errors name what is missing: the directory, or its `config.toml`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if !path.is_dir() {
            return Err(Error::Record {
                path,
                message: "no such run directory".into(),
            });
        }
        match Self::task_of(&path)? {
            Some(task) => Ok(Self {
                path,
                task,
                lock: None,
            }),
            None => Err(Error::Record {
                path: path.join(files::CONFIG),
                message: "missing: this is not a run directory written by `advtrain train`".into(),
            }),
        }
    }

    /// The task recorded in `dir/config.toml`, `None` when there is no such file (a
    /// hand-made directory, which readers such as the report may still accept).
    pub fn task_of(dir: &Path) -> Result<Option<Task>> {
        #[derive(Deserialize)]
        struct Probe {
            task: Option<String>,
        }
        let config = dir.join(files::CONFIG);
        if !config.is_file() {
            return Ok(None);
        }
        match read_toml::<Probe>(&config)?.task {
            None => Ok(Some(Task::Image)),
            Some(t) => t.parse::<Task>().map(Some).map_err(|e| Error::Record {
                path: config,
                message: e.to_string(),
            }),
        }
    }

    /// Whether `dir` holds a run's files (what [`RunDir::create`] refuses to overwrite).
    pub fn holds_run(dir: &Path) -> bool {
        dir.join(files::CONFIG).exists() || dir.join(files::MODEL).exists()
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Image or text: which records the files hold.
    pub fn task(&self) -> Task {
        self.task
    }

    /// The path of `name` inside the run.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// An error unless this is a run of `task` (typed readers call it so that reading an
    /// image record from a text run names the mismatch instead of a missing field).
    pub fn expect_task(&self, task: Task) -> Result<()> {
        if self.task == task {
            return Ok(());
        }
        Err(Error::Record {
            path: self.file(files::CONFIG),
            message: format!("this is a {} run, not a {task} run", self.task),
        })
    }

    /// An image run's configuration.
    pub fn config(&self) -> Result<RunConfig> {
        self.expect_task(Task::Image)?;
        read_toml(&self.file(files::CONFIG))
    }

    /// Writes an image run's configuration (with `task = "image"`).
    pub fn write_config(&self, config: &RunConfig) -> Result<()> {
        self.expect_task(Task::Image)?;
        let config = RunConfig {
            task: Task::Image,
            ..config.clone()
        };
        crate::io::write_toml(&self.file(files::CONFIG), &config)
    }

    /// An image run's epochs so far (empty before the first one ends).
    pub fn metrics(&self) -> Result<Vec<EpochMetrics>> {
        self.expect_task(Task::Image)?;
        self.read_metrics()
    }

    /// The epochs in `metrics.jsonl` as `T` (empty when there is no file).
    pub fn read_metrics<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        let path = self.file(files::METRICS);
        if path.exists() {
            read_jsonl(&path)
        } else {
            Ok(Vec::new())
        }
    }

    /// Appends one finished epoch to `metrics.jsonl`.
    pub fn append_metrics<T: Serialize>(&self, record: &T) -> Result<()> {
        append_jsonl(&self.file(files::METRICS), record)
    }

    /// Replaces `metrics.jsonl` with `records`: a resumed run rewrites it from the
    /// checkpoint's history, since the file may hold epochs after the checkpoint.
    pub fn rewrite_metrics<T: Serialize>(&self, records: &[T]) -> Result<()> {
        let path = self.file(files::METRICS);
        let mut text = String::new();
        for r in records {
            let line = serde_json::to_string(r).map_err(|e| Error::Record {
                path: path.clone(),
                message: e.to_string(),
            })?;
            text.push_str(&line);
            text.push('\n');
        }
        write_atomic(&path, text.as_bytes())
    }

    /// An image run's summary, `None` before training has finished.
    pub fn summary(&self) -> Result<Option<Summary>> {
        self.expect_task(Task::Image)?;
        let path = self.file(files::SUMMARY);
        path.exists().then(|| read_json(&path)).transpose()
    }

    /// Writes an image run's summary.
    pub fn write_summary(&self, summary: &Summary) -> Result<()> {
        self.expect_task(Task::Image)?;
        write_json(&self.file(files::SUMMARY), summary)
    }

    /// An image run's evaluation records, sorted by file name.
    pub fn evals(&self) -> Result<Vec<EvalFile>> {
        self.expect_task(Task::Image)?;
        read_evals(&self.path)
    }

    /// SHA-256 of the weights this run's evaluations measure: `model.safetensors`, or an
    /// imported model's `model.onnx` before it is trained; `None` when neither exists.
    pub fn model_sha256(&self) -> Result<Option<String>> {
        model_sha256_of(&self.path)
    }

    /// `record` with the hash of the weights it measured (the run's current ones).
    pub fn stamp(&self, record: &EvalRecord) -> Result<EvalRecord> {
        let mut record = record.clone();
        record.model_sha256 = self.model_sha256()?;
        Ok(record)
    }

    /// Writes `eval-<tag>.json` with the current weights' hash ([`RunDir::stamp`]); returns
    /// its path. An earlier record with the same tag is replaced, unless it measured the
    /// same weights on the same data at more points: then nothing is written and the error
    /// says so (a weaker result never replaces a stronger one).
    pub fn write_eval(&self, tag: &str, record: &EvalRecord) -> Result<PathBuf> {
        let record = self.stamp(record)?;
        self.write_stamped(tag, &record)
    }

    /// [`RunDir::write_eval`] of a record already stamped.
    pub(crate) fn write_stamped(&self, tag: &str, record: &EvalRecord) -> Result<PathBuf> {
        self.expect_task(Task::Image)?;
        let path = self.file(&files::eval(tag));
        if let Ok(old) = read_json::<EvalRecord>(&path) {
            refuse_weaker(&path, (&old).into(), record.into(), "points")?;
        }
        write_json(&path, record)?;
        Ok(path)
    }

    /// [`RunDir::write_eval`], then recomputes `summary.json` when the evaluation is on the
    /// summary's test examples: the same number and the same data (`own_data`: the
    /// evaluation read the run's own data directory, which decides for summaries older than
    /// the data's fingerprint). The robust accuracy becomes the per-point worst case over
    /// every evaluation of these weights at the training threat model
    /// ([`Summary::combine`]). A subset, or data from elsewhere, never changes the headline.
    ///
    /// An imported model evaluated as it is has no summary until its first evaluation on
    /// its own data: that one makes it, and a later one on more test points replaces it.
    pub fn record_eval(
        &self,
        tag: &str,
        record: &EvalRecord,
        own_data: bool,
    ) -> Result<RecordedEval> {
        let record = self.stamp(record)?;
        let path = self.write_stamped(tag, &record)?;
        let config = self.config()?;
        let mut summary = self.summary()?;
        if config.is_import_only()
            && own_data
            && summary.as_ref().is_none_or(|s| record.n > s.n_test)
        {
            summary = Some(Summary::imported(&config, &record));
        }
        let Some(mut summary) = summary else {
            return Ok(RecordedEval::kept(path, "the run has no summary yet"));
        };
        let same_data = match (&summary.test_data_sha256, &record.test_data_sha256) {
            (Some(a), Some(b)) => a == b,
            (None, _) => own_data,
            (Some(_), None) => false,
        };
        if summary.n_test != record.n {
            let why = format!(
                "it covers {} of the {} test points",
                record.n, summary.n_test
            );
            return Ok(RecordedEval::kept(path, &why));
        }
        if !same_data {
            return Ok(RecordedEval::kept(path, "it is on other test data"));
        }
        summary.test_data_sha256 = record.test_data_sha256.clone();
        summary.combine(&self.evals()?, &record);
        self.write_summary(&summary)?;
        Ok(RecordedEval {
            path,
            summary_kept: None,
        })
    }

    /// Where an evaluation tagged `tag` keeps its state while it runs
    /// (`partial-eval-<tag>.json`): a killed `advtrain eval` resumes from it, and it is
    /// removed once the evaluation's record is written.
    pub fn eval_state_file(&self, tag: &str) -> PathBuf {
        self.file(&format!("partial-{}", files::eval(tag)))
    }

    /// Removes the state of an evaluation tagged `tag` (after its record is written, or to
    /// start it over); nothing to do if there is none.
    pub fn clear_eval_state(&self, tag: &str) -> Result<()> {
        let path = self.eval_state_file(tag);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        }
    }

    /// Writes the sanity checklist's results (`checks.json`) with the weights' hash, the
    /// test data's fingerprint and the number of points; returns its path. Zero points is
    /// an error, and a checklist of the same weights on more points is never replaced: then
    /// the result goes to `checks-n<N>.json` beside it.
    pub fn write_checks(
        &self,
        checks: &[Check],
        n: usize,
        test_data_sha256: Option<String>,
    ) -> Result<PathBuf> {
        if n == 0 {
            return Err(Error::config(
                "the sanity checklist ran on zero test points: nothing was checked",
            ));
        }
        let record = ChecksRecord {
            model_sha256: self.model_sha256()?,
            test_data_sha256,
            n,
            checks: checks.to_vec(),
        };
        let mut path = self.file(files::CHECKS);
        if let Ok(Some(old)) = read_checks_record(&path) {
            if old.model_sha256.is_some() && old.model_sha256 == record.model_sha256 && old.n > n {
                path = self.file(&format!("checks-n{n}.json"));
            }
        }
        write_json(&path, &record)?;
        Ok(path)
    }

    /// Saves `model` as the run's latest weights (`model.safetensors`).
    pub fn save_model<M: Module + ModuleSnapshot>(&self, model: &M) -> Result<()> {
        model::save_safetensors(model, &self.file(files::MODEL))
    }

    /// An [`EpochObserver`] that records each finished epoch here (a `metrics.jsonl` line
    /// and the latest weights), then hands it to `on_epoch` (a front end prints it).
    pub fn recorder<F: FnMut(&EpochMetrics)>(&self, on_epoch: F) -> EpochRecorder<'_, F> {
        EpochRecorder {
            run: self,
            on_epoch,
        }
    }

    /// The run's model before training: a zoo architecture freshly initialised (seed the
    /// device first for reproducible weights), or the run's `model.onnx` with its own
    /// weights.
    pub fn fresh_model(&self, config: &RunConfig, device: &Device) -> Result<ImageModel> {
        match config.model {
            RunModelKind::Zoo(kind) => Ok(ImageModel::Zoo(ZooModel::new(
                kind,
                &config.shape,
                config.normalization.clone(),
                device,
            )?)),
            RunModelKind::Onnx => {
                let options = config.onnx_options()?;
                let model = OnnxModel::load(&self.file(files::ONNX), &options, device)?;
                if model.shape() != &config.shape {
                    return Err(Error::Record {
                        path: self.file(files::ONNX),
                        message: format!(
                            "takes {:?}, but {} records {:?}",
                            model.shape(),
                            files::CONFIG,
                            config.shape
                        ),
                    });
                }
                Ok(ImageModel::Onnx(model))
            }
        }
    }

    /// The run's model: [`RunDir::fresh_model`] with `model.safetensors` loaded, or, for an
    /// imported model evaluated as it is, the ONNX file's own weights.
    pub fn load_model(&self, config: &RunConfig, device: &Device) -> Result<ImageModel> {
        self.load_model_from(config, files::MODEL, device)
    }

    /// [`RunDir::load_model`] with the weights of `file` (e.g. the best checkpoint's).
    pub fn load_model_from(
        &self,
        config: &RunConfig,
        file: &str,
        device: &Device,
    ) -> Result<ImageModel> {
        let fresh = self.fresh_model(config, device)?;
        let weights = self.file(file);
        if config.is_import_only() && !weights.exists() {
            if let ImageModel::Onnx(m) = &fresh {
                check_finite_initializers(&self.file(files::ONNX), m)?;
            }
            return Ok(fresh);
        }
        check_finite_weights(&weights)?;
        Ok(match fresh {
            ImageModel::Zoo(m) => ImageModel::Zoo(model::load_safetensors(m, &weights)?),
            ImageModel::Onnx(m) => ImageModel::Onnx(model::load_safetensors(m, &weights)?),
        })
    }

    /// Saves an image run's model as its latest weights (each variant as itself, so the
    /// file's names are those of the architecture).
    pub fn save_image_model(&self, model: &ImageModel) -> Result<()> {
        match model {
            ImageModel::Zoo(m) => self.save_model(m),
            ImageModel::Onnx(m) => self.save_model(m),
        }
    }

    /// The newest valid checkpoint, its file, and a warning for each damaged one passed
    /// over ([`checkpoint::load_latest`]).
    pub fn latest_checkpoint(&self) -> Result<(Checkpoint, PathBuf, Vec<String>)> {
        checkpoint::load_latest(&self.path)
    }
}

/// What a stored result measured, to tell a stronger one from a weaker.
pub(crate) struct Measured<'a> {
    /// The weights' hash.
    pub model: Option<&'a str>,
    /// The test data's fingerprint.
    pub data: Option<&'a str>,
    /// Points (or texts) evaluated.
    pub n: usize,
}

impl<'a> From<&'a EvalRecord> for Measured<'a> {
    fn from(r: &'a EvalRecord) -> Self {
        Measured {
            model: r.model_sha256.as_deref(),
            data: r.test_data_sha256.as_deref(),
            n: r.n,
        }
    }
}

/// An error when `new` would replace `old` at `path` although `old` measured the same
/// weights on the same data at more points: a weaker result never replaces a stronger one.
pub(crate) fn refuse_weaker(path: &Path, old: Measured, new: Measured, unit: &str) -> Result<()> {
    let same = old.model.is_some() && old.model == new.model && old.data == new.data;
    if same && old.n > new.n {
        return Err(Error::Record {
            path: path.to_path_buf(),
            message: format!(
                "already holds this evaluation of the same model on {} {unit}; a result on \
                 {} {unit} does not replace it",
                old.n, new.n
            ),
        });
    }
    Ok(())
}

/// Where [`RunDir::record_eval`] wrote a record, and why `summary.json` was left as it was,
/// if it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEval {
    /// The `eval-<tag>.json` written.
    pub path: PathBuf,
    /// Why the summary was not recomputed from it (`None`: it was).
    pub summary_kept: Option<String>,
}

impl RecordedEval {
    fn kept(path: PathBuf, why: &str) -> Self {
        Self {
            path,
            summary_kept: Some(why.to_string()),
        }
    }
}

/// `checks.json`: the sanity checklist with what it measured, so a report shows it only
/// for the weights it checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChecksRecord {
    /// SHA-256 of the weights checked ([`RunDir::model_sha256`]).
    pub model_sha256: Option<String>,
    /// Fingerprint of the test points ([`crate::data::Dataset::fingerprint`]).
    pub test_data_sha256: Option<String>,
    /// Test points the checks ran on.
    pub n: usize,
    /// The checks.
    pub checks: Vec<Check>,
}

/// Reads a checklist file: the current format, or the bare list older versions wrote
/// (then nothing is known of the weights or points it measured). `None` when absent.
pub fn read_checks_record(path: &Path) -> Result<Option<ChecksRecord>> {
    if !path.exists() {
        return Ok(None);
    }
    let value: serde_json::Value = read_json(path)?;
    let parsed = if value.is_array() {
        serde_json::from_value::<Vec<Check>>(value).map(|checks| ChecksRecord {
            model_sha256: None,
            test_data_sha256: None,
            n: 0,
            checks,
        })
    } else {
        serde_json::from_value::<ChecksRecord>(value)
    };
    parsed.map(Some).map_err(|e| Error::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The checklist of `dir`'s current weights: `checks.json` unless it records other
/// weights (a run trained again since), which a report must not show as this model's.
pub fn current_checks(dir: &Path) -> Result<Option<Vec<Check>>> {
    let Some(record) = read_checks_record(&dir.join(files::CHECKS))? else {
        return Ok(None);
    };
    let current = model_sha256_of(dir)?;
    match (&record.model_sha256, &current) {
        (Some(a), Some(b)) if a != b => Ok(None),
        _ => Ok(Some(record.checks)),
    }
}

/// Every `eval-*.json` of `dir` that measured its current weights (or records no weights,
/// being older than the hash): what a report may show as this model's results.
pub fn current_evals(dir: &Path) -> Result<Vec<EvalFile>> {
    let current = model_sha256_of(dir)?;
    Ok(read_evals(dir)?
        .into_iter()
        .filter(|e| match (&e.record.model_sha256, &current) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        })
        .collect())
}

/// SHA-256 of `dir`'s weights: those of `model.safetensors` ([`weights_sha256`]), else the
/// bytes of `model.onnx`.
pub(crate) fn model_sha256_of(dir: &Path) -> Result<Option<String>> {
    let weights = dir.join(files::MODEL);
    if weights.exists() {
        return weights_sha256(&weights).map(Some);
    }
    crate::io::sha256_file(&dir.join(files::ONNX))
}

/// SHA-256 of a safetensors file's tensors (names, types, shapes and bytes, by name), not
/// of its bytes: burn writes the header's metadata in hash-map order, so the same weights
/// saved twice differ as files. A file that does not parse hashes as its bytes.
fn weights_sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let Ok(tensors) = safetensors::SafeTensors::deserialize(&bytes) else {
        return Ok(crate::io::sha256_hex(&bytes));
    };
    let mut named = tensors.tensors();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hash = Sha256::new();
    for (name, view) in named {
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update(format!("{:?}{:?}", view.dtype(), view.shape()).as_bytes());
        hash.update((view.data().len() as u64).to_le_bytes());
        hash.update(view.data());
    }
    Ok(crate::io::hex(&hash.finalize()))
}

/// The lock file inside a run directory (never removed: removing it while held would let a
/// second writer in).
pub const LOCK_FILE: &str = ".advtrain.lock";

/// An exclusive lock on a run directory, held until dropped (the OS releases it when the
/// process dies, so a killed run never leaves the directory locked). The file names the
/// holder, for the message a second writer gets.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes `dir`'s lock for `purpose`, or refuses at once, naming the holder.
    pub fn acquire(dir: &Path, purpose: &str) -> Result<Self> {
        use std::io::{Read, Seek, Write};
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if let Err(e) = file.try_lock() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another advtrain process"
            } else {
                holder
            };
            return Err(Error::Record {
                path: dir.to_path_buf(),
                message: match e {
                    std::fs::TryLockError::WouldBlock => format!(
                        "is in use ({holder}); wait for it to finish, or choose another run \
                         directory"
                    ),
                    std::fs::TryLockError::Error(e) => format!("cannot lock {LOCK_FILE}: {e}"),
                },
            });
        }
        let note = format!("advtrain {purpose}, process {}", std::process::id());
        let written = file
            .set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(note.as_bytes()));
        written.map_err(|e| Error::io(&path, e))?;
        Ok(Self { _file: file })
    }
}

/// Removes the temporary files ([`crate::io::write_atomic`]'s `.<name>.tmp-<pid>`) that a
/// writer killed mid-write left in `dir`. Called with the lock held, so no live writer owns
/// them.
fn remove_stale_temporaries(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// An error naming the first tensor of the safetensors file `path` that holds NaN or
/// infinite values: such weights give NaN logits, which would otherwise read as a model
/// that no attack can move.
fn check_finite_weights(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let Ok(tensors) = safetensors::SafeTensors::deserialize(&bytes) else {
        return Ok(()); // the loader reports a damaged file
    };
    for (name, view) in tensors.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            continue;
        }
        let bad = view
            .data()
            .chunks_exact(4)
            .filter(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite())
            .count();
        if bad > 0 {
            return Err(non_finite(path, &name, bad));
        }
    }
    Ok(())
}

/// [`check_finite_weights`] for an imported model's own ONNX initializers.
fn check_finite_initializers(path: &Path, model: &OnnxModel) -> Result<()> {
    for (name, _, values) in model.initializer_values() {
        let bad = values.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(non_finite(path, &name, bad));
        }
    }
    Ok(())
}

fn non_finite(path: &Path, tensor: &str, bad: usize) -> Error {
    Error::Record {
        path: path.to_path_buf(),
        message: format!(
            "tensor '{tensor}' holds {bad} NaN or infinite value(s): these weights are damaged \
             (a diverged training run?) and every prediction of them would be meaningless"
        ),
    }
}

/// Records each finished epoch in a run directory; see [`RunDir::recorder`].
pub struct EpochRecorder<'a, F> {
    run: &'a RunDir,
    on_epoch: F,
}

impl<M: Module + ModuleSnapshot, F: FnMut(&EpochMetrics)> EpochObserver<M>
    for EpochRecorder<'_, F>
{
    fn on_epoch(&mut self, metrics: &EpochMetrics, model: &M) -> Result<()> {
        self.run.append_metrics(metrics)?;
        self.run.save_model(model)?;
        (self.on_epoch)(metrics);
        Ok(())
    }
}

/// Every `eval-*.json` of `dir`, sorted by file name; a file that does not parse is an error
/// naming it.
pub(crate) fn read_evals(dir: &Path) -> Result<Vec<EvalFile>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("eval-") && n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|file| {
            let record = read_json::<EvalRecord>(&dir.join(&file))?;
            Ok(EvalFile { file, record })
        })
        .collect()
}

/// Whether a file in a run directory is a result of its model (removed by a forced
/// [`RunDir::create`]); the configuration goes too, since the new run writes its own.
fn is_result(name: &str) -> bool {
    const FIXED: [&str; 12] = [
        files::CONFIG,
        files::MODEL,
        files::ONNX,
        files::METRICS,
        files::SUMMARY,
        files::BEST_MODEL,
        files::CHECKS,
        files::SURROGATE,
        files::REPORT,
        checkpoint::CHECKPOINT,
        checkpoint::PREVIOUS,
        NEXT_CHECKPOINT,
    ];
    FIXED.contains(&name)
        || (name.starts_with("eval-") && name.ends_with(".json"))
        || (name.starts_with("checks-n") && name.ends_with(".json"))
        || (name.starts_with("audit") && name.ends_with(".json"))
        || (name.starts_with("examples-") && name.ends_with(".jsonl"))
        || (name.starts_with("partial-eval-") && name.ends_with(".json"))
        || (name.starts_with('.') && name.contains(".tmp-"))
}

fn remove_results(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if !is_result(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(&path, e));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("advtrain-rundir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn create_refuses_a_run_unless_forced_and_force_removes_every_result() {
        let dir = scratch("create");
        let run = RunDir::create(&dir, Task::Text, false).unwrap();
        assert_eq!(run.task(), Task::Text);
        assert!(run.is_locked());
        let err = RunLock::acquire(&dir, "eval").unwrap_err().to_string();
        assert!(err.contains("is in use (advtrain train, process"), "{err}");
        drop(run);
        let results = [
            "config.toml",
            "model.safetensors",
            "metrics.jsonl",
            "summary.json",
            "checkpoint.ckpt",
            "checkpoint.prev.ckpt",
            ".checkpoint.next.ckpt",
            "model-best.safetensors",
            "eval-pgd.json",
            "eval-deepwordbug-b2.json",
            "checks.json",
            "surrogate-standard.safetensors",
            "examples-hotflip-b2.jsonl",
            "report.html",
        ];
        for f in results.iter().chain(&["notes.txt"]) {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let err = RunDir::create(&dir, Task::Image, false).unwrap_err();
        assert!(err.to_string().contains("already holds a run"), "{err}");
        assert!(
            dir.join("model.safetensors").exists(),
            "a refusal removed files"
        );
        RunDir::create(&dir, Task::Image, true).unwrap();
        for f in results {
            assert!(!dir.join(f).exists(), "{f} survived --force");
        }
        assert!(
            dir.join("notes.txt").exists(),
            "a file of the user's was removed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_result_on_fewer_points_never_replaces_one_on_more_of_the_same_weights_and_data() {
        let path = Path::new("eval-pgd.json");
        let m = |model, data, n| Measured { model, data, n };
        let (a, b) = (Some("a"), Some("b"));
        let err = refuse_weaker(path, m(a, a, 100), m(a, a, 10), "points").unwrap_err();
        assert!(err.to_string().contains("on 100 points"), "{err}");
        // Same or more points, other weights, other data, or an old record without a hash:
        // the new record is written.
        for (old, new) in [
            (m(a, a, 100), m(a, a, 100)),
            (m(a, a, 10), m(a, a, 100)),
            (m(a, a, 100), m(b, a, 10)),
            (m(a, a, 100), m(a, b, 10)),
            (m(None, a, 100), m(None, a, 10)),
        ] {
            assert!(refuse_weaker(path, old, new, "points").is_ok());
        }
    }

    #[test]
    fn open_reads_the_task_and_names_what_is_missing() {
        let dir = scratch("open");
        let err = RunDir::open(&dir).unwrap_err().to_string();
        assert!(err.contains("no such run directory"), "{err}");
        std::fs::create_dir_all(&dir).unwrap();
        let err = RunDir::open(&dir).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
        // No `task` key: a run written before the key existed, an image run.
        std::fs::write(dir.join("config.toml"), "dataset = \"mnist\"\n").unwrap();
        assert_eq!(RunDir::open(&dir).unwrap().task(), Task::Image);
        std::fs::write(dir.join("config.toml"), "task = \"text\"\n").unwrap();
        let run = RunDir::open(&dir).unwrap();
        assert_eq!(run.task(), Task::Text);
        assert!(run.config().unwrap_err().to_string().contains("text run"));
        std::fs::write(dir.join("config.toml"), "task = \"audio\"\n").unwrap();
        let err = RunDir::open(&dir).unwrap_err().to_string();
        assert!(
            err.contains("audio") && err.contains("config.toml"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_task_of_a_new_run_follows_the_flag_then_the_data_set() {
        assert_eq!(Task::infer(None, None).unwrap(), Task::Image);
        assert_eq!(Task::infer(None, Some("mnist")).unwrap(), Task::Image);
        assert_eq!(
            Task::infer(None, Some("spam-assassin")).unwrap(),
            Task::Text
        );
        assert_eq!(Task::infer(Some("text"), None).unwrap(), Task::Text);
        assert!(Task::infer(Some("audio"), None).is_err());
    }
}
