#![no_main]
//! Fuzz target `npz`: see [`advtrain_fuzz::npz`] for what it feeds the input to.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| advtrain_fuzz::npz(data));
