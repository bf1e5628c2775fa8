//! The Bluesky source against a loopback AppView (wiremock): discovery (getProfiles batches,
//! searchActors with its cursor), author feeds paged to the end, incremental runs that read only
//! what is new (late-indexed posts included), a capped read resumed without a gap, reposts,
//! opt-outs, 429, 5xx, malformed and refused responses, and the config registration.

mod common;

use std::sync::{Arc, Mutex};

use exposure_monitor::config::SourceConfig;
use exposure_monitor::sources::bluesky::{BlueskyConfig, BlueskySource, Cursor};
use exposure_monitor::sources::{BuildContext, Page, Source};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const FEED: &str = "/xrpc/app.bsky.feed.getAuthorFeed";
const PROFILES: &str = "/xrpc/app.bsky.actor.getProfiles";
const SEARCH: &str = "/xrpc/app.bsky.actor.searchActors";

fn profile(did: &str, handle: &str, bio: &str) -> Value {
    json!({"did": did, "handle": handle, "displayName": handle.split('.').next().unwrap(), "description": bio,
           "labels": [], "postsCount": 5, "indexedAt": "2026-01-01T00:00:00.000Z"})
}

/// One entry of a fake author feed.
#[derive(Clone)]
struct Item {
    uri: String,
    text: String,
    created: String,
    indexed: String,
    /// A repost of someone else's post, at `indexed`.
    repost: bool,
}

/// A fake `getAuthorFeed`: per actor, items newest first by sort time (the earlier of
/// createdAt and indexedAt), paged with `limit` and an offset cursor.
#[derive(Clone, Default)]
struct Feeds(Arc<Mutex<Vec<ActorFeed>>>);

/// An actor's DID and feed.
type ActorFeed = (String, Vec<Item>);

fn sort_key(i: &Item) -> String {
    if i.repost {
        i.indexed.clone()
    } else {
        i.created.clone().min(i.indexed.clone())
    }
}

impl Feeds {
    fn post(&self, did: &str, rkey: &str, text: &str, created: &str, indexed: &str) {
        self.push(
            did,
            Item {
                uri: format!("at://{did}/app.bsky.feed.post/{rkey}"),
                text: text.into(),
                created: created.into(),
                indexed: indexed.into(),
                repost: false,
            },
        );
    }
    fn repost(&self, did: &str, at: &str) {
        self.push(
            did,
            Item {
                uri: "at://did:plc:someoneelse/app.bsky.feed.post/3zzz".into(),
                text: "someone else's words".into(),
                created: "2020-01-01T00:00:00.000Z".into(),
                indexed: at.into(),
                repost: true,
            },
        );
    }
    fn push(&self, did: &str, item: Item) {
        let mut feeds = self.0.lock().unwrap();
        let pos = match feeds.iter().position(|(d, _)| d == did) {
            Some(p) => p,
            None => {
                feeds.push((did.to_string(), vec![]));
                feeds.len() - 1
            }
        };
        let items = &mut feeds[pos].1;
        items.push(item);
        items.sort_by_key(|i| std::cmp::Reverse(sort_key(i)));
    }
}

impl Respond for Feeds {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q: std::collections::HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let actor = q.get("actor").cloned().unwrap_or_default();
        let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50);
        let offset: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
        let feeds = self.0.lock().unwrap();
        let Some((_, items)) = feeds.iter().find(|(d, _)| *d == actor) else {
            return ResponseTemplate::new(400).set_body_json(json!({"error": "InvalidRequest", "message": "Profile not found"}));
        };
        let page: Vec<Value> = items
            .iter()
            .skip(offset)
            .take(limit)
            .map(|i| {
                let author = if i.repost { "did:plc:someoneelse".to_string() } else { actor.clone() };
                let mut v = json!({"post": {
                    "uri": i.uri, "cid": "bafyfake",
                    "author": {"did": author, "handle": "x.test"},
                    "record": {"$type": "app.bsky.feed.post", "text": i.text, "createdAt": i.created, "langs": ["en"]},
                    "indexedAt": if i.repost { "2020-01-01T00:00:00.000Z" } else { i.indexed.as_str() },
                }});
                if i.repost {
                    v["reason"] = json!({"$type": "app.bsky.feed.defs#reasonRepost", "by": {"did": actor, "handle": "x.test"}, "indexedAt": i.indexed});
                }
                v
            })
            .collect();
        let mut body = json!({ "feed": page });
        if offset + limit < items.len() {
            body["cursor"] = json!((offset + limit).to_string());
        }
        ResponseTemplate::new(200).set_body_json(body)
    }
}

