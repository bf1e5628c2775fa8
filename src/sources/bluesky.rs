//! Bluesky source: public AT Protocol reads through an AppView (XRPC over HTTP, no login).
//!
//! A *pass* discovers accounts in two stages, in this order, each resumable: configured
//! `handles` (handles or DIDs, looked up with `app.bsky.actor.getProfiles`, at most 25 a
//! request) and `search_terms` (`app.bsky.actor.searchActors`, followed through its `cursor`).
//! Each discovery request makes one [`Page`]: the accounts it found (bio = `description`) and
//! their *new* posts from `app.bsky.feed.getAuthorFeed` (filter `posts_no_replies` unless
//! configured otherwise).
//!
//! **What is new.** The author feed can only be read newest first, ordered by the AppView's
//! sort time: the earlier of the record's `createdAt` and the post's `indexedAt`. Neither is a
//! reliable arrival order (a post can be indexed late, and `createdAt` is whatever the client
//! wrote), so for each account the cursor keeps a *floor* (the newest sort time read, minus
//! `overlap_secs`) and the URIs of the posts read at or above it. A read walks back from the
//! newest post, skipping the URIs it already has, and stops at the first item below the floor.
//! Late-indexed posts within the overlap are therefore read, once; a post that sorts below the
//! floor (backdated by its author by more than the overlap) is not seen by any feed reader.
//! When an account has more than `max_new_posts_per_account` new posts, the rest are read on
//! the next pass from the feed cursor where this read stopped, down to the same floor, so
//! nothing is lost. An account seen for the first time gives its newest `first_scan_pages`
//! pages.
//!
//! The source's cursor is JSON: the pass position and the per-account marks. A page's cursor
//! moves only what that page (and earlier ones) read, so a scan killed at any point resumes
//! without a gap or a duplicate. Reposts (`reason` = `reasonRepost`) are not the author's words
//! and are skipped; so are accounts that asked for their content not to be shown to logged-out
//! visitors (self-label `!no-unauthenticated`, configurable), counted in [`Page::skipped`].

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::debug;
use url::Url;

use super::http::{HttpClient, HttpSettings};
use super::{BuildContext, Page, Source, SourceError};
use crate::model::{Account, Post};

pub const PLATFORM: &str = "bluesky";

/// The public, cached AppView (no auth).
pub const DEFAULT_APPVIEW: &str = "https://public.api.bsky.app";

/// `app.bsky.actor.getProfiles` takes at most 25 actors.
pub const PROFILES_PER_REQUEST: usize = 25;

/// The self-label by which an account asks not to be shown to logged-out visitors.
pub const NO_UNAUTHENTICATED: &str = "!no-unauthenticated";

/// Feed filters `app.bsky.feed.getAuthorFeed` knows.
pub const FEED_FILTERS: &[&str] =
    &["posts_with_replies", "posts_no_replies", "posts_with_media", "posts_and_author_threads", "posts_with_video"];

/// `[[sources]]` keys of `kind = "bluesky"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueskyConfig {
    /// Base URL of the AppView, e.g. `https://public.api.bsky.app`.
    #[serde(default = "default_appview")]
    pub appview: String,
    /// Accounts always read: handles (`name.bsky.social`, with or without `@`) or DIDs.
    #[serde(default)]
    pub handles: Vec<String>,
    /// Account search terms (`app.bsky.actor.searchActors`).
    #[serde(default)]
    pub search_terms: Vec<String>,
    /// Most accounts per search term per pass.
    #[serde(default = "default_search_max")]
    pub search_max_accounts: u32,
    /// `filter` of `getAuthorFeed`.
    #[serde(default = "default_filter")]
    pub feed_filter: String,
    /// Feed items per request (1 to 100).
    #[serde(default = "default_per_request")]
    pub posts_per_request: u32,
    /// Pages of an account's newest posts read the first time it is seen.
    #[serde(default = "one")]
    pub first_scan_pages: u32,
    /// Most new posts per account per pass; the rest come next time, without a gap.
    #[serde(default = "default_max_new")]
    pub max_new_posts_per_account: u32,
    /// How far below the newest post read the next read looks again, for posts indexed late.
    #[serde(default = "default_overlap")]
    pub overlap_secs: u64,
    /// Skip accounts self-labelled `!no-unauthenticated`.
    #[serde(default = "yes")]
    pub skip_no_unauthenticated: bool,
    /// Web app base for profile and post links.
    #[serde(default = "default_web")]
    pub web_url: String,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_backoff_ms")]
    pub retry_backoff_ms: u64,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    #[serde(default = "default_concurrency")]
    pub max_concurrent_requests: u32,
    #[serde(default = "default_rps")]
    pub max_requests_per_second: u32,
    #[serde(default = "default_max_wait")]
    pub max_rate_limit_wait_secs: u64,
}

