//! An RSS, Atom or JSON feed body, parsed as src/sources/rss.rs does (feed-rs, then each
//! entry's HTML to text), the feed as an account and each entry as a post through the detector.
use exposure_monitor::sources::rss::parse_feed;

pub fn run(data: &[u8]) {
    let Ok((account, posts)) = parse_feed("https://example.org/feed.xml", data) else { return };
    super::account(&account);
    for post in &posts {
        super::post(post, Some(&account));
    }
}
