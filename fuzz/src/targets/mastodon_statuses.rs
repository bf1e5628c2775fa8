//! A Mastodon statuses body (account statuses, tag and public timelines): parsed item by item
//! as the source does, each status and its account read, then through the detector.
use exposure_monitor::sources::mastodon::{parse_items, to_account, to_post, ApiStatus};

const INSTANCE: &str = "https://example.social";

pub fn run(data: &[u8]) {
    let Ok((statuses, _bad)) = parse_items::<ApiStatus>(data, "fuzz") else { return };
    for s in &statuses {
        let account = to_account(&s.account, INSTANCE, "example.social");
        super::account(&account);
        if let Some(post) = to_post(s, &account.platform_id, INSTANCE) {
            super::post(&post, Some(&account));
        }
    }
}
