//! Jetstream source: the whole Bluesky network as it happens, read from a Jetstream v1 server
//! (JSON over WebSocket).
//!
//! Subscribes to posts (`app.bsky.feed.post`) and profiles (`app.bsky.actor.profile`). A page
//! is the events read until it holds `page_events` events or `page_ms` have passed; profile
//! creates/updates become [`Account`]s (DID as id, `description` as bio), post creates become
//! [`Post`]s (text, `langs`, image and video alt texts). Post deletes and updates, identity and
//! account events, and other collections are read and passed over. A frame that is not a valid
//! event is skipped and counted, never fatal.
//!
//! The cursor is Jetstream's `time_us` (Unix microseconds) of the newest event of a page. On
//! (re)connecting the source asks for the stream from that time rewound by `rewind_seconds`
//! (cursors are the same on every Jetstream instance, but not exactly: the rewind covers the
//! difference) and skips every event at or before it, so nothing is lost or read twice. A
//! connection that fails or drops is retried with exponential backoff; after
//! `failures_before_switch` failures in a row the next configured host is tried.
//!
//! `scan` reads for at most `max_seconds`, or until caught up (the newest event is within
//! `caught_up_seconds` of now, or nothing arrives for a whole page); `watch` (see
//! [`JetstreamConfig::continuous`]) keeps reading, ending a page (and a round) only every
//! `max_seconds` or when told to stop.
//!
//! Compression: Jetstream's `compress=true` is zstd with a custom dictionary that is not
//! available to this build, so the source always asks for uncompressed JSON; a binary
//! (compressed) frame is skipped and counted.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use super::{BuildContext, Page, Source, SourceError};
use crate::model::{Account, Post};

/// The platform name of Bluesky accounts and posts.
pub const PLATFORM: &str = "bluesky";
/// The collections a Jetstream source subscribes to.
pub const POST_COLLECTION: &str = "app.bsky.feed.post";
pub const PROFILE_COLLECTION: &str = "app.bsky.actor.profile";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JetstreamConfig {
    /// Jetstream v1 `subscribe` endpoints (`wss://…/subscribe`), tried in order.
    #[serde(default = "default_hosts")]
    pub hosts: Vec<String>,
    /// Most events per page (one stored transaction).
    #[serde(default = "default_page_events")]
    pub page_events: usize,
    /// Longest a page waits for events, in milliseconds.
    #[serde(default = "default_page_ms")]
    pub page_ms: u64,
    /// `scan`: read at most this long. `watch`: the length of one round (one run record).
    #[serde(default = "default_max_seconds")]
    pub max_seconds: u64,
    /// `scan` stops once the newest event is this close to now.
    #[serde(default = "default_caught_up_seconds")]
    pub caught_up_seconds: u64,
    /// How far before the stored cursor a (re)connection starts reading.
    #[serde(default = "default_rewind_seconds")]
    pub rewind_seconds: u64,
    /// Failed connections in a row before moving to the next host.
    #[serde(default = "default_failures_before_switch")]
    pub failures_before_switch: u32,
    /// Longest wait between reconnection attempts, in seconds (backoff doubles up to it).
    #[serde(default = "default_max_backoff_seconds")]
    pub max_backoff_seconds: u64,
    /// A connection that sends nothing for this long is taken as dead and replaced.
    #[serde(default = "default_idle_seconds")]
    pub idle_seconds: u64,
    /// Set by `watch`, never by the file: keep reading (caught up does not end the round).
    #[serde(skip)]
    pub continuous: bool,
    /// Set by `watch`, never by the file: when this turns `true` the source ends the page it is
    /// reading (so it is committed) and reports itself done.
    #[serde(skip)]
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
}

fn default_hosts() -> Vec<String> {
    vec![
        "wss://jetstream1.us-east.bsky.network/subscribe".into(),
        "wss://jetstream2.us-east.bsky.network/subscribe".into(),
        "wss://jetstream1.us-west.bsky.network/subscribe".into(),
        "wss://jetstream2.us-west.bsky.network/subscribe".into(),
    ]
}
fn default_page_events() -> usize {
    1000
}
fn default_page_ms() -> u64 {
    2000
}
fn default_max_seconds() -> u64 {
    300
}
fn default_caught_up_seconds() -> u64 {
    5
}
fn default_rewind_seconds() -> u64 {
    5
}
fn default_failures_before_switch() -> u32 {
    3
}
fn default_max_backoff_seconds() -> u64 {
    60
}
fn default_idle_seconds() -> u64 {
    60
}

impl JetstreamConfig {
    /// Semantic checks; messages name their key in backticks (the config loader turns that
    /// into the key and line).
    pub fn validate(&self) -> Result<(), String> {
        if self.hosts.is_empty() {
            return Err("`hosts` needs at least one Jetstream endpoint".into());
        }
        for h in &self.hosts {
            match url::Url::parse(h) {
                Ok(u) if matches!(u.scheme(), "ws" | "wss") && u.host_str().is_some() => {
                    if u.query().is_some() {
                        return Err(format!("`hosts`: `{h}` has a query; the source adds wantedCollections and cursor itself"));
                    }
                }
                Ok(_) => return Err(format!("`hosts`: `{h}` is not a ws:// or wss:// URL")),
                Err(e) => return Err(format!("`hosts`: `{h}` is not a URL: {e}")),
            }
        }
        let positive: [(&str, u64); 5] = [
            ("page_events", self.page_events as u64),
            ("page_ms", self.page_ms),
            ("max_seconds", self.max_seconds),
            ("failures_before_switch", self.failures_before_switch as u64),
            ("idle_seconds", self.idle_seconds),
        ];
        crate::sources::http::require_positive(&positive)
    }
}

