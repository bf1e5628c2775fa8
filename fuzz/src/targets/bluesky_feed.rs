//! A Bluesky `app.bsky.feed.getAuthorFeed` body: decoded, parsed item by item and each item
//! read as the source does, the author's own posts then through the detector.
use exposure_monitor::sources::bluesky::{parse_values, read_feed_item, ApiAuthorFeed, ApiFeedItem};

const AUTHOR: &str = "did:plc:fuzzauthor";

pub fn run(data: &[u8]) {
    let Ok(feed) = serde_json::from_slice::<ApiAuthorFeed>(data) else { return };
    let (items, _bad) = parse_values::<ApiFeedItem>(feed.feed, "fuzz");
    for item in &items {
        // The fuzzer may name any author: read the item both as that author's and as ours.
        for author in [AUTHOR, item.post.author.did.as_str()] {
            if let Ok(entry) = read_feed_item(item, author, "https://bsky.app") {
                if let Some(post) = entry.post {
                    super::post(&post, None);
                }
            }
        }
    }
}