fn source(server: &MockServer, extra: &str) -> BlueskySource {
    // Fast test settings, unless the test sets the key itself.
    let defaults = ["retry_backoff_ms = 10", "max_requests_per_second = 1000", "max_retries = 3", "timeout_secs = 2"];
    let mut text = format!("appview = \"{}\"\n{extra}\n", server.uri());
    for d in defaults {
        let key = d.split(' ').next().unwrap();
        if !extra.lines().any(|l| l.trim_start().starts_with(key)) {
            text.push_str(d);
            text.push('\n');
        }
    }
    let mut cfg: BlueskyConfig = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    BlueskySource::new("bsky".into(), cfg, &BuildContext::new("psd-test@example.invalid"))
}

async fn run(src: &mut BlueskySource, cursor: Option<String>) -> (Vec<Page>, Option<String>) {
    common::pages_until_done(src, cursor, 100).await
}

fn texts(pages: &[Page]) -> Vec<String> {
    let mut t: Vec<String> = pages.iter().flat_map(|p| p.posts.iter().map(|p| p.text.clone())).collect();
    t.sort();
    t
}

fn skipped(pages: &[Page]) -> Vec<String> {
    pages.iter().flat_map(|p| p.skipped.iter().cloned()).collect()
}

async fn requests_to(server: &MockServer, p: &str) -> Vec<Request> {
    server.received_requests().await.unwrap().into_iter().filter(|r| r.url.path() == p).collect()
}

async fn mount_profiles(server: &MockServer, profiles: Vec<Value>) {
    Mock::given(method("GET"))
        .and(path(PROFILES))
        .respond_with(move |req: &Request| {
            let asked: Vec<String> = req.url.query_pairs().filter(|(k, _)| k == "actors").map(|(_, v)| v.into_owned()).collect();
            let found: Vec<Value> = profiles
                .iter()
                .filter(|p| asked.iter().any(|a| a == p["did"].as_str().unwrap() || a == p["handle"].as_str().unwrap()))
                .cloned()
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({ "profiles": found }))
        })
        .mount(server)
        .await;
}

const SAM: &str = "did:plc:samsamsamsamsamsamsamsams";

