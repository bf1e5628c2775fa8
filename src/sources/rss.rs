//! RSS / Atom / JSON Feed source: configured feed URLs, each feed one account.
//!
//! Parsing is `feed-rs` (RSS 0.9x/1.0/2.0, Atom 1.0, JSON Feed), never hand-written XML. A feed
//! has no cursor of its own and holds only its latest items, so each feed is fetched with a
//! conditional GET (`If-None-Match` / `If-Modified-Since` from the last response's `ETag` /
//! `Last-Modified`; a 304 costs nothing) and its entries are de-duplicated by their `guid` /
//! `id` (feed-rs derives a stable id from the link and title when a feed gives none).
//!
//! One page per feed. The cursor is JSON: the index of the next feed in this pass, and per feed
//! URL its validators and the ids already read; a page's cursor only adds the ids of that page.
//! A feed that cannot be fetched or parsed is noted in [`Page::skipped`] and keeps its state,
//! so the next scan reads it again; the other feeds carry on.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use chrono::Utc;
use reqwest::header::{HeaderName, ACCEPT, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use serde::{Deserialize, Serialize};
use url::Url;

use super::http::{HttpClient, HttpSettings};
use super::{BuildContext, Page, Source, SourceError};
use crate::model::{Account, Post};
use crate::normalise::html_to_text;

pub const PLATFORM: &str = "rss";

/// Ids remembered per feed: far more than any feed holds at once.
const MAX_SEEN: usize = 2000;

/// `[[sources]]` keys of `kind = "rss"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RssConfig {
    /// Feed URLs (http or https); each is one account.
    pub feeds: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_backoff_ms")]
    pub retry_backoff_ms: u64,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    #[serde(default = "default_rps")]
    pub max_requests_per_second: u32,
}

fn default_timeout() -> u64 {
    30
}
fn default_retries() -> u32 {
    3
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_max_body() -> u64 {
    4 * 1024 * 1024
}
fn default_rps() -> u32 {
    1
}

impl RssConfig {
    /// Check what serde cannot; messages name their key in backticks.
    pub fn validate(&mut self) -> Result<(), String> {
        if self.feeds.is_empty() {
            return Err("`feeds`: list at least one feed URL".into());
        }
        let mut seen = HashSet::new();
        for feed in &mut self.feeds {
            let url = Url::parse(feed.trim()).map_err(|e| format!("`feeds`: `{feed}` is not a URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!("`feeds`: `{feed}` must be an http(s) URL"));
            }
            *feed = url.to_string();
            if !seen.insert(feed.clone()) {
                return Err(format!("`feeds`: `{feed}` is listed twice"));
            }
        }
        crate::sources::http::require_positive(&[
            ("timeout_secs", self.timeout_secs),
            ("max_body_bytes", self.max_body_bytes),
            ("max_requests_per_second", self.max_requests_per_second as u64),
        ])?;
        Ok(())
    }

    pub fn http_settings(&self) -> HttpSettings {
        HttpSettings::from_source_keys(
            self.timeout_secs,
            self.max_body_bytes,
            self.max_retries,
            self.retry_backoff_ms,
            self.max_requests_per_second,
        )
    }
}

/// The resumable state of an RSS source, stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub v: u32,
    /// The feed this pass reads next (index into the configured list).
    #[serde(default)]
    pub next: usize,
    #[serde(default)]
    pub feeds: BTreeMap<String, FeedState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// Entry ids already read, newest first.
    #[serde(default)]
    pub seen: Vec<String>,
}

const CURSOR_VERSION: u32 = 1;

impl Cursor {
    pub fn parse(text: Option<&str>) -> Result<Cursor, SourceError> {
        let Some(text) = text else {
            return Ok(Cursor { v: CURSOR_VERSION, ..Default::default() });
        };
        let bad = |message: String| SourceError::BadCursor { cursor: text.chars().take(120).collect(), message };
        let c: Cursor = serde_json::from_str(text).map_err(|e| bad(format!("not an RSS cursor: {e}")))?;
        if c.v != CURSOR_VERSION {
            return Err(bad(format!("cursor version {} (this build reads {CURSOR_VERSION})", c.v)));
        }
        Ok(c)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("cursor serialises")
    }
}

/// A parsed feed as the pipeline sees it: its account and every entry as a post.
pub fn parse_feed(feed_url: &str, body: &[u8]) -> Result<(Account, Vec<Post>), SourceError> {
    let parser = feed_rs::parser::Builder::new().base_uri(Some(feed_url)).build();
    let feed = parser.parse(body).map_err(|e| SourceError::Malformed {
        location: format!("GET {feed_url}"),
        message: format!("not an RSS, Atom or JSON feed: {e}"),
    })?;
    let text_of = |t: &Option<feed_rs::model::Text>| t.as_ref().map(|t| html_to_text(&t.content)).unwrap_or_default();
    let title = text_of(&feed.title);
    let site = feed.links.iter().find(|l| l.rel.as_deref().map_or(true, |r| r == "alternate")).map(|l| l.href.clone());
    let account = Account {
        platform: PLATFORM.to_string(),
        platform_id: feed_url.to_string(),
        handle: feed_url.to_string(),
        display_name: title,
        bio: text_of(&feed.description),
        profile_url: site,
    };
    let now = Utc::now();
    let posts = feed
        .entries
        .iter()
        .map(|e| {
            let title = text_of(&e.title);
            let body = e
                .content
                .as_ref()
                .and_then(|c| c.body.as_deref())
                .map(html_to_text)
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| text_of(&e.summary));
            // A title is shown above the body, unless the body already opens with it.
            let repeats = body == title || body.starts_with(&format!("{title}\n"));
            let text = if title.is_empty() || repeats {
                body
            } else if body.is_empty() {
                title
            } else {
                format!("{title}\n\n{body}")
            };
            let alt_texts = e
                .media
                .iter()
                .filter_map(|m| m.description.as_ref().map(|d| html_to_text(&d.content)))
                .filter(|d| !d.is_empty())
                .collect();
            Post {
                platform: PLATFORM.to_string(),
                platform_id: format!("{feed_url}#{}", e.id),
                author_id: feed_url.to_string(),
                created_at: e.published.or(e.updated).unwrap_or(now),
                text,
                alt_texts,
                lang_hints: e.language.iter().chain(feed.language.iter()).cloned().collect(),
                url: e.links.iter().find(|l| l.rel.as_deref().map_or(true, |r| r == "alternate")).map(|l| l.href.clone()),
            }
        })
        .collect();
    Ok((account, posts))
}

