//! A Reddit `Listing` of posts and comments: parsed child by child as the source does, each
//! item read as a post, then through the detector.
use exposure_monitor::sources::reddit::{error_message, parse_listing, to_post};

pub fn run(data: &[u8]) {
    if let Ok(page) = parse_listing(data, "fuzz") {
        for item in &page.items {
            let _ = item.fullname();
            let _ = item.created_utc();
            if let Some(post) = to_post(item, item.author()) {
                super::post(&post, None);
            }
        }
    }
    let _ = error_message(data);
}
