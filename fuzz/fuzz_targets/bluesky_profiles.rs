//! Bluesky profile payloads (`getProfiles`, `searchActors`, one `getProfile`) and an XRPC
//! error body: each profile read as the source does, then identified.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::bluesky_profiles::run(data));
