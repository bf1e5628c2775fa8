//! Store: the SQLite database (sqlx), the only place state lives.
//!
//! Owns the schema (embedded migrations in `migrations/`), accounts worth remembering, hits with
//! their evidence and review status, the review log, digests sent, scan runs and source cursors.
//! Post text is stored only for hits (data minimisation). A page of results and its source's
//! cursor are committed in one transaction, so a killed scan loses nothing and re-running a scan
//! adds no duplicate hit.
//!
//! # Architecture
//! One SQLite file opened through an sqlx pool in WAL mode with foreign keys on and a busy
//! timeout; the file is created `0600` before SQLite sees it. Queries are bound at run time
//! (no `query!` macros: the build needs no database). Every time is stored as fixed-width
//! RFC 3339 UTC text (see [`ts`]), so text order is time order. JSON columns hold the serde forms
//! of [`Classification`], [`IdentityVerdict`] and [`PostSignals`]; a row that does not parse is
//! reported as [`StoreError::Corrupt`] naming the row and column, never a panic.
//!
//! Digests are exactly-once bookkeeping: a hit is *sent* once a digest carrying it is marked
//! `sent` (`hits.digest_id`); a hit in a `pending` or `failed` digest is still unsent, and a
//! pending digest (a crash between send and mark) can be resent with the same Message-ID.
//!
//! Must not: log or store secrets, store post text of posts that are not hits, or interpret
//! what it stores (the stages and the digest do that).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite};
use tracing::{info, warn};

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
    #[error("digest {0} not found")]
    DigestNotFound(i64),
    #[error("scan run {0} not found")]
    RunNotFound(i64),
    #[error("hit {hit} was already sent in digest {digest}")]
    AlreadySent { hit: i64, digest: i64 },
    #[error("cannot serialise {what}: {source}")]
    Serialise { what: String, source: serde_json::Error },
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

/// An account as the store remembers it (see [`Store::stored_account`]); `account.bio` is empty.
#[derive(Debug, Clone)]
pub struct StoredAccount {
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
    /// Findings not stored because a dismissal in review suppressed them (see
    /// [`Store::suppressions`]).
    #[serde(default)]
    pub suppressed: u64,
    /// Times the source had to wait for a platform rate limit (a 429, or a budget used up
    /// before its reset); ordinary pacing is not counted. A throttled source shows here.
    #[serde(default)]
    pub rate_limit_waits: u64,
    /// Accounts skipped because their owner opted out (respected, not errors).
    #[serde(default)]
    pub opted_out: u64,
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

impl HitRecord {
    /// SHA-256 (hex) of the stored evidence: what was captured of the post and why it was
    /// flagged. Exported with each hit so a case file can show the evidence was not altered.
    pub fn evidence_sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        #[derive(Serialize)]
        struct Evidence<'a> {
            platform: &'a str,
            account_platform_id: &'a str,
            account_handle: &'a str,
            post_platform_id: &'a str,
            post_url: Option<&'a str>,
            post_created_at: DateTime<Utc>,
            retrieved_at: DateTime<Utc>,
            text: &'a str,
            classification: &'a Classification,
            identity: &'a IdentityVerdict,
        }
        let evidence = Evidence {
            platform: &self.platform,
            account_platform_id: &self.account_platform_id,
            account_handle: &self.account_handle,
            post_platform_id: &self.post_platform_id,
            post_url: self.post_url.as_deref(),
            post_created_at: self.post_created_at,
            retrieved_at: self.retrieved_at,
            text: &self.text,
            classification: &self.classification,
            identity: &self.identity,
        };
        // Serialising plain structs cannot fail; the field order is fixed, so the bytes are too.
        let bytes = serde_json::to_vec(&evidence).unwrap_or_default();
        format!("{:x}", Sha256::digest(&bytes))
    }
}

/// The findings an account's dismissed hits suppress: (rule id, [`matched_key`]) pairs, with
/// the posts of the dismissed hits (re-reading one of those is not a new suppression).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuppressionSet {
    keys: std::collections::HashSet<(String, String)>,
    origin_posts: std::collections::HashSet<String>,
}

impl SuppressionSet {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Does a dismissal suppress this finding (same rule, same normalised matched text)?
    pub fn suppresses(&self, rule_id: &str, matched: &str) -> bool {
        match matched_key(matched) {
            Some(key) => self.keys.contains(&(rule_id.to_string(), key)),
            None => false,
        }
    }

    /// Is `post_platform_id` the post of a dismissed hit that created a suppression?
    pub fn is_origin(&self, post_platform_id: &str) -> bool {
        self.origin_posts.contains(post_platform_id)
    }

    /// A set with these (rule id, matched text) findings suppressed (tests and tools).
    pub fn from_findings<'a>(findings: impl IntoIterator<Item = (&'a str, &'a str)>) -> SuppressionSet {
        let mut set = SuppressionSet::default();
        for (rule, matched) in findings {
            if let Some(key) = matched_key(matched) {
                set.keys.insert((rule.to_string(), key));
            }
        }
        set
    }
}

/// What a review decision did to remembered suppressions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReviewOutcome {
    /// The status before this decision.
    pub previous: Option<ReviewStatus>,
    /// Findings of this hit now suppressed in later scans (a dismissal).
    pub suppressions_added: u64,
    /// Suppressions this hit's earlier dismissal had created and that no longer apply (it is
    /// not dismissed any more, and no other dismissed hit of the account has the finding).
    pub suppressions_lifted: u64,
    /// Findings of this hit that stay suppressed because another hit's dismissal covers them:
    /// (rule id, that hit's id, when retention has not deleted it). Reported, never undone.
    pub suppressed_by_other: Vec<(String, Option<i64>)>,
}

/// The normalised form of a finding's matched text, for remembering a dismissal: lower case,
/// punctuation removed, runs of whitespace collapsed to one space, trimmed. "KE19-XWP!" and
/// "ke19xwp" are the same; "KE19 XWP" is "ke19 xwp". Letters, digits, emoji and other symbols
/// are kept (an emoji-only finding still has a key).
pub fn normalise_matched(matched: &str) -> String {
    let mut out = String::with_capacity(matched.len());
    let mut space = false;
    for c in matched.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
        } else if !is_punctuation(c) {
            if space {
                out.push(' ');
                space = false;
            }
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The stored key of a finding's matched text: the hex SHA-256 of [`normalise_matched`], or
/// `None` when nothing is left (a blanked finding never suppresses anything).
pub fn matched_key(matched: &str) -> Option<String> {
    use sha2::{Digest, Sha256};
    let norm = normalise_matched(matched);
    (!norm.is_empty()).then(|| format!("{:x}", Sha256::digest(norm.as_bytes())))
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c,
            '\u{00A1}' | '\u{00A7}' | '\u{00AB}' | '\u{00B6}' | '\u{00B7}' | '\u{00BB}' | '\u{00BF}'
            | '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{205E}' | '\u{2E00}'..='\u{2E7F}' | '\u{3001}'..='\u{3003}'
            | '\u{FF01}'..='\u{FF0F}')
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
    /// Forced rate-limit waits in the source's last recorded run (`None`: never run).
    pub last_run_rate_limit_waits: Option<u64>,
    /// Opt-out skips in the source's last recorded run.
    pub last_run_opted_out: Option<u64>,
}

