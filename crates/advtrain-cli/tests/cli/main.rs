//! The `advtrain` binary tested end to end, in one test binary (one link instead of four):
//! training, evaluation, attacks and resume after `kill -9` on generated images and texts,
//! the sanity checklist and its transfer surrogate, clear errors on bad input, `bench`'s JSON,
//! and the report rendered in Chromium.

mod common;

mod audit;

mod bench;
mod checks;
mod end_to_end;
mod fault_injection;
mod onnx_end_to_end;
mod report_browser;
mod resources_and_messages;
mod results_integrity;
mod text_end_to_end;
