//! Mastodon source: one configured instance, read through its public REST API.
//!
//! A *pass* discovers accounts in four stages, in this order, each resumable:
//! configured `handles` (`/api/v1/accounts/lookup`), `search_terms` (`/api/v2/search`,
//! `type=accounts`, only with a token), configured `hashtags` (authors of
//! `/api/v1/timelines/tag/:tag`, read forward from the newest status seen last time) and the
//! profile directory (`/api/v1/directory`, bios included). Each discovery request makes one
//! [`Page`]: the accounts it found (bio = `note` HTML as text plus `fields[]`) and their
//! *new* statuses from `/api/v1/accounts/:id/statuses`, read forward from the newest status
//! seen last time with `min_id` (gap-free: each response is the block right above the cursor)
//! until nothing is newer. An account seen for the first time gives its newest
//! `first_scan_pages` pages (walked back with the `Link` header's `max_id`).
//!
//! The cursor is JSON: the pass position, and per account the newest status id stored and the
//! day it was checked; per hashtag the newest status id seen. The cursor of a page only moves
//! what that page (and earlier ones) contain, so a scan killed at any point resumes without a
//! gap or a duplicate. Reblogs are not the author's words and are skipped; so are accounts that
//! opted out of indexing (`noindex: true`, `indexable: false`, each configurable), which are
//! counted in [`Page::opted_out`]. An account whose `last_status_at` is older than the day before
//! it was last checked has nothing new and costs no request.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::debug;
use url::Url;

use super::http::{HttpClient, HttpSettings};
use super::{BuildContext, Page, Source, SourceError};
use crate::model::{Account, Post};
use crate::normalise::html_to_text;

pub const PLATFORM: &str = "mastodon";

/// Handles looked up for one page.
const HANDLES_PER_PAGE: usize = 40;

/// Most posts a page is planned to hold (by the accounts' `statuses_count`): the accounts a
/// discovery request finds are spread over several pages when their posts would not fit, so
/// that memory is bounded by a page whatever the accounts' sizes.
const MAX_POSTS_PER_PAGE: u64 = 2_000;

/// `[[sources]]` keys of `kind = "mastodon"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MastodonConfig {
    /// Base URL of the instance, e.g. `https://mastodon.social`.
    pub instance: String,
    /// Read the profile directory.
    #[serde(default = "yes")]
    pub directory: bool,
    /// Only the instance's own accounts from the directory.
    #[serde(default = "yes")]
    pub directory_local: bool,
    /// Most directory accounts per pass (most recently active first).
    #[serde(default = "default_directory_max")]
    pub directory_max_accounts: u32,
    /// Hashtags (without `#`) whose timelines' authors are discovered.
    #[serde(default)]
    pub hashtags: Vec<String>,
    /// Most timeline requests per hashtag per pass.
    #[serde(default = "default_hashtag_requests")]
    pub hashtag_requests: u32,
    /// Accounts always read: `user` (local) or `user@domain`, with or without a leading `@`.
    #[serde(default)]
    pub handles: Vec<String>,
    /// Account search terms (`/api/v2/search`); need `token_env`.
    #[serde(default)]
    pub search_terms: Vec<String>,
    /// Most accounts per search term per pass.
    #[serde(default = "default_search_max")]
    pub search_max_accounts: u32,
    /// NAME of the environment variable holding an access token for this instance (search).
    pub token_env: Option<String>,
    /// Skip accounts with `noindex: true` (opted out of search-engine indexing).
    #[serde(default = "yes")]
    pub skip_noindex: bool,
    /// Skip accounts with `indexable: false` (did not opt in to their posts being searchable).
    #[serde(default = "yes")]
    pub skip_not_indexable: bool,
    /// Statuses per request (Mastodon's maximum is 40).
    #[serde(default = "default_statuses_per_request")]
    pub statuses_per_request: u32,
    /// Pages of an account's newest statuses read the first time it is seen.
    #[serde(default = "one")]
    pub first_scan_pages: u32,
    /// Most new statuses per account per pass; the rest come next time, without a gap.
    #[serde(default = "default_max_new")]
    pub max_new_statuses_per_account: u32,
    /// Seconds before a request times out (connect: a third of it).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Retries of a failed request (5xx, 429, timeouts, connection errors).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First retry delay in milliseconds; doubles each retry, with jitter.
    #[serde(default = "default_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// Largest response body accepted.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Requests in flight to the instance at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_requests: u32,
    /// Requests a second at most, whatever the rate-limit headers allow.
    #[serde(default = "default_rps")]
    pub max_requests_per_second: u32,
    /// Longest wait for a rate limit before the source gives up for this scan.
    #[serde(default = "default_max_wait")]
    pub max_rate_limit_wait_secs: u64,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn default_directory_max() -> u32 {
    1000
}
fn default_hashtag_requests() -> u32 {
    5
}
fn default_search_max() -> u32 {
    80
}
fn default_statuses_per_request() -> u32 {
    40
}
fn default_max_new() -> u32 {
    400
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
    2
}
fn default_max_wait() -> u64 {
    900
}