/// One entry of the audit trail: who did what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// One entry of a hit's append-only review log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewEntry {
    pub id: i64,
    pub hit_id: i64,
    pub reviewer: String,
    pub status: ReviewStatus,
    pub note: String,
    pub at: DateTime<Utc>,
}

/// A digest recorded as pending and never marked sent or failed: the process stopped between
/// handing it to the transport and recording the outcome. Resend it with the same Message-ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingDigest {
    pub id: i64,
    pub route: String,
    pub recipients: Vec<String>,
    pub message_id: String,
    pub created_at: DateTime<Utc>,
    /// The hits the message carries, in the order they were reserved.
    pub hit_ids: Vec<i64>,
}

/// How many hits of one category were found on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DailyCount {
    pub day: chrono::NaiveDate,
    pub category: Category,
    pub hits: u64,
}

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Hits (with their evidence, review log and digest links) deleted after `retention.days`.
    pub hits_deleted: u64,
    /// Dismissed hits whose post text and evidence were blanked after `retention.dismissed_days`.
    pub hits_blanked: u64,
    /// Remembered accounts not seen for `retention.days` and with no hit left.
    pub accounts_deleted: u64,
}

impl PurgeReport {
    pub fn total(&self) -> u64 {
        self.hits_deleted + self.hits_blanked + self.accounts_deleted
    }
}

impl ReviewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::New => "new",
            ReviewStatus::Confirmed => "confirmed",
            ReviewStatus::Dismissed => "dismissed",
            ReviewStatus::Escalated => "escalated",
        }
    }
}

impl std::fmt::Display for ReviewStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReviewStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "new" => Ok(ReviewStatus::New),
            "confirmed" => Ok(ReviewStatus::Confirmed),
            "dismissed" => Ok(ReviewStatus::Dismissed),
            "escalated" => Ok(ReviewStatus::Escalated),
            other => Err(format!("unknown review status `{other}`")),
        }
    }
}

/// A time as stored: RFC 3339 UTC with nanoseconds and `Z`, fixed width so that text order is
/// time order (SQL comparisons and `ORDER BY` on these columns are correct).
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn parse_ts(s: &str, what: impl FnOnce() -> String) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt { what: what(), detail: format!("`{s}` is not an RFC 3339 time: {e}") })
}

fn parse_json<T: serde::de::DeserializeOwned>(s: &str, what: impl FnOnce() -> String) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt { what: what(), detail: e.to_string() })
}

fn to_json<T: Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|source| StoreError::Serialise { what: what.to_string(), source })
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn ucount(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Longest error text kept for a digest or a source (an error can quote a whole response).
const MAX_ERROR_CHARS: usize = 2000;

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_ERROR_CHARS {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(MAX_ERROR_CHARS).collect();
        c.push('…');
        c
    }
}

/// The severity a hit is filed under: the classifier's, else the most urgent finding's. A hit
/// with neither (a classifier bug) is filed as medium rather than understated.
fn hit_severity(c: &Classification) -> Severity {
    c.severity.or_else(|| c.findings.iter().map(|f| f.severity).max()).unwrap_or(Severity::Medium)
}

/// How many scan runs `status` shows.
const STATUS_RUNS: i64 = 10;

const HIT_COLUMNS: &str = "id, source, platform, post_platform_id, account_platform_id, account_handle, \
     account_display_name, profile_url, force, post_url, post_created_at, retrieved_at, text, categories, \
     severity, classification, identity, status, digest_id";

fn hit_from_row(row: &SqliteRow) -> Result<HitRecord> {
    let id: i64 = row.try_get("id")?;
    let col = |c: &str| format!("hit {id}, column {c}");
    let text_col = |name: &str| -> Result<String> { Ok(row.try_get::<String, _>(name)?) };
    let categories: Vec<String> = parse_json(&text_col("categories")?, || col("categories"))?;
    let categories = categories
        .iter()
        .map(|c| Category::from_str(c).map_err(|e| StoreError::Corrupt { what: col("categories"), detail: e.to_string() }))
        .collect::<Result<Vec<_>>>()?;
    let severity = Severity::from_str(&text_col("severity")?)
        .map_err(|e| StoreError::Corrupt { what: col("severity"), detail: e.to_string() })?;
    let status =
        ReviewStatus::from_str(&text_col("status")?).map_err(|detail| StoreError::Corrupt { what: col("status"), detail })?;
    Ok(HitRecord {
        id,
        source: text_col("source")?,
        platform: text_col("platform")?,
        account_platform_id: text_col("account_platform_id")?,
        account_handle: text_col("account_handle")?,
        account_display_name: text_col("account_display_name")?,
        profile_url: row.try_get("profile_url")?,
        force: row.try_get("force")?,
        post_platform_id: text_col("post_platform_id")?,
        post_url: row.try_get("post_url")?,
        post_created_at: parse_ts(&text_col("post_created_at")?, || col("post_created_at"))?,
        retrieved_at: parse_ts(&text_col("retrieved_at")?, || col("retrieved_at"))?,
        text: text_col("text")?,
        categories,
        severity,
        classification: parse_json(&text_col("classification")?, || col("classification"))?,
        identity: parse_json(&text_col("identity")?, || col("identity"))?,
        status,
        digest_id: row.try_get("digest_id")?,
    })
}

/// The [`HitFilter`] conditions, order and limit of a `SELECT ... FROM hits h WHERE ...`.
fn push_hit_filter<'a>(q: &mut QueryBuilder<'a, Sqlite>, filter: &HitFilter) {
    if let Some(status) = filter.status {
        q.push(" AND h.status = ").push_bind(status.as_str());
    }
    if let Some(force) = &filter.force {
        q.push(" AND h.force = ").push_bind(force.clone());
    }
    if let Some(category) = filter.category {
        q.push(" AND EXISTS (SELECT 1 FROM json_each(h.categories) c WHERE c.value = ").push_bind(category.as_str()).push(")");
    }
    if let Some(since) = filter.since {
        q.push(" AND h.post_created_at >= ").push_bind(ts(since));
    }
    q.push(" ORDER BY h.post_created_at DESC, h.id DESC");
    if let Some(limit) = filter.limit {
        q.push(" LIMIT ").push_bind(i64::from(limit));
    }
}

fn opt_ts(row: &SqliteRow, name: &str, what: impl Fn(&str) -> String) -> Result<Option<DateTime<Utc>>> {
    match row.try_get::<Option<String>, _>(name)? {
        Some(s) => Ok(Some(parse_ts(&s, || what(name))?)),
        None => Ok(None),
    }
}

