//! HTML-to-text (Mastodon `content`/`note`, feed bodies), then language detection and the
//! detector over the text, as a post and as a bio.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::html_to_text::run(data));
