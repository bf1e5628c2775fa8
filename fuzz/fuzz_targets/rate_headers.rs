//! Rate-limit and Retry-After headers of a response, as the HTTP client reads them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::rate_headers::run(data));
