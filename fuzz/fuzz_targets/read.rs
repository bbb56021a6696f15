#![no_main]
//! See `sluice::fuzz::read`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::read(data));
