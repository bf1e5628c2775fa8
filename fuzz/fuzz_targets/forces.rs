//! An operator's forces file, parsed as the config's `forces` loads it, then searched for mentions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::forces::run(data));
