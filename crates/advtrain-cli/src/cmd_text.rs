//! The same verbs for text classifiers: `train`, `eval`, `attack` and `report` on spam,
//! prompt-injection or any `text,label` file.

use std::path::{Path, PathBuf};

use advtrain::progress::Progress;
use advtrain::text::canon::Canonicalizer;
use advtrain::text::data;
use advtrain::text::edits::{highlight_html, highlight_terminal};
use advtrain::text::eval::{evaluate_text, TextEvalRecord};
use advtrain::text::model::{TextModel, TextModelConfig, TextModelKind};
use advtrain::text::run::{is_text_run, TextRun, TextRunConfig, TextSummary, TEXT_TASK};
use advtrain::text::train::{train_text, TextAttackConfig, TextMethod, TextTrainConfig};
use advtrain::text::TextDataset;
use anyhow::{bail, Context, Result};

use crate::cmd_attack::AttackArgs;
use crate::cmd_eval::EvalArgs;
use crate::cmd_train::{TrainArgs, TrainSettings};
use crate::progress::Bars;

/// An f32 flag as the f64 it was typed as (0.1f32 widened would read 0.10000000149).
fn widen(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

/// Text data sets known by name.
pub const TEXT_DATASETS: [&str; 2] = ["spam-assassin", "prompt-injection"];
/// Where `scripts/fetch_text_data.sh` puts them.
pub const DEFAULT_TEXT_DIR: &str = "data/text";
/// Default edit budget of text attacks.
pub const DEFAULT_BUDGET: usize = 5;
/// Share of the training texts held out for per-epoch validation.
const VAL_FRACTION: f64 = 0.1;

/// Whether the training settings ask for a text model.
pub fn is_text_task(s: &TrainSettings) -> Result<bool> {
    match s.task.as_deref() {
        Some("text") => Ok(true),
        Some("image") => Ok(false),
        Some(other) => bail!("unknown --task '{other}': expected 'image' or 'text'"),
        None => Ok(s
            .dataset
            .as_deref()
            .is_some_and(|d| TEXT_DATASETS.contains(&d))),
    }
}

/// Loads (train, test) for a run's data settings.
fn load_data(
    dataset: &str,
    data: &Path,
    seed: u64,
    limit: Option<usize>,
) -> Result<(TextDataset, TextDataset)> {
    let (train, test) = if dataset == "file" {
        let all = data::load_labelled_file(data)?;
        data::split_stratified(&all, seed, 0.2)
    } else {
        data::load_named(dataset, data, seed)?
    };
    Ok(match limit {
        Some(n) => (train.take(n), test.take(n)),
        None => (train, test),
    })
}

fn parse_attacks(list: &str, budget: usize) -> Result<Vec<TextAttackConfig>> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name == "none" {
            continue;
        }
        out.push(TextAttackConfig::from_name(name, budget)?);
    }
    Ok(out)
}

