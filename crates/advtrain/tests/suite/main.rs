//! advtrain's integration tests, in one test binary: each module is one concern (attacks,
//! training, resume, data readers, the report, text filters, ...), and one binary links
//! burn once instead of once per file, which is most of the suite's build time.
//!
//! Tests in it run in parallel threads of one process, so anything process-wide is taken
//! with care: seeded model construction goes through `advtrain::model::init_seeded`'s lock,
//! and the fast-path comparisons switch the path for their own thread only
//! (`advtrain::fastpath::with_enabled`).

mod common;

mod attacks;
mod audit;
mod checklist;
mod custom_step;
mod data_readers;
mod datasets;
mod evaluation;
mod fab;
mod fastpath;
mod gradients;
mod monitoring;
mod onnx_import;
mod parity;
mod parser_fuzz_regressions;
mod pytorch_export;
mod report;
mod square;
mod text_attacks;
mod text_data;
mod text_evasion;
mod text_models;
mod text_targets;
mod text_training;
mod text_transformer;
mod text_transforms;
mod training;
mod window_scoring;
