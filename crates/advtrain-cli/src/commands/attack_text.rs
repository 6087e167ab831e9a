//! `advtrain attack` on a text run: original / adversarial pairs for a few test texts, with
//! the edits marked, as JSON lines and an HTML page.

use advtrain::report::{write_attack_pairs, PAIRS_HTML, PAIRS_JSONL};
use advtrain::run::RunDir;
use advtrain::text::edits::highlight_terminal;
use advtrain::text::eval::evaluate_text;
use advtrain::text::run::TextRun;
use anyhow::{bail, Result};

use crate::args::AttackArgs;
use crate::common;
use crate::terminal::escape_controls;

/// Attacks the test texts `args` select on the text run `dir` and writes the pairs.
pub fn run(args: &AttackArgs, dir: RunDir) -> Result<()> {
    let Some(attack) = args.spec.text_attack()? else {
        bail!(
            "--attack none attacks nothing: choose one of {}",
            advtrain::text::attack::TEXT_ATTACK_NAMES.join(", ")
        );
    };
    let device = args.common.setup()?;
    let (run, config) = TextRun::open(dir.path())?;
    let (_, test) = config.load_data(args.data.as_deref())?;
    let model = run.load_model(&config, &device)?;
    if args.offset >= test.len() {
        bail!(
            "--offset {} is past the {} test texts",
            args.offset,
            test.len()
        );
    }
    for name in [PAIRS_JSONL, PAIRS_HTML] {
        common::check_overwrite(&args.out.join(name), args.force, "--out")?;
    }
    let idx: Vec<usize> = (args.offset..(args.offset + args.count).min(test.len())).collect();
    let subset = test.subset(&idx);
    let (record, results) = evaluate_text(&model, &subset, Some(&attack), args.seed)?;
    let title = args.run.display().to_string();
    let pairs = write_attack_pairs(&args.out, &title, &test.classes, &idx, &record, &results)?;
    common::print_text_record(&record);
    // Texts and class names come from the data set: escape their control characters, or
    // an escape sequence in a text would be run by the terminal.
    let class = |c: usize| {
        test.classes
            .get(c)
            .map(|name| escape_controls(name))
            .unwrap_or_else(|| c.to_string())
    };
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
        let shown = escape_controls(&shown);
        println!(
            "#{i} {} -> {}: {shown}",
            class(r.label),
            class(r.adversarial_prediction)
        );
    }
    println!("pairs:            {}", pairs.jsonl.display());
    println!("highlighted:      {}", pairs.html.display());
    Ok(())
}
