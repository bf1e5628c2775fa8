//! Sources: where posts come from.
//!
//! Owns the [`Source`] interface every platform connector implements: async, paged, and
//! resumable from a stored cursor. A connector turns platform responses into normalised
//! [`Account`]s and [`Post`]s (see [`crate::normalise`]) and nothing more: it does not identify,
//! classify or store. A new platform is one new file here and one new variant of
//! [`crate::config::SourceConfig`].

pub mod bluesky;
pub mod http;
pub mod jetstream;
pub mod mastodon;
pub mod reddit;
pub mod replay;
pub mod rss;

use async_trait::async_trait;

use crate::config::{SourceConfig, SourceEntry};
use crate::model::{Account, Post};

/// One page of a source's results, in the order the source read them.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Profiles of the authors of `posts` (and any other accounts discovered).
    pub accounts: Vec<Account>,
    pub posts: Vec<Post>,
    /// Records on this page that could not be parsed and were skipped (counted, not fatal).
    pub skipped: Vec<String>,
    /// The cursor that resumes *after* this page. The scan stores it only once the page's
    /// results are stored.
    pub cursor: Option<String>,
    /// `true` when the source has nothing more after this page.
    pub done: bool,
    /// Times the source had to wait for a platform rate limit while reading this page (a 429,
    /// or a budget used up before its reset). Ordinary pacing is not counted.
    pub rate_limit_waits: u64,
    /// Accounts skipped because their owner opted out (Mastodon `noindex`/`indexable: false`,
    /// Reddit `hide_from_robots`, Bluesky `!no-unauthenticated`): respected, not errors.
    pub opted_out: u64,
}

/// A source failed; the scan reports it and carries on with the other sources.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{location}: {message}")]
    Malformed { location: String, message: String },
    #[error("stored cursor `{cursor}` is not valid for this source: {message}")]
    BadCursor { cursor: String, message: String },
    /// A request failed for good (after the HTTP layer's retries, or a 4xx).
    #[error("{0}")]
    Http(#[from] http::HttpError),
    /// The source's settings cannot work (e.g. a token variable that is not set).
    #[error("{0}")]
    Setup(String),
}

/// A paged, resumable reader of one configured source.
#[async_trait]
pub trait Source: Send {
    /// The configured name (unique in the config).
    fn name(&self) -> &str;
    /// Fetch the page after `cursor` (`None`: from the start).
    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError>;
}

/// What every source of one scan shares: the operator's contact (for the User-Agent) and the
/// per-host HTTP state, so that limits hold across sources that read the same host.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub operator_contact: String,
    pub hosts: std::sync::Arc<http::HostRegistry>,
}

impl BuildContext {
    pub fn new(operator_contact: &str) -> Self {
        BuildContext { operator_contact: operator_contact.to_string(), hosts: http::HostRegistry::new() }
    }
}

/// Build the running source for a configured entry.
pub fn build(entry: &SourceEntry, ctx: &BuildContext) -> Box<dyn Source> {
    match &entry.kind {
        SourceConfig::Replay(cfg) => Box::new(replay::ReplaySource::new(entry.name.clone(), cfg.clone())),
        SourceConfig::Mastodon(cfg) => Box::new(mastodon::MastodonSource::new(entry.name.clone(), cfg.clone(), ctx)),
        SourceConfig::Rss(cfg) => Box::new(rss::RssSource::new(entry.name.clone(), cfg.clone(), ctx)),
        SourceConfig::Reddit(cfg) => Box::new(reddit::RedditSource::new(entry.name.clone(), cfg.clone(), ctx)),
        SourceConfig::Bluesky(cfg) => Box::new(bluesky::BlueskySource::new(entry.name.clone(), cfg.clone(), ctx)),
        SourceConfig::Jetstream(cfg) => Box::new(jetstream::JetstreamSource::new(entry.name.clone(), cfg.clone(), ctx)),
    }
}