pub struct RssSource {
    name: String,
    cfg: RssConfig,
    http: Result<HttpClient, String>,
}

impl RssSource {
    pub fn new(name: String, cfg: RssConfig, ctx: &BuildContext) -> Self {
        let http = HttpClient::new(cfg.http_settings(), &ctx.operator_contact, ctx.hosts.clone()).map_err(|e| e.to_string());
        RssSource { name, cfg, http }
    }

    /// Fetch and parse one feed; `Ok(None)` when it has not changed (304).
    async fn fetch(&self, feed_url: &str, state: &FeedState) -> Result<Option<(Account, Vec<Post>, FeedState)>, SourceError> {
        let http = self.http.as_ref().map_err(|e| SourceError::Setup(format!("source `{}`: {e}", self.name)))?;
        let url = Url::parse(feed_url).map_err(|e| SourceError::Setup(format!("{feed_url}: {e}")))?;
        let mut headers: Vec<(HeaderName, String)> = vec![(
            ACCEPT,
            "application/atom+xml, application/rss+xml, application/feed+json, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
                .to_string(),
        )];
        if let Some(etag) = &state.etag {
            headers.push((IF_NONE_MATCH, etag.clone()));
        }
        if let Some(lm) = &state.last_modified {
            headers.push((IF_MODIFIED_SINCE, lm.clone()));
        }
        let resp = http.get_with(&url, None, &headers).await?;
        if resp.status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let (account, posts) = parse_feed(feed_url, &resp.body)?;
        let next = FeedState {
            etag: resp.header(ETAG.as_str()).map(str::to_string),
            last_modified: resp.header(LAST_MODIFIED.as_str()).map(str::to_string),
            seen: state.seen.clone(),
        };
        Ok(Some((account, posts, next)))
    }
}

#[async_trait]
impl Source for RssSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError> {
        let mut cur = Cursor::parse(cursor)?;
        let waits_before =
            self.http.as_ref().map(|h| h.stats().rate_limit_waits.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0);
        if cur.next >= self.cfg.feeds.len() {
            cur.next = 0; // the last pass finished, or the feed list shrank
        }
        let mut page = Page::default();
        let feed_url = self.cfg.feeds[cur.next].clone();
        let state = cur.feeds.get(&feed_url).cloned().unwrap_or_default();
        match self.fetch(&feed_url, &state).await {
            Ok(None) => {}
            Ok(Some((account, posts, mut next_state))) => {
                let seen: HashSet<&str> = state.seen.iter().map(String::as_str).collect();
                let fresh: Vec<Post> = posts.into_iter().filter(|p| !seen.contains(p.platform_id.as_str())).collect();
                let mut ids: Vec<String> = fresh.iter().map(|p| p.platform_id.clone()).collect();
                ids.extend(state.seen.iter().cloned());
                ids.truncate(MAX_SEEN);
                next_state.seen = ids;
                cur.feeds.insert(feed_url.clone(), next_state);
                page.posts = fresh;
                page.accounts.push(account);
            }
            Err(e) => page.skipped.push(format!("{}: feed {feed_url}: {e}", self.name)),
        }
        // Forget feeds no longer configured.
        cur.feeds.retain(|k, _| self.cfg.feeds.contains(k));
        cur.next += 1;
        if cur.next >= self.cfg.feeds.len() {
            cur.next = 0;
            page.done = true;
        }
        page.cursor = Some(cur.to_json());
        page.rate_limit_waits = self
            .http
            .as_ref()
            .map(|h| h.stats().rate_limit_waits.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(0)
            .saturating_sub(waits_before);
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_urls() {
        let mut c: RssConfig = toml::from_str("feeds = [\"https://blog.example/feed.xml\"]").unwrap();
        c.validate().unwrap();
        let mut c: RssConfig = toml::from_str("feeds = [\"ftp://x/feed\"]").unwrap();
        assert!(c.validate().unwrap_err().contains("`feeds`"));
        let mut c: RssConfig = toml::from_str("feeds = []").unwrap();
        assert!(c.validate().unwrap_err().contains("`feeds`"));
        let mut c: RssConfig = toml::from_str("feeds = [\"https://a.example/f\", \"https://a.example/f\"]").unwrap();
        assert!(c.validate().unwrap_err().contains("twice"));
    }

    #[test]
    fn cursor_round_trips() {
        let mut c = Cursor::parse(None).unwrap();
        c.next = 1;
        c.feeds.insert(
            "https://a.example/f".into(),
            FeedState { etag: Some("\"x\"".into()), last_modified: None, seen: vec!["i".into()] },
        );
        assert_eq!(Cursor::parse(Some(&c.to_json())).unwrap(), c);
        assert!(matches!(Cursor::parse(Some("[]")), Err(SourceError::BadCursor { .. })));
    }
}