fn is_env_name(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl MastodonConfig {
    /// Check and normalise what serde cannot: every message names its key in backticks.
    pub fn validate(&mut self) -> Result<(), String> {
        let url = Url::parse(&self.instance).map_err(|e| format!("`instance`: `{}` is not a URL: {e}", self.instance))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("`instance`: `{}` must be an http(s) URL with a host", self.instance));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`instance`: `{}` must be the bare instance URL, without a query", self.instance));
        }
        self.instance = url.as_str().trim_end_matches('/').to_string();
        if let Some(var) = &self.token_env {
            if !is_env_name(var) {
                return Err("`token_env`: must be the NAME of an environment variable (letters, digits, _), not a token".into());
            }
        }
        if !self.search_terms.is_empty() && self.token_env.is_none() {
            return Err("`search_terms`: account search needs a token: set `token_env`".into());
        }
        if self.search_terms.iter().any(|t| t.trim().is_empty()) {
            return Err("`search_terms`: terms must not be empty".into());
        }
        for tag in &mut self.hashtags {
            let t = tag.trim().trim_start_matches('#').to_string();
            if t.is_empty() || !t.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(format!("`hashtags`: `{tag}` is not a hashtag (letters, digits, _)"));
            }
            *tag = t;
        }
        for handle in &mut self.handles {
            let h = handle.trim().trim_start_matches('@').to_string();
            let parts: Vec<&str> = h.split('@').collect();
            if h.is_empty() || parts.len() > 2 || parts.iter().any(|p| p.is_empty() || p.contains(char::is_whitespace)) {
                return Err(format!("`handles`: `{handle}` is not `user` or `user@domain`"));
            }
            *handle = h;
        }
        if !(1..=40).contains(&self.statuses_per_request) {
            return Err("`statuses_per_request`: must be 1 to 40".into());
        }
        crate::sources::http::require_positive(&[
            ("timeout_secs", self.timeout_secs),
            ("max_body_bytes", self.max_body_bytes),
            ("max_concurrent_requests", self.max_concurrent_requests as u64),
            ("max_requests_per_second", self.max_requests_per_second as u64),
            ("first_scan_pages", self.first_scan_pages as u64),
            ("max_new_statuses_per_account", self.max_new_statuses_per_account as u64),
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
// API entities (only the fields used; unknown fields are ignored, as the API grows).

#[derive(Debug, Clone, Deserialize)]
pub struct ApiAccount {
    pub id: String,
    pub acct: String,
    #[serde(default)]
    pub username: String,
    #[serde(default, deserialize_with = "null_default")]
    pub display_name: String,
    /// Bio, HTML.
    #[serde(default, deserialize_with = "null_default")]
    pub note: String,
    pub url: Option<String>,
    pub uri: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub fields: Vec<ApiField>,
    pub noindex: Option<bool>,
    pub indexable: Option<bool>,
    pub suspended: Option<bool>,
    /// A date (`2026-08-01`) on Mastodon; some servers send a full time.
    pub last_status_at: Option<String>,
    pub statuses_count: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiField {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// HTML.
    #[serde(default, deserialize_with = "null_default")]
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiStatus {
    pub id: String,
    pub created_at: DateTime<Utc>,
    /// HTML.
    #[serde(default, deserialize_with = "null_default")]
    pub content: String,
    /// Content warning, plain text.
    #[serde(default, deserialize_with = "null_default")]
    pub spoiler_text: String,
    pub language: Option<String>,
    pub visibility: Option<String>,
    pub uri: Option<String>,
    pub url: Option<String>,
    /// A boosted status: not the author's own words.
    pub reblog: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub media_attachments: Vec<ApiMedia>,
    pub account: ApiAccount,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiMedia {
    /// Alt text.
    pub description: Option<String>,
}

/// Mastodon's error entity (`{"error": "...", "error_description": "..."}`).
#[derive(Debug, Clone, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub error_description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiSearch {
    #[serde(default)]
    pub accounts: Vec<serde_json::Value>,
}

/// Who may read hashtag timelines on this server (`configuration.timelines_access` of
/// `/api/v2/instance`, Mastodon 4.5+): `None` when the server does not say (older servers:
/// public), else whether both the local and the remote feed are `public`.
pub fn hashtag_feeds_public(instance_body: &[u8]) -> Result<Option<bool>, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_slice(instance_body)?;
    let Some(feeds) = v.pointer("/configuration/timelines_access/hashtag_feeds") else {
        return Ok(None);
    };
    let public = |k: &str| feeds.get(k).and_then(|x| x.as_str()).map_or(true, |x| x == "public");
    Ok(Some(public("local") && public("remote")))
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The readable message of an error body, when it is Mastodon's error entity.
pub fn error_message(body: &[u8]) -> Option<String> {
    let e: ApiError = serde_json::from_slice(body).ok()?;
    Some(match e.error_description {
        Some(d) if !d.is_empty() => format!("{}: {d}", e.error),
        _ => e.error,
    })
}

/// Mastodon ids are opaque strings, but numeric in practice: compare by length, then text.
pub fn id_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn newest<'a>(ids: impl Iterator<Item = &'a str>) -> Option<String> {
    ids.max_by(|a, b| id_cmp(a, b)).map(str::to_string)
}

/// The value of query parameter `param` in the `Link` header target with relation `rel`
/// (RFC 8288: `<url>; rel="next", <url>; rel="prev"`).
pub fn link_param(link: &str, rel: &str, param: &str) -> Option<String> {
    for part in link.split(',') {
        let part = part.trim();
        let (Some(start), Some(end)) = (part.find('<'), part.find('>')) else {
            continue;
        };
        if end < start {
            continue;
        }
        let target = &part[start + 1..end];
        let is_rel = part[end + 1..].split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=").is_some_and(|v| v.trim_matches('"').split_whitespace().any(|r| r == rel))
        });
        if is_rel {
            let url = Url::parse(target).ok()?;
            return url.query_pairs().find(|(k, _)| k == param).map(|(_, v)| v.into_owned());
        }
    }
    None
}

/// Parse a JSON array item by item: good items, and a message for each bad one.
pub fn parse_items<T: serde::de::DeserializeOwned>(body: &[u8], location: &str) -> Result<(Vec<T>, Vec<String>), SourceError> {
    // The usual case, every item good, in one pass; only a body with a bad item is read again
    // item by item to say which.
    if let Ok(all) = serde_json::from_slice::<Vec<T>>(body) {
        return Ok((all, vec![]));
    }
    let values: Vec<serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| SourceError::Malformed { location: location.to_string(), message: format!("expected a JSON array: {e}") })?;
    let mut good = vec![];
    let mut bad = vec![];
    for (i, v) in values.into_iter().enumerate() {
        let id = v.get("id").and_then(|x| x.as_str()).map(str::to_string);
        match serde_json::from_value::<T>(v) {
            Ok(t) => good.push(t),
            Err(e) => bad.push(format!("{location}: item {i}{}: {e}", id.map(|id| format!(" (id {id})")).unwrap_or_default())),
        }
    }
    Ok((good, bad))
}