/// Create `path` (and its parent directories) readable and writable only by its owner, before
/// SQLite opens it; tighten an existing file that is open to group or others.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(path)?;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    warn!(path = %path.display(), mode = format!("{mode:o}"), "database readable by others; restricting it to its owner");
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Account rows in one multi-row upsert (11 parameters each).
const ACCOUNTS_PER_STATEMENT: usize = 64;
/// Page cache of the connection that commits scan pages: 8 MiB (negative: KiB, as SQLite
/// takes it). It fills up whatever it is set to (a scan rewrites its source's cursor, megabytes
/// for a Mastodon source, every batch), and the program's fixed costs are ~100 MiB of the
/// 128 MB budget: 32 MiB took the e2e scan over it. See the README ("Memory") for the speed
/// measured with each.
const WRITER_CACHE_SIZE: &str = "-8192";
/// Hit rows in one multi-row insert (16 parameters each; SQLite allows 32,766 per statement).
const HITS_PER_STATEMENT: usize = 64;

/// Account records of staged, not yet committed pages, by (platform, platform id), with the
/// sequence number of the page that staged them.
#[derive(Default)]
struct Staged {
    seq: u64,
    accounts: std::collections::HashMap<(String, String), (u64, AccountUpdate)>,
}

/// A page handed to the write path and not yet committed (see [`Store::stage`]).
#[derive(Debug)]
pub struct StagedPage {
    seq: u64,
    page: PageCommit,
}

impl StagedPage {
    /// Rows the page writes: its accounts, hits and cursor.
    pub fn rows(&self) -> usize {
        self.page.accounts.len() + self.page.hits.len() + usize::from(self.page.cursor.is_some())
    }
}

/// When a [`BatchWriter`] commits what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Commit once this many rows are waiting.
    pub max_rows: usize,
    /// Commit once the oldest waiting page has waited this long.
    pub max_delay: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits { max_rows: 5_000, max_delay: Duration::from_millis(250) }
    }
}

/// The batched writer: group commit of several pages per transaction, bounded by rows and by
/// time. Pages are committed in the order they were pushed, each batch in one transaction with
/// the cursors after its last page, so a crash loses at most the batch not yet committed — and,
/// as its cursors were not committed either, a rescan fetches exactly those pages again (no loss,
/// no duplicate). Memory is bounded by [`BatchLimits::max_rows`] rows plus one page.
pub struct BatchWriter {
    store: Store,
    limits: BatchLimits,
    pending: Vec<StagedPage>,
    rows: usize,
    oldest: Option<std::time::Instant>,
}

impl BatchWriter {
    pub fn new(store: Store, limits: BatchLimits) -> BatchWriter {
        BatchWriter { store, limits, pending: vec![], rows: 0, oldest: None }
    }

    /// Add a staged page; commits the batch when it is full or its oldest page is due. Returns
    /// the hits newly stored by that commit (0 when nothing was committed).
    pub async fn push(&mut self, page: StagedPage) -> Result<u64> {
        // Only the last cursor of a source in a batch is committed: drop the earlier ones now
        // (a cursor such as Mastodon's, with a mark per account, can be megabytes).
        if page.page.cursor.is_some() {
            for p in self.pending.iter_mut().filter(|p| p.page.source == page.page.source) {
                if p.page.cursor.take().is_some() {
                    self.rows -= 1;
                }
            }
        }
        self.rows += page.rows();
        self.pending.push(page);
        self.oldest.get_or_insert_with(std::time::Instant::now);
        if self.rows >= self.limits.max_rows || self.due() {
            return self.flush().await;
        }
        Ok(0)
    }

    /// Stage `page` on the store and add it (see [`BatchWriter::push`]).
    pub async fn push_page(&mut self, page: PageCommit) -> Result<u64> {
        let staged = self.store.stage(page);
        self.push(staged).await
    }

    /// When the waiting batch must be committed (`None`: nothing waits).
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.oldest.map(|t| t + self.limits.max_delay)
    }

    fn due(&self) -> bool {
        self.deadline().is_some_and(|d| std::time::Instant::now() >= d)
    }

    /// Pages waiting for commit.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// Commit everything waiting, in one transaction. Returns the hits newly stored.
    pub async fn flush(&mut self) -> Result<u64> {
        let pages = std::mem::take(&mut self.pending);
        self.rows = 0;
        self.oldest = None;
        self.store.commit_staged(&pages).await
    }
}

