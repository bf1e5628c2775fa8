//! Reddit source: read through the OAuth API (`oauth.reddit.com`) with an app-only token.
//!
//! **Auth**: the `client_credentials` grant against `token_url` with HTTP Basic client
//! authentication; the client id and secret come from the environment variables *named* in the
//! config (never logged, never in a URL). The bearer token is kept until shortly before it
//! expires; a `401` from the API refreshes it once and repeats the request. Every request
//! carries the HTTP layer's descriptive User-Agent (program, version, operator contact) and
//! `raw_json=1` (bodies not HTML-escaped); Reddit's `x-ratelimit-*` float headers pace it.
//!
//! **A pass** discovers usernames in two stages, each resumable: configured `users`, then the
//! authors of the newest posts (`/r/NAME/new`) and comments (`/r/NAME/comments`) of each
//! configured subreddit. Usernames wait in a queue kept in the cursor; each [`Page`] reads up to
//! `users_per_page` of them: the profile (`/user/NAME/about`: bio =
//! `subreddit.public_description`, display name = `subreddit.title`), then what is new in
//! `/user/NAME/submitted` and `/user/NAME/comments`, read forward with `before=<fullname of the
//! newest item stored>`. A post's text is its title, a blank line and its self text; a
//! comment's is its body. A user seen for the first time gives the newest `first_scan_pages`
//! pages of each listing.
//!
//! Reddit's `before` returns nothing when its anchor item has since been deleted, which would
//! look like "nothing new" for ever; so when a `before` read comes back empty and the anchor has
//! not been checked for `anchor_check_days`, the newest page is read once without `before` and
//! only items posted after the anchor are kept (by `created_utc`, stored with the anchor: the
//! recorded listings show that ids do not always grow with time).
//!
//! Users who set `hide_from_robots` are skipped (configurable) and counted in
//! [`Page::opted_out`]. The cursor of a page moves only what that page read, so a scan killed at
//! any point resumes without a gap or a duplicate.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::debug;
use url::Url;

use super::http::{HttpClient, HttpError, HttpResponse, HttpSettings};
use super::{BuildContext, Page, Source, SourceError};
use crate::model::{Account, Post};

pub const PLATFORM: &str = "reddit";
pub const DEFAULT_TOKEN_URL: &str = "https://www.reddit.com/api/v1/access_token";
pub const DEFAULT_API_BASE: &str = "https://oauth.reddit.com";
/// Where permalinks and profiles are shown to people.
pub const WEB_BASE: &str = "https://www.reddit.com";