/// What one Jetstream frame means to the monitor.
#[derive(Debug, Clone, PartialEq)]
pub enum JetstreamEvent {
    /// A profile was created or updated.
    Profile { time_us: i64, account: Account },
    /// A post was created.
    Post { time_us: i64, post: Post },
    /// Anything else (deletes, post updates, identity and account events, other collections):
    /// read, nothing to do. `what` says which, for logs and tests.
    Other { time_us: i64, what: String },
}

impl JetstreamEvent {
    pub fn time_us(&self) -> i64 {
        match self {
            JetstreamEvent::Profile { time_us, .. }
            | JetstreamEvent::Post { time_us, .. }
            | JetstreamEvent::Other { time_us, .. } => *time_us,
        }
    }
}

/// The envelope of a frame, borrowed from it, with the commit as `C`: [`Commit`] (one pass, see
/// [`parse_event`]) or [`RawCommit`] (the record left unparsed until the event is known to be a
/// post or profile). Never a JSON tree of the whole event.
#[derive(Deserialize)]
#[serde(bound(deserialize = "C: Deserialize<'de>"))]
struct RawEvent<'a, C> {
    #[serde(borrow)]
    did: std::borrow::Cow<'a, str>,
    time_us: i64,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default = "none")]
    commit: Option<C>,
}

fn none<C>() -> Option<C> {
    None
}

#[derive(Deserialize)]
struct RawCommit<'a> {
    #[serde(borrow)]
    operation: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    collection: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    rkey: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    record: Option<&'a serde_json::value::RawValue>,
}

/// A commit with its record parsed as it was met, when `collection` and `operation` came before
/// it (as Jetstream sends them) and say post create or profile create/update; raw otherwise.
/// Read by a visitor that accepts less than [`RawCommit`] (no escaped keys or values, no
/// missing or repeated fields): whatever it refuses is read again as a [`RawCommit`].
struct Commit<'a> {
    operation: std::borrow::Cow<'a, str>,
    collection: std::borrow::Cow<'a, str>,
    rkey: std::borrow::Cow<'a, str>,
    record: Record<'a>,
}

enum Record<'a> {
    Missing,
    Raw(&'a serde_json::value::RawValue),
    Post(PostRecord<'a>),
    Profile(ProfileRecord),
}

impl<'a> From<RawCommit<'a>> for Commit<'a> {
    fn from(c: RawCommit<'a>) -> Commit<'a> {
        let record = c.record.map_or(Record::Missing, Record::Raw);
        Commit { operation: c.operation, collection: c.collection, rkey: c.rkey, record }
    }
}

impl<'a> Record<'a> {
    fn post(self) -> Result<PostRecord<'a>, String> {
        match self {
            Record::Post(rec) => Ok(rec),
            Record::Raw(raw) => serde_json::from_str(raw.get()).map_err(|e| format!("post record: {e}")),
            Record::Missing => Err("a post create without `record`".into()),
            // Typed by the collection read before it: cannot happen.
            Record::Profile(_) => Err("post record: read as a profile".into()),
        }
    }

    fn profile(self) -> Result<ProfileRecord, String> {
        match self {
            Record::Profile(rec) => Ok(rec),
            Record::Raw(raw) => serde_json::from_str(raw.get()).map_err(|e| format!("profile record: {e}")),
            Record::Missing => Err("a profile update without `record`".into()),
            Record::Post(_) => Err("profile record: read as a post".into()),
        }
    }
}

