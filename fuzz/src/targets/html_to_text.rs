//! HTML-to-text (Mastodon `content`/`note`, feed bodies), then language detection and the
//! detector over the text, as a post and as a bio.
use exposure_monitor::model::{Account, Post};
use exposure_monitor::normalise::{detect_lang, html_to_text};

pub fn run(data: &[u8]) {
    let Ok(html) = std::str::from_utf8(data) else { return };
    let text = html_to_text(html);
    let _ = detect_lang(&text);
    let post = Post {
        platform: "fuzz".into(),
        platform_id: "fuzz:1".into(),
        author_id: "fuzz".into(),
        created_at: chrono::DateTime::UNIX_EPOCH,
        text: text.clone(),
        alt_texts: vec![text.clone()],
        lang_hints: vec![],
        url: None,
    };
    let account = Account {
        platform: "fuzz".into(),
        platform_id: "fuzz".into(),
        handle: "@fuzz".into(),
        display_name: String::new(),
        bio: text,
        profile_url: None,
    };
    super::account(&account);
    super::post(&post, Some(&account));
}