#[tokio::test]
async fn pages_to_the_end_then_reads_only_what_is_new() {
    let server = MockServer::start().await;
    mount_profiles(&server, vec![profile(SAM, "pc-sam.bsky.social", "PC with Kent Police. Views my own.")]).await;
    let feeds = Feeds::default();
    for i in 1..=5 {
        feeds.post(
            SAM,
            &format!("3a{i}"),
            &format!("old post {i}"),
            &format!("2026-01-0{i}T10:00:00.000Z"),
            &format!("2026-01-0{i}T10:00:01.000Z"),
        );
    }
    feeds.repost(SAM, "2026-01-03T12:00:00.000Z");
    Mock::given(path(FEED)).respond_with(feeds.clone()).mount(&server).await;
    let mut src = source(&server, "handles = [\"pc-sam.bsky.social\"]\nposts_per_request = 2\nfirst_scan_pages = 10");

    let (pages, cursor) = run(&mut src, None).await;
    assert_eq!(
        texts(&pages),
        ["old post 1", "old post 2", "old post 3", "old post 4", "old post 5"],
        "the repost is not Sam's words"
    );
    let accounts: Vec<_> = pages.iter().flat_map(|p| p.accounts.iter()).collect();
    assert_eq!(accounts.len(), 1);
    assert_eq!((accounts[0].platform_id.as_str(), accounts[0].handle.as_str()), (SAM, "@pc-sam.bsky.social"));
    assert_eq!(accounts[0].bio, "PC with Kent Police. Views my own.");
    let post = pages.iter().flat_map(|p| p.posts.iter()).find(|p| p.text == "old post 5").unwrap();
    assert_eq!(post.author_id, SAM);
    assert_eq!(post.platform_id, format!("at://{SAM}/app.bsky.feed.post/3a5"));
    assert_eq!(post.lang_hints, ["en"]);
    let reqs = requests_to(&server, FEED).await;
    assert_eq!(reqs.len(), 3, "6 items, 2 a page");
    assert!(reqs.iter().all(|r| r.url.query().unwrap().contains("filter=posts_no_replies")));
    assert!(skipped(&pages).is_empty(), "{:?}", skipped(&pages));

    // Nothing new: one request, which reaches the floor.
    let (pages, cursor) = run(&mut src, cursor).await;
    assert!(texts(&pages).is_empty(), "{:?}", texts(&pages));
    assert_eq!(requests_to(&server, FEED).await.len(), 4);

    // Three new posts, and one indexed late: created before the newest post read, but within
    // the overlap. All four are read, once; the walk stops at the floor.
    for i in 6..=8 {
        feeds.post(
            SAM,
            &format!("3b{i}"),
            &format!("new post {i}"),
            &format!("2026-01-0{i}T10:00:00.000Z"),
            &format!("2026-01-0{i}T10:00:01.000Z"),
        );
    }
    feeds.post(SAM, "3late", "late post", "2026-01-05T09:30:00.000Z", "2026-01-09T00:00:00.000Z");
    let (pages, cursor) = run(&mut src, cursor).await;
    assert_eq!(texts(&pages), ["late post", "new post 6", "new post 7", "new post 8"]);
    let feed_reqs = requests_to(&server, FEED).await.len();
    assert!(feed_reqs <= 4 + 3, "stops at the floor, not the end of the feed: {feed_reqs} requests");
    let (pages, _) = run(&mut src, cursor).await;
    assert!(texts(&pages).is_empty(), "{:?}", texts(&pages));
}

