#![no_main]
//! See `bucketgate::fuzzing::proxy_header`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| bucketgate::fuzzing::proxy_header(data));
