//! The `Link` header of a Mastodon page, as the source reads it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::mastodon_link::run(data));