fn default_appview() -> String {
    DEFAULT_APPVIEW.to_string()
}
fn default_web() -> String {
    "https://bsky.app".to_string()
}
fn default_filter() -> String {
    "posts_no_replies".to_string()
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn default_search_max() -> u32 {
    100
}
fn default_per_request() -> u32 {
    50
}
fn default_max_new() -> u32 {
    500
}
fn default_overlap() -> u64 {
    3600
}
fn default_timeout() -> u64 {
    30
}
fn default_retries() -> u32 {
    4
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_max_body() -> u64 {
    8 * 1024 * 1024
}
fn default_concurrency() -> u32 {
    2
}
fn default_rps() -> u32 {
    3
}
fn default_max_wait() -> u64 {
    900
}

fn base_url(key: &str, value: &str) -> Result<String, String> {
    let url = Url::parse(value).map_err(|e| format!("`{key}`: `{value}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{key}`: `{value}` must be an http(s) URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{key}`: `{value}` must be a bare base URL, without a query"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A DID (`did:plc:…`, `did:web:…`) as the atproto spec allows it.
pub fn is_did(v: &str) -> bool {
    let mut parts = v.splitn(3, ':');
    let (Some("did"), Some(method), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !method.is_empty()
        && method.chars().all(|c| c.is_ascii_lowercase())
        && !id.is_empty()
        && !id.ends_with(':')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '%' | '-'))
}

/// A handle (a domain name of at least two labels), lower-cased, without a leading `@`.
pub fn normalise_handle(v: &str) -> Option<String> {
    let h = v.trim().trim_start_matches('@').to_ascii_lowercase();
    let labels: Vec<&str> = h.split('.').collect();
    let ok = h.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    ok.then_some(h)
}

impl BlueskyConfig {
    /// Check and normalise what serde cannot: every message names its key in backticks.
    pub fn validate(&mut self) -> Result<(), String> {
        self.appview = base_url("appview", &self.appview)?;
        self.web_url = base_url("web_url", &self.web_url)?;
        for actor in &mut self.handles {
            let a = actor.trim();
            if is_did(a) {
                *actor = a.to_string();
            } else if let Some(h) = normalise_handle(a) {
                *actor = h;
            } else {
                return Err(format!("`handles`: `{actor}` is neither a handle (name.example.com) nor a DID (did:plc:…)"));
            }
        }
        for term in &mut self.search_terms {
            let t = term.trim().to_string();
            if t.is_empty() {
                return Err("`search_terms`: terms must not be empty".into());
            }
            *term = t;
        }
        if !FEED_FILTERS.contains(&self.feed_filter.as_str()) {
            return Err(format!("`feed_filter`: `{}` is not one of {}", self.feed_filter, FEED_FILTERS.join(", ")));
        }
        if !(1..=100).contains(&self.posts_per_request) {
            return Err("`posts_per_request`: must be 1 to 100".into());
        }
        crate::sources::http::require_positive(&[
            ("timeout_secs", self.timeout_secs),
            ("max_body_bytes", self.max_body_bytes),
            ("max_concurrent_requests", self.max_concurrent_requests as u64),
            ("max_requests_per_second", self.max_requests_per_second as u64),
            ("first_scan_pages", self.first_scan_pages as u64),
            ("max_new_posts_per_account", self.max_new_posts_per_account as u64),
            ("search_max_accounts", self.search_max_accounts as u64),
        ])?;
        Ok(())
    }

    pub fn http_settings(&self) -> HttpSettings {
        HttpSettings {
            max_wait: std::time::Duration::from_secs(self.max_rate_limit_wait_secs),
            max_concurrent_per_host: self.max_concurrent_requests as usize,
            ..HttpSettings::from_source_keys(
                self.timeout_secs,
                self.max_body_bytes,
                self.max_retries,
                self.retry_backoff_ms,
                self.max_requests_per_second,
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// API entities (only the fields used; unknown fields are ignored, as records may carry them).

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `app.bsky.actor.defs#profileView` / `#profileViewDetailed` (and the basic view, whose
/// `description` is absent).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiProfile {
    pub did: String,
    pub handle: String,
    #[serde(default, deserialize_with = "null_default")]
    pub display_name: String,
    /// The bio, plain text.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: Vec<ApiLabel>,
    pub posts_count: Option<u64>,
}

/// `com.atproto.label.defs#label`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiLabel {
    pub val: String,
    #[serde(default)]
    pub src: Option<String>,
    /// A negation label withdraws an earlier one.
    #[serde(default)]
    pub neg: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiProfiles {
    pub profiles: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiSearchActors {
    #[serde(default)]
    pub cursor: Option<String>,
    pub actors: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiAuthorFeed {
    #[serde(default)]
    pub cursor: Option<String>,
    pub feed: Vec<Value>,
}

/// `app.bsky.feed.defs#feedViewPost`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiFeedItem {
    pub post: ApiPostView,
    #[serde(default)]
    pub reason: Option<ApiReason>,
}

/// `reasonRepost` / `reasonPin`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiReason {
    #[serde(rename = "$type", default)]
    pub kind: String,
    #[serde(default)]
    pub indexed_at: Option<String>,
}

/// `app.bsky.feed.defs#postView`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiPostView {
    pub uri: String,
    pub author: ApiAuthor,
    /// The raw `app.bsky.feed.post` record.
    pub record: Value,
    /// The hydrated embed view.
    #[serde(default)]
    pub embed: Option<Value>,
    pub indexed_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiAuthor {
    pub did: String,
    #[serde(default)]
    pub handle: String,
}

/// The `app.bsky.feed.post` record (lexicon: `text` and `createdAt` required; records may carry
/// fields outside the lexicon).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiPostRecord {
    #[serde(rename = "$type", default)]
    pub kind: Option<String>,
    pub text: String,
    pub created_at: String,
    #[serde(default, deserialize_with = "null_default")]
    pub langs: Vec<String>,
    #[serde(default)]
    pub embed: Option<Value>,
}

/// XRPC's error body (`{"error": "...", "message": "..."}`).
#[derive(Debug, Clone, Deserialize)]
pub struct ApiError {
    pub error: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// The readable message of an XRPC error body.
pub fn error_message(body: &[u8]) -> Option<String> {
    let e: ApiError = serde_json::from_slice(body).ok()?;
    Some(match e.message {
        Some(m) if !m.is_empty() => format!("{}: {m}", e.error),
        _ => e.error,
    })
}

/// An atproto datetime: RFC 3339, or (as some clients write, see the fixtures) the same
/// without a zone, taken as UTC.
pub fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    let v = v.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|t| t.and_utc())
}

/// Alt texts of an embed (record form or hydrated view): images, video, and the media half of
/// a record-with-media. A quoted record is someone else's words and is not followed.
pub fn embed_alts(embed: &Value) -> Vec<String> {
    let mut out = vec![];
    collect_alts(embed, &mut out, 0);
    out
}

fn collect_alts(embed: &Value, out: &mut Vec<String>, depth: u8) {
    if depth > 3 {
        return;
    }
    let kind = embed.get("$type").and_then(Value::as_str).unwrap_or("");
    let kind = kind.split('#').next().unwrap_or("");
    let mut push = |alt: Option<&Value>| {
        if let Some(a) = alt.and_then(Value::as_str).map(str::trim).filter(|a| !a.is_empty()) {
            if !out.iter().any(|o| o == a) {
                out.push(a.to_string());
            }
        }
    };
    match kind {
        "app.bsky.embed.images" => {
            for img in embed.get("images").and_then(Value::as_array).into_iter().flatten() {
                push(img.get("alt"));
            }
        }
        "app.bsky.embed.video" => push(embed.get("alt")),
        "app.bsky.embed.recordWithMedia" => {
            if let Some(media) = embed.get("media") {
                collect_alts(media, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// The self-label `!no-unauthenticated`, when set and not withdrawn.
pub fn wants_no_unauthenticated(p: &ApiProfile) -> bool {
    let set = p.labels.iter().any(|l| l.val == NO_UNAUTHENTICATED && l.neg != Some(true));
    let withdrawn = p.labels.iter().any(|l| l.val == NO_UNAUTHENTICATED && l.neg == Some(true));
    set && !withdrawn
}

/// Parse JSON values item by item: good items, and a message for each bad one.
pub fn parse_values<T: serde::de::DeserializeOwned>(values: Vec<Value>, location: &str) -> (Vec<T>, Vec<String>) {
    let mut good = vec![];
    let mut bad = vec![];
    for (i, v) in values.into_iter().enumerate() {
        let id = v.get("did").or_else(|| v.get("post").and_then(|p| p.get("uri"))).and_then(Value::as_str).map(str::to_string);
        match serde_json::from_value::<T>(v) {
            Ok(t) => good.push(t),
            Err(e) => bad.push(format!("{location}: item {i}{}: {e}", id.map(|id| format!(" ({id})")).unwrap_or_default())),
        }
    }
    (good, bad)
}

/// An account as the pipeline sees it; its id is the DID (handles can change).
pub fn to_account(p: &ApiProfile, web_url: &str) -> Account {
    let handle = if p.handle.is_empty() || p.handle == "handle.invalid" { p.did.clone() } else { p.handle.clone() };
    Account {
        platform: PLATFORM.to_string(),
        platform_id: p.did.clone(),
        handle: format!("@{handle}"),
        display_name: p.display_name.clone(),
        bio: p.description.clone(),
        profile_url: Some(format!("{web_url}/profile/{}", p.did)),
    }
}

/// What the feed orders by: the earlier of `createdAt` and `indexedAt` (a future `createdAt`
/// does not lift a post above newer ones).
pub fn sort_time(created_at: Option<DateTime<Utc>>, indexed_at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (created_at, indexed_at) {
        (Some(c), Some(i)) => Some(c.min(i)),
        (c, i) => c.or(i),
    }
}

/// One feed item, read: its sort time, and the post when it is the author's own.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    pub uri: String,
    pub sort_at: DateTime<Utc>,
    /// `None` for a repost, a pinned repeat, or another author's post.
    pub post: Option<Post>,
}

/// Read one `feedViewPost` of `author_did`'s feed.
pub fn read_feed_item(item: &ApiFeedItem, author_did: &str, web_url: &str) -> Result<FeedEntry, String> {
    if let Some(reason) = &item.reason {
        // A repost sorts by when it was reposted; a pin is a repeat of a post read in place.
        let at = reason.indexed_at.as_deref().and_then(parse_time);
        let sort_at = at
            .or_else(|| parse_time(&item.post.indexed_at))
            .ok_or_else(|| format!("{}: a `{}` without a readable time", item.post.uri, reason.kind))?;
        return Ok(FeedEntry { uri: item.post.uri.clone(), sort_at, post: None });
    }
    let record: ApiPostRecord =
        serde_json::from_value(item.post.record.clone()).map_err(|e| format!("{}: not a post record: {e}", item.post.uri))?;
    if record.kind.as_deref().is_some_and(|k| k != "app.bsky.feed.post") {
        return Err(format!("{}: record type `{}` is not app.bsky.feed.post", item.post.uri, record.kind.unwrap_or_default()));
    }
    let created = parse_time(&record.created_at);
    let indexed = parse_time(&item.post.indexed_at);
    let sort_at =
        sort_time(created, indexed).ok_or_else(|| format!("{}: neither createdAt nor indexedAt is a time", item.post.uri))?;
    if item.post.author.did != author_did {
        return Ok(FeedEntry { uri: item.post.uri.clone(), sort_at, post: None });
    }
    let mut alt_texts = record.embed.as_ref().map(embed_alts).unwrap_or_default();
    if alt_texts.is_empty() {
        alt_texts = item.post.embed.as_ref().map(embed_alts).unwrap_or_default();
    }
    let post = Post {
        platform: PLATFORM.to_string(),
        platform_id: item.post.uri.clone(),
        author_id: author_did.to_string(),
        created_at: created.or(indexed).unwrap_or(sort_at),
        text: record.text.clone(),
        alt_texts,
        lang_hints: record.langs.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect(),
        url: post_url(&item.post.uri, web_url),
    };
    Ok(FeedEntry { uri: item.post.uri.clone(), sort_at, post: Some(post) })
}

/// `https://bsky.app/profile/DID/post/RKEY` for `at://DID/app.bsky.feed.post/RKEY`.
pub fn post_url(at_uri: &str, web_url: &str) -> Option<String> {
    let rest = at_uri.strip_prefix("at://")?;
    let mut parts = rest.split('/');
    let (Some(did), Some("app.bsky.feed.post"), Some(rkey), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!did.is_empty() && !rkey.is_empty()).then(|| format!("{web_url}/profile/{did}/post/{rkey}"))
}

// ---------------------------------------------------------------------------------------------
// Cursor

/// The resumable state of a Bluesky source, stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub v: u32,
    /// Where the current pass is; `None` when the last pass finished (start a new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<Pass>,
    /// DID → what has been read of its feed.
    #[serde(default)]
    pub accounts: BTreeMap<String, Mark>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pass {
    Handles {
        next: usize,
    },
    Search {
        term: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        found: u32,
    },
}

/// What has been read of one account's feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    /// Every post sorting below this was read (or predates the first read); `None`: nothing
    /// read yet, read to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<DateTime<Utc>>,
    /// Newest sort time read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<DateTime<Utc>>,
    /// Posts read that sort at or above the floor (URI → sort time): not read again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seen: BTreeMap<String, DateTime<Utc>>,
    /// A read stopped by `max_new_posts_per_account`: the feed cursor to go on from, down to
    /// the floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

const CURSOR_VERSION: u32 = 1;

impl Cursor {
    pub fn parse(text: Option<&str>) -> Result<Cursor, SourceError> {
        let Some(text) = text else {
            return Ok(Cursor { v: CURSOR_VERSION, ..Default::default() });
        };
        let c: Cursor = serde_json::from_str(text).map_err(|e| SourceError::BadCursor {
            cursor: text.chars().take(120).collect(),
            message: format!("not a Bluesky cursor: {e}"),
        })?;
        if c.v != CURSOR_VERSION {
            return Err(SourceError::BadCursor {
                cursor: text.chars().take(120).collect(),
                message: format!("cursor version {} (this build reads {CURSOR_VERSION})", c.v),
            });
        }
        Ok(c)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("cursor serialises")
    }
}

/// How one walk down an account's feed went, for [`Mark::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkEnd {
    /// Reached the floor, the end of the feed, or the first-scan page limit.
    Finished,
    /// Stopped at the per-pass cap; go on from the feed cursor next time.
    Capped,
}

impl Mark {
    /// Whether a feed item at `sort_at` lies below what still needs reading.
    pub fn below_floor(&self, sort_at: DateTime<Utc>) -> bool {
        self.floor.is_some_and(|f| sort_at < f)
    }

    /// Note a post read.
    pub fn record(&mut self, uri: &str, sort_at: DateTime<Utc>) {
        self.seen.insert(uri.to_string(), sort_at);
        if self.top.map_or(true, |t| sort_at > t) {
            self.top = Some(sort_at);
        }
    }

    /// Close a walk: a finished one lifts the floor to the newest read minus the overlap (never
    /// lowering it) and forgets the URIs below it; a capped one keeps the floor and resumes.
    pub fn finish(&mut self, end: WalkEnd, next: Option<String>, overlap: chrono::Duration) {
        match (end, next) {
            (WalkEnd::Capped, Some(next)) => self.resume = Some(next),
            _ => {
                self.resume = None;
                if let Some(top) = self.top {
                    let lifted = top - overlap;
                    self.floor = Some(self.floor.map_or(lifted, |f| f.max(lifted)));
                }
                if let Some(f) = self.floor {
                    self.seen.retain(|_, t| *t >= f);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The source

pub struct BlueskySource {
    name: String,
    cfg: BlueskyConfig,
    http: Result<HttpClient, String>,
    /// Accounts already read in this pass (by this process).
    seen_this_pass: HashSet<String>,
}

enum Stage {
    At(Pass),
    Done,
}

impl BlueskySource {
    pub fn new(name: String, cfg: BlueskyConfig, ctx: &BuildContext) -> Self {
        let http = HttpClient::new(cfg.http_settings(), &ctx.operator_contact, ctx.hosts.clone()).map_err(|e| e.to_string());
        BlueskySource { name, cfg, http, seen_this_pass: HashSet::new() }
    }

    fn http(&self) -> Result<&HttpClient, SourceError> {
        self.http.as_ref().map_err(|e| SourceError::Setup(format!("source `{}`: {e}", self.name)))
    }

    fn xrpc(&self, nsid: &str, query: &[(&str, String)]) -> Result<Url, SourceError> {
        let mut url = Url::parse(&format!("{}/xrpc/{nsid}", self.cfg.appview))
            .map_err(|e| SourceError::Setup(format!("source `{}`: appview `{}`: {e}", self.name, self.cfg.appview)))?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// `getProfiles` for some actors. A 400 for a batch (one bad actor can fail it) is retried
    /// actor by actor, so one bad name costs only itself.
    async fn profiles(&self, actors: &[String], page: &mut Page) -> Result<Vec<ApiProfile>, SourceError> {
        let not_found = |e: &super::http::HttpError| matches!(e.status(), Some(400 | 404));
        match self.get_profiles(actors, page).await? {
            Ok(found) => Ok(found),
            Err(e) if e.status() == Some(400) && actors.len() > 1 => {
                let mut all = vec![];
                for a in actors {
                    match self.get_profiles(std::slice::from_ref(a), page).await? {
                        Ok(found) => all.extend(found),
                        Err(e) if not_found(&e) => page.skipped.push(format!("{}: {a} not found: {e}", self.name)),
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(all)
            }
            Err(e) if not_found(&e) => {
                page.skipped.push(format!("{}: {} not found: {e}", self.name, actors.join(", ")));
                Ok(vec![])
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One `getProfiles` request: the profiles found (actors missing from the answer noted), or
    /// the HTTP error for the caller to judge.
    async fn get_profiles(
        &self,
        actors: &[String],
        page: &mut Page,
    ) -> Result<Result<Vec<ApiProfile>, super::http::HttpError>, SourceError> {
        let query: Vec<(&str, String)> = actors.iter().map(|a| ("actors", a.clone())).collect();
        let url = self.xrpc("app.bsky.actor.getProfiles", &query)?;
        let resp = match self.http()?.get(&url, None).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let body: ApiProfiles = resp.json()?;
        let (profiles, bad) = parse_values::<ApiProfile>(body.profiles, &format!("GET {url}"));
        page.skipped.extend(bad);
        for a in actors {
            let found = profiles.iter().any(|p| p.did == *a || p.handle.eq_ignore_ascii_case(a));
            if !found {
                page.skipped.push(format!("{}: {a} not found on {}", self.name, self.cfg.appview));
            }
        }
        Ok(Ok(profiles))
    }

    /// One discovery step: one request (or one batch of profiles). Returns the accounts found
    /// and the next position.
    async fn discover(&self, pass: Pass, page: &mut Page) -> Result<(Vec<ApiProfile>, Stage), SourceError> {
        match pass {
            Pass::Handles { next } => {
                if next >= self.cfg.handles.len() {
                    return Ok((vec![], Stage::At(Pass::Search { term: 0, cursor: None, found: 0 })));
                }
                let end = (next + PROFILES_PER_REQUEST).min(self.cfg.handles.len());
                let found = self.profiles(&self.cfg.handles[next..end], page).await?;
                Ok((found, Stage::At(Pass::Handles { next: end })))
            }
            Pass::Search { term, cursor, found } => {
                let Some(q) = self.cfg.search_terms.get(term) else {
                    return Ok((vec![], Stage::Done));
                };
                let limit = 100u32.min(self.cfg.search_max_accounts.saturating_sub(found)).max(1);
                let mut query = vec![("q", q.clone()), ("limit", limit.to_string())];
                if let Some(c) = &cursor {
                    query.push(("cursor", c.clone()));
                }
                let url = self.xrpc("app.bsky.actor.searchActors", &query)?;
                let next_term = Stage::At(Pass::Search { term: term + 1, cursor: None, found: 0 });
                let resp = match self.http()?.get(&url, None).await {
                    Ok(r) => r,
                    // Search closed to visitors here, or the query refused: note it, next term.
                    Err(e) if matches!(e.status(), Some(400 | 401 | 403 | 404 | 501)) => {
                        page.skipped.push(format!("{}: search for `{q}` failed: {}", self.name, e));
                        return Ok((vec![], next_term));
                    }
                    Err(e) => return Err(e.into()),
                };
                let body: ApiSearchActors = resp.json()?;
                let n = body.actors.len() as u32;
                let (actors, bad) = parse_values::<ApiProfile>(body.actors, &format!("GET {url}"));
                page.skipped.extend(bad);
                let total = found + n;
                let next = match body.cursor.filter(|c| !c.is_empty()) {
                    Some(c) if n > 0 && total < self.cfg.search_max_accounts && Some(&c) != cursor.as_ref() => {
                        Stage::At(Pass::Search { term, cursor: Some(c), found: total })
                    }
                    _ => next_term,
                };
                Ok((actors, next))
            }
        }
    }

    /// Read what is new of one account and move its mark. A feed the AppView will not give
    /// (blocked, taken down, deactivated: 400/401/403/404) or cannot send as JSON is noted in
    /// `page.skipped` and the mark stays, so the next scan tries again.
    async fn read_account(&self, p: &ApiProfile, cur: &mut Cursor, page: &mut Page) -> Result<Vec<Post>, SourceError> {
        let first_sight = !cur.accounts.contains_key(&p.did);
        let mut mark = cur.accounts.get(&p.did).cloned().unwrap_or_default();
        if p.posts_count == Some(0) && mark.resume.is_none() {
            cur.accounts.insert(p.did.clone(), mark);
            return Ok(vec![]);
        }
        let http = self.http()?;
        let overlap = chrono::Duration::seconds(self.cfg.overlap_secs.min(i64::MAX as u64 / 1000) as i64);
        let mut feed_cursor = mark.resume.clone();
        let mut posts = vec![];
        let mut requests = 0u32;
        let (end, next) = loop {
            let mut query = vec![
                ("actor", p.did.clone()),
                ("limit", self.cfg.posts_per_request.to_string()),
                ("filter", self.cfg.feed_filter.clone()),
            ];
            if let Some(c) = &feed_cursor {
                query.push(("cursor", c.clone()));
            }
            let url = self.xrpc("app.bsky.feed.getAuthorFeed", &query)?;
            let resp = match http.get(&url, None).await {
                Ok(r) => r,
                Err(e) if matches!(e.status(), Some(400 | 401 | 403 | 404 | 410)) => {
                    page.skipped.push(format!("{}: feed of @{} unavailable: {}", self.name, p.handle, e));
                    return Ok(vec![]);
                }
                Err(e) => return Err(e.into()),
            };
            requests += 1;
            let feed: ApiAuthorFeed = match resp.json() {
                Ok(f) => f,
                Err(e) => {
                    page.skipped.push(format!("{}: feed of @{}: {e}", self.name, p.handle));
                    return Ok(vec![]);
                }
            };
            let count = feed.feed.len();
            let location = format!("GET {url}");
            let (items, bad) = parse_values::<ApiFeedItem>(feed.feed, &location);
            page.skipped.extend(bad);
            let mut crossed = false;
            for item in &items {
                let entry = match read_feed_item(item, &p.did, &self.cfg.web_url) {
                    Ok(e) => e,
                    Err(e) => {
                        page.skipped.push(format!("{location}: {e}"));
                        continue;
                    }
                };
                if mark.below_floor(entry.sort_at) {
                    crossed = true;
                    break;
                }
                let Some(post) = entry.post else { continue };
                if mark.seen.contains_key(&entry.uri) {
                    continue;
                }
                mark.record(&entry.uri, entry.sort_at);
                posts.push(post);
            }
            let next = feed.cursor.filter(|c| !c.is_empty());
            if crossed || count == 0 || next.is_none() || next == feed_cursor {
                break (WalkEnd::Finished, None);
            }
            if first_sight && requests >= self.cfg.first_scan_pages {
                break (WalkEnd::Finished, None);
            }
            if !first_sight && posts.len() >= self.cfg.max_new_posts_per_account as usize {
                break (WalkEnd::Capped, next);
            }
            feed_cursor = next;
        };
        if end == WalkEnd::Capped {
            debug!(source = %self.name, account = %p.handle, read = posts.len(), "more new posts than the cap: the rest next pass");
        }
        mark.finish(end, next, overlap);
        cur.accounts.insert(p.did.clone(), mark);
        Ok(posts)
    }
}

#[async_trait]
impl Source for BlueskySource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError> {
        let mut cur = Cursor::parse(cursor)?;
        let waits_before = self.http()?.stats().rate_limit_waits.load(std::sync::atomic::Ordering::Relaxed);
        let mut page = Page::default();
        let mut stage = match cur.pass.clone() {
            Some(p) => Stage::At(p),
            None => {
                self.seen_this_pass.clear();
                Stage::At(Pass::Handles { next: 0 })
            }
        };
        // Discover until a request finds accounts, or the pass ends.
        let mut found = vec![];
        while let Stage::At(pass) = stage {
            let (accounts, next) = self.discover(pass, &mut page).await?;
            stage = next;
            if !accounts.is_empty() {
                found = accounts;
                break;
            }
        }
        for p in found {
            if !self.seen_this_pass.insert(p.did.clone()) {
                continue;
            }
            if self.cfg.skip_no_unauthenticated && wants_no_unauthenticated(&p) {
                page.skipped.push(format!(
                    "{}: @{} asks not to be shown to logged-out visitors ({NO_UNAUTHENTICATED}), skipped",
                    self.name, p.handle
                ));
                continue;
            }
            let account = to_account(&p, &self.cfg.web_url);
            let posts = self.read_account(&p, &mut cur, &mut page).await?;
            page.posts.extend(posts);
            page.accounts.push(account);
        }
        match stage {
            Stage::At(p) => cur.pass = Some(p),
            Stage::Done => {
                cur.pass = None;
                page.done = true;
            }
        }
        page.cursor = Some(cur.to_json());
        page.rate_limit_waits =
            self.http()?.stats().rate_limit_waits.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(waits_before);
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn times_with_and_without_zone() {
        assert_eq!(t("2024-02-22T19:58:13.903293+00:00"), t("2024-02-22T19:58:13.903293Z"));
        assert_eq!(t("2023-07-21T01:33:51.481951"), t("2023-07-21T01:33:51.481951Z"));
        assert_eq!(parse_time("yesterday"), None);
        let (c, i) = (t("2030-01-01T00:00:00Z"), t("2026-01-01T00:00:00Z"));
        assert_eq!(sort_time(Some(c), Some(i)), Some(i), "a future createdAt does not lift a post");
        assert_eq!(sort_time(None, Some(i)), Some(i));
    }

    #[test]
    fn dids_and_handles() {
        assert!(is_did("did:plc:kvwvcn5iqfooopmyzvb4qzba"));
        assert!(is_did("did:web:example.com"));
        assert!(!is_did("did:plc:"));
        assert!(!is_did("did:PLC:abc"));
        assert!(!is_did("alice.test"));
        assert_eq!(normalise_handle("@Alice.Test").as_deref(), Some("alice.test"));
        assert_eq!(normalise_handle("alice"), None);
        assert_eq!(normalise_handle("a..b"), None);
        assert_eq!(normalise_handle("-a.b"), None);
    }

    #[test]
    fn mark_walks_floor_and_dedupe() {
        let overlap = chrono::Duration::seconds(3600);
        let mut m = Mark::default();
        assert!(!m.below_floor(t("2000-01-01T00:00:00Z")), "no floor: read everything");
        m.record("at://a/1", t("2026-01-01T10:00:00Z"));
        m.record("at://a/2", t("2026-01-01T12:00:00Z"));
        m.finish(WalkEnd::Finished, None, overlap);
        assert_eq!(m.floor, Some(t("2026-01-01T11:00:00Z")));
        assert_eq!(m.seen.keys().collect::<Vec<_>>(), ["at://a/2"], "URIs below the floor are forgotten");
        assert!(m.below_floor(t("2026-01-01T10:59:59Z")));
        assert!(!m.below_floor(t("2026-01-01T11:30:00Z")), "a late-indexed post within the overlap is read");
        // A capped walk keeps the floor and resumes.
        m.record("at://a/3", t("2026-01-02T00:00:00Z"));
        m.finish(WalkEnd::Capped, Some("c1".into()), overlap);
        assert_eq!((m.floor, m.resume.as_deref()), (Some(t("2026-01-01T11:00:00Z")), Some("c1")));
        m.finish(WalkEnd::Finished, None, overlap);
        assert_eq!((m.floor, m.resume.as_deref()), (Some(t("2026-01-01T23:00:00Z")), None));
        // The floor never goes down.
        let mut m2 = Mark { floor: Some(t("2026-01-05T00:00:00Z")), ..Default::default() };
        m2.record("at://a/9", t("2026-01-05T00:30:00Z"));
        m2.finish(WalkEnd::Finished, None, overlap);
        assert_eq!(m2.floor, Some(t("2026-01-05T00:00:00Z")));
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let mut c = Cursor::parse(None).unwrap();
        c.pass = Some(Pass::Search { term: 1, cursor: Some("25".into()), found: 25 });
        let mut m = Mark::default();
        m.record("at://did:plc:x/app.bsky.feed.post/1", t("2026-01-01T00:00:00Z"));
        c.accounts.insert("did:plc:x".into(), m);
        let text = c.to_json();
        assert_eq!(Cursor::parse(Some(&text)).unwrap(), c);
        assert!(matches!(Cursor::parse(Some("1795345998650__bafy")), Err(SourceError::BadCursor { .. })));
        assert!(matches!(Cursor::parse(Some("{\"v\":7}")), Err(SourceError::BadCursor { .. })));
    }

    #[test]
    fn post_urls() {
        assert_eq!(
            post_url("at://did:plc:abc/app.bsky.feed.post/3kaheyt6vpc22", "https://bsky.app").as_deref(),
            Some("https://bsky.app/profile/did:plc:abc/post/3kaheyt6vpc22")
        );
        assert_eq!(post_url("at://did:plc:abc/app.bsky.feed.like/3k", "https://bsky.app"), None);
        assert_eq!(post_url("https://x", "https://bsky.app"), None);
    }

    fn cfg(extra: &str) -> Result<BlueskyConfig, String> {
        let mut c: BlueskyConfig = toml::from_str(extra).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn config_is_normalised_and_checked() {
        let c = cfg("handles = [\"@PC-Sam.bsky.social\", \"did:plc:abc123\"]\nsearch_terms = [\" police \"]").unwrap();
        assert_eq!(c.appview, "https://public.api.bsky.app");
        assert_eq!(c.handles, ["pc-sam.bsky.social", "did:plc:abc123"]);
        assert_eq!(c.search_terms, ["police"]);
        assert_eq!(c.feed_filter, "posts_no_replies");
        assert!(c.skip_no_unauthenticated);
        assert_eq!(cfg("appview = \"http://127.0.0.1:2584/\"").unwrap().appview, "http://127.0.0.1:2584");
        assert!(cfg("appview = \"ftp://x\"").unwrap_err().contains("`appview`"));
        assert!(cfg("handles = [\"not a handle\"]").unwrap_err().contains("`handles`"));
        assert!(cfg("search_terms = [\"  \"]").unwrap_err().contains("`search_terms`"));
        assert!(cfg("feed_filter = \"everything\"").unwrap_err().contains("`feed_filter`"));
        assert!(cfg("posts_per_request = 101").unwrap_err().contains("`posts_per_request`"));
        assert!(cfg("first_scan_pages = 0").unwrap_err().contains("`first_scan_pages`"));
        assert!(cfg("handels = []").unwrap_err().contains("handels"));
    }
}
