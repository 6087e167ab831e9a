//! [`RunDir`]: the one type that creates, opens, reads and writes a run directory, for image
//! and text runs alike, so every front end (the CLI, the report, a library user) agrees on
//! what a run holds and what "starting over" removes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
    task: Task,
}

impl RunDir {
    /// Prepares `path` for a new run of `task`. A directory that already holds a run (a
    /// `config.toml` or a `model.safetensors`) is refused unless `force`; with `force`,
    /// every result of the previous model is removed first (weights, metrics, summary,
    /// checkpoints, the best model, evaluations, checks, text examples, the report), so
    /// nothing from it can be mistaken for a result of the new one. Other files are kept.
    pub fn create(path: impl Into<PathBuf>, task: Task, force: bool) -> Result<Self> {
        let path = path.into();
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
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Self { path, task })
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
            Some(task) => Ok(Self { path, task }),
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

    /// Writes `eval-<tag>.json` (replacing an earlier one with the same tag); returns its
    /// path.
    pub fn write_eval(&self, tag: &str, record: &EvalRecord) -> Result<PathBuf> {
        self.expect_task(Task::Image)?;
        let path = self.file(&files::eval(tag));
        write_json(&path, record)?;
        Ok(path)
    }

    /// [`RunDir::write_eval`], then, when it covers the summary's test examples (a subset
    /// evaluation must not change the headline), recomputes `summary.json`'s robust
    /// accuracy as the per-point worst case over every evaluation at the training threat
    /// model ([`Summary::combine`]).
    ///
    /// An imported model evaluated as it is has no summary until its first evaluation: that
    /// one makes it, and a later one on more test points replaces it.
    pub fn record_eval(&self, tag: &str, record: &EvalRecord) -> Result<PathBuf> {
        let path = self.write_eval(tag, record)?;
        let config = self.config()?;
        let mut summary = self.summary()?;
        if config.is_import_only() && summary.as_ref().is_none_or(|s| record.n > s.n_test) {
            summary = Some(Summary::imported(&config, record));
        }
        if let Some(mut summary) = summary {
            if summary.n_test == record.n {
                summary.combine(&self.evals()?, record);
                self.write_summary(&summary)?;
            }
        }
        Ok(path)
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

    /// Writes the sanity checklist's results (`checks.json`); returns its path.
    pub fn write_checks(&self, checks: &[Check]) -> Result<PathBuf> {
        let path = self.file(files::CHECKS);
        write_json(&path, &checks)?;
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
            return Ok(fresh);
        }
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
