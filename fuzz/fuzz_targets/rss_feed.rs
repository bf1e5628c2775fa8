//! An RSS, Atom or JSON feed body, parsed as src/sources/rss.rs does (feed-rs, then each
//! entry's HTML to text), the feed as an account and each entry as a post through the detector.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::rss_feed::run(data));
