#![no_main]
//! See `bucketgate::fuzzing::config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| bucketgate::fuzzing::config(data));