/// The bio as the identifier sees it: `note` as text, then each profile field as `name: value`.
pub fn account_bio(a: &ApiAccount) -> String {
    let mut bio = html_to_text(&a.note);
    for f in &a.fields {
        let value = html_to_text(&f.value);
        let name = f.name.trim();
        if name.is_empty() && value.is_empty() {
            continue;
        }
        if !bio.is_empty() {
            bio.push('\n');
        }
        bio.push_str(name);
        bio.push_str(": ");
        bio.push_str(&value);
    }
    bio
}

/// `@user@domain`, with the instance's domain for a local account.
pub fn qualified_handle(acct: &str, instance_domain: &str) -> String {
    let acct = acct.trim_start_matches('@');
    if acct.contains('@') {
        format!("@{acct}")
    } else {
        format!("@{acct}@{instance_domain}")
    }
}

/// An account as the pipeline sees it. Its id is the ActivityPub `uri` (the same on every
/// instance), or the instance URL and local id when the server sends none.
pub fn to_account(a: &ApiAccount, instance: &str, instance_domain: &str) -> Account {
    let platform_id = a
        .uri
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{instance}/api/v1/accounts/{}", a.id));
    Account {
        platform: PLATFORM.to_string(),
        platform_id,
        handle: qualified_handle(&a.acct, instance_domain),
        display_name: a.display_name.clone(),
        bio: account_bio(a),
        profile_url: a.url.clone().filter(|u| !u.is_empty()),
    }
}

/// A status as the pipeline sees it, or `None` for a reblog or a non-public status.
pub fn to_post(s: &ApiStatus, author_id: &str, instance: &str) -> Option<Post> {
    if s.reblog.is_some() {
        return None;
    }
    if matches!(s.visibility.as_deref(), Some("private" | "direct" | "limited")) {
        return None;
    }
    let content = html_to_text(&s.content);
    let text = match s.spoiler_text.trim() {
        "" => content,
        cw if content.is_empty() => cw.to_string(),
        cw => format!("{cw}\n\n{content}"),
    };
    let platform_id = s
        .uri
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{instance}/api/v1/statuses/{}", s.id));
    Some(Post {
        platform: PLATFORM.to_string(),
        platform_id,
        author_id: author_id.to_string(),
        created_at: s.created_at,
        text,
        alt_texts: s
            .media_attachments
            .iter()
            .filter_map(|m| m.description.as_deref().map(str::trim).filter(|d| !d.is_empty()).map(str::to_string))
            .collect(),
        lang_hints: s.language.iter().filter(|l| !l.is_empty()).cloned().collect(),
        url: s.url.clone().or_else(|| s.uri.clone()).filter(|u| !u.is_empty()),
    })
}

