//! A Bluesky `app.bsky.feed.getAuthorFeed` body: decoded, parsed item by item and each item
//! read as the source does, the author's own posts then through the detector.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::bluesky_feed::run(data));
