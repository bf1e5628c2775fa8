//! A Reddit `/user/NAME/about` body (a `t2` thing): parsed, read as an account, identified.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::reddit_about::run(data));
