#![no_main]
//! Fuzz target `safetensors`: see [`advtrain_fuzz::safetensors`] for what it feeds the input to.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| advtrain_fuzz::safetensors(data));