/// `advtrain train` for text, with the settings already merged from flags and file.
pub fn train(args: TrainArgs, s: TrainSettings) -> Result<()> {
    let device = args.common.setup()?;
    let bars = Bars::new(args.common.quiet);
    let (dataset, data_path) = match (s.dataset.as_deref(), s.data.clone()) {
        (Some(name), dir) if TEXT_DATASETS.contains(&name) => (
            name.to_string(),
            dir.unwrap_or_else(|| PathBuf::from(DEFAULT_TEXT_DIR)),
        ),
        (None | Some("file"), Some(file)) => ("file".to_string(), file),
        (Some(other), _) => bail!(
            "unknown text data set '{other}': expected {} (or --data FILE.csv|FILE.jsonl with --task text)",
            TEXT_DATASETS.join(", ")
        ),
        (None, None) => bail!(
            "text training needs --dataset ({}) or --data FILE (CSV or JSONL of text,label)",
            TEXT_DATASETS.join(", ")
        ),
    };
    let seed = s.seed.unwrap_or(0);
    let kind: TextModelKind = s.model.as_deref().unwrap_or("ngram-bag").parse()?;
    let budget = s.budget.unwrap_or(DEFAULT_BUDGET);
    let method = match s.method.as_deref().unwrap_or("standard") {
        "standard" => TextMethod::Standard,
        "adversarial" | "adv" => TextMethod::Adversarial {
            attack: TextAttackConfig::from_name(
                s.attack.as_deref().unwrap_or("deepwordbug"),
                budget,
            )?,
            lambda: s.lambda.map_or(1.0, widen),
            fraction: s.adv_fraction.unwrap_or(0.5),
            warmup_epochs: 1,
        },
        "embedding-at" => TextMethod::EmbeddingAt {
            eps: s.eps.map_or(0.5, widen),
            steps: s.attack_steps.unwrap_or(3),
            lambda: s.lambda.map_or(1.0, widen),
        },
        other => bail!(
            "unknown text training method '{other}': expected standard, adversarial or embedding-at"
        ),
    };
    let (train_all, test) = load_data(&dataset, &data_path, seed, s.limit)?;
    let model = TextModelConfig::new(kind, train_all.num_classes());
    let config = TextTrainConfig {
        model,
        method,
        canonicalizer: if s.canonicalize.unwrap_or(false) {
            Canonicalizer::all()
        } else {
            Canonicalizer::none()
        },
        epochs: s.epochs.unwrap_or(10),
        batch_size: s.batch_size.unwrap_or(32),
        lr: s.lr.unwrap_or(match kind {
            TextModelKind::NgramBag => 0.01,
            TextModelKind::CharCnn => 0.003,
        }),
        seed,
        schedule: advtrain::train::Schedule::Constant,
        monitor: advtrain::text::train::text_monitor(),
    };
    config.validate()?;
    let eval_attacks = parse_attacks(s.eval_attacks.as_deref().unwrap_or("deepwordbug"), budget)?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "{dataset}-{kind}-{}{}",
            config.method.name(),
            if config.canonicalizer.is_identity() {
                ""
            } else {
                "-canon"
            }
        ))
    });
    crate::cmd_train::prepare_run_dir(&out, args.force)?;
    let run = TextRun::new(&out);
    let run_config = TextRunConfig {
        task: TEXT_TASK.to_string(),
        advtrain_version: advtrain::VERSION.to_string(),
        dataset: dataset.clone(),
        data: data_path,
        data_seed: seed,
        limit: s.limit,
        train: config.clone(),
    };
    run.write_config(&run_config)?;
    let (train_set, val_set) = data::split_stratified(&train_all, seed, VAL_FRACTION);
    bars.note(&format!(
        "advtrain {}: {kind} on {dataset} ({} train / {} val / {} test), {}{} for {} epochs -> {}",
        advtrain::VERSION,
        train_set.len(),
        val_set.len(),
        test.len(),
        config.method.name(),
        if config.canonicalizer.is_identity() {
            ""
        } else {
            " + canonicalisation"
        },
        config.epochs,
        out.display()
    ));
    let trained = train_text(
        &config,
        &train_set,
        Some(&val_set),
        &device,
        &bars,
        &mut |rec, net| {
            run.append_epoch(rec)?;
            run.save_model(net)?;
            println!(
                "epoch {:>3}: loss {:.4}  train {:.2}%  val {}{}  ({:.1} s)",
                rec.epoch,
                rec.loss,
                100.0 * rec.train_accuracy,
                rec.val_accuracy
                    .map_or("-".into(), |v| format!("{:.2}%", 100.0 * v)),
                rec.attack_success_rate.map_or(String::new(), |r| format!(
                    "  attack success on train {:.1}%",
                    100.0 * r
                )),
                rec.seconds
            );
            Ok(())
        },
    )?;
    let model = run.load_model(&run_config, &device)?;
    let (clean, _) = evaluate_text(&model, &test, None, seed)?;
    run.write_eval(&clean, &[])?;
    run.write_summary(&TextSummary {
        dataset: dataset.clone(),
        provenance: train_all.provenance.clone(),
        classes: train_all.classes.clone(),
        train_examples: train_set.len(),
        train_class_counts: train_set.class_counts(),
        test_examples: test.len(),
        test_class_counts: test.class_counts(),
        clean_test_accuracy: clean.clean_accuracy,
        epochs_completed: trained.history.len(),
        train_seconds: trained.train_seconds,
    })?;
    println!("trained in {:.1} s", trained.train_seconds);
    print_record(&clean);
    for attack in &eval_attacks {
        bars.note(&format!(
            "evaluating under {} (budget {})",
            attack.name(),
            attack.budget()
        ));
        let (record, results) = evaluate_text(&model, &test, Some(attack), seed)?;
        run.write_eval(&record, &results)?;
        print_record(&record);
    }
    refresh_report(&out);
    Ok(())
}

