#![no_main]
//! See `bucketgate::fuzzing::sftp_requests`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| bucketgate::fuzzing::sftp_requests(data));