/// A token is renewed this long before Reddit says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// `[[sources]]` keys of `kind = "reddit"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedditConfig {
    /// NAME of the environment variable holding the app's client id.
    pub client_id_env: String,
    /// NAME of the environment variable holding the app's client secret.
    pub client_secret_env: String,
    /// OAuth token endpoint.
    #[serde(default = "default_token_url")]
    pub token_url: String,
    /// OAuth API base.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Subreddits (with or without `r/`) whose newest posts' and comments' authors are read.
    #[serde(default)]
    pub subreddits: Vec<String>,
    /// Pages (of `items_per_request`) of each subreddit listing read per pass.
    #[serde(default = "one")]
    pub subreddit_pages: u32,
    /// Users always read (with or without `u/`).
    #[serde(default)]
    pub users: Vec<String>,
    /// Authors never read (bots), compared without case.
    #[serde(default = "default_ignore_users")]
    pub ignore_users: Vec<String>,
    /// Skip users who set `hide_from_robots` (asked not to be indexed).
    #[serde(default = "yes")]
    pub skip_hide_from_robots: bool,
    /// Users read per page (each costs three requests or more).
    #[serde(default = "default_users_per_page")]
    pub users_per_page: u32,
    /// Items per listing request (Reddit's maximum is 100).
    #[serde(default = "default_items_per_request")]
    pub items_per_request: u32,
    /// Pages of a user's newest posts and comments read the first time the user is seen.
    #[serde(default = "one")]
    pub first_scan_pages: u32,
    /// Most new items per listing per user per pass; the rest come next time, without a gap.
    #[serde(default = "default_max_new")]
    pub max_new_items_per_user: u32,
    /// Days between checks that a user's `before` anchor still exists (0: every time).
    #[serde(default = "default_anchor_check_days")]
    pub anchor_check_days: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_backoff_ms")]
    pub retry_backoff_ms: u64,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    #[serde(default = "one")]
    pub max_concurrent_requests: u32,
    #[serde(default = "one")]
    pub max_requests_per_second: u32,
    #[serde(default = "default_max_wait")]
    pub max_rate_limit_wait_secs: u64,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn default_token_url() -> String {
    DEFAULT_TOKEN_URL.into()
}
fn default_api_base() -> String {
    DEFAULT_API_BASE.into()
}
fn default_ignore_users() -> Vec<String> {
    vec!["AutoModerator".into()]
}
fn default_users_per_page() -> u32 {
    10
}
fn default_items_per_request() -> u32 {
    100
}
fn default_max_new() -> u32 {
    500
}
fn default_anchor_check_days() -> u32 {
    7
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
fn default_max_wait() -> u64 {
    900
}

fn is_env_name(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn http_url(key: &str, v: &str) -> Result<String, String> {
    let url = Url::parse(v).map_err(|e| format!("`{key}`: `{v}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{key}`: `{v}` must be an http(s) URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{key}`: `{v}` must not have a query"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

impl RedditConfig {
    /// Check and normalise what serde cannot: every message names its key in backticks.
    pub fn validate(&mut self) -> Result<(), String> {
        for (key, v) in [("client_id_env", &self.client_id_env), ("client_secret_env", &self.client_secret_env)] {
            if !is_env_name(v) {
                return Err(format!("`{key}`: must be the NAME of an environment variable (letters, digits, _), not a secret"));
            }
        }
        self.token_url = http_url("token_url", &self.token_url)?;
        self.api_base = http_url("api_base", &self.api_base)?;
        for sub in &mut self.subreddits {
            let s = sub.trim().trim_start_matches('/');
            let s = s.strip_prefix("r/").unwrap_or(s).trim_end_matches('/');
            if !(2..=21).contains(&s.len()) || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`subreddits`: `{sub}` is not a subreddit name (2-21 letters, digits, _)"));
            }
            *sub = s.to_string();
        }
        for user in &mut self.users {
            let u = user.trim().trim_start_matches('/');
            let u = u.strip_prefix("u/").or_else(|| u.strip_prefix("user/")).unwrap_or(u).trim_end_matches('/');
            if !is_username(u) {
                return Err(format!("`users`: `{user}` is not a Reddit username (3-20 letters, digits, _ or -)"));
            }
            *user = u.to_string();
        }
        if !(1..=100).contains(&self.items_per_request) {
            return Err("`items_per_request`: must be 1 to 100".into());
        }
        crate::sources::http::require_positive(&[
            ("timeout_secs", self.timeout_secs),
            ("max_body_bytes", self.max_body_bytes),
            ("max_concurrent_requests", self.max_concurrent_requests as u64),
            ("max_requests_per_second", self.max_requests_per_second as u64),
            ("first_scan_pages", self.first_scan_pages as u64),
            ("subreddit_pages", self.subreddit_pages as u64),
            ("users_per_page", self.users_per_page as u64),
            ("max_new_items_per_user", self.max_new_items_per_user as u64),
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

/// Reddit usernames: 3 to 20 of letters, digits, `_` and `-`.
pub fn is_username(u: &str) -> bool {
    (3..=20).contains(&u.len()) && u.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

// ---------------------------------------------------------------------------------------------
// API entities (only the fields used; unknown fields are ignored).

/// The token endpoint's answer: a token, or an OAuth error in a 200 body.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: Option<String>,
    pub token_type: Option<String>,
    /// Seconds.
    pub expires_in: Option<f64>,
    pub scope: Option<String>,
    /// e.g. `unsupported_grant_type`, or `429` with `message`.
    pub error: Option<serde_json::Value>,
    pub message: Option<String>,
}

/// `{"kind": "...", "data": {...}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Thing {
    pub kind: String,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ListingData {
    #[serde(default)]
    pub children: Vec<serde_json::Value>,
    pub after: Option<String>,
    pub before: Option<String>,
}

/// A `t2` account (`/user/NAME/about`).
#[derive(Debug, Clone, Deserialize)]
pub struct ApiUser {
    pub name: String,
    /// Base-36 id (fullname `t2_<id>`); absent for suspended accounts.
    pub id: Option<String>,
    pub hide_from_robots: Option<bool>,
    pub is_suspended: Option<bool>,
    pub created_utc: Option<f64>,
    /// The user's profile "subreddit": `title` and `public_description` (the bio).
    pub subreddit: Option<ApiProfile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiProfile {
    #[serde(default, deserialize_with = "null_default")]
    pub title: String,
    #[serde(default, deserialize_with = "null_default")]
    pub public_description: String,
}

/// A `t3` post (link or self post).
#[derive(Debug, Clone, Deserialize)]
pub struct ApiLink {
    pub id: String,
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub title: String,
    #[serde(default, deserialize_with = "null_default")]
    pub selftext: String,
    pub permalink: Option<String>,
    pub created_utc: f64,
    pub author: String,
    pub subreddit: Option<String>,
}

/// A `t1` comment.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiComment {
    pub id: String,
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub body: String,
    pub permalink: Option<String>,
    pub link_id: Option<String>,
    pub created_utc: f64,
    pub author: String,
    pub subreddit: Option<String>,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An item of a user or subreddit listing.
#[derive(Debug, Clone)]
pub enum Item {
    Link(ApiLink),
    Comment(ApiComment),
}

impl Item {
    pub fn fullname(&self) -> &str {
        match self {
            Item::Link(l) => &l.name,
            Item::Comment(c) => &c.name,
        }
    }

    /// Epoch seconds (Reddit's listings are ordered by it, newest first).
    pub fn created_utc(&self) -> f64 {
        match self {
            Item::Link(l) => l.created_utc,
            Item::Comment(c) => c.created_utc,
        }
    }

    pub fn author(&self) -> &str {
        match self {
            Item::Link(l) => &l.author,
            Item::Comment(c) => &c.author,
        }
    }
}

/// A listing page: its items, a message for each child that could not be read, and `after`
/// (`None`: the last page) and `before`.
#[derive(Debug, Clone, Default)]
pub struct ListingPage {
    pub items: Vec<Item>,
    pub bad: Vec<String>,
    /// Children in the listing, readable or not (a full page means there may be more).
    pub len: usize,
    pub after: Option<String>,
    pub before: Option<String>,
}

/// Parse a `Listing` of `t1`/`t3` things child by child. A body that is not a listing is an
/// error; a child that is not a post or comment, or lacks a field, is reported in `bad`.
pub fn parse_listing(body: &[u8], location: &str) -> Result<ListingPage, SourceError> {
    let malformed = |message: String| SourceError::Malformed { location: location.to_string(), message };
    let thing: Thing = serde_json::from_slice(body).map_err(|e| malformed(format!("expected a Reddit Listing: {e}")))?;
    if thing.kind != "Listing" {
        return Err(malformed(format!("expected a Listing, got kind `{}`", thing.kind)));
    }
    let data: ListingData =
        serde_json::from_value(thing.data).map_err(|e| malformed(format!("Listing data is not as expected: {e}")))?;
    let mut page = ListingPage { len: data.children.len(), after: data.after, before: data.before, ..Default::default() };
    for (i, child) in data.children.into_iter().enumerate() {
        let name = child.pointer("/data/name").and_then(|v| v.as_str()).map(|n| format!(" ({n})")).unwrap_or_default();
        let parsed = serde_json::from_value::<Thing>(child).map_err(|e| e.to_string()).and_then(|t| match t.kind.as_str() {
            "t3" => serde_json::from_value::<ApiLink>(t.data).map(Item::Link).map_err(|e| e.to_string()),
            "t1" => serde_json::from_value::<ApiComment>(t.data).map(Item::Comment).map_err(|e| e.to_string()),
            other => Err(format!("kind `{other}` is not a post or comment")),
        });
        match parsed {
            Ok(item) => page.items.push(item),
            Err(e) => page.bad.push(format!("{location}: item {i}{name}: {e}")),
        }
    }
    Ok(page)
}

/// Parse `/user/NAME/about`: a `t2` thing.
pub fn parse_user(body: &[u8], location: &str) -> Result<ApiUser, SourceError> {
    let malformed = |message: String| SourceError::Malformed { location: location.to_string(), message };
    let thing: Thing = serde_json::from_slice(body).map_err(|e| malformed(format!("expected a Reddit account (t2): {e}")))?;
    if thing.kind != "t2" {
        return Err(malformed(format!("expected an account (t2), got kind `{}`", thing.kind)));
    }
    serde_json::from_value(thing.data).map_err(|e| malformed(format!("account is not as expected: {e}")))
}

/// The readable message of one of Reddit's error bodies (`{"error": 403}`,
/// `{"message": "Not Found", "error": 404}`, `{"reason": "USER_DOESNT_EXIST", ...}`,
/// `{"error": "invalid_grant"}`), or `None` when the body is not one (e.g. an HTML page).
pub fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let text = |k: &str| match obj.get(k) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let parts: Vec<String> =
        [text("error"), text("message"), text("reason"), text("explanation")].into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join(": "))
}

/// Compare two fullnames of the same kind by their base-36 ids (`t3_21oo` < `t3_434h6c`).
pub fn fullname_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let id = |s: &str| s.split_once('_').map(|(_, id)| id.to_ascii_lowercase()).unwrap_or_else(|| s.to_ascii_lowercase());
    let (a, b) = (id(a), id(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(&b))
}

fn epoch(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Utc.timestamp_opt(secs.trunc() as i64, ((secs.fract()) * 1e9) as u32).single()
}

fn permalink_url(permalink: &str) -> String {
    if permalink.starts_with("http://") || permalink.starts_with("https://") {
        permalink.to_string()
    } else {
        format!("{WEB_BASE}/{}", permalink.trim_start_matches('/'))
    }
}

/// Text Reddit puts in place of a removed or deleted body.
fn is_removed(text: &str) -> bool {
    matches!(text.trim(), "[removed]" | "[deleted]")
}

/// An account as the pipeline sees it. Its id is the username (Reddit usernames are unique
/// and never reused).
pub fn to_account(u: &ApiUser) -> Account {
    let (title, bio) = u.subreddit.as_ref().map(|s| (s.title.trim(), s.public_description.trim())).unwrap_or(("", ""));
    Account {
        platform: PLATFORM.to_string(),
        platform_id: u.name.clone(),
        handle: format!("u/{}", u.name),
        display_name: title.to_string(),
        bio: bio.to_string(),
        profile_url: Some(format!("{WEB_BASE}/user/{}/", u.name)),
    }
}

/// A post or comment as the pipeline sees it, or `None` when it has no words of the author
/// (removed or deleted) or an impossible time.
pub fn to_post(item: &Item, author_id: &str) -> Option<Post> {
    let (fullname, created, text, url) = match item {
        Item::Link(l) => {
            let title = l.title.trim();
            let body = l.selftext.trim();
            let text = if body.is_empty() || is_removed(body) { title.to_string() } else { format!("{title}\n\n{body}") };
            let url = l.permalink.as_deref().map(permalink_url);
            (&l.name, l.created_utc, text, url)
        }
        Item::Comment(c) => {
            if is_removed(&c.body) {
                return None;
            }
            let url = c.permalink.as_deref().map(permalink_url).or_else(|| {
                let sub = c.subreddit.as_deref()?;
                let link = c.link_id.as_deref()?.trim_start_matches("t3_");
                Some(format!("{WEB_BASE}/r/{sub}/comments/{link}/_/{}/", c.id))
            });
            (&c.name, c.created_utc, c.body.trim().to_string(), url)
        }
    };
    if text.is_empty() {
        return None;
    }
    Some(Post {
        platform: PLATFORM.to_string(),
        platform_id: fullname.clone(),
        author_id: author_id.to_string(),
        created_at: epoch(created)?,
        text,
        alt_texts: vec![],
        // Reddit has no language field.
        lang_hints: vec![],
        url,
    })
}

// ---------------------------------------------------------------------------------------------
// Cursor

/// The resumable state of a Reddit source, stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub v: u32,
    /// Where discovery is in the current pass; `None` when it has finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<Pass>,
    /// Usernames discovered and not yet read, in order.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub queue: VecDeque<String>,
    /// Usernames (lower case) queued in this pass, so none is read twice.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub seen: BTreeSet<String>,
    /// Username (lower case) → what has been stored of the user.
    #[serde(default)]
    pub users: BTreeMap<String, Mark>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pass {
    Users {
        next: usize,
    },
    Subreddit {
        sub: usize,
        listing: SubListing,
        /// Pages of this listing read so far in this pass, and where the next one starts.
        pages: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubListing {
    New,
    Comments,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    /// Fullname of the newest post stored (`before` anchor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted: Option<String>,
    /// Its `created_utc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_utc: Option<f64>,
    /// Fullname of the newest comment stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comments: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comments_utc: Option<f64>,
    /// Day the anchors were last checked to still exist.
    pub anchors_checked: NaiveDate,
}

const CURSOR_VERSION: u32 = 1;

impl Cursor {
    pub fn parse(text: Option<&str>) -> Result<Cursor, SourceError> {
        let Some(text) = text else {
            return Ok(Cursor { v: CURSOR_VERSION, ..Default::default() });
        };
        let c: Cursor = serde_json::from_str(text).map_err(|e| SourceError::BadCursor {
            cursor: text.chars().take(120).collect(),
            message: format!("not a Reddit cursor: {e}"),
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

// ---------------------------------------------------------------------------------------------
// The source

struct Token {
    value: String,
    renew_at: Instant,
}

pub struct RedditSource {
    name: String,
    cfg: RedditConfig,
    http: Result<HttpClient, String>,
    token: Option<Token>,
}

/// The newest item stored of a listing: `before` starts from it.
#[derive(Debug, Clone, PartialEq)]
struct Anchor {
    name: String,
    utc: Option<f64>,
}

impl Anchor {
    /// Whether `item` came after this anchor: by time when the anchor's is known (an item of
    /// the same second counts; the store ignores a post it already has), else by id.
    fn precedes(&self, item: &Item) -> bool {
        if item.fullname().eq_ignore_ascii_case(&self.name) {
            return false;
        }
        match self.utc {
            Some(t) => item.created_utc() >= t,
            None => fullname_cmp(item.fullname(), &self.name).is_gt(),
        }
    }
}

fn newest_item(items: &[Item]) -> Option<Anchor> {
    items
        .iter()
        .max_by(|a, b| a.created_utc().total_cmp(&b.created_utc()).then_with(|| fullname_cmp(a.fullname(), b.fullname())))
        .map(|i| Anchor { name: i.fullname().to_string(), utc: Some(i.created_utc()) })
}

/// What a user's listing read gave.
struct ListingRead {
    items: Vec<Item>,
    /// The new anchor: the newest item known (fullname, created_utc).
    newest: Option<Anchor>,
    /// The anchor was checked (read without `before`).
    checked: bool,
}

impl RedditSource {
    pub fn new(name: String, cfg: RedditConfig, ctx: &BuildContext) -> Self {
        let http = HttpClient::new(cfg.http_settings(), &ctx.operator_contact, ctx.hosts.clone()).map_err(|e| e.to_string());
        RedditSource { name, cfg, http, token: None }
    }

    fn http(&self) -> Result<&HttpClient, SourceError> {
        self.http.as_ref().map_err(|e| SourceError::Setup(format!("source `{}`: {e}", self.name)))
    }

    fn secret(&self, key: &str, var: &str) -> Result<String, SourceError> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
            _ => Err(SourceError::Setup(format!("source `{}`: environment variable {var} ({key}) is not set", self.name))),
        }
    }

    /// A bearer token: the cached one while it is fresh, else a new one from the token endpoint.
    async fn token(&mut self, renew: bool) -> Result<String, SourceError> {
        if let Some(t) = &self.token {
            if !renew && Instant::now() < t.renew_at {
                return Ok(t.value.clone());
            }
        }
        self.token = None;
        let id = self.secret("client_id_env", &self.cfg.client_id_env)?;
        let secret = self.secret("client_secret_env", &self.cfg.client_secret_env)?;
        let url =
            Url::parse(&self.cfg.token_url).map_err(|e| SourceError::Setup(format!("source `{}`: token_url: {e}", self.name)))?;
        let resp = match self.http()?.post_form(&url, (&id, &secret), &[("grant_type", "client_credentials")]).await {
            Ok(r) => r,
            Err(e) if matches!(e.status(), Some(400 | 401 | 403)) => {
                return Err(SourceError::Setup(format!(
                    "source `{}`: Reddit refused the app credentials from {} and {}: {e}",
                    self.name, self.cfg.client_id_env, self.cfg.client_secret_env
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let (value, expires_in) = parse_token(&resp)?;
        debug!(source = %self.name, expires_in_secs = expires_in.as_secs(), "new Reddit app token");
        let renew_at = Instant::now() + expires_in.saturating_sub(TOKEN_MARGIN);
        self.token = Some(Token { value: value.clone(), renew_at });
        Ok(value)
    }

    fn endpoint(&self, path: &str, query: &[(&str, String)]) -> Result<Url, SourceError> {
        let mut url = Url::parse(&format!("{}/{}", self.cfg.api_base, path.trim_start_matches('/')))
            .map_err(|e| SourceError::Setup(format!("source `{}`: {path}: {e}", self.name)))?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
            q.append_pair("raw_json", "1");
        }
        Ok(url)
    }

    /// GET an API URL with the token; a 401 renews the token once and repeats the request.
    /// The outer error is the token's (the source cannot go on); the inner one the request's.
    async fn api_get(&mut self, url: &Url) -> Result<Result<HttpResponse, HttpError>, SourceError> {
        let token = self.token(false).await?;
        let http = self.http()?.clone();
        Ok(match http.get(url, Some(&token)).await {
            Err(e) if e.status() == Some(401) => {
                debug!(source = %self.name, "token refused (401): renewing it once");
                let token = self.token(true).await?;
                http.get(url, Some(&token)).await
            }
            other => other,
        })
    }

    /// Discovery step at `pass`: queue what it finds; the next position, `None` at the end.
    async fn discover(&mut self, pass: Pass, cur: &mut Cursor, page: &mut Page) -> Result<Option<Pass>, SourceError> {
        match pass {
            Pass::Users { next } => {
                let end = (next + self.cfg.users_per_page as usize).min(self.cfg.users.len());
                for u in self.cfg.users[next.min(end)..end].to_vec() {
                    self.enqueue(cur, &u);
                }
                Ok(Some(if end >= self.cfg.users.len() {
                    Pass::Subreddit { sub: 0, listing: SubListing::New, pages: 0, after: None }
                } else {
                    Pass::Users { next: end }
                }))
            }
            Pass::Subreddit { sub, listing, pages, after } => {
                let Some(name) = self.cfg.subreddits.get(sub).cloned() else {
                    return Ok(None);
                };
                let next_listing = || match listing {
                    SubListing::New => Pass::Subreddit { sub, listing: SubListing::Comments, pages: 0, after: None },
                    SubListing::Comments => Pass::Subreddit { sub: sub + 1, listing: SubListing::New, pages: 0, after: None },
                };
                let path = match listing {
                    SubListing::New => format!("r/{name}/new"),
                    SubListing::Comments => format!("r/{name}/comments"),
                };
                let mut query = vec![("limit", self.cfg.items_per_request.to_string())];
                if let Some(a) = &after {
                    query.push(("after", a.clone()));
                }
                let url = self.endpoint(&path, &query)?;
                let resp = match self.api_get(&url).await? {
                    Ok(r) => r,
                    // Private, banned or missing: note it, and go on with the next listing.
                    Err(e) if matches!(e.status(), Some(403 | 404 | 451)) => {
                        page.skipped.push(format!("{}: r/{name} not readable: {e}", self.name));
                        return Ok(Some(Pass::Subreddit { sub: sub + 1, listing: SubListing::New, pages: 0, after: None }));
                    }
                    Err(e) => return Err(e.into()),
                };
                let listing_page = parse_listing(&resp.body, &format!("GET {url}"))?;
                page.skipped.extend(listing_page.bad);
                for item in &listing_page.items {
                    let author = item.author().to_string();
                    self.enqueue(cur, &author);
                }
                let more = listing_page.after.is_some()
                    && listing_page.len >= self.cfg.items_per_request as usize
                    && pages + 1 < self.cfg.subreddit_pages;
                Ok(Some(if more {
                    Pass::Subreddit { sub, listing, pages: pages + 1, after: listing_page.after }
                } else {
                    next_listing()
                }))
            }
        }
    }

    fn enqueue(&self, cur: &mut Cursor, user: &str) {
        if !is_username(user) || self.cfg.ignore_users.iter().any(|i| i.eq_ignore_ascii_case(user)) {
            // `[deleted]` authors, and bots the operator listed.
            return;
        }
        if cur.seen.insert(user.to_ascii_lowercase()) {
            cur.queue.push_back(user.to_string());
        }
    }

    /// Read one user: profile, then what is new in their posts and comments.
    async fn read_user(&mut self, user: &str, cur: &mut Cursor, page: &mut Page) -> Result<(), SourceError> {
        let url = self.endpoint(&format!("user/{user}/about"), &[])?;
        let resp = match self.api_get(&url).await? {
            Ok(r) => r,
            Err(e) if matches!(e.status(), Some(400 | 403 | 404 | 410)) => {
                page.skipped.push(format!("{}: u/{user} unavailable (deleted, suspended or not found): {e}", self.name));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let about = match parse_user(&resp.body, &format!("GET {url}")) {
            Ok(a) => a,
            Err(e) => {
                page.skipped.push(format!("{}: {e}", self.name));
                return Ok(());
            }
        };
        if about.is_suspended == Some(true) {
            debug!(source = %self.name, user, "suspended account");
            return Ok(());
        }
        if self.cfg.skip_hide_from_robots && about.hide_from_robots == Some(true) {
            debug!(source = %self.name, user, "hide_from_robots: skipped");
            page.opted_out += 1;
            return Ok(());
        }
        let account = to_account(&about);
        let key = about.name.to_ascii_lowercase();
        let today = Utc::now().date_naive();
        let mark = cur.users.get(&key).cloned();
        let check_due =
            mark.as_ref().map_or(true, |m| (today - m.anchors_checked).num_days() >= self.cfg.anchor_check_days as i64);
        let anchor = |name: Option<&String>, utc: Option<f64>| name.map(|n| Anchor { name: n.clone(), utc });
        let submitted_anchor = mark.as_ref().and_then(|m| anchor(m.submitted.as_ref(), m.submitted_utc));
        let comments_anchor = mark.as_ref().and_then(|m| anchor(m.comments.as_ref(), m.comments_utc));
        let submitted = self.read_listing(&about.name, "submitted", submitted_anchor, check_due, page).await?;
        let comments = self.read_listing(&about.name, "comments", comments_anchor, check_due, page).await?;
        let (Some(submitted), Some(comments)) = (submitted, comments) else {
            // A listing could not be read: the profile still counts, the marks stay.
            page.accounts.push(account);
            return Ok(());
        };
        let checked = if submitted.checked || comments.checked || mark.is_none() {
            today
        } else {
            mark.as_ref().map(|m| m.anchors_checked).unwrap_or(today)
        };
        let (s, c) = (submitted.newest.clone(), comments.newest.clone());
        cur.users.insert(
            key,
            Mark {
                submitted: s.as_ref().map(|a| a.name.clone()),
                submitted_utc: s.and_then(|a| a.utc),
                comments: c.as_ref().map(|a| a.name.clone()),
                comments_utc: c.and_then(|a| a.utc),
                anchors_checked: checked,
            },
        );
        for item in submitted.items.iter().chain(&comments.items) {
            if !item.author().eq_ignore_ascii_case(&about.name) {
                continue;
            }
            if let Some(post) = to_post(item, &account.platform_id) {
                page.posts.push(post);
            }
        }
        page.accounts.push(account);
        Ok(())
    }

    /// What is new in `/user/NAME/<what>` after `anchor`, newest pages first the first time.
    /// `None` (with a note in `page.skipped`) when the listing cannot be read this time.
    async fn read_listing(
        &mut self,
        user: &str,
        what: &str,
        anchor: Option<Anchor>,
        check_due: bool,
        page: &mut Page,
    ) -> Result<Option<ListingRead>, SourceError> {
        let limit = self.cfg.items_per_request as usize;
        let path = format!("user/{user}/{what}");
        let base = vec![("sort", "new".to_string()), ("limit", limit.to_string())];
        let mut items: Vec<Item> = vec![];
        let mut requests = 0u32;
        let mut checked = false;
        let newer = |i: &Item| anchor.as_ref().map_or(true, |a| a.precedes(i));
        // Forward from the anchor with `before`, or back from the newest with `after`.
        let mut before = anchor.as_ref().map(|a| a.name.clone());
        let mut after: Option<String> = None;
        loop {
            let mut query = base.clone();
            if let Some(b) = &before {
                query.push(("before", b.clone()));
            } else if let Some(a) = &after {
                query.push(("after", a.clone()));
            }
            let Some(got) = self.fetch_listing(&path, &query, user, page).await? else {
                return Ok(None);
            };
            requests += 1;
            if before.is_some() {
                let first_empty = got.len == 0 && requests == 1;
                // Reddit answers `before` with the block just after the anchor, newest first.
                let page_newest = newest_item(&got.items).map(|a| a.name);
                items.extend(got.items.into_iter().filter(|i| newer(i)));
                if first_empty && check_due {
                    // Nothing after the anchor: perhaps it was deleted. Check the newest page.
                    let Some(newest) = self.fetch_listing(&path, &base, user, page).await? else {
                        return Ok(None);
                    };
                    checked = true;
                    items.extend(newest.items.into_iter().filter(|i| newer(i)));
                    break;
                }
                if got.len < limit || items.len() >= self.cfg.max_new_items_per_user as usize || page_newest.is_none() {
                    break;
                }
                before = page_newest;
            } else {
                items.extend(got.items);
                if requests >= self.cfg.first_scan_pages || got.len < limit || got.after.is_none() {
                    break;
                }
                after = got.after;
            }
        }
        let checked = checked || anchor.is_none();
        let newest = newest_item(&items).or(anchor);
        Ok(Some(ListingRead { items, newest, checked }))
    }

    async fn fetch_listing(
        &mut self,
        path: &str,
        query: &[(&str, String)],
        user: &str,
        page: &mut Page,
    ) -> Result<Option<ListingPage>, SourceError> {
        let url = self.endpoint(path, query)?;
        let resp = match self.api_get(&url).await? {
            Ok(r) => r,
            Err(e) if matches!(e.status(), Some(403 | 404 | 410)) => {
                page.skipped.push(format!("{}: listing of u/{user} unavailable: {e}", self.name));
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        match parse_listing(&resp.body, &format!("GET {url}")) {
            Ok(mut l) => {
                page.skipped.append(&mut l.bad);
                Ok(Some(l))
            }
            Err(e) => {
                page.skipped.push(format!("{}: {e}", self.name));
                Ok(None)
            }
        }
    }
}

/// A token and how long it lasts, from the token endpoint's 200 body.
pub fn parse_token(resp: &HttpResponse) -> Result<(String, Duration), SourceError> {
    let location = format!("POST {}", resp.url);
    let t: TokenResponse = serde_json::from_slice(&resp.body).map_err(|e| SourceError::Malformed {
        location: location.clone(),
        message: format!("token response is not the expected JSON: {e}"),
    })?;
    match (&t.access_token, &t.error) {
        (Some(token), None) if !token.is_empty() => {
            if let Some(kind) = t.token_type.as_deref().filter(|k| !k.eq_ignore_ascii_case("bearer")) {
                return Err(SourceError::Malformed { location, message: format!("token type `{kind}`, expected bearer") });
            }
            let secs = t.expires_in.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(3600.0).min(86_400.0);
            Ok((token.clone(), Duration::from_secs_f64(secs)))
        }
        _ => Err(SourceError::Setup(format!(
            "{location}: no token: {}",
            error_message(&resp.body).unwrap_or_else(|| "no access_token in the answer".into())
        ))),
    }
}

#[async_trait]
impl Source for RedditSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError> {
        let mut cur = Cursor::parse(cursor)?;
        // Fail early and clearly when the credentials are not there.
        self.secret("client_id_env", &self.cfg.client_id_env)?;
        self.secret("client_secret_env", &self.cfg.client_secret_env)?;
        let waits_before = self.http()?.stats().rate_limit_waits.load(std::sync::atomic::Ordering::Relaxed);
        let mut page = Page::default();
        if cur.pass.is_none() && cur.queue.is_empty() {
            cur.seen.clear();
            cur.pass = Some(Pass::Users { next: 0 });
        }
        while cur.queue.is_empty() {
            let Some(pass) = cur.pass.take() else { break };
            cur.pass = self.discover(pass, &mut cur, &mut page).await?;
        }
        for _ in 0..self.cfg.users_per_page {
            let Some(user) = cur.queue.pop_front() else { break };
            self.read_user(&user, &mut cur, &mut page).await?;
        }
        if cur.queue.is_empty() && cur.pass.is_none() {
            cur.seen.clear();
            page.done = true;
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

    fn cfg(extra: &str) -> Result<RedditConfig, String> {
        let text = format!("client_id_env = \"REDDIT_ID\"\nclient_secret_env = \"REDDIT_SECRET\"\n{extra}");
        let mut c: RedditConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn config_is_normalised_and_checked() {
        let c = cfg("subreddits = [\"r/policeuk\", \"/r/Kent/\"]\nusers = [\"u/pc_sam\", \"/user/Jo-Bloggs\", \"plain_name\"]")
            .unwrap();
        assert_eq!(c.subreddits, ["policeuk", "Kent"]);
        assert_eq!(c.users, ["pc_sam", "Jo-Bloggs", "plain_name"]);
        assert_eq!((c.token_url.as_str(), c.api_base.as_str()), (DEFAULT_TOKEN_URL, DEFAULT_API_BASE));
        assert!(c.skip_hide_from_robots);
        assert!(cfg("client_secret = \"x\"").unwrap_err().contains("client_secret"));
        let bad_env = "client_id_env = \"abc-123!\"\nclient_secret_env = \"S\"";
        let mut c: RedditConfig = toml::from_str(bad_env).unwrap();
        assert!(c.validate().unwrap_err().contains("`client_id_env`"));
        assert!(cfg("subreddits = [\"two words\"]").unwrap_err().contains("`subreddits`"));
        assert!(cfg("users = [\"ab\"]").unwrap_err().contains("`users`"));
        assert!(cfg("items_per_request = 101").unwrap_err().contains("`items_per_request`"));
        assert!(cfg("api_base = \"ftp://x\"").unwrap_err().contains("`api_base`"));
        assert!(cfg("token_url = \"https://x/t?secret=1\"").unwrap_err().contains("`token_url`"));
        assert!(cfg("users_per_page = 0").unwrap_err().contains("`users_per_page`"));
    }

    #[test]
    fn fullnames_compare_as_base36() {
        assert!(fullname_cmp("t3_21oo", "t3_434h6c").is_lt());
        assert!(fullname_cmp("t1_zz", "t1_100").is_lt());
        assert!(fullname_cmp("t1_a", "t1_9").is_gt());
        assert!(fullname_cmp("t3_ABC", "t3_abc").is_eq());
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let mut c = Cursor::parse(None).unwrap();
        c.pass = Some(Pass::Subreddit { sub: 1, listing: SubListing::Comments, pages: 1, after: Some("t1_x".into()) });
        c.queue.push_back("pc_sam".into());
        c.seen.insert("pc_sam".into());
        c.users.insert(
            "pc_sam".into(),
            Mark {
                submitted: Some("t3_abc".into()),
                submitted_utc: Some(1_764_000_000.5),
                comments: None,
                comments_utc: None,
                anchors_checked: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            },
        );
        let text = c.to_json();
        assert_eq!(Cursor::parse(Some(&text)).unwrap(), c);
        assert!(matches!(Cursor::parse(Some("p42")), Err(SourceError::BadCursor { .. })));
        assert!(matches!(Cursor::parse(Some("{\"v\":2}")), Err(SourceError::BadCursor { .. })));
    }

    #[test]
    fn removed_and_deleted_text() {
        let comment = |body: &str| {
            Item::Comment(ApiComment {
                id: "c1".into(),
                name: "t1_c1".into(),
                body: body.into(),
                permalink: None,
                link_id: Some("t3_p1".into()),
                created_utc: 1_700_000_000.5,
                author: "pc_sam".into(),
                subreddit: Some("policeuk".into()),
            })
        };
        assert!(to_post(&comment("[removed]"), "pc_sam").is_none());
        let p = to_post(&comment("  on shift  "), "pc_sam").unwrap();
        assert_eq!(p.text, "on shift");
        assert_eq!(p.url.as_deref(), Some("https://www.reddit.com/r/policeuk/comments/p1/_/c1/"));
        assert_eq!(p.created_at.timestamp_millis(), 1_700_000_000_500);
    }
}
