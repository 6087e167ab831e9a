#![no_main]
//! Fuzz target `idx`: see [`advtrain_fuzz::idx`] for what it feeds the input to.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| advtrain_fuzz::idx(data));
