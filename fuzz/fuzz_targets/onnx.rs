#![no_main]
//! Fuzz target `onnx`: see [`advtrain_fuzz::onnx`] for what it feeds the input to.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| advtrain_fuzz::onnx(data));
