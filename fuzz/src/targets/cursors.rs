//! A stored cursor, as each source reads it back at the start of a scan (the database is
//! the program's own, but a cursor may come from an older build, a hand edit or a damaged
//! file). The first byte picks the source; the rest is the cursor text. A cursor that parses
//! must survive a round trip unchanged: what a scan stores is what the next scan resumes from.
use exposure_monitor::sources::{bluesky, mastodon, reddit, rss};

macro_rules! round_trip {
    ($cursor:ty, $text:expr) => {
        if let Ok(c) = <$cursor>::parse(Some($text)) {
            let stored = c.to_json();
            let back = <$cursor>::parse(Some(&stored)).unwrap_or_else(|e| panic!("stored cursor {stored} does not parse: {e}"));
            assert_eq!(back, c, "cursor changed across a round trip through {stored}");
        }
    };
}

pub fn run(data: &[u8]) {
    let Some((which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match which % 4 {
        0 => round_trip!(mastodon::Cursor, text),
        1 => round_trip!(bluesky::Cursor, text),
        2 => round_trip!(reddit::Cursor, text),
        _ => round_trip!(rss::Cursor, text),
    }
}
