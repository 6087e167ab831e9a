//! `advtrain export`: a run's model handed back to the framework it came from (the work is
//! `advtrain::run::export_run`; this file picks the defaults and prints).

use advtrain::run::{export_run, ExportFormat, ExportWeights, RunDir, RunModelKind, Task};
use anyhow::{Context, Result};

use crate::args::ExportArgs;

/// Writes the export `args` ask for.
pub fn run(args: &ExportArgs) -> Result<()> {
    // Locked: exporting while the run trains would hand over intermediate weights.
    let dir = RunDir::open_for_writing(&args.run, "export")?;
    dir.expect_task(Task::Image)?;
    let config = dir.config()?;
    let format: ExportFormat = match &args.format {
        Some(f) => f.parse()?,
        None if config.model == RunModelKind::Onnx => ExportFormat::Onnx,
        None => ExportFormat::Pytorch,
    };
    let weights = if args.best {
        ExportWeights::Best
    } else {
        ExportWeights::Final
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let name = match format {
            ExportFormat::Onnx => "model-export.onnx",
            ExportFormat::Pytorch => "model-pytorch.safetensors",
        };
        dir.file(name)
    });
    let device = args.common.setup()?;
    export_run(&dir, format, weights, &out, &device)
        .with_context(|| format!("exporting {} as {format}", dir.path().display()))?;
    println!(
        "model:            {} ({})",
        config.model_name(),
        weights.file()
    );
    println!("format:           {format}");
    println!("written:          {}", out.display());
    if format == ExportFormat::Pytorch {
        println!(
            "load it with:     scripts/torch_zoo.py's build(\"{}\", ...).load_state_dict(safetensors.torch.load_file(\"{}\"))",
            config.model,
            out.display()
        );
    }
    Ok(())
}
