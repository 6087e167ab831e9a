#![no_main]
//! Fuzz target `npy`: see [`advtrain_fuzz::npy`] for what it feeds the input to.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| advtrain_fuzz::npy(data));
