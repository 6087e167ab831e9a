#![no_main]
//! Fuzz target `records`: see [`advtrain_fuzz::records`] for what it feeds the input to.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| advtrain_fuzz::records(data));
