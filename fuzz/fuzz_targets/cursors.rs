//! A stored cursor of each polling source, parsed as a scan resumes from it, and round-tripped.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::cursors::run(data));