fn print_record(r: &TextEvalRecord) {
    if r.attack == "none" {
        println!(
            "clean accuracy:   {:.2}% on {} texts",
            100.0 * r.clean_accuracy,
            r.examples
        );
    } else {
        println!(
            "{} (budget {}): accuracy {:.2}% (clean {:.2}%), success rate {:.1}%, mean edits {:.2}, {:.0} queries/text, {:.1} s",
            r.attack,
            r.budget,
            100.0 * r.robust_accuracy,
            100.0 * r.clean_accuracy,
            100.0 * r.attack_success_rate,
            r.mean_edits,
            r.mean_queries,
            r.seconds
        );
    }
}

fn refresh_report(run: &Path) {
    let path = run.join(advtrain::report::REPORT);
    match advtrain::text::report::write_text_report(&[run], &path) {
        Ok(p) => println!("report:           {}", p.display()),
        Err(e) => eprintln!("warning: could not write the report: {e}"),
    }
}

fn open_run(
    dir: &Path,
    data: Option<&Path>,
    limit: Option<usize>,
) -> Result<(TextRun, TextRunConfig, TextDataset)> {
    let (run, config) = TextRun::open(dir)?;
    let data_path = data.map_or_else(|| config.data.clone(), Path::to_path_buf);
    let (_, test) = load_data(&config.dataset, &data_path, config.data_seed, config.limit)?;
    let test = match limit {
        Some(n) => test.take(n),
        None => test,
    };
    Ok((run, config, test))
}

/// The text attack an `eval`/`attack` command asks for (`pgd`, the image default, means
/// DeepWordBug here); `None` for `--attack none`.
fn text_attack(name: &str, budget: Option<usize>) -> Result<Option<TextAttackConfig>> {
    let budget = budget.unwrap_or(DEFAULT_BUDGET);
    match name {
        "none" | "clean" => Ok(None),
        "pgd" => Ok(Some(TextAttackConfig::from_name("deepwordbug", budget)?)),
        other => Ok(Some(TextAttackConfig::from_name(other, budget)?)),
    }
}

/// `advtrain eval` on a text run.
pub fn eval(args: EvalArgs) -> Result<()> {
    let device = args.common.setup()?;
    let (run, config, test) = open_run(&args.run, args.data.as_deref(), args.limit)?;
    let model = run.load_model(&config, &device)?;
    let attack = text_attack(&args.spec.attack, args.spec.budget)?;
    let (record, results) = evaluate_text(&model, &test, attack.as_ref(), args.seed)?;
    run.write_eval(&record, &results)?;
    print_record(&record);
    refresh_report(&args.run);
    Ok(())
}

