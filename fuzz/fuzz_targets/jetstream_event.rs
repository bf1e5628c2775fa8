//! One Jetstream frame, parsed as the whole-network source does; a post or profile then goes
//! through the detector.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::jetstream_event::run(data));
