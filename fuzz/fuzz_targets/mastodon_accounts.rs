//! Mastodon account payloads: an array (directory, accounts by id, account search), one
//! account (lookup), a v2 search result, the v2 instance and an error body; each account read
//! as the source does, then identified.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_common::mastodon_accounts::run(data));
