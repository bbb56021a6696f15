#![no_main]
//! See `sluice::fuzz::partition_values`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::partition_values(data));
