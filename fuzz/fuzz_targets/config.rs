//! An operator's config file, parsed and validated as `--config` loads it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::config::run(data));