#[tokio::test]
async fn a_capped_read_resumes_where_it_stopped_without_a_gap() {
    let server = MockServer::start().await;
    mount_profiles(&server, vec![profile(SAM, "pc-sam.bsky.social", "PC")]).await;
    let feeds = Feeds::default();
    feeds.post(SAM, "3a0", "first", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z");
    Mock::given(path(FEED)).respond_with(feeds.clone()).mount(&server).await;
    let mut src = source(
        &server,
        "handles = [\"pc-sam.bsky.social\"]\nposts_per_request = 2\nmax_new_posts_per_account = 4\noverlap_secs = 60",
    );
    let (pages, cursor) = run(&mut src, None).await;
    assert_eq!(texts(&pages), ["first"]);
    for i in 1..=7 {
        feeds.post(
            SAM,
            &format!("3c{i}"),
            &format!("burst {i}"),
            &format!("2026-02-01T00:0{i}:00.000Z"),
            &format!("2026-02-01T00:0{i}:00.000Z"),
        );
    }
    let (pages, cursor) = run(&mut src, cursor).await;
    let first_part = texts(&pages);
    assert_eq!(first_part, ["burst 4", "burst 5", "burst 6", "burst 7"], "newest first, up to the cap (whole pages)");
    let c = Cursor::parse(cursor.as_deref()).unwrap();
    assert!(c.accounts[SAM].resume.is_some(), "{c:?}");
    // A post arriving meanwhile is read after the backlog, on the pass that follows.
    feeds.post(SAM, "3d", "meanwhile", "2026-03-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z");
    let (pages, cursor) = run(&mut src, cursor).await;
    assert_eq!(texts(&pages), ["burst 1", "burst 2", "burst 3"]);
    let (pages, cursor) = run(&mut src, cursor).await;
    assert_eq!(texts(&pages), ["meanwhile"]);
    let (pages, _) = run(&mut src, cursor).await;
    assert!(texts(&pages).is_empty());
}

#[tokio::test]
async fn search_follows_its_cursor_and_profiles_are_batched() {
    let server = MockServer::start().await;
    // 30 configured handles: two getProfiles requests (25 + 5); two of them do not exist.
    let mut handles = vec![];
    let mut profiles = vec![];
    for i in 0..30 {
        let h = format!("user{i}.test");
        if i != 7 && i != 28 {
            profiles.push(json!({"did": format!("did:plc:user{i}"), "handle": h, "description": "", "postsCount": 0}));
        }
        handles.push(format!("\"{h}\""));
    }
    mount_profiles(&server, profiles).await;
    Mock::given(path(SEARCH))
        .and(query_param("cursor", "p2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"actors": [profile("did:plc:found2", "found2.test", "Sergeant, Met")]})),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path(SEARCH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"cursor": "p2", "actors": [
            profile("did:plc:found1", "found1.test", "Response PC"),
            {"handle": "broken.test"},
        ]})))
        .mount(&server)
        .await;
    let feeds = Feeds::default();
    feeds.post("did:plc:found1", "3f1", "found one", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z");
    feeds.post("did:plc:found2", "3f2", "found two", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z");
    Mock::given(path(FEED)).respond_with(feeds).mount(&server).await;
    let mut src = source(&server, &format!("handles = [{}]\nsearch_terms = [\"police\"]", handles.join(", ")));
    let (pages, cursor) = run(&mut src, None).await;
    let reqs = requests_to(&server, PROFILES).await;
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].url.query_pairs().filter(|(k, _)| k == "actors").count(), 25);
    assert_eq!(reqs[1].url.query_pairs().filter(|(k, _)| k == "actors").count(), 5);
    assert_eq!(requests_to(&server, SEARCH).await.len(), 2);
    let mut dids: Vec<String> = pages.iter().flat_map(|p| p.accounts.iter().map(|a| a.platform_id.clone())).collect();
    dids.sort();
    assert_eq!(dids.len(), 28 + 2, "{dids:?}");
    assert!(dids.contains(&"did:plc:found2".to_string()));
    let sk = skipped(&pages);
    assert_eq!(sk.len(), 3, "{sk:?}");
    assert!(sk.iter().any(|s| s.contains("user7.test not found")), "{sk:?}");
    assert!(sk.iter().any(|s| s.contains("user28.test not found")), "{sk:?}");
    assert!(sk.iter().any(|s| s.contains("item 1") && s.contains("did")), "the malformed actor: {sk:?}");
    // Accounts with no posts cost no feed request; found1/found2 (postsCount 5) do.
    assert_eq!(requests_to(&server, FEED).await.len(), 2);
    assert_eq!(texts(&pages), ["found one", "found two"]);
    assert_eq!(Cursor::parse(cursor.as_deref()).unwrap().pass, None, "the pass ended");
}

