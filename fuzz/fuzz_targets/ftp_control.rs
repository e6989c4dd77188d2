#![no_main]
//! See `bucketgate::fuzzing::ftp_control`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| bucketgate::fuzzing::ftp_control(data));
