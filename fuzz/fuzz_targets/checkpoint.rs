#![no_main]
//! Fuzz target `checkpoint`: see [`advtrain_fuzz::checkpoint`] for what it feeds the input to.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| advtrain_fuzz::checkpoint(data));
