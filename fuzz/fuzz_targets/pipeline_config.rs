#![no_main]
//! See `sluice::fuzz::pipeline_config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::pipeline_config(data));
