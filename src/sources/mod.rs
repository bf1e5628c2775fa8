//! Sources: where posts come from.
//!
//! Owns the [`Source`] interface every platform connector implements: async, paged, and
//! resumable from a stored cursor. A connector turns platform responses into normalised
//! [`Account`]s and [`Post`]s (see [`crate::normalise`]) and nothing more: it does not identify,
//! classify or store. A new platform is one new file here and one new variant of
//! [`crate::config::SourceConfig`].

pub mod replay;

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
}

/// A paged, resumable reader of one configured source.
#[async_trait]
pub trait Source: Send {
    /// The configured name (unique in the config).
    fn name(&self) -> &str;
    /// Fetch the page after `cursor` (`None`: from the start).
    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError>;
}

/// Build the running source for a configured entry.
pub fn build(entry: &SourceEntry) -> Box<dyn Source> {
    match &entry.kind {
        SourceConfig::Replay(cfg) => Box::new(replay::ReplaySource::new(entry.name.clone(), cfg.clone())),
    }
}
