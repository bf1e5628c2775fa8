//! The pattern-file loader: up to three files' text (separated by a line `----`), parsed and
//! compiled as the loader does a directory (rules, allowlists, exceptions across files), then
//! the compiled rules run over the input text itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::patterns::run(data));
