//! A Reddit `Listing` of posts and comments: parsed child by child as the source does, each
//! item read as a post, then through the detector.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::reddit_listing::run(data));