#[tokio::test]
async fn opted_out_accounts_are_skipped_and_counted() {
    let server = MockServer::start().await;
    let mut quiet = profile("did:plc:quiet", "quiet.test", "PC, Dyfed-Powys");
    quiet["labels"] = json!([{"src": "did:plc:quiet", "uri": "at://did:plc:quiet/app.bsky.actor.profile/self", "val": "!no-unauthenticated", "cts": "2026-01-01T00:00:00.000Z"}]);
    mount_profiles(&server, vec![quiet, profile(SAM, "pc-sam.bsky.social", "PC")]).await;
    let feeds = Feeds::default();
    feeds.post("did:plc:quiet", "3q", "should not be read", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z");
    feeds.post(SAM, "3s", "read", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z");
    Mock::given(path(FEED)).respond_with(feeds.clone()).mount(&server).await;
    let mut src = source(&server, "handles = [\"quiet.test\", \"pc-sam.bsky.social\"]");
    let (pages, _) = run(&mut src, None).await;
    assert_eq!(texts(&pages), ["read"]);
    assert_eq!(pages.iter().flat_map(|p| p.accounts.iter()).count(), 1);
    let sk = skipped(&pages);
    assert!(sk.len() == 1 && sk[0].contains("@quiet.test") && sk[0].contains("!no-unauthenticated"), "{sk:?}");
    assert!(requests_to(&server, FEED).await.iter().all(|r| !r.url.query().unwrap().contains("quiet")));

    let mut src = source(&server, "handles = [\"quiet.test\"]\nskip_no_unauthenticated = false");
    let (pages, _) = run(&mut src, None).await;
    assert_eq!(texts(&pages), ["should not be read"], "configurable");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_survived() {
    let server = MockServer::start().await;
    mount_profiles(&server, vec![profile(SAM, "pc-sam.bsky.social", "PC")]).await;
    let feeds = Feeds::default();
    feeds.post(SAM, "3a", "hello", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z");
    Mock::given(path(FEED))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path(FEED)).respond_with(ResponseTemplate::new(503)).up_to_n_times(2).with_priority(2).mount(&server).await;
    Mock::given(path(FEED)).respond_with(feeds.clone()).with_priority(3).mount(&server).await;
    let mut src = source(&server, "handles = [\"pc-sam.bsky.social\"]");
    let started = std::time::Instant::now();
    let (pages, _) = run(&mut src, None).await;
    assert_eq!(texts(&pages), ["hello"]);
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "waited for Retry-After");
    assert_eq!(pages.iter().map(|p| p.rate_limit_waits).sum::<u64>(), 1);
    assert_eq!(requests_to(&server, FEED).await.len(), 4);
}

#[tokio::test]
async fn a_failing_appview_fails_the_source_with_a_clear_error() {
    let server = MockServer::start().await;
    Mock::given(path(PROFILES))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>"))
        .mount(&server)
        .await;
    let mut src = source(&server, "handles = [\"pc-sam.bsky.social\"]\nmax_retries = 1");
    let err = src.next_page(None).await.unwrap_err().to_string();
    assert!(err.contains("getProfiles") && err.contains("502") && err.contains("2 attempts"), "{err}");
}

#[tokio::test]
async fn malformed_and_refused_feeds_are_noted_and_read_next_time() {
    let server = MockServer::start().await;
    let blocked = "did:plc:blocked";
    mount_profiles(&server, vec![profile(SAM, "pc-sam.bsky.social", "PC"), profile(blocked, "blocked.test", "PC")]).await;
    let feeds = Feeds::default();
    feeds.post(SAM, "3a", "kept for later", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z");
    Mock::given(path(FEED))
        .and(query_param("actor", SAM))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"feed\": [ {\"post\": "))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path(FEED))
        .and(query_param("actor", blocked))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"error": "BlockedByActor", "message": "Requester is blocked by actor"})),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path(FEED)).respond_with(feeds.clone()).with_priority(5).mount(&server).await;
    let mut src = source(&server, "handles = [\"pc-sam.bsky.social\", \"blocked.test\"]");
    let (pages, cursor) = run(&mut src, None).await;
    assert!(texts(&pages).is_empty());
    let sk = skipped(&pages);
    assert_eq!(sk.len(), 2, "{sk:?}");
    assert!(sk.iter().any(|s| s.contains("feed of @pc-sam.bsky.social") && s.contains("JSON")), "{sk:?}");
    assert!(sk.iter().any(|s| s.contains("feed of @blocked.test") && s.contains("BlockedByActor")), "{sk:?}");
    // Both accounts are still reported (their bios count), and the held-back post comes next.
    assert_eq!(pages.iter().flat_map(|p| p.accounts.iter()).count(), 2);
    let (pages, cursor) = run(&mut src, cursor).await;
    assert_eq!(texts(&pages), ["kept for later"]);
    let (pages, _) = run(&mut src, cursor).await;
    assert!(texts(&pages).is_empty());
}

