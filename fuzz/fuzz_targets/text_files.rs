#![no_main]
//! Fuzz target `text_files`: see [`advtrain_fuzz::text_files`] for what it feeds the input to.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| advtrain_fuzz::text_files(data));