impl<'de> Deserialize<'de> for Commit<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Commit<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Jetstream commit")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Commit<'de>, M::Error> {
                let (mut operation, mut collection, mut rkey): (Option<&str>, Option<&str>, Option<&str>) = (None, None, None);
                let mut record: Option<Record<'de>> = None;
                while let Some(key) = map.next_key::<&'de str>()? {
                    let slot = match key {
                        "operation" => &mut operation,
                        "collection" => &mut collection,
                        "rkey" => &mut rkey,
                        "record" => {
                            if record.is_some() {
                                return Err(M::Error::duplicate_field("record"));
                            }
                            record = Some(match (collection, operation) {
                                (Some(POST_COLLECTION), Some("create")) => {
                                    map.next_value::<Option<PostRecord>>()?.map_or(Record::Missing, Record::Post)
                                }
                                (Some(PROFILE_COLLECTION), Some("create" | "update")) => {
                                    map.next_value::<Option<ProfileRecord>>()?.map_or(Record::Missing, Record::Profile)
                                }
                                _ => {
                                    map.next_value::<Option<&serde_json::value::RawValue>>()?.map_or(Record::Missing, Record::Raw)
                                }
                            });
                            continue;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if slot.is_some() {
                        return Err(M::Error::custom("a repeated field"));
                    }
                    *slot = Some(map.next_value::<&'de str>()?);
                }
                let (Some(operation), Some(collection), Some(rkey)) = (operation, collection, rkey) else {
                    return Err(M::Error::custom("a missing field"));
                };
                Ok(Commit {
                    operation: operation.into(),
                    collection: collection.into(),
                    rkey: rkey.into(),
                    record: record.unwrap_or(Record::Missing),
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// A post record, borrowed from the frame where its JSON has no escapes (most text does not):
/// a post is parsed for every event of the network, so each copy counts.
#[derive(Deserialize)]
struct PostRecord<'a> {
    #[serde(default, borrow)]
    text: std::borrow::Cow<'a, str>,
    #[serde(default, rename = "createdAt", borrow)]
    created_at: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    langs: Vec<std::borrow::Cow<'a, str>>,
    /// Left unparsed: most embeds (links, quoted posts, images without alt text) hold no alt
    /// text, and only those that may are parsed (see [`embed_alt_texts`]).
    #[serde(default, borrow)]
    embed: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct ProfileRecord {
    #[serde(default, rename = "displayName")]
    display_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    pronouns: Option<String>,
    #[serde(default)]
    website: Option<String>,
}

/// Longest text field taken from a record: far above what the lexicons allow (300 graphemes for
/// a post, 256 for a bio), so only hostile records are cut.
const MAX_FIELD_BYTES: usize = 10_000;

fn clip(s: &str) -> String {
    if s.len() <= MAX_FIELD_BYTES {
        return s.to_string();
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// [`clip`] of a field that may already be owned (unescaped by the parser): not copied again.
fn clip_cow(s: std::borrow::Cow<'_, str>) -> String {
    if s.len() <= MAX_FIELD_BYTES {
        s.into_owned()
    } else {
        clip(&s)
    }
}

/// A DID as Jetstream sends it (`did:<method>:<id>`, no spaces or slashes).
fn valid_did(did: &str) -> bool {
    let mut parts = did.splitn(3, ':');
    parts.next() == Some("did")
        && parts.next().is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_lowercase()))
        && parts.next().is_some_and(|id| !id.is_empty())
        && did.len() <= 2048
        && !did.contains(|c: char| c.is_whitespace() || c == '/' || c == '?' || c == '#' || c.is_control())
}

fn valid_rkey(rkey: &str) -> bool {
    !rkey.is_empty()
        && rkey.len() <= 512
        && rkey.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'~'))
}

/// Alt texts of a post's own media: `app.bsky.embed.images` (`images[].alt`),
/// `app.bsky.embed.video` (`alt`) and the media half of `app.bsky.embed.recordWithMedia`. A quoted
/// record is someone else's post and is not taken.
fn alt_texts(embed: &serde_json::Value) -> Vec<String> {
    let mut out = vec![];
    let mut take = |media: &serde_json::Value| {
        if let Some(images) = media.get("images").and_then(|v| v.as_array()) {
            for img in images {
                if let Some(alt) = img.get("alt").and_then(|a| a.as_str()) {
                    if !alt.trim().is_empty() {
                        out.push(clip(alt));
                    }
                }
            }
        }
        if let Some(alt) = media.get("alt").and_then(|a| a.as_str()) {
            if !alt.trim().is_empty() {
                out.push(clip(alt));
            }
        }
    };
    take(embed);
    if let Some(media) = embed.get("media") {
        take(media);
    }
    out.truncate(16);
    out
}

/// [`alt_texts`] of an embed still in its JSON. An embed whose text has no `"alt"` key (nor any
/// escape, which could spell one) cannot hold an alt text, and is not parsed at all.
fn embed_alt_texts(embed: &serde_json::value::RawValue) -> Result<Vec<String>, serde_json::Error> {
    let json = embed.get();
    if !json.contains("\"alt\"") && !json.contains('\\') {
        return Ok(vec![]);
    }
    Ok(alt_texts(&serde_json::from_str(json)?))
}

fn time_of(time_us: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_micros(time_us).single()
}

/// Parse one Jetstream v1 frame. An error says what is wrong with it (the caller skips and
/// counts it).
///
/// Read in one pass when the frame is as Jetstream sends it (see [`Commit`]); a frame that pass
/// refuses is read again the careful way (envelope, then record), which says what is wrong
/// with it. Both give the same event for any frame the first accepts.
pub fn parse_event(text: &str) -> Result<JetstreamEvent, String> {
    match serde_json::from_str::<RawEvent<Commit>>(text) {
        Ok(raw) => event_of(raw),
        Err(_) => parse_event_carefully(text),
    }
}

/// [`parse_event`] the careful way: the envelope with the record raw, then the record.
fn parse_event_carefully(text: &str) -> Result<JetstreamEvent, String> {
    let raw: RawEvent<RawCommit> = serde_json::from_str(text).map_err(|e| format!("not a Jetstream event: {e}"))?;
    event_of(RawEvent { did: raw.did, time_us: raw.time_us, kind: raw.kind, commit: raw.commit.map(Commit::from) })
}

fn event_of(raw: RawEvent<Commit>) -> Result<JetstreamEvent, String> {
    let time_us = raw.time_us;
    if time_us <= 0 || time_of(time_us).is_none() {
        return Err(format!("time_us {time_us} is not a time"));
    }
    if !valid_did(&raw.did) {
        return Err(format!("`did` {:?} is not a DID", raw.did.chars().take(80).collect::<String>()));
    }
    let other = |what: String| Ok(JetstreamEvent::Other { time_us, what });
    match &*raw.kind {
        "commit" => {}
        "identity" | "account" => return other(raw.kind.into_owned()),
        k => return other(format!("unknown kind {:?}", k.chars().take(40).collect::<String>())),
    }
    let commit = raw.commit.ok_or("a commit event without `commit`")?;
    if !valid_rkey(&commit.rkey) {
        return Err(format!("`commit.rkey` {:?} is not a record key", commit.rkey.chars().take(80).collect::<String>()));
    }
    let what = || format!("{} {}", commit.operation, commit.collection);
    match (&*commit.collection, &*commit.operation) {
        (POST_COLLECTION, "create") => {
            let rec = commit.record.post()?;
            // Valid JSON already (a raw value of the frame): this cannot fail in practice.
            let alt_texts = match rec.embed {
                Some(embed) => embed_alt_texts(embed).map_err(|e| format!("post record: {e}"))?,
                None => vec![],
            };
            let at = time_of(time_us).expect("checked above");
            // `createdAt` is what the client declared: a time that does not parse, or is far in
            // the future, gives way to the time Jetstream saw the post.
            let created_at = rec
                .created_at
                .as_deref()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
                .filter(|t| at.checked_add_signed(chrono::Duration::days(1)).map_or(true, |limit| *t <= limit))
                .unwrap_or(at);
            let did = &raw.did;
            let rkey = &commit.rkey;
            let post = Post {
                platform: PLATFORM.to_string(),
                platform_id: format!("at://{did}/{POST_COLLECTION}/{rkey}"),
                author_id: did.to_string(),
                created_at,
                text: clip_cow(rec.text),
                alt_texts,
                lang_hints: rec.langs.iter().take(3).map(|l| l.chars().take(35).collect()).collect(),
                url: Some(format!("https://bsky.app/profile/{did}/post/{rkey}")),
            };
            Ok(JetstreamEvent::Post { time_us, post })
        }
        (PROFILE_COLLECTION, "create" | "update") => {
            let rec = commit.record.profile()?;
            let mut bio = clip(rec.description.as_deref().unwrap_or(""));
            for extra in [&rec.pronouns, &rec.website].into_iter().flatten() {
                if !extra.trim().is_empty() {
                    if !bio.is_empty() {
                        bio.push('\n');
                    }
                    bio.push_str(&clip(extra));
                }
            }
            let did = raw.did.into_owned();
            let account = Account {
                platform: PLATFORM.to_string(),
                // Jetstream commits carry no handle: the DID stands for it.
                handle: did.clone(),
                display_name: clip(rec.display_name.as_deref().unwrap_or("")),
                bio,
                profile_url: Some(format!("https://bsky.app/profile/{did}")),
                platform_id: did,
            };
            Ok(JetstreamEvent::Profile { time_us, account })
        }
        _ => other(what()),
    }
}

/// The subscribe URL for `host`, starting at `cursor` (Unix µs) when given.
pub fn subscribe_url(host: &str, cursor: Option<i64>) -> String {
    let mut url = format!("{host}?wantedCollections={POST_COLLECTION}&wantedCollections={PROFILE_COLLECTION}");
    if let Some(c) = cursor {
        url.push_str(&format!("&cursor={c}"));
    }
    url
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct JetstreamSource {
    name: String,
    cfg: JetstreamConfig,
    user_agent: String,
    conn: Option<Ws>,
    host: usize,
    /// Failed connections in a row on the current host.
    failures: u32,
    /// Newest `time_us` read so far (in memory; the stored cursor lags it by the open page).
    newest: Option<i64>,
    /// When the current `scan` (or `watch` round) started.
    started: Option<Instant>,
    /// No frame has arrived on the current connection yet.
    fresh: bool,
    /// Events at or before this time were read before the current connection was opened:
    /// after the rewind, the server sends them again and they are skipped. Events of one
    /// connection are never compared with each other (Jetstream's `time_us` is not strictly
    /// ordered within a stream).
    conn_floor: Option<i64>,
    /// Events read in all, and duplicates skipped after a rewind (for logs and tests).
    pub events_read: u64,
    pub duplicates_skipped: u64,
    pub reconnects: u64,
}

/// What reading one frame gave.
enum Read {
    /// A text frame, as received (not copied: it is parsed in place).
    Frame(tungstenite::Utf8Bytes),
    Binary(usize),
    /// Nothing arrived before the deadline.
    Timeout,
    /// The connection ended (closed, reset, idle too long); the reason is for the log.
    Lost(String),
    Stopped,
}

impl JetstreamSource {
    pub fn new(name: String, cfg: JetstreamConfig, ctx: &BuildContext) -> Self {
        JetstreamSource {
            name,
            cfg,
            user_agent: super::http::user_agent(&ctx.operator_contact),
            conn: None,
            host: 0,
            failures: 0,
            newest: None,
            started: None,
            fresh: false,
            conn_floor: None,
            events_read: 0,
            duplicates_skipped: 0,
            reconnects: 0,
        }
    }

    fn stopping(&self) -> bool {
        self.cfg.stop.as_ref().is_some_and(|s| *s.borrow())
    }

    async fn wait_stop(stop: &mut Option<tokio::sync::watch::Receiver<bool>>) {
        match stop {
            Some(rx) => {
                if rx.wait_for(|v| *v).await.is_err() {
                    std::future::pending::<()>().await
                }
            }
            None => std::future::pending::<()>().await,
        }
    }

    /// Connect to the current host from `from` (rewound), retrying with backoff and moving
    /// to the next host after repeated failures. Gives up at `deadline` (or when stopped).
    async fn connect(&mut self, from: Option<i64>, deadline: Instant) -> Result<Option<Ws>, SourceError> {
        let rewind = self.cfg.rewind_seconds as i64 * 1_000_000;
        let cursor = from.map(|c| (c - rewind).max(1));
        let mut attempt: u32 = 0;
        loop {
            if self.stopping() {
                return Ok(None);
            }
            let host = self.cfg.hosts[self.host % self.cfg.hosts.len()].clone();
            let url = subscribe_url(&host, cursor);
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = left.min(Duration::from_secs(30)).max(Duration::from_millis(100));
            let last_error = match tokio::time::timeout(timeout, self.open(&url)).await {
                Ok(Ok(ws)) => {
                    info!(source = %self.name, host = %host, cursor = ?cursor, "connected to Jetstream");
                    return Ok(Some(ws));
                }
                Ok(Err(e)) => format!("{host}: {e}"),
                Err(_) => format!("{host}: connection timed out"),
            };
            attempt += 1;
            warn!(source = %self.name, error = %last_error, attempt, "Jetstream connection failed");
            let backoff = self.failed(attempt);
            if Instant::now() + backoff >= deadline {
                return Err(SourceError::Io {
                    path: host,
                    source: std::io::Error::other(format!(
                        "no Jetstream host answered in time ({attempt} attempts); last error: {last_error}"
                    )),
                });
            }
            let mut stop = self.cfg.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = Self::wait_stop(&mut stop) => return Ok(None),
            }
        }
    }

    /// Count a failed connection: after `failures_before_switch` in a row, move to the next
    /// host. Returns how long to wait before the next attempt (doubling, capped).
    fn failed(&mut self, attempt: u32) -> Duration {
        self.failures += 1;
        if self.failures >= self.cfg.failures_before_switch {
            self.failures = 0;
            self.host = (self.host + 1) % self.cfg.hosts.len();
            if self.cfg.hosts.len() > 1 {
                info!(source = %self.name, host = %self.cfg.hosts[self.host], "switching Jetstream host");
            }
        }
        Duration::from_millis(250u64.saturating_mul(1 << attempt.min(16)))
            .min(Duration::from_secs(self.cfg.max_backoff_seconds.max(1)))
    }

    async fn open(&self, url: &str) -> Result<Ws, tungstenite::Error> {
        let mut request = url.into_client_request()?;
        if let Ok(ua) = self.user_agent.parse() {
            request.headers_mut().insert("User-Agent", ua);
        }
        let (ws, _response) = tokio_tungstenite::connect_async(request).await?;
        Ok(ws)
    }

    /// Read one frame, waiting until `until` at most.
    async fn read(&mut self, until: Instant) -> Read {
        let idle = Duration::from_secs(self.cfg.idle_seconds);
        let wait = until.saturating_duration_since(Instant::now());
        let (limit, is_idle) = if wait > idle { (idle, true) } else { (wait, false) };
        let mut stop = self.cfg.stop.clone();
        let Some(ws) = self.conn.as_mut() else { return Read::Lost("not connected".into()) };
        loop {
            let next = tokio::select! {
                r = tokio::time::timeout(limit, ws.next()) => r,
                _ = Self::wait_stop(&mut stop) => return Read::Stopped,
            };
            return match next {
                Err(_) if is_idle => Read::Lost(format!("nothing received for {} s", idle.as_secs())),
                Err(_) => Read::Timeout,
                Ok(None) => Read::Lost("connection closed".into()),
                Ok(Some(Err(e))) => Read::Lost(e.to_string()),
                Ok(Some(Ok(Message::Text(t)))) => Read::Frame(t),
                Ok(Some(Ok(Message::Binary(b)))) => Read::Binary(b.len()),
                Ok(Some(Ok(Message::Close(frame)))) => Read::Lost(
                    frame.map(|f| format!("closed by server: {} {}", f.code, f.reason)).unwrap_or("closed by server".into()),
                ),
                // Pings are answered by tungstenite on the next read.
                Ok(Some(Ok(_))) => continue,
            };
        }
    }

    fn caught_up(&self) -> bool {
        let now = Utc::now().timestamp_micros();
        self.newest.is_some_and(|t| now - t <= self.cfg.caught_up_seconds as i64 * 1_000_000)
    }
}

#[async_trait]
impl Source for JetstreamSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError> {
        let stored = match cursor {
            None => None,
            Some(c) => match c.trim().parse::<i64>() {
                Ok(v) if v > 0 => Some(v),
                _ => {
                    return Err(SourceError::BadCursor {
                        cursor: c.to_string(),
                        message: "expected Jetstream time_us (Unix microseconds)".into(),
                    })
                }
            },
        };
        if self.conn.is_none() {
            // A new scan, or a watch round after a failure: the stored cursor is where to resume.
            self.newest = match (stored, self.newest) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let round_end = started + Duration::from_secs(self.cfg.max_seconds);
        let page_end = (Instant::now() + Duration::from_millis(self.cfg.page_ms)).min(round_end);
        let mut page = Page::default();
        let mut frames = 0usize;
        let mut page_newest: Option<i64> = None;
        let mut stopped = false;
        while frames < self.cfg.page_events {
            if self.stopping() {
                stopped = true;
                break;
            }
            if self.conn.is_none() {
                // Reconnection may take longer than a page: it is bounded by the round.
                // Everything up to the newest event read (stored, or on this page) is not wanted again.
                match self.connect(self.newest, round_end.max(page_end)).await {
                    Ok(Some(ws)) => {
                        self.conn = Some(ws);
                        self.fresh = true;
                        self.conn_floor = self.newest;
                    }
                    Ok(None) => {
                        stopped = true;
                        break;
                    }
                    // Nothing could be read: with events already on the page, store them first.
                    Err(e) if frames == 0 => {
                        self.started = None;
                        return Err(e);
                    }
                    Err(e) => {
                        warn!(source = %self.name, error = %e, "ending the page early");
                        break;
                    }
                }
            }
            match self.read(page_end).await {
                Read::Timeout => break,
                Read::Stopped => {
                    stopped = true;
                    break;
                }
                Read::Lost(why) => {
                    warn!(source = %self.name, reason = %why, "Jetstream connection lost; reconnecting");
                    self.conn = None;
                    self.reconnects += 1;
                    if self.fresh {
                        // Connected but dropped before sending anything: a failure of this host.
                        let backoff = self.failed(self.failures + 1);
                        let mut stop = self.cfg.stop.clone();
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.min(page_end.saturating_duration_since(Instant::now()))) => {}
                            _ = Self::wait_stop(&mut stop) => {}
                        }
                    }
                    if Instant::now() >= page_end {
                        break;
                    }
                }
                Read::Binary(len) => {
                    frames += 1;
                    self.failures = 0;
                    self.fresh = false;
                    page.skipped
                        .push(format!("{}: binary frame of {len} bytes (compressed events are not supported)", self.name));
                }
                Read::Frame(text) => {
                    frames += 1;
                    self.failures = 0;
                    self.fresh = false;
                    self.events_read += 1;
                    match parse_event(text.as_str()) {
                        Err(e) => page.skipped.push(format!(
                            "{}: frame after time_us {}: {e}",
                            self.name,
                            page_newest.or(self.newest).map(|t| t.to_string()).unwrap_or_else(|| "(start)".into())
                        )),
                        Ok(ev) => {
                            let t = ev.time_us();
                            if self.conn_floor.is_some_and(|f| t <= f) {
                                self.duplicates_skipped += 1;
                                continue;
                            }
                            page_newest = Some(page_newest.map_or(t, |n| n.max(t)));
                            match ev {
                                JetstreamEvent::Profile { account, .. } => page.accounts.push(account),
                                JetstreamEvent::Post { post, .. } => page.posts.push(post),
                                JetstreamEvent::Other { what, .. } => {
                                    debug!(source = %self.name, time_us = t, what, "passed over")
                                }
                            }
                        }
                    }
                }
            }
            if let Some(n) = page_newest {
                // The in-memory high-water mark: a reconnection resumes after it.
                self.newest = Some(self.newest.map_or(n, |m| m.max(n)));
            }
        }
        // Never backwards: events of a page may be older than the newest of an earlier page.
        page.cursor = page_newest.and(self.newest).map(|t| t.to_string());
        let out_of_time = Instant::now() >= round_end;
        let done = stopped || self.stopping() || out_of_time || (!self.cfg.continuous && (frames == 0 || self.caught_up()));
        if done {
            self.started = None;
            if !self.cfg.continuous || stopped {
                // A new scan reconnects from the stored cursor.
                if let Some(mut ws) = self.conn.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                }
            }
        }
        page.done = done;
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(rel: &str) -> Option<std::path::PathBuf> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("shared").join(rel);
        if p.exists() {
            return Some(p);
        }
        assert!(std::env::var("REQUIRE_PEERS").as_deref() != Ok("1"), "REQUIRE_PEERS=1 but {} does not exist", p.display());
        println!("skipped: ../shared not found ({})", p.display());
        None
    }

    fn lines(rel: &str) -> Option<Vec<String>> {
        let p = shared(rel)?;
        Some(std::fs::read_to_string(p).unwrap().lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect())
    }

    #[test]
    fn golden_events_each_type_parses_as_expected() {
        let Some(events) = lines("fixtures/platforms/bluesky/jetstream_v1_golden_10_events.jsonl") else { return };
        assert_eq!(events.len(), 10);
        let parsed: Vec<JetstreamEvent> = events.iter().map(|l| parse_event(l).unwrap()).collect();
        // 0 like, 1 post create (reply, langs), 2 repost, 3 follow, 4 profile update, 5 delete,
        // 6 non-bsky update, 7 identity, 8 account, 9 block.
        let JetstreamEvent::Post { time_us, post } = &parsed[1] else { panic!("{:?}", parsed[1]) };
        assert_eq!(*time_us, 1779719009157119);
        assert_eq!(post.platform, "bluesky");
        assert_eq!(post.author_id, "did:plc:q235v55g5unth4zjjdpacfdr");
        assert_eq!(post.platform_id, "at://did:plc:q235v55g5unth4zjjdpacfdr/app.bsky.feed.post/3mmoojp4cd223");
        assert_eq!(post.text, "Try RSV for a good time !!");
        assert_eq!(post.lang_hints, vec!["en"]);
        assert_eq!(post.created_at.to_rfc3339(), "2026-05-25T14:23:28.757+00:00");
        assert_eq!(post.url.as_deref(), Some("https://bsky.app/profile/did:plc:q235v55g5unth4zjjdpacfdr/post/3mmoojp4cd223"));
        let JetstreamEvent::Profile { account, .. } = &parsed[4] else { panic!("{:?}", parsed[4]) };
        assert_eq!(account.platform_id, "did:plc:o6t5vwyr7ae73foww7bgye4r");
        assert_eq!(account.display_name, "Multiversal Lokis Unit🔞");
        assert!(account.bio.starts_with("Damian Lokison, 32"), "{}", account.bio);
        for (i, what) in [
            (0, "create app.bsky.feed.like"),
            (2, "create app.bsky.feed.repost"),
            (3, "create app.bsky.graph.follow"),
            (5, "delete org.hypercerts.claim.activity"),
            (6, "update place.stream.broadcast.origin"),
            (7, "identity"),
            (8, "account"),
            (9, "create app.bsky.graph.block"),
        ] {
            match &parsed[i] {
                JetstreamEvent::Other { what: w, .. } => assert_eq!(w, what, "event {i}"),
                other => panic!("event {i}: {other:?}"),
            }
        }
    }

    #[test]
    fn captured_stream_posts_and_deletes() {
        let Some(events) = lines("fixtures/platforms/bluesky/jetstream_v1_capture_152_events.jsonl") else { return };
        let mut posts = 0;
        let mut post_deletes = 0;
        let mut with_alts = 0;
        for l in &events {
            let raw: serde_json::Value = serde_json::from_str(l).unwrap();
            let ev = parse_event(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(ev.time_us(), raw["time_us"].as_i64().unwrap());
            match ev {
                JetstreamEvent::Post { post, .. } => {
                    posts += 1;
                    assert_eq!(post.text, raw["commit"]["record"]["text"].as_str().unwrap());
                    let langs: Vec<String> = raw["commit"]["record"]["langs"]
                        .as_array()
                        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                        .unwrap_or_default();
                    assert_eq!(post.lang_hints, langs);
                    if !post.alt_texts.is_empty() {
                        with_alts += 1;
                    }
                }
                JetstreamEvent::Other { what, .. } if what == "delete app.bsky.feed.post" => post_deletes += 1,
                JetstreamEvent::Profile { .. } => panic!("no profile in this capture"),
                JetstreamEvent::Other { .. } => {}
            }
        }
        assert_eq!((posts, post_deletes), (17, 1));
        // Alt texts present in the capture are taken (count them from the raw JSON).
        let raw_alts = events
            .iter()
            .filter(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["commit"]["operation"] == "create"
                    && v["commit"]["collection"] == POST_COLLECTION
                    && !alt_texts(&v["commit"]["record"]["embed"]).is_empty()
            })
            .count();
        assert_eq!(with_alts, raw_alts);
    }

    #[test]
    fn the_one_pass_reading_agrees_with_the_careful_one() {
        let mut frames = lines("fixtures/platforms/bluesky/jetstream_v1_capture_152_events.jsonl").unwrap_or_default();
        frames.extend(lines("fixtures/platforms/bluesky/jetstream_v1_golden_10_events.jsonl").unwrap_or_default());
        let post = r#"{"did":"did:plc:abc","time_us":1700000000000000,"kind":"commit","commit":{"rev":"r","operation":"create","collection":"app.bsky.feed.post","rkey":"3k","record":{"$type":"app.bsky.feed.post","text":"Night shift, custody rammed","createdAt":"2023-11-14T22:13:20Z","langs":["en"],"embed":{"$type":"app.bsky.embed.images","images":[{"alt":"a cordon"}]}},"cid":"c"}}"#;
        let profile = r#"{"did":"did:plc:abc","time_us":1700000000000001,"kind":"commit","commit":{"rev":"r","operation":"update","collection":"app.bsky.actor.profile","rkey":"self","record":{"displayName":"PC Jo","description":"Response, Kent Police"},"cid":"c"}}"#;
        // As Jetstream sends them, the one pass reads the record as it meets it.
        for (frame, typed) in [(post, "post"), (profile, "profile")] {
            let raw: RawEvent<Commit> = serde_json::from_str(frame).unwrap();
            let got = match raw.commit.unwrap().record {
                Record::Post(_) => "post",
                Record::Profile(_) => "profile",
                Record::Raw(_) | Record::Missing => "raw",
            };
            assert_eq!(got, typed);
        }
        frames.extend([post.to_string(), profile.to_string()]);
        // Record before collection, escaped values and keys, a repeated field, a null or bad
        // record, a commit as an array: the careful reading decides, and both agree.
        frames.extend([
            post.replace(r#""operation":"create","collection":"app.bsky.feed.post","rkey":"3k","record""#, r#""rkey":"3k","record""#)
                .replace(r#","cid":"c"}"#, r#","operation":"create","collection":"app.bsky.feed.post","cid":"c"}"#),
            post.replace(r#""collection":"app.bsky.feed.post""#, r#""collection":"app.bsky.feed.po\u0073t""#),
            post.replace(r#""rkey":"3k""#, r#""rk\u0065y":"3k""#),
            post.replace(r#""rkey":"3k""#, r#""rkey":"3k","rkey":"3j""#),
            post.replace(r#","cid":"c"}"#, r#","record":{"text":"again"},"cid":"c"}"#),
            post.replace(r#""text":"Night shift, custody rammed""#, r#""text":7"#),
            post.replace(r#""text":"Night shift, custody rammed""#, r#""text":"Night "shift"
é"#),
            profile.replace(r#""record":{"displayName":"PC Jo","description":"Response, Kent Police"}"#, r#""record":null"#),
            profile.replace(r#""description":"Response, Kent Police""#, r#""description":["x"]"#),
            r#"{"did":"did:plc:a","time_us":1,"kind":"commit","commit":["create","app.bsky.feed.post","k"]}"#.to_string(),
            r#"{"did":"did:plc:a","time_us":1,"kind":"identity","commit":{"operation":"create","collection":"app.bsky.feed.post","rkey":"k","record":{"text":7}}}"#.to_string(),
        ]);
        for frame in &frames {
            assert_eq!(parse_event(frame), parse_event_carefully(frame), "{frame}");
        }
    }

    #[test]
    fn image_video_and_record_with_media_alts_are_taken_but_not_quoted_posts() {
        let ev = r#"{"did":"did:plc:abc","time_us":1700000000000000,"kind":"commit","commit":{"rev":"r","operation":"create","collection":"app.bsky.feed.post","rkey":"3k","record":{"text":"hi","createdAt":"2023-11-14T22:13:20Z","embed":{"$type":"app.bsky.embed.recordWithMedia","record":{"record":{"uri":"at://x","cid":"c","alt":"not mine"}},"media":{"$type":"app.bsky.embed.images","images":[{"alt":"two officers in uniform"},{"alt":""}]}}}}}"#;
        let JetstreamEvent::Post { post, .. } = parse_event(ev).unwrap() else { panic!() };
        assert_eq!(post.alt_texts, vec!["two officers in uniform"]);
        let video = ev.replace(
            r#"{"$type":"app.bsky.embed.recordWithMedia","record":{"record":{"uri":"at://x","cid":"c","alt":"not mine"}},"media":{"$type":"app.bsky.embed.images","images":[{"alt":"two officers in uniform"},{"alt":""}]}}"#,
            r#"{"$type":"app.bsky.embed.video","alt":"custody suite"}"#,
        );
        let JetstreamEvent::Post { post, .. } = parse_event(&video).unwrap() else { panic!() };
        assert_eq!(post.alt_texts, vec!["custody suite"]);
    }

    #[test]
    fn bad_created_at_falls_back_to_event_time() {
        let ev = r#"{"did":"did:plc:abc","time_us":1700000000000000,"kind":"commit","commit":{"operation":"create","collection":"app.bsky.feed.post","rkey":"3k","record":{"text":"x","createdAt":"YYYY"}}}"#;
        let JetstreamEvent::Post { post, .. } = parse_event(ev).unwrap() else { panic!() };
        assert_eq!(post.created_at.timestamp(), 1_700_000_000);
        let future = ev.replace("YYYY", "2999-01-01T00:00:00Z");
        let JetstreamEvent::Post { post, .. } = parse_event(&future).unwrap() else { panic!() };
        assert_eq!(post.created_at.timestamp(), 1_700_000_000);
    }

    #[test]
    fn an_event_time_at_the_end_of_the_calendar_is_read_not_a_panic() {
        // The last microsecond chrono can hold: "a day after the event time", the limit on a
        // future `createdAt`, is past it.
        let last = DateTime::<Utc>::MAX_UTC.timestamp_micros();
        let ev = format!(
            r#"{{"did":"did:plc:abc","time_us":{last},"kind":"commit","commit":{{"operation":"create","collection":"app.bsky.feed.post","rkey":"3k","record":{{"text":"x","createdAt":"2026-01-01T00:00:00Z"}}}}}}"#
        );
        let JetstreamEvent::Post { post, .. } = parse_event(&ev).unwrap() else { panic!() };
        assert_eq!(post.created_at.timestamp(), 1_767_225_600);
    }

    #[test]
    fn malformed_frames_are_errors_with_a_reason() {
        let cases = [
            ("", "not a Jetstream event"),
            ("{", "not a Jetstream event"),
            ("[]", "not a Jetstream event"),
            (r#"{"did":"did:plc:a","kind":"commit"}"#, "time_us"),
            (r#"{"did":"did:plc:a","time_us":"soon","kind":"commit"}"#, "not a Jetstream event"),
            (r#"{"did":"did:plc:a","time_us":-5,"kind":"commit"}"#, "not a time"),
            (r#"{"did":"did:plc:a","time_us":9223372036854775807,"kind":"commit"}"#, "not a time"),
            (r#"{"did":"alice","time_us":1,"kind":"identity"}"#, "not a DID"),
            (r#"{"did":"did:plc:a/../b","time_us":1,"kind":"identity"}"#, "not a DID"),
            (r#"{"did":"did:plc:a","time_us":1,"kind":"commit"}"#, "without `commit`"),
            (
                r#"{"did":"did:plc:a","time_us":1,"kind":"commit","commit":{"operation":"create","collection":"app.bsky.feed.post","rkey":"a/b"}}"#,
                "record key",
            ),
            (
                r#"{"did":"did:plc:a","time_us":1,"kind":"commit","commit":{"operation":"create","collection":"app.bsky.feed.post","rkey":"k"}}"#,
                "without `record`",
            ),
            (
                r#"{"did":"did:plc:a","time_us":1,"kind":"commit","commit":{"operation":"create","collection":"app.bsky.feed.post","rkey":"k","record":{"text":7}}}"#,
                "post record",
            ),
            (
                r#"{"did":"did:plc:a","time_us":1,"kind":"commit","commit":{"operation":"update","collection":"app.bsky.actor.profile","rkey":"self","record":{"description":["x"]}}}"#,
                "profile record",
            ),
        ];
        for (frame, expect) in cases {
            let err = parse_event(frame).expect_err(frame);
            assert!(err.contains(expect), "{frame}: {err}");
        }
        // Profile deletes and post updates are read and passed over, not errors.
        let del = r#"{"did":"did:plc:a","time_us":1,"kind":"commit","commit":{"operation":"delete","collection":"app.bsky.actor.profile","rkey":"self"}}"#;
        assert!(matches!(parse_event(del), Ok(JetstreamEvent::Other { .. })));
    }

    #[test]
    fn oversized_fields_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_FIELD_BYTES);
        let ev = format!(
            r#"{{"did":"did:plc:a","time_us":1,"kind":"commit","commit":{{"operation":"create","collection":"app.bsky.feed.post","rkey":"k","record":{{"text":"{long}"}}}}}}"#
        );
        let JetstreamEvent::Post { post, .. } = parse_event(&ev).unwrap() else { panic!() };
        assert!(post.text.len() <= MAX_FIELD_BYTES && post.text.len() >= MAX_FIELD_BYTES - 1);
    }

    #[test]
    fn config_validation_names_the_key() {
        let cfg = |t: &str| -> JetstreamConfig { toml::from_str(t).unwrap() };
        assert!(cfg("").validate().is_ok());
        assert!(cfg("hosts = []").validate().unwrap_err().contains("`hosts`"));
        assert!(cfg("hosts = [\"https://x/subscribe\"]").validate().unwrap_err().contains("ws://"));
        assert!(cfg("hosts = [\"ws://x/subscribe?cursor=1\"]").validate().unwrap_err().contains("query"));
        assert!(cfg("page_events = 0").validate().unwrap_err().contains("`page_events`"));
        assert!(toml::from_str::<JetstreamConfig>("continuous = true").is_err(), "watch-only settings are not file keys");
    }

    #[test]
    fn example_config_documents_a_jetstream_source_and_bad_keys_name_key_and_line() {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
        let cfg = crate::config::Config::load(&example).unwrap();
        let entry = cfg.sources.iter().find(|s| s.kind.kind_name() == "jetstream").expect("a jetstream source in example.toml");
        let crate::config::SourceConfig::Jetstream(j) = &entry.kind else { unreachable!() };
        assert!(j.validate().is_ok() && !j.continuous && j.stop.is_none());
        assert!(j.hosts.iter().all(|h| h.starts_with("wss://")));
        let text = "[[sources]]\nname = \"j\"\nkind = \"jetstream\"\nhostz = [\"wss://x/subscribe\"]\n\n[[sources]]\nname = \"k\"\nkind = \"jetstream\"\nrewind_seconds = 5\npage_ms = 0\n\n[mail]\nfrom = \"a@b.example\"\n[routing]\ndefault = [\"c@d.example\"]\n";
        let err = crate::config::Config::from_toml(std::path::Path::new("/x/c.toml"), text).unwrap_err();
        let got: Vec<(String, Option<usize>)> = err.errors.iter().map(|e| (e.key.clone(), e.line)).collect();
        assert_eq!(got, vec![("sources[0].hostz".to_string(), Some(4)), ("sources[1].page_ms".to_string(), Some(10))], "{err}");
    }

    #[test]
    fn subscribe_url_asks_for_posts_and_profiles_from_the_cursor() {
        assert_eq!(
            subscribe_url("wss://j/subscribe", Some(42)),
            "wss://j/subscribe?wantedCollections=app.bsky.feed.post&wantedCollections=app.bsky.actor.profile&cursor=42"
        );
        assert!(!subscribe_url("ws://j/subscribe", None).contains("cursor"));
    }
}