/// `advtrain attack` on a text run: original / adversarial pairs with the edits highlighted.
pub fn attack(args: AttackArgs) -> Result<()> {
    let device = args.common.setup()?;
    let (run, config, test) = open_run(&args.run, args.data.as_deref(), None)?;
    let model: TextModel = run.load_model(&config, &device)?;
    let Some(attack) = text_attack(&args.spec.attack, args.spec.budget)? else {
        bail!("--attack none attacks nothing: choose deepwordbug or hotflip");
    };
    if args.offset >= test.len() {
        bail!(
            "--offset {} is past the {} test texts",
            args.offset,
            test.len()
        );
    }
    let idx: Vec<usize> = (args.offset..(args.offset + args.count).min(test.len())).collect();
    let subset = test.subset(&idx);
    let (record, results) = evaluate_text(&model, &subset, Some(&attack), args.seed)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    let mut jsonl = String::new();
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>advtrain text attack</title>\
         <style>body{{font-family:sans-serif;max-width:1100px;margin:24px auto}} mark{{background:#ffd54a}} \
         td{{border:1px solid #ccc;padding:6px;vertical-align:top;font-family:monospace;white-space:pre-wrap;word-break:break-word}} \
         table{{border-collapse:collapse}}</style></head><body><h1>{} (budget {}) on {}</h1>\
         <p>accuracy {:.1}% → {:.1}%, success rate {:.1}%, mean edits {:.2}</p><table>\
         <tr><th>#</th><th>label → prediction</th><th>original</th><th>adversarial (edits marked)</th></tr>",
        record.attack,
        record.budget,
        advtrain::report::escape(&args.run.display().to_string()),
        100.0 * record.clean_accuracy,
        100.0 * record.robust_accuracy,
        100.0 * record.attack_success_rate,
        record.mean_edits
    );
    let class = |c: usize| {
        test.classes
            .get(c)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    };
    for (i, r) in idx.iter().zip(&results) {
        jsonl.push_str(&serde_json::to_string(&serde_json::json!({
            "index": i,
            "label": class(r.label),
            "clean_prediction": class(r.clean_prediction),
            "adversarial_prediction": class(r.adversarial_prediction),
            "success": r.success(),
            "edits": r.edits,
            "queries": r.queries,
            "original": r.original,
            "adversarial": r.adversarial,
        }))?);
        jsonl.push('\n');
        html.push_str(&format!(
            "<tr><td>{i}</td><td>{} → {}<br>{} edits</td><td>{}</td><td>{}</td></tr>",
            advtrain::report::escape(&class(r.label)),
            advtrain::report::escape(&class(r.adversarial_prediction)),
            r.edits.len(),
            advtrain::report::escape(&r.original),
            highlight_html(&r.original, &r.adversarial)
        ));
    }
    html.push_str("</table></body></html>\n");
    let pairs = args.out.join("pairs.jsonl");
    let page = args.out.join("pairs.html");
    advtrain::io::write_atomic(&pairs, jsonl.as_bytes())?;
    advtrain::io::write_atomic(&page, html.as_bytes())?;
    print_record(&record);
    for (i, r) in idx
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.success())
        .take(3)
    {
        let shown: String = highlight_terminal(&r.original, &r.adversarial)
            .chars()
            .take(300)
            .collect();
        println!(
            "#{i} {} -> {}: {shown}",
            class(r.label),
            class(r.adversarial_prediction)
        );
    }
    println!("pairs:            {}", pairs.display());
    println!("highlighted:      {}", page.display());
    Ok(())
}

/// Whether every run directory given to `report` is a text run (mixing is refused).
pub fn all_text_runs(runs: &[PathBuf]) -> Result<bool> {
    let text = runs.iter().filter(|r| is_text_run(r)).count();
    if text > 0 && text < runs.len() {
        bail!("cannot mix text and image runs in one report");
    }
    Ok(text > 0 && text == runs.len())
}

/// `advtrain report` for text runs.
pub fn report(runs: &[PathBuf], out: Option<&Path>) -> Result<()> {
    let path = out.map_or_else(
        || advtrain::report::default_report_path(runs),
        Path::to_path_buf,
    );
    let path = advtrain::text::report::write_text_report(runs, &path)?;
    println!("report:           {}", path.display());
    Ok(())
}