fn opt_out_reason(a: &ApiAccount, cfg: &MastodonConfig) -> Option<&'static str> {
    if cfg.skip_noindex && a.noindex == Some(true) {
        Some("noindex: true")
    } else if cfg.skip_not_indexable && a.indexable == Some(false) {
        Some("indexable: false")
    } else {
        None
    }
}

fn last_status_day(a: &ApiAccount) -> Option<NaiveDate> {
    let s = a.last_status_at.as_deref()?;
    NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()
}

// ---------------------------------------------------------------------------------------------
// Cursor

/// The resumable state of a Mastodon source, stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub v: u32,
    /// Where the current pass is; `None` when the last pass finished (start a new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<Pass>,
    /// Local account id → what has been stored of it.
    #[serde(default)]
    pub accounts: BTreeMap<String, Mark>,
    /// Hashtag → newest status id seen in its timeline.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pass {
    Handles { next: usize },
    Search { term: usize, offset: u32 },
    Tags { tag: usize, requests: u32 },
    Directory { offset: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    /// Newest status id stored (all older ones were read, or predate the first scan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// Day of the last check.
    pub checked: NaiveDate,
}

const CURSOR_VERSION: u32 = 1;

impl Cursor {
    pub fn parse(text: Option<&str>) -> Result<Cursor, SourceError> {
        let Some(text) = text else {
            return Ok(Cursor { v: CURSOR_VERSION, ..Default::default() });
        };
        let c: Cursor = serde_json::from_str(text).map_err(|e| SourceError::BadCursor {
            cursor: text.chars().take(120).collect(),
            message: format!("not a Mastodon cursor: {e}"),
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
        let mut json = serde_json::to_string(self).expect("cursor serialises");
        // The text was grown by doubling; with a mark per account it is megabytes, and the scan
        // holds one per page in flight: keep only what it uses.
        json.shrink_to_fit();
        json
    }
}

// ---------------------------------------------------------------------------------------------
// The source

pub struct MastodonSource {
    name: String,
    cfg: MastodonConfig,
    http: Result<HttpClient, String>,
    /// Accounts already read in this pass (by this process), so a second discovery of the same
    /// account costs nothing.
    seen_this_pass: HashSet<String>,
    /// Accounts found by the last discovery request and not read yet (they did not fit on the
    /// last page).
    carry: Option<Carry>,
}

/// What a discovery request found and where the pass goes after it.
struct Carry {
    /// Accounts still to read, in discovery order, with the account the pipeline sees.
    accounts: std::collections::VecDeque<(ApiAccount, Account)>,
    /// The discovery's position and the hashtag marks before it: where a scan resumes while
    /// accounts of this discovery are left.
    resume: Option<(Pass, BTreeMap<String, String>)>,
    /// The position after the discovery (`None`: the pass is over) and the hashtag marks then.
    after: Option<Pass>,
    after_tags: BTreeMap<String, String>,
}

enum Stage {
    At(Pass),
    Done,
}

impl MastodonSource {
    pub fn new(name: String, cfg: MastodonConfig, ctx: &BuildContext) -> Self {
        let http = HttpClient::new(cfg.http_settings(), &ctx.operator_contact, ctx.hosts.clone()).map_err(|e| e.to_string());
        MastodonSource { name, cfg, http, seen_this_pass: HashSet::new(), carry: None }
    }

    fn http(&self) -> Result<&HttpClient, SourceError> {
        self.http.as_ref().map_err(|e| SourceError::Setup(format!("source `{}`: {e}", self.name)))
    }

    fn base(&self) -> Result<Url, SourceError> {
        Url::parse(&format!("{}/", self.cfg.instance))
            .map_err(|e| SourceError::Setup(format!("source `{}`: instance `{}`: {e}", self.name, self.cfg.instance)))
    }

    fn domain(&self) -> String {
        Url::parse(&self.cfg.instance)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                })
            })
            .unwrap_or_else(|| self.cfg.instance.clone())
    }

    fn token(&self) -> Result<Option<String>, SourceError> {
        let Some(var) = &self.cfg.token_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
            _ => Err(SourceError::Setup(format!("source `{}`: environment variable {var} (token_env) is not set", self.name))),
        }
    }

    fn endpoint(&self, path: &str, query: &[(&str, String)]) -> Result<Url, SourceError> {
        let mut url = self.base()?.join(path).map_err(|e| SourceError::Setup(format!("{path}: {e}")))?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    fn first_stage(&self) -> Stage {
        Stage::At(Pass::Handles { next: 0 })
    }

    /// One discovery step: at most one request (or one batch of handle lookups). Returns the
    /// accounts found and the next position.
    async fn discover(&self, pass: Pass, cur: &mut Cursor, page: &mut Page) -> Result<(Vec<ApiAccount>, Stage), SourceError> {
        let http = self.http()?;
        match pass {
            Pass::Handles { next } => {
                if next >= self.cfg.handles.len() {
                    return Ok((vec![], Stage::At(Pass::Search { term: 0, offset: 0 })));
                }
                let end = (next + HANDLES_PER_PAGE).min(self.cfg.handles.len());
                let mut found = vec![];
                for handle in &self.cfg.handles[next..end] {
                    let url = self.endpoint("api/v1/accounts/lookup", &[("acct", handle.clone())])?;
                    match http.get(&url, None).await {
                        Ok(resp) => found.push(resp.json::<ApiAccount>()?),
                        Err(e) if matches!(e.status(), Some(404 | 410)) => {
                            page.skipped.push(format!("{}: handle @{handle} not found on {}", self.name, self.cfg.instance))
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok((found, Stage::At(Pass::Handles { next: end })))
            }
            Pass::Search { term, offset } => {
                let token = self.token()?;
                let (Some(token), Some(q)) = (token, self.cfg.search_terms.get(term)) else {
                    return Ok((vec![], Stage::At(Pass::Tags { tag: 0, requests: 0 })));
                };
                let limit = 40u32.min(self.cfg.search_max_accounts.saturating_sub(offset)).max(1);
                let url = self.endpoint(
                    "api/v2/search",
                    &[
                        ("q", q.clone()),
                        ("type", "accounts".into()),
                        ("limit", limit.to_string()),
                        ("offset", offset.to_string()),
                    ],
                )?;
                let resp = http.get(&url, Some(&token)).await?;
                let search: ApiSearch = resp.json()?;
                let n = search.accounts.len() as u32;
                let body = serde_json::to_vec(&search.accounts).expect("re-serialise");
                let (accounts, bad) = parse_items::<ApiAccount>(&body, &format!("GET {url}"))?;
                page.skipped.extend(bad);
                let next_offset = offset + n;
                let next = if n < limit || next_offset >= self.cfg.search_max_accounts {
                    Pass::Search { term: term + 1, offset: 0 }
                } else {
                    Pass::Search { term, offset: next_offset }
                };
                Ok((accounts, Stage::At(next)))
            }
            Pass::Tags { tag, requests } => {
                let Some(name) = self.cfg.hashtags.get(tag) else {
                    return Ok((vec![], Stage::At(Pass::Directory { offset: 0 })));
                };
                if tag == 0 && requests == 0 && !self.hashtag_feeds_readable(page).await? {
                    return Ok((vec![], Stage::At(Pass::Directory { offset: 0 })));
                }
                let since = cur.tags.get(name).cloned();
                let mut query = vec![("limit", self.cfg.statuses_per_request.to_string())];
                if let Some(id) = &since {
                    query.push(("min_id", id.clone()));
                }
                let url = self.endpoint(&format!("api/v1/timelines/tag/{}", urlencode_path(name)), &query)?;
                let resp = match http.get(&url, None).await {
                    Ok(r) => r,
                    // Not public here (secure mode, feeds for users only): note it, next tag.
                    Err(e) if matches!(e.status(), Some(401 | 403 | 404 | 422)) => {
                        page.skipped.push(format!("{}: hashtag #{name} not readable: {e}", self.name));
                        return Ok((vec![], Stage::At(Pass::Tags { tag: tag + 1, requests: 0 })));
                    }
                    Err(e) => return Err(e.into()),
                };
                let (statuses, bad) = parse_items::<ApiStatus>(&resp.body, &format!("GET {url}"))?;
                page.skipped.extend(bad);
                let newest_id = link_param(resp.header("link").unwrap_or(""), "prev", "min_id")
                    .into_iter()
                    .chain(statuses.iter().map(|s| s.id.clone()))
                    .max_by(|a, b| id_cmp(a, b));
                if let Some(id) = newest_id {
                    if since.as_deref().map_or(true, |s| id_cmp(&id, s).is_gt()) {
                        cur.tags.insert(name.clone(), id);
                    }
                }
                let mut authors: Vec<ApiAccount> = vec![];
                for s in statuses {
                    if s.reblog.is_none() && !authors.iter().any(|a| a.id == s.account.id) {
                        authors.push(s.account);
                    }
                }
                // Keep walking forward while full pages come back, up to `hashtag_requests`; the
                // first time a tag is read, its newest page is enough.
                let full = since.is_some()
                    && requests + 1 < self.cfg.hashtag_requests
                    && parse_len(&resp.body) >= self.cfg.statuses_per_request as usize;
                let next =
                    if full { Pass::Tags { tag, requests: requests + 1 } } else { Pass::Tags { tag: tag + 1, requests: 0 } };
                Ok((authors, Stage::At(next)))
            }
            Pass::Directory { offset } => {
                if !self.cfg.directory || offset >= self.cfg.directory_max_accounts {
                    return Ok((vec![], Stage::Done));
                }
                let limit = 80u32.min(self.cfg.directory_max_accounts - offset);
                let url = self.endpoint(
                    "api/v1/directory",
                    &[
                        ("limit", limit.to_string()),
                        ("offset", offset.to_string()),
                        ("order", "active".into()),
                        ("local", self.cfg.directory_local.to_string()),
                    ],
                )?;
                let resp = match http.get(&url, None).await {
                    Ok(r) => r,
                    // No public directory on this server: note it, and the pass ends.
                    Err(e) if matches!(e.status(), Some(401 | 403 | 404 | 422)) => {
                        page.skipped.push(format!("{}: profile directory not readable: {e}", self.name));
                        return Ok((vec![], Stage::Done));
                    }
                    Err(e) => return Err(e.into()),
                };
                let (accounts, bad) = parse_items::<ApiAccount>(&resp.body, &format!("GET {url}"))?;
                page.skipped.extend(bad);
                let n = parse_len(&resp.body) as u32;
                let next = if n < limit { Stage::Done } else { Stage::At(Pass::Directory { offset: offset + n }) };
                Ok((accounts, next))
            }
        }
    }

    /// Whether this server lets visitors read hashtag timelines; when it does not, the tag stage
    /// is skipped with a note rather than failing the source.
    async fn hashtag_feeds_readable(&self, page: &mut Page) -> Result<bool, SourceError> {
        let url = self.endpoint("api/v2/instance", &[])?;
        let body = match self.http()?.get(&url, None).await {
            Ok(resp) => resp.body,
            // Older servers have no v2 instance entity; their tag timelines are public.
            Err(e) if matches!(e.status(), Some(404 | 410)) => return Ok(true),
            Err(e) => return Err(e.into()),
        };
        match hashtag_feeds_public(&body) {
            Ok(Some(false)) => {
                page.skipped.push(format!(
                    "{}: {} does not make hashtag timelines public (configuration.timelines_access); hashtags skipped",
                    self.name, self.cfg.instance
                ));
                Ok(false)
            }
            Ok(_) => Ok(true),
            Err(e) => Err(SourceError::Malformed { location: format!("GET {url}"), message: format!("instance entity: {e}") }),
        }
    }

    /// Read what is new of one account, from its mark (`None`: first time seen). Statuses the
    /// server will not give (404/410/403) or cannot send as JSON are recorded in `skipped`, and
    /// the mark stays, so the next scan tries again. Statuses are converted to posts as each
    /// response arrives (the API entities, each with its author, are not kept).
    async fn read_account(&self, a: &ApiAccount, author_id: &str, mark: Option<Mark>) -> Result<AccountRead, SourceError> {
        let mut out = AccountRead { posts: vec![], mark: mark.clone(), skipped: vec![] };
        let today = Utc::now().date_naive();
        if let (Some(m), Some(day)) = (&mark, last_status_day(a)) {
            if day < m.checked.pred_opt().unwrap_or(m.checked) {
                debug!(source = %self.name, account = %a.acct, "no status since the last check");
                return Ok(out);
            }
        }
        if a.statuses_count == Some(0) {
            out.mark = Some(Mark { last: mark.and_then(|m| m.last), checked: today });
            return Ok(out);
        }
        let http = self.http()?;
        let instance = &self.cfg.instance;
        let limit = self.cfg.statuses_per_request as usize;
        let path = format!("api/v1/accounts/{}/statuses", urlencode_path(&a.id));
        let base_query = vec![("limit", limit.to_string()), ("exclude_reblogs", "true".to_string())];
        let mut read = 0usize;
        let mut oldest_read: Option<String> = None;
        let mut newest_seen: Option<String> = mark.as_ref().and_then(|m| m.last.clone());
        let mut requests = 0u32;
        // Forward from the mark with min_id, or back from the newest with max_id the first time.
        let mut forward = newest_seen.clone();
        let mut backward: Option<String> = None;
        loop {
            let mut query = base_query.clone();
            match (&forward, &backward) {
                (Some(min), _) => query.push(("min_id", min.clone())),
                (None, Some(max)) => query.push(("max_id", max.clone())),
                (None, None) => {}
            }
            let url = self.endpoint(&path, &query)?;
            let resp = match http.get(&url, None).await {
                Ok(r) => r,
                Err(e) if matches!(e.status(), Some(403 | 404 | 410)) => {
                    out.skipped.push(format!("{}: statuses of {} unavailable: {e}", self.name, a.acct));
                    out.posts.clear();
                    out.mark = mark;
                    return Ok(out);
                }
                Err(e) => return Err(e.into()),
            };
            requests += 1;
            let location = format!("GET {url}");
            let (items, bad) = match parse_items::<ApiStatus>(&resp.body, &location) {
                Ok(x) => x,
                Err(e) => {
                    out.skipped.push(format!("{}: statuses of {}: {e}", self.name, a.acct));
                    out.posts.clear();
                    out.mark = mark;
                    return Ok(out);
                }
            };
            let count = items.len() + bad.len();
            out.skipped.extend(bad);
            if count == 0 {
                break;
            }
            let link = resp.header("link").unwrap_or("").to_string();
            let page_newest = newest(items.iter().map(|s| s.id.as_str()));
            if let Some(n) = &page_newest {
                if newest_seen.as_deref().map_or(true, |s| id_cmp(n, s).is_gt()) {
                    newest_seen = Some(n.clone());
                }
            }
            let page_oldest = items.iter().map(|s| s.id.as_str()).min_by(|a, b| id_cmp(a, b)).map(str::to_string);
            if let Some(o) = page_oldest {
                if oldest_read.as_deref().map_or(true, |p| id_cmp(&o, p).is_lt()) {
                    oldest_read = Some(o);
                }
            }
            read += items.len();
            out.posts.extend(items.iter().filter_map(|s| to_post(s, author_id, instance)));
            drop(items);
            if forward.is_some() {
                // The next block above: the Link header's prev, else the newest id read.
                let next = link_param(&link, "prev", "min_id").or(page_newest);
                if count < limit || read >= self.cfg.max_new_statuses_per_account as usize || next == forward {
                    break;
                }
                forward = next;
            } else {
                if requests >= self.cfg.first_scan_pages || count < limit {
                    break;
                }
                backward = link_param(&link, "next", "max_id").or(oldest_read.clone());
            }
        }
        out.mark = Some(Mark { last: newest_seen, checked: today });
        Ok(out)
    }
}

/// What reading one account gave: its new posts, its new mark, and records skipped.
struct AccountRead {
    posts: Vec<Post>,
    mark: Option<Mark>,
    skipped: Vec<String>,
}

/// Number of items in a JSON array body (0 when it is not one).
fn parse_len(body: &[u8]) -> usize {
    serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(body).map(|v| v.len()).unwrap_or(0)
}

fn urlencode_path(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>().replace('+', "%20")
}

#[async_trait]
impl Source for MastodonSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError> {
        let mut cur = Cursor::parse(cursor)?;
        let waits_before = self.http()?.stats().rate_limit_waits.load(std::sync::atomic::Ordering::Relaxed);
        let mut page = Page::default();
        let mut batch = match self.carry.take() {
            // The rest of the accounts the last page's discovery found.
            Some(c) if cur.pass.is_some() && cur.pass == c.resume.as_ref().map(|r| r.0.clone()) => c,
            _ => {
                let mut stage = match cur.pass.clone() {
                    Some(p) => Stage::At(p),
                    None => {
                        self.seen_this_pass.clear();
                        self.first_stage()
                    }
                };
                // Discover until a request finds accounts, or the pass ends.
                let mut found = vec![];
                let mut resume = None;
                while let Stage::At(pass) = stage {
                    let tags_before = cur.tags.clone();
                    let (accounts, next) = self.discover(pass.clone(), &mut cur, &mut page).await?;
                    stage = next;
                    if !accounts.is_empty() {
                        found = accounts;
                        resume = Some((pass, tags_before));
                        break;
                    }
                }
                let domain = self.domain();
                let mut accounts = std::collections::VecDeque::new();
                for a in found {
                    if !self.seen_this_pass.insert(a.id.clone()) || a.suspended == Some(true) {
                        continue;
                    }
                    let handle = qualified_handle(&a.acct, &domain);
                    if let Some(reason) = opt_out_reason(&a, &self.cfg) {
                        debug!(source = %self.name, account = %handle, reason, "opted out of indexing: skipped");
                        page.opted_out += 1;
                        continue;
                    }
                    let account = to_account(&a, &self.cfg.instance, &domain);
                    accounts.push_back((a, account));
                }
                let after = match stage {
                    Stage::At(p) => Some(p),
                    Stage::Done => None,
                };
                Carry { accounts, resume, after, after_tags: cur.tags.clone() }
            }
        };
        // The accounts for this page: as many as keep its posts within MAX_POSTS_PER_PAGE by
        // their `statuses_count` (at least one), so a page's memory is bounded whatever the
        // accounts' sizes; the rest make the next pages.
        let mut to_read = vec![];
        let mut expected = 0u64;
        while let Some((a, _)) = batch.accounts.front() {
            let cap = match cur.accounts.get(&a.id) {
                None => self.cfg.first_scan_pages as u64 * self.cfg.statuses_per_request as u64,
                Some(_) => self.cfg.max_new_statuses_per_account as u64,
            };
            let estimate = a.statuses_count.unwrap_or(self.cfg.statuses_per_request as u64).min(cap).max(1);
            if !to_read.is_empty() && expected + estimate > MAX_POSTS_PER_PAGE {
                break;
            }
            expected += estimate;
            let (a, account) = batch.accounts.pop_front().expect("front exists");
            let mark = cur.accounts.get(&a.id).cloned();
            to_read.push((a, account, mark));
        }
        // Accounts are read concurrently, as many at once as requests may be in flight to the
        // instance (the HTTP layer's per-host limit, pacing and 429 waits apply to every
        // request); their results are put on the page in discovery order.
        {
            let this = &*self;
            let reads = futures_util::stream::iter(to_read.into_iter().map(|(a, account, mark)| async move {
                let read = this.read_account(&a, &account.platform_id, mark).await;
                (a.id, account, read)
            }))
            .buffered(self.cfg.max_concurrent_requests.max(1) as usize);
            futures_util::pin_mut!(reads);
            while let Some((id, account, read)) = reads.next().await {
                let read = read?;
                page.skipped.extend(read.skipped);
                if let Some(mark) = read.mark {
                    cur.accounts.insert(id, mark);
                }
                page.posts.extend(read.posts);
                page.accounts.push(account);
            }
        }
        match (batch.accounts.is_empty(), batch.resume.clone()) {
            // Accounts of this discovery are left: the cursor stays at the discovery (a resumed
            // scan repeats it and reads the accounts already read forward from their marks,
            // which finds nothing twice), and this process carries on with the rest.
            (false, Some((pass, tags))) => {
                cur.pass = Some(pass);
                cur.tags = tags;
                self.carry = Some(batch);
            }
            _ => {
                cur.tags = batch.after_tags;
                match batch.after {
                    Some(p) => cur.pass = Some(p),
                    None => {
                        cur.pass = None;
                        page.done = true;
                    }
                }
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

    #[test]
    fn link_header_params() {
        let link = "<http://localhost:3000/api/v1/accounts/1/statuses?limit=5&max_id=117020580489281910>; rel=\"next\", <http://localhost:3000/api/v1/accounts/1/statuses?limit=5&min_id=117020580518794573>; rel=\"prev\"";
        assert_eq!(link_param(link, "next", "max_id").as_deref(), Some("117020580489281910"));
        assert_eq!(link_param(link, "prev", "min_id").as_deref(), Some("117020580518794573"));
        assert_eq!(link_param(link, "prev", "max_id"), None);
        assert_eq!(link_param("", "prev", "min_id"), None);
        assert_eq!(link_param("garbage>; <", "prev", "min_id"), None);
    }

    #[test]
    fn ids_compare_numerically() {
        assert!(id_cmp("99", "100").is_lt());
        assert!(id_cmp("117020580518794573", "117020580511453871").is_gt());
        assert_eq!(newest(["5", "12", "7"].into_iter()).as_deref(), Some("12"));
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let mut c = Cursor::parse(None).unwrap();
        c.pass = Some(Pass::Directory { offset: 80 });
        c.accounts.insert("1".into(), Mark { last: Some("9".into()), checked: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap() });
        let text = c.to_json();
        assert_eq!(Cursor::parse(Some(&text)).unwrap(), c);
        assert!(matches!(Cursor::parse(Some("p42")), Err(SourceError::BadCursor { .. })));
        assert!(matches!(Cursor::parse(Some("{\"v\":99}")), Err(SourceError::BadCursor { .. })));
    }

    fn cfg(extra: &str) -> Result<MastodonConfig, String> {
        let text = format!("instance = \"https://mastodon.example/\"\n{extra}");
        let mut c: MastodonConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn config_is_normalised_and_checked() {
        let c = cfg("hashtags = [\"#police\"]\nhandles = [\"@pc_sam@force.example\", \"local\"]").unwrap();
        assert_eq!(c.instance, "https://mastodon.example");
        assert_eq!(c.hashtags, ["police"]);
        assert_eq!(c.handles, ["pc_sam@force.example", "local"]);
        assert!(c.skip_noindex && c.skip_not_indexable && c.directory);
        assert!(cfg("search_terms = [\"police\"]").unwrap_err().contains("`search_terms`"));
        assert!(cfg("token_env = \"abc-123!\"").unwrap_err().contains("`token_env`"));
        assert!(cfg("statuses_per_request = 80").unwrap_err().contains("`statuses_per_request`"));
        assert!(cfg("handles = [\"a@b@c\"]").unwrap_err().contains("`handles`"));
        assert!(cfg("hashtags = [\"two words\"]").unwrap_err().contains("`hashtags`"));
        assert!(cfg("directry = false").unwrap_err().contains("directry"));
        let mut bad: MastodonConfig = toml::from_str("instance = \"ftp://x\"").unwrap();
        assert!(bad.validate().unwrap_err().contains("`instance`"));
    }
}
