#![no_main]
//! Fuzz target `image`: see [`advtrain_fuzz::image`] for what it feeds the input to.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| advtrain_fuzz::image(data));