#[tokio::test]
async fn bad_items_are_skipped_and_counted_the_rest_read() {
    let server = MockServer::start().await;
    mount_profiles(&server, vec![profile(SAM, "pc-sam.bsky.social", "PC")]).await;
    let good = |rkey: &str, text: &str| {
        json!({"post": {"uri": format!("at://{SAM}/app.bsky.feed.post/{rkey}"), "cid": "b", "author": {"did": SAM, "handle": "pc-sam.bsky.social"},
                        "record": {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-01-02T00:00:00.000Z",
                                   "embed": {"$type": "app.bsky.embed.images", "images": [{"alt": "Whiteboard <script>", "image": {}}]}},
                        "indexedAt": "2026-01-02T00:00:01.000Z"}})
    };
    let feed = json!({"feed": [
        good("3b", "one"),
        {"post": {"uri": format!("at://{SAM}/app.bsky.feed.post/3x"), "author": {"did": SAM}, "record": {"$type": "app.bsky.feed.post", "createdAt": "2026-01-02T00:00:00.000Z"}, "indexedAt": "2026-01-02T00:00:00.000Z"}},
        {"nonsense": true},
        good("3a", "two"),
    ]});
    Mock::given(path(FEED)).respond_with(ResponseTemplate::new(200).set_body_json(feed)).mount(&server).await;
    let mut src = source(&server, "handles = [\"pc-sam.bsky.social\"]");
    let (pages, _) = run(&mut src, None).await;
    assert_eq!(texts(&pages), ["one", "two"]);
    let post = &pages.iter().flat_map(|p| p.posts.iter()).next().unwrap();
    assert_eq!(post.alt_texts, ["Whiteboard <script>"], "alt text read as sent (escaping is the renderer's job)");
    let sk = skipped(&pages);
    assert_eq!(sk.len(), 2, "{sk:?}");
    assert!(sk.iter().any(|s| s.contains("3x") && s.contains("text")), "{sk:?}");
}

#[test]
fn config_entry_parses_through_the_registry() {
    let text = r##"
[[sources]]
name = "bsky"
kind = "bluesky"
appview = "http://127.0.0.1:2584/"
handles = ["alice.test", "did:plc:abc"]
feed_filter = "posts_without_anything"

[mail]
from = "a@example.invalid"

[routing]
default = ["b@example.invalid"]
"##;
    let err = exposure_monitor::config::Config::from_toml(std::path::Path::new("/x/c.toml"), text).unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_eq!((err.errors[0].key.as_str(), err.errors[0].line), ("sources[0].feed_filter", Some(7)), "{err}");
    let ok = text.replace("feed_filter = \"posts_without_anything\"\n", "");
    let cfg = exposure_monitor::config::Config::from_toml(std::path::Path::new("/x/c.toml"), &ok).unwrap();
    let SourceConfig::Bluesky(b) = &cfg.sources[0].kind else { panic!("bluesky expected") };
    assert_eq!(b.appview, "http://127.0.0.1:2584");
    assert_eq!(b.handles, ["alice.test", "did:plc:abc"]);
    assert_eq!(cfg.sources[0].kind.kind_name(), "bluesky");
}

#[test]
fn example_config_documents_a_bluesky_source_that_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let doc: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut table = doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.get("kind").and_then(|k| k.as_str()) == Some("bluesky"))
        .expect("a bluesky source in config/example.toml")
        .as_table()
        .unwrap()
        .clone();
    for k in ["name", "kind", "enabled"] {
        table.remove(k);
    }
    let mut b: BlueskyConfig = toml::Value::Table(table).try_into().unwrap();
    b.validate().unwrap();
    assert_eq!(b.appview, "https://public.api.bsky.app");
}
