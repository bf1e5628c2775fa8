//! What every fuzz target shares: the project's own pattern set, loaded once, and the path
//! hostile content takes after a parser (identify, classify, redact), so a fuzzer covers that
//! path as well as the parser. Each target's body is `TARGET::run` here, so the main crate's
//! tests (tests/fuzz_corpus.rs) run the committed corpora through exactly the same code.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[path = "targets/bluesky_feed.rs"]
pub mod bluesky_feed;
#[path = "targets/bluesky_profiles.rs"]
pub mod bluesky_profiles;
#[path = "targets/config.rs"]
pub mod config;
#[path = "targets/cursors.rs"]
pub mod cursors;
#[path = "targets/forces.rs"]
pub mod forces;
#[path = "targets/html_to_text.rs"]
pub mod html_to_text;
#[path = "targets/jetstream_event.rs"]
pub mod jetstream_event;
#[path = "targets/mastodon_accounts.rs"]
pub mod mastodon_accounts;
#[path = "targets/mastodon_statuses.rs"]
pub mod mastodon_statuses;
#[path = "targets/patterns.rs"]
pub mod patterns;
#[path = "targets/rate_headers.rs"]
pub mod rate_headers;
#[path = "targets/mastodon_link.rs"]
pub mod mastodon_link;
#[path = "targets/reddit_about.rs"]
pub mod reddit_about;
#[path = "targets/reddit_listing.rs"]
pub mod reddit_listing;
#[path = "targets/rss_feed.rs"]
pub mod rss_feed;

use exposure_monitor::forces::Forces;
use exposure_monitor::identify::PostSignals;
use exposure_monitor::model::{Account, Post};
use exposure_monitor::normalise::detect_lang;
use exposure_monitor::patterns::Detector;
use exposure_monitor::redact::redact;

/// The repository's `patterns/` directory (the rules the program ships with), from the fuzz
/// crate or from the main crate's tests (which include this file, see tests/fuzz_corpus.rs).
pub fn patterns_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    [here.join("patterns"), here.join("../patterns")]
        .into_iter()
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("no patterns/ directory at or above {}", here.display()))
}

/// The bundled forces list, parsed once.
pub fn forces() -> &'static Forces {
    static FORCES: OnceLock<Forces> = OnceLock::new();
    FORCES.get_or_init(Forces::embedded)
}

/// The shipped rules, compiled once per fuzzing process.
pub fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    DETECTOR.get_or_init(|| match Detector::load(&patterns_dir(), forces()) {
        Ok(d) => d,
        Err(errors) => panic!("the shipped patterns do not load: {errors:?}"),
    })
}

/// An account read from a payload, through identification (and what the digest shows of it).
pub fn account(a: &Account) {
    let d = detector();
    let _ = d.identifier.identify(a, &PostSignals::default());
    let _ = redact(&a.bio);
    let _ = redact(&a.display_name);
    let _ = detect_lang(&a.bio);
}

/// A post read from a payload, through identity signals, classification and redaction; with
/// its author when the payload carries one.
pub fn post(p: &Post, author: Option<&Account>) {
    let d = detector();
    let signals = d.identifier.post_signals(p);
    let _ = d.classifier.classify(p);
    let _ = redact(&p.full_text());
    if let Some(a) = author {
        let _ = d.identifier.identify(a, &signals);
    }
}
