#![no_main]
//! See `sluice::fuzz::events`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::events(data));