/// Handle to the database.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// The connection scan pages are committed through (see [`Store::commit_staged`]).
    writer: SqlitePool,
    path: PathBuf,
    /// Account records of pages staged for commit and not yet committed (see [`Store::stage`]).
    staged: std::sync::Arc<std::sync::Mutex<Staged>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Open (creating it readable only by its owner) and migrate the database at `path`.
    pub async fn open(path: &Path) -> Result<Store> {
        let open_err = |source: sqlx::Error| StoreError::Open { path: path.display().to_string(), source };
        create_private_file(path).map_err(|e| open_err(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // FULL: a digest marked sent stays marked even through a power cut.
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options.clone()).await.map_err(open_err)?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        // Scan pages are written through one connection of their own with a larger page cache:
        // a batch touches index pages all over the hit indexes, and with SQLite's default 2 MiB
        // cache they are spilled and re-read again and again once the database outgrows it.
        // Its statement journals (a multi-row insert that fails half-way is undone by one) are
        // kept in memory, not written to a temporary file: one statement's pages at most.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.pragma("cache_size", WRITER_CACHE_SIZE).pragma("temp_store", "MEMORY"))
            .await
            .map_err(open_err)?;
        Ok(Store { pool, writer, path: path.to_path_buf(), staged: Default::default() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Close every connection (checkpointing the WAL when this was the last one).
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    pub async fn cursor(&self, source: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT cursor FROM source_state WHERE source = ?").bind(source).fetch_optional(&self.pool).await?;
        Ok(row.and_then(|r| r.0))
    }

    /// Accumulated post signals for accounts of a source, by platform id.
    pub async fn post_signals(&self, platform: &str, platform_id: &str) -> Result<Option<PostSignals>> {
        Ok(self.stored_account(platform, platform_id).await?.map(|s| s.post_signals))
    }

    /// What is remembered of an account (no bio: the store never keeps one): its names, the
    /// verdict last reached with its profile, and its accumulated post signals. For sources
    /// that deliver posts without their author's profile (Jetstream).
    pub async fn stored_account(&self, platform: &str, platform_id: &str) -> Result<Option<StoredAccount>> {
        Ok(self.stored_accounts(platform, &[platform_id]).await?.remove(platform_id))
    }

    /// [`Store::stored_account`] for many accounts of one platform at once (one query per few
    /// hundred ids, not one per id: a page of a whole-network stream has an author per post).
    /// Accounts the store does not remember are absent from the map.
    pub async fn stored_accounts(&self, platform: &str, ids: &[&str]) -> Result<HashMap<String, StoredAccount>> {
        const IDS_PER_QUERY: usize = 512;
        let mut found = HashMap::new();
        let mut unstaged = Vec::with_capacity(ids.len());
        for &id in ids {
            match self.staged_account(platform, id) {
                // As the database would give it back: no bio.
                Some(u) => {
                    let account = Account { bio: String::new(), ..u.account };
                    found.insert(id.to_string(), StoredAccount { account, verdict: u.verdict, post_signals: u.post_signals });
                }
                None => unstaged.push(id),
            }
        }
        for chunk in unstaged.chunks(IDS_PER_QUERY) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT platform_id, handle, display_name, profile_url, verdict, post_signals FROM accounts WHERE platform = ",
            );
            q.push_bind(platform).push(" AND platform_id IN (");
            let mut sep = q.separated(", ");
            // The list is padded (repeating its last id) to a power of two, so a stream's pages,
            // each with its own number of authors, share a few prepared statements from the
            // connection's cache instead of preparing a new one almost every page.
            let padded = chunk.len().next_power_of_two().min(IDS_PER_QUERY);
            for id in chunk.iter().chain(std::iter::repeat(&chunk[chunk.len() - 1])).take(padded) {
                sep.push_bind(*id);
            }
            q.push(")");
            for row in q.build().fetch_all(&self.pool).await? {
                let platform_id: String = row.try_get("platform_id")?;
                let what = |col: &str| format!("account {platform}/{platform_id}, column {col}");
                let stored = StoredAccount {
                    account: Account {
                        platform: platform.to_string(),
                        platform_id: platform_id.clone(),
                        handle: row.try_get("handle")?,
                        display_name: row.try_get("display_name")?,
                        bio: String::new(),
                        profile_url: row.try_get("profile_url")?,
                    },
                    verdict: parse_json(&row.try_get::<String, _>("verdict")?, || what("verdict"))?,
                    post_signals: parse_json(&row.try_get::<String, _>("post_signals")?, || what("post_signals"))?,
                };
                found.insert(platform_id, stored);
            }
        }
        Ok(found)
    }

    /// Commit one page atomically; returns how many hits were new (duplicates are ignored).
    pub async fn commit_page(&self, page: PageCommit) -> Result<u64> {
        let staged = self.stage(page);
        self.commit_staged(std::slice::from_ref(&staged)).await
    }

    /// Hand a page to the write path before it is committed: from now on [`Store::post_signals`]
    /// and [`Store::stored_account`] answer with the page's account records, so the next page can
    /// be processed while this one waits in a [`BatchWriter`]. Commit it with
    /// [`Store::commit_staged`] (or a [`BatchWriter`]); either way the staged records are dropped
    /// when the commit ends, committed or not.
    pub fn stage(&self, page: PageCommit) -> StagedPage {
        let mut staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        staged.seq += 1;
        let seq = staged.seq;
        for u in &page.accounts {
            let key = (u.account.platform.clone(), u.account.platform_id.clone());
            staged.accounts.insert(key, (seq, u.clone()));
        }
        StagedPage { seq, page }
    }

    fn staged_account(&self, platform: &str, platform_id: &str) -> Option<AccountUpdate> {
        let staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        if staged.accounts.is_empty() {
            return None;
        }
        staged.accounts.get(&(platform.to_string(), platform_id.to_string())).map(|(_, u)| u.clone())
    }

    /// Forget the staged records of `pages` (after their commit, or its failure), unless a later
    /// page staged the same account since.
    fn unstage(&self, pages: &[StagedPage]) {
        let seqs: std::collections::HashSet<u64> = pages.iter().map(|p| p.seq).collect();
        let mut staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        for p in pages {
            for u in &p.page.accounts {
                let key = (u.account.platform.clone(), u.account.platform_id.clone());
                if staged.accounts.get(&key).is_some_and(|(seq, _)| seqs.contains(seq)) {
                    staged.accounts.remove(&key);
                }
            }
        }
    }

    /// Commit several staged pages in ONE transaction (group commit): their accounts, hits and
    /// each source's cursor after the last of them. Returns how many hits were new. All or
    /// nothing: a crash or an error leaves the database as it was before the first of them, with
    /// the cursors before them too, so a rescan fetches exactly these pages again.
    pub async fn commit_staged(&self, pages: &[StagedPage]) -> Result<u64> {
        let result = self.write_pages(pages).await;
        self.unstage(pages);
        result
    }

    async fn write_pages(&self, pages: &[StagedPage]) -> Result<u64> {
        if pages.is_empty() {
            return Ok(0);
        }
        let now = ts(Utc::now());
        // Serialise everything before the transaction starts, so nothing can fail half-way for
        // a reason other than the database itself (which rolls the whole batch back).
        struct AccountRow<'a> {
            a: &'a Account,
            identity: &'static str,
            force: Option<&'a str>,
            verdict: String,
            signals: String,
        }
        // The last record of each account in the batch is the one that stands.
        let mut latest: std::collections::HashMap<(&str, &str), &AccountUpdate> = std::collections::HashMap::new();
        let mut order: Vec<(&str, &str)> = vec![];
        for u in pages.iter().flat_map(|p| &p.page.accounts) {
            let key = (u.account.platform.as_str(), u.account.platform_id.as_str());
            if latest.insert(key, u).is_none() {
                order.push(key);
            }
        }
        let accounts = order
            .iter()
            .map(|key| {
                let u = latest[key];
                Ok(AccountRow {
                    a: &u.account,
                    identity: u.verdict.identity.as_str(),
                    force: u.verdict.force.as_deref(),
                    verdict: to_json(&u.verdict, "identity verdict")?,
                    signals: to_json(&u.post_signals, "post signals")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        struct HitRow<'a> {
            h: &'a NewHit,
            text: String,
            categories: String,
            severity: &'static str,
            classification: String,
            identity: String,
        }
        let hits = pages
            .iter()
            .flat_map(|p| &p.page.hits)
            .map(|h| {
                let cats: Vec<&str> = h.classification.categories.iter().map(|c| c.as_str()).collect();
                Ok(HitRow {
                    h,
                    text: h.post.full_text().into_owned(),
                    categories: to_json(&cats, "categories")?,
                    severity: hit_severity(&h.classification).as_str(),
                    classification: to_json(&h.classification, "classification")?,
                    identity: to_json(&h.verdict, "identity verdict")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Each source's cursor after the last page of the batch that moves it.
        let mut cursors: Vec<(&str, &str)> = vec![];
        for p in pages {
            if let Some(c) = &p.page.cursor {
                match cursors.iter_mut().find(|(s, _)| *s == p.page.source) {
                    Some(entry) => entry.1 = c,
                    None => cursors.push((&p.page.source, c)),
                }
            }
        }

        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        // Multi-row statements of a fixed size (prepared once per connection and reused); the
        // last, shorter chunk of a batch has its own.
        for chunk in accounts.chunks(ACCOUNTS_PER_STATEMENT) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO accounts (platform, platform_id, handle, display_name, profile_url, identity, force, \
                 verdict, post_signals, first_seen, last_seen) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(&r.a.platform)
                    .push_bind(&r.a.platform_id)
                    .push_bind(&r.a.handle)
                    .push_bind(&r.a.display_name)
                    .push_bind(&r.a.profile_url)
                    .push_bind(r.identity)
                    .push_bind(r.force)
                    .push_bind(&r.verdict)
                    .push_bind(&r.signals)
                    .push_bind(&now)
                    .push_bind(&now);
            });
            q.push(
                " ON CONFLICT (platform, platform_id) DO UPDATE SET handle = excluded.handle, \
                 display_name = excluded.display_name, profile_url = excluded.profile_url, \
                 identity = excluded.identity, force = excluded.force, verdict = excluded.verdict, \
                 post_signals = excluded.post_signals, last_seen = excluded.last_seen",
            );
            q.build().execute(&mut *tx).await?;
        }
        let mut new_hits = 0u64;
        for chunk in hits.chunks(HITS_PER_STATEMENT) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO hits (source, platform, post_platform_id, account_platform_id, account_handle, \
                 account_display_name, profile_url, force, post_url, post_created_at, retrieved_at, text, \
                 categories, severity, classification, identity) ",
            );
            q.push_values(chunk, |mut b, r| {
                let h = r.h;
                b.push_bind(&h.source)
                    .push_bind(&h.post.platform)
                    .push_bind(&h.post.platform_id)
                    .push_bind(&h.account.platform_id)
                    .push_bind(&h.account.handle)
                    .push_bind(&h.account.display_name)
                    .push_bind(&h.account.profile_url)
                    .push_bind(&h.verdict.force)
                    .push_bind(&h.post.url)
                    .push_bind(ts(h.post.created_at))
                    .push_bind(ts(h.retrieved_at))
                    .push_bind(&r.text)
                    .push_bind(&r.categories)
                    .push_bind(r.severity)
                    .push_bind(&r.classification)
                    .push_bind(&r.identity);
            });
            // A hit already stored (a re-read post, or the same post twice in one batch) is not
            // stored again.
            q.push(" ON CONFLICT (platform, post_platform_id, account_platform_id) DO NOTHING");
            new_hits += q.build().execute(&mut *tx).await?.rows_affected();
        }
        for (source, cursor) in cursors {
            sqlx::query(
                "INSERT INTO source_state (source, cursor, cursor_at) VALUES (?, ?, ?) \
                 ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, cursor_at = excluded.cursor_at",
            )
            .bind(source)
            .bind(cursor)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(new_hits)
    }

    pub async fn begin_run(&self) -> Result<i64> {
        let (id,): (i64,) = sqlx::query_as("INSERT INTO scan_runs (started_at) VALUES (?) RETURNING id")
            .bind(ts(Utc::now()))
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    /// Record a source's outcome in a run (also updates its last success / last error).
    pub async fn record_source(&self, run: i64, summary: &SourceSummary) -> Result<()> {
        let now = ts(Utc::now());
        let error = summary.error.as_deref().map(clip);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let exists: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM scan_runs WHERE id = ?").bind(run).fetch_optional(&mut *tx).await?;
        if exists.is_none() {
            return Err(StoreError::RunNotFound(run));
        }
        sqlx::query(
            "INSERT INTO run_sources (run_id, source, accounts_seen, identified, posts_read, hits, errors, error, recorded_at, \
             suppressed, rate_limit_waits, opted_out) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (run_id, source) DO UPDATE SET accounts_seen = excluded.accounts_seen, \
             identified = excluded.identified, posts_read = excluded.posts_read, hits = excluded.hits, \
             errors = excluded.errors, error = excluded.error, recorded_at = excluded.recorded_at, \
             suppressed = excluded.suppressed, rate_limit_waits = excluded.rate_limit_waits, \
             opted_out = excluded.opted_out",
        )
        .bind(run)
        .bind(&summary.source)
        .bind(count(summary.accounts_seen))
        .bind(count(summary.identified))
        .bind(count(summary.posts_read))
        .bind(count(summary.hits))
        .bind(count(summary.errors))
        .bind(&error)
        .bind(&now)
        .bind(count(summary.suppressed))
        .bind(count(summary.rate_limit_waits))
        .bind(count(summary.opted_out))
        .execute(&mut *tx)
        .await?;
        match &error {
            Some(error) => {
                sqlx::query(
                    "INSERT INTO source_state (source, last_error, last_error_at) VALUES (?, ?, ?) \
                     ON CONFLICT (source) DO UPDATE SET last_error = excluded.last_error, \
                     last_error_at = excluded.last_error_at",
                )
                .bind(&summary.source)
                .bind(error)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO source_state (source, last_success) VALUES (?, ?) \
                     ON CONFLICT (source) DO UPDATE SET last_success = excluded.last_success",
                )
                .bind(&summary.source)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn finish_run(&self, run: i64) -> Result<()> {
        let done = sqlx::query("UPDATE scan_runs SET finished_at = ? WHERE id = ?")
            .bind(ts(Utc::now()))
            .bind(run)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::RunNotFound(run));
        }
        Ok(())
    }

    /// Hits matching `filter`, newest post first.
    pub async fn list_hits(&self, filter: &HitFilter) -> Result<Vec<HitRecord>> {
        self.list_hits_scoped(filter, &HitScope::default()).await
    }

    pub async fn get_hit(&self, id: i64) -> Result<HitRecord> {
        let row =
            sqlx::query(&format!("SELECT {HIT_COLUMNS} FROM hits WHERE id = ?")).bind(id).fetch_optional(&self.pool).await?;
        match row {
            Some(row) => hit_from_row(&row),
            None => Err(StoreError::HitNotFound(id)),
        }
    }

    /// The hits with these ids, in the order given (a pending digest's hits, to resend it).
    /// An id that no longer exists (retention deleted it) is [`StoreError::HitNotFound`].
    pub async fn get_hits(&self, ids: &[i64]) -> Result<Vec<HitRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.get_hit(*id).await?);
        }
        Ok(out)
    }

    /// Hits found per day (UTC date of retrieval) and category since `since`, oldest day first,
    /// categories in taxonomy order: the digest's chart. A hit counts once in each of its
    /// categories; days and categories with no hit are absent.
    pub async fn daily_category_counts(&self, since: DateTime<Utc>) -> Result<Vec<DailyCount>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT substr(h.retrieved_at, 1, 10) AS day, c.value AS category, count(*) FROM hits h, json_each(h.categories) c \
             WHERE h.retrieved_at >= ? GROUP BY day, category",
        )
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .into_iter()
            .map(|(day, category, hits)| {
                let what = || format!("hits retrieved on {day}, column categories");
                Ok(DailyCount {
                    day: chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                        .map_err(|e| StoreError::Corrupt { what: what(), detail: format!("`{day}`: {e}") })?,
                    category: Category::from_str(&category)
                        .map_err(|e| StoreError::Corrupt { what: what(), detail: e.to_string() })?,
                    hits: ucount(hits),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|c| (c.day, c.category));
        Ok(out)
    }

    /// Force, retrieval time and categories of every hit retrieved since `since`: what the
    /// digest's per-route charts need, without loading post text or evidence (memory stays
    /// bounded by the chart's window, whatever the backlog).
    pub async fn hit_categories_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(Option<String>, DateTime<Utc>, Vec<Category>)>> {
        let rows: Vec<(i64, Option<String>, String, String)> =
            sqlx::query_as("SELECT id, force, retrieved_at, categories FROM hits WHERE retrieved_at >= ? ORDER BY id")
                .bind(ts(since))
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(id, force, at, cats)| {
                Ok((
                    force,
                    parse_ts(&at, || format!("hit {id}, column retrieved_at"))?,
                    parse_json(&cats, || format!("hit {id}, column categories"))?,
                ))
            })
            .collect()
    }

    /// Record a review decision (append-only log) and set the hit's status. See
    /// [`Store::review`] for what it does to remembered suppressions.
    pub async fn review_hit(&self, id: i64, status: ReviewStatus, note: &str, reviewer: &str) -> Result<()> {
        self.review(id, status, note, reviewer).await.map(|_| ())
    }

    /// Record a review decision (append-only log), set the hit's status, and keep remembered
    /// suppressions in step, in one transaction:
    /// - `dismissed`: each finding of the hit (platform, account, rule id, normalised matched
    ///   text) is remembered, and later scans do not store it again ([`Store::suppressions`]);
    /// - any other status on a hit that was dismissed: the suppressions its dismissal created
    ///   are lifted, unless another dismissed hit of the account has the same finding (the
    ///   suppression is then handed to that hit). The outcome says what was lifted;
    /// - a decision on a hit whose finding another hit's dismissal suppresses changes nothing
    ///   about that suppression; the outcome names the other hit.
    pub async fn review(&self, id: i64, status: ReviewStatus, note: &str, reviewer: &str) -> Result<ReviewOutcome> {
        let now = ts(Utc::now());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row =
            sqlx::query("SELECT status, platform, account_platform_id, post_platform_id, classification FROM hits WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else {
            return Err(StoreError::HitNotFound(id));
        };
        let what = |c: &str| format!("hit {id}, column {c}");
        let previous = ReviewStatus::from_str(&row.try_get::<String, _>("status")?)
            .map_err(|detail| StoreError::Corrupt { what: what("status"), detail })?;
        let platform: String = row.try_get("platform")?;
        let account: String = row.try_get("account_platform_id")?;
        let post: String = row.try_get("post_platform_id")?;
        let classification: Classification = parse_json(&row.try_get::<String, _>("classification")?, || what("classification"))?;
        sqlx::query("UPDATE hits SET status = ?, status_at = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(&now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO review_log (hit_id, reviewer, status, note, at) VALUES (?, ?, ?, ?, ?)")
            .bind(id)
            .bind(reviewer)
            .bind(status.as_str())
            .bind(note)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        let mut outcome = ReviewOutcome { previous: Some(previous), ..Default::default() };
        let keys: Vec<(String, String)> = classification
            .findings
            .iter()
            .filter_map(|f| matched_key(&f.matched).map(|k| (f.rule_id.clone(), k)))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if status == ReviewStatus::Dismissed {
            for (rule, key) in &keys {
                outcome.suppressions_added += sqlx::query(
                    "INSERT INTO suppressions (platform, account_platform_id, rule_id, normalised_sha256, hit_id, \
                     post_platform_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (platform, account_platform_id, rule_id, normalised_sha256) DO NOTHING",
                )
                .bind(&platform)
                .bind(&account)
                .bind(rule)
                .bind(key)
                .bind(id)
                .bind(&post)
                .bind(&now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
        } else {
            let lifted: Vec<(String, String)> =
                sqlx::query_as("SELECT rule_id, normalised_sha256 FROM suppressions WHERE hit_id = ?")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
            if !lifted.is_empty() {
                sqlx::query("DELETE FROM suppressions WHERE hit_id = ?").bind(id).execute(&mut *tx).await?;
                // Another dismissed hit of the account with the same finding keeps it suppressed.
                let others = sqlx::query(
                    "SELECT id, post_platform_id, classification FROM hits WHERE platform = ? AND account_platform_id = ? \
                     AND status = 'dismissed' AND id != ? ORDER BY id",
                )
                .bind(&platform)
                .bind(&account)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                let mut handed = std::collections::HashSet::new();
                for other in &others {
                    let other_id: i64 = other.try_get("id")?;
                    let Ok(c) = serde_json::from_str::<Classification>(&other.try_get::<String, _>("classification")?) else {
                        continue;
                    };
                    for f in &c.findings {
                        let Some(key) = matched_key(&f.matched) else { continue };
                        let k = (f.rule_id.clone(), key);
                        if lifted.contains(&k) && handed.insert(k.clone()) {
                            sqlx::query(
                                "INSERT INTO suppressions (platform, account_platform_id, rule_id, normalised_sha256, \
                                 hit_id, post_platform_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            )
                            .bind(&platform)
                            .bind(&account)
                            .bind(&k.0)
                            .bind(&k.1)
                            .bind(other_id)
                            .bind(other.try_get::<String, _>("post_platform_id")?)
                            .bind(&now)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
                outcome.suppressions_lifted = (lifted.len() - handed.len()) as u64;
            }
        }
        for (rule, key) in &keys {
            let by: Option<(Option<i64>,)> = sqlx::query_as(
                "SELECT hit_id FROM suppressions WHERE platform = ? AND account_platform_id = ? AND rule_id = ? \
                 AND normalised_sha256 = ? AND (hit_id IS NULL OR hit_id != ?)",
            )
            .bind(&platform)
            .bind(&account)
            .bind(rule)
            .bind(key)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((hit,)) = by {
                outcome.suppressed_by_other.push((rule.clone(), hit));
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// The findings dismissals suppress for one account (load once per account in a scan).
    pub async fn suppressions(&self, platform: &str, account_platform_id: &str) -> Result<SuppressionSet> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT rule_id, normalised_sha256, post_platform_id FROM suppressions \
             WHERE platform = ? AND account_platform_id = ?",
        )
        .bind(platform)
        .bind(account_platform_id)
        .fetch_all(&self.pool)
        .await?;
        let mut set = SuppressionSet::default();
        for (rule, key, post) in rows {
            set.keys.insert((rule, key));
            set.origin_posts.insert(post);
        }
        Ok(set)
    }

    /// A hit's review log, oldest first.
    pub async fn review_log(&self, id: i64) -> Result<Vec<ReviewEntry>> {
        let rows = sqlx::query("SELECT id, hit_id, reviewer, status, note, at FROM review_log WHERE hit_id = ? ORDER BY id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let entry: i64 = row.try_get("id")?;
                let what = |c: &str| format!("review_log {entry}, column {c}");
                Ok(ReviewEntry {
                    id: entry,
                    hit_id: row.try_get("hit_id")?,
                    reviewer: row.try_get("reviewer")?,
                    status: ReviewStatus::from_str(&row.try_get::<String, _>("status")?)
                        .map_err(|detail| StoreError::Corrupt { what: what("status"), detail })?,
                    note: row.try_get("note")?,
                    at: parse_ts(&row.try_get::<String, _>("at")?, || what("at"))?,
                })
            })
            .collect()
    }

    /// Every hit not yet in a sent digest, ordered by force, account handle, post time.
    /// Hits of an unknown force come last. Loads them all: the digest reads the backlog through
    /// [`Store::unsent_queue`] and its neighbours instead.
    pub async fn unsent_hits(&self) -> Result<Vec<HitRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {HIT_COLUMNS} FROM hits WHERE digest_id IS NULL \
             ORDER BY force IS NULL, force, account_handle, post_created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(hit_from_row).collect()
    }

    /// Scan runs that finished since the last digest was sent (all runs when none was), newest
    /// first: the digest's coverage section. A run that started since then and never finished
    /// (a crash) is included too, with no finish time, so silence is never mistaken for
    /// coverage.
    pub async fn runs_since_last_digest(&self) -> Result<Vec<RunReport>> {
        self.load_runs(
            "WITH last AS (SELECT max(sent_at) AS t FROM digests WHERE state = 'sent') \
             SELECT r.id, r.started_at, r.finished_at FROM scan_runs r, last \
             WHERE last.t IS NULL OR r.finished_at > last.t OR (r.finished_at IS NULL AND r.started_at > last.t) \
             ORDER BY r.id DESC",
        )
        .await
    }

    async fn load_runs(&self, sql: &str) -> Result<Vec<RunReport>> {
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        let mut runs = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let what = |c: &str| format!("scan run {id}, column {c}");
            let started_at = parse_ts(&row.try_get::<String, _>("started_at")?, || what("started_at"))?;
            let finished_at = opt_ts(row, "finished_at", what)?;
            let summaries = sqlx::query(
                "SELECT source, accounts_seen, identified, posts_read, hits, errors, error, suppressed, rate_limit_waits, \
                 opted_out FROM run_sources WHERE run_id = ? ORDER BY id",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|s| {
                Ok(SourceSummary {
                    source: s.try_get("source")?,
                    accounts_seen: ucount(s.try_get("accounts_seen")?),
                    identified: ucount(s.try_get("identified")?),
                    posts_read: ucount(s.try_get("posts_read")?),
                    hits: ucount(s.try_get("hits")?),
                    errors: ucount(s.try_get("errors")?),
                    error: s.try_get("error")?,
                    suppressed: ucount(s.try_get("suppressed")?),
                    rate_limit_waits: ucount(s.try_get("rate_limit_waits")?),
                    opted_out: ucount(s.try_get("opted_out")?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
            runs.push(RunReport { id, started_at, finished_at, summaries });
        }
        Ok(runs)
    }

    /// Before handing a message to the transport: record it as pending with the hits it carries
    /// (so a crash between send and mark is visible, never silent). Returns the digest id.
    /// Fails with [`StoreError::HitNotFound`] or [`StoreError::AlreadySent`] (nothing recorded)
    /// when a hit does not exist or was already delivered.
    pub async fn begin_digest(&self, route: &str, recipients: &[String], message_id: &str, hit_ids: &[i64]) -> Result<i64> {
        let recipients = to_json(&recipients, "recipients")?;
        let mut ids: Vec<i64> = Vec::with_capacity(hit_ids.len());
        for id in hit_ids {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let (digest,): (i64,) = sqlx::query_as(
            "INSERT INTO digests (route, recipients, message_id, state, created_at) VALUES (?, ?, ?, 'pending', ?) RETURNING id",
        )
        .bind(route)
        .bind(&recipients)
        .bind(message_id)
        .bind(ts(Utc::now()))
        .fetch_one(&mut *tx)
        .await?;
        for id in &ids {
            let row: Option<(Option<i64>,)> =
                sqlx::query_as("SELECT digest_id FROM hits WHERE id = ?").bind(id).fetch_optional(&mut *tx).await?;
            match row {
                None => return Err(StoreError::HitNotFound(*id)),
                Some((Some(sent_in),)) => return Err(StoreError::AlreadySent { hit: *id, digest: sent_in }),
                Some((None,)) => {}
            }
            sqlx::query("INSERT INTO digest_hits (digest_id, hit_id) VALUES (?, ?)")
                .bind(digest)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(digest)
    }

    /// The transport accepted digest `id`: mark it sent and its hits as sent, in one transaction.
    /// Marking an already sent digest again changes nothing.
    pub async fn digest_sent(&self, id: i64) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let state: Option<(String,)> =
            sqlx::query_as("SELECT state FROM digests WHERE id = ?").bind(id).fetch_optional(&mut *tx).await?;
        match state {
            None => return Err(StoreError::DigestNotFound(id)),
            Some((s,)) if s == "sent" => return Ok(()),
            Some(_) => {}
        }
        sqlx::query("UPDATE digests SET state = 'sent', sent_at = ? WHERE id = ?")
            .bind(ts(Utc::now()))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let marked = sqlx::query(
            "UPDATE hits SET digest_id = ?1 WHERE digest_id IS NULL AND id IN (SELECT hit_id FROM digest_hits WHERE digest_id = ?1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let (carried,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM digest_hits WHERE digest_id = ?").bind(id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        if ucount(carried) != marked {
            warn!(digest = id, carried, marked, "some hits of this digest had already been delivered by another digest");
        }
        Ok(())
    }

    /// The transport refused digest `id`: record the error; its hits stay unsent. A digest
    /// already marked sent stays sent (the error is logged, not recorded).
    pub async fn digest_failed(&self, id: i64, error: &str) -> Result<()> {
        let done = sqlx::query("UPDATE digests SET state = 'failed', error = ?, failed_at = ? WHERE id = ? AND state != 'sent'")
            .bind(clip(error))
            .bind(ts(Utc::now()))
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            let exists: Option<(i64,)> =
                sqlx::query_as("SELECT id FROM digests WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
            if exists.is_none() {
                return Err(StoreError::DigestNotFound(id));
            }
            warn!(digest = id, error, "a failure was reported for a digest already marked sent; it stays sent");
        }
        Ok(())
    }

    /// Digests recorded as pending and never marked sent or failed, oldest first: resend each
    /// with the same Message-ID, then mark it.
    pub async fn pending_digests(&self) -> Result<Vec<PendingDigest>> {
        let rows =
            sqlx::query("SELECT id, route, recipients, message_id, created_at FROM digests WHERE state = 'pending' ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let what = |c: &str| format!("digest {id}, column {c}");
            let hit_ids: Vec<i64> =
                sqlx::query_as::<_, (i64,)>("SELECT hit_id FROM digest_hits WHERE digest_id = ? ORDER BY rowid")
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(|r| r.0)
                    .collect();
            out.push(PendingDigest {
                id,
                route: row.try_get("route")?,
                recipients: parse_json(&row.try_get::<String, _>("recipients")?, || what("recipients"))?,
                message_id: row.try_get("message_id")?,
                created_at: parse_ts(&row.try_get::<String, _>("created_at")?, || what("created_at"))?,
                hit_ids,
            });
        }
        Ok(out)
    }

    /// Apply retention: delete hits older than `retention.days`, and the post text and evidence
    /// of hits dismissed more than `retention.dismissed_days` ago. Returns rows affected: hits
    /// deleted + hits blanked + accounts deleted (see [`Store::purge`] for each count).
    pub async fn purge_expired(&self, retention: &crate::config::Retention, now: DateTime<Utc>) -> Result<u64> {
        Ok(self.purge(retention, now).await?.total())
    }

    /// [`Store::purge_expired`] with the counts of each kind. Ages count from when a hit was
    /// retrieved (held data) and from when it was dismissed; the pass is one transaction and
    /// writes an audit entry.
    pub async fn purge(&self, retention: &crate::config::Retention, now: DateTime<Utc>) -> Result<PurgeReport> {
        let all_cutoff = ts(now - chrono::Duration::days(i64::from(retention.days)));
        let dismissed_cutoff = ts(now - chrono::Duration::days(i64::from(retention.dismissed_days)));
        let mut report = PurgeReport::default();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        report.hits_deleted =
            sqlx::query("DELETE FROM hits WHERE retrieved_at < ?").bind(&all_cutoff).execute(&mut *tx).await?.rows_affected();
        let rows = sqlx::query(
            "SELECT id, classification, identity FROM hits \
             WHERE status = 'dismissed' AND status_at < ? AND evidence_purged_at IS NULL",
        )
        .bind(&dismissed_cutoff)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let classification = blank_classification(&row.try_get::<String, _>("classification")?);
            let identity = blank_identity(&row.try_get::<String, _>("identity")?);
            sqlx::query("UPDATE hits SET text = '', classification = ?, identity = ?, evidence_purged_at = ? WHERE id = ?")
                .bind(to_json(&classification, "classification")?)
                .bind(identity)
                .bind(ts(now))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            report.hits_blanked += 1;
        }
        report.accounts_deleted = sqlx::query(
            "DELETE FROM accounts WHERE last_seen < ? AND NOT EXISTS \
             (SELECT 1 FROM hits h WHERE h.platform = accounts.platform AND h.account_platform_id = accounts.platform_id)",
        )
        .bind(&all_cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("INSERT INTO audit (at, actor, action, detail) VALUES (?, 'retention', 'purge', ?)")
            .bind(ts(Utc::now()))
            .bind(format!(
                "deleted {} hit(s) retrieved over {} days ago, blanked text and evidence of {} hit(s) dismissed over {} days ago, deleted {} account(s)",
                report.hits_deleted, retention.days, report.hits_blanked, retention.dismissed_days, report.accounts_deleted
            ))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        info!(
            hits_deleted = report.hits_deleted,
            hits_blanked = report.hits_blanked,
            accounts_deleted = report.accounts_deleted,
            "retention applied"
        );
        Ok(report)
    }

    /// Append an entry to the audit trail.
    pub async fn audit(&self, actor: &str, action: &str, detail: &str) -> Result<()> {
        sqlx::query("INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)")
            .bind(ts(Utc::now()))
            .bind(actor)
            .bind(action)
            .bind(detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The newest `limit` audit entries, newest first.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT id, at, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get("id")?;
                Ok(AuditEntry {
                    id,
                    at: parse_ts(&row.try_get::<String, _>("at")?, || format!("audit {id}, column at"))?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }

    pub async fn status(&self) -> Result<StatusReport> {
        let runs = self
            .load_runs(&format!("SELECT id, started_at, finished_at FROM scan_runs ORDER BY id DESC LIMIT {STATUS_RUNS}"))
            .await?;
        let rows = sqlx::query(
            "SELECT s.source, s.cursor, s.last_success, s.last_error, s.last_error_at, \
                 r.rate_limit_waits, r.opted_out FROM source_state s \
                 LEFT JOIN run_sources r ON r.id = (SELECT max(id) FROM run_sources WHERE source = s.source) \
                 ORDER BY s.source",
        )
        .fetch_all(&self.pool)
        .await?;
        let sources = rows
            .iter()
            .map(|row| {
                let source: String = row.try_get("source")?;
                let what = |c: &str| format!("source_state {source}, column {c}");
                Ok(SourceState {
                    cursor: row.try_get("cursor")?,
                    last_success: opt_ts(row, "last_success", what)?,
                    last_error: row.try_get("last_error")?,
                    last_error_at: opt_ts(row, "last_error_at", what)?,
                    last_run_rate_limit_waits: row.try_get::<Option<i64>, _>("rate_limit_waits")?.map(ucount),
                    last_run_opted_out: row.try_get::<Option<i64>, _>("opted_out")?.map(ucount),
                    source: source.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (unsent,): (i64,) = sqlx::query_as("SELECT count(*) FROM hits WHERE digest_id IS NULL").fetch_one(&self.pool).await?;
        let database_bytes = file_len(&self.path) + file_len(&with_suffix(&self.path, "-wal"));
        Ok(StatusReport { runs, sources, unsent_hits: ucount(unsent), database_bytes })
    }
}

/// A classification with the evidence words and spans removed (rule ids, categories and
/// severities stay). A stored value that does not parse is replaced by an empty one: retention
/// must never be blocked by a corrupt row.
fn blank_classification(json: &str) -> Classification {
    let mut c: Classification = serde_json::from_str(json).unwrap_or_default();
    for f in &mut c.findings {
        f.matched.clear();
        f.spans.clear();
    }
    c
}

/// An identity verdict JSON with the evidence words removed. Input that does not parse becomes
/// `{}` (read back as [`StoreError::Corrupt`]) rather than keeping words that could not be
/// blanked.
fn blank_identity(json: &str) -> String {
    match serde_json::from_str::<IdentityVerdict>(json) {
        Ok(mut v) => {
            for e in &mut v.evidence {
                e.text.clear();
            }
            serde_json::to_string(&v).unwrap_or_else(|_| "{}".into())
        }
        Err(_) => "{}".into(),
    }
}

mod backlog;
pub use backlog::{HitScope, RouteFilter, UnsentCounts, WaitingAccount};

#[cfg(test)]
mod tests;
