//! Mastodon account payloads: an array (directory, accounts by id, account search), one
//! account (lookup), a v2 search result, the v2 instance and an error body; each account read
//! as the source does, then identified.
use exposure_monitor::sources::mastodon::{error_message, hashtag_feeds_public, parse_items, to_account, ApiAccount, ApiSearch};

const INSTANCE: &str = "https://example.social";

fn read(accounts: &[ApiAccount]) {
    for a in accounts {
        super::account(&to_account(a, INSTANCE, "example.social"));
    }
}

pub fn run(data: &[u8]) {
    if let Ok((accounts, _bad)) = parse_items::<ApiAccount>(data, "fuzz") {
        read(&accounts);
    }
    if let Ok(a) = serde_json::from_slice::<ApiAccount>(data) {
        read(&[a]);
    }
    if let Ok(search) = serde_json::from_slice::<ApiSearch>(data) {
        // As the source does: the accounts re-serialised and parsed item by item.
        let body = serde_json::to_vec(&search.accounts).expect("re-serialise");
        if let Ok((accounts, _bad)) = parse_items::<ApiAccount>(&body, "fuzz") {
            read(&accounts);
        }
    }
    let _ = hashtag_feeds_public(data);
    let _ = error_message(data);
}
