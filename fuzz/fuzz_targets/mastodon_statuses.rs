//! A Mastodon statuses body (account statuses, tag and public timelines): parsed item by item
//! as the source does, each status and its account read, then through the detector.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::mastodon_statuses::run(data));
