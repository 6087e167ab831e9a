#![no_main]
//! Fuzz target `cifar`: see [`advtrain_fuzz::cifar`] for what it feeds the input to.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| advtrain_fuzz::cifar(data));
