//! The shared HTTP layer and the Mastodon source against a loopback test server (wiremock):
//! retries, 429s, timeouts, body cap, rate-limit header flavours, concurrency; pagination to the
//! end, incremental runs, per-page cursors, opt-outs and malformed responses.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use exposure_monitor::config::SourceConfig;
use exposure_monitor::sources::http::{HostRegistry, HttpClient, HttpErrorKind, HttpSettings};
use exposure_monitor::sources::mastodon::{Cursor, MastodonConfig, MastodonSource, Pass};
use exposure_monitor::sources::{BuildContext, Page, Source, SourceError};
use serde_json::{json, Value};
use url::Url;
use wiremock::matchers::{header, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn settings() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        max_retries: 3,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        max_requests_per_second: 1000,
        ..HttpSettings::default()
    }
}

fn client(s: HttpSettings) -> HttpClient {
    HttpClient::new(s, "psd-test@example.invalid", HostRegistry::new()).unwrap()
}

fn url(server: &MockServer, p: &str) -> Url {
    Url::parse(&format!("{}{p}", server.uri())).unwrap()
}

fn waits(c: &HttpClient) -> u64 {
    c.stats().rate_limit_waits.load(std::sync::atomic::Ordering::Relaxed)
}

async fn requests_to(server: &MockServer, p: &str) -> Vec<wiremock::Request> {
    server.received_requests().await.unwrap().into_iter().filter(|r| r.url.path() == p).collect()
}

// ------------------------------------------------------------------------------------------
// HTTP layer

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let server = MockServer::start().await;
    Mock::given(path("/x")).respond_with(ResponseTemplate::new(503)).up_to_n_times(2).with_priority(1).mount(&server).await;
    Mock::given(path("/x")).respond_with(ResponseTemplate::new(200).set_body_string("[]")).mount(&server).await;
    let c = client(settings());
    let resp = c.get(&url(&server, "/x"), None).await.unwrap();
    assert_eq!(resp.body, b"[]");
    assert_eq!(requests_to(&server, "/x").await.len(), 3);
    assert_eq!(c.stats().retries.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = MockServer::start().await;
    Mock::given(path("/x")).respond_with(ResponseTemplate::new(500).set_body_string("{\"error\":\"boom\"}")).mount(&server).await;
    let c = client(HttpSettings { max_retries: 2, ..settings() });
    let err = c.get(&url(&server, "/x"), None).await.unwrap_err();
    assert_eq!((err.status(), err.attempts), (Some(500), 3));
    assert!(err.to_string().contains("/x") && err.to_string().contains("boom"), "{err}");
    assert_eq!(requests_to(&server, "/x").await.len(), 3);
}

#[tokio::test]
async fn other_client_errors_are_not_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(404).set_body_string("{\"error\":\"Record not found\"}"))
        .mount(&server)
        .await;
    let err = client(settings()).get(&url(&server, "/x"), None).await.unwrap_err();
    assert_eq!((err.status(), err.attempts), (Some(404), 1));
    assert_eq!(requests_to(&server, "/x").await.len(), 1);
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after_seconds() {
    let server = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/x")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let c = client(settings());
    let t = Instant::now();
    c.get(&url(&server, "/x"), None).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(950), "{:?}", t.elapsed());
    assert_eq!(waits(&c), 1);
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after_http_date() {
    let server = MockServer::start().await;
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", date.as_str()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/x")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let c = client(settings());
    let t = Instant::now();
    c.get(&url(&server, "/x"), None).await.unwrap();
    // An HTTP date has whole seconds: between 1 and 2 s from now.
    assert!(t.elapsed() >= Duration::from_millis(900), "{:?}", t.elapsed());
    assert_eq!(waits(&c), 1);
}

#[tokio::test]
async fn too_many_requests_without_retry_after_waits_for_the_iso_reset() {
    // Mastodon's own 429: no Retry-After, the X-RateLimit headers with Remaining 0.
    let server = MockServer::start().await;
    let reset = (chrono::Utc::now() + chrono::Duration::milliseconds(1200)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    Mock::given(path("/x"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-limit", "300")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.as_str())
                .set_body_string("{\"error\":\"Too many requests\"}"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/x")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let c = client(settings());
    let t = Instant::now();
    c.get(&url(&server, "/x"), None).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(1100), "{:?}", t.elapsed());
    assert!(waits(&c) >= 1);
}

#[tokio::test]
async fn a_rate_limit_longer_than_allowed_is_an_error_not_a_hang() {
    let server = MockServer::start().await;
    Mock::given(path("/x")).respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600")).mount(&server).await;
    let c = client(HttpSettings { max_wait: Duration::from_secs(5), ..settings() });
    let t = Instant::now();
    let err = c.get(&url(&server, "/x"), None).await.unwrap_err();
    assert!(matches!(err.kind, HttpErrorKind::RateLimited { wait_secs: 3600, .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(path("/slow")).respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2))).mount(&server).await;
    let c = client(HttpSettings {
        read_timeout: Duration::from_millis(200),
        total_timeout: Duration::from_millis(300),
        max_retries: 1,
        ..settings()
    });
    let err = c.get(&url(&server, "/slow"), None).await.unwrap_err();
    assert!(matches!(err.kind, HttpErrorKind::Timeout), "{err}");
    assert_eq!(err.attempts, 2);
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = client(HttpSettings { max_retries: 1, ..settings() });
    let err = c.get(&Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap(), None).await.unwrap_err();
    assert!(matches!(err.kind, HttpErrorKind::Connect(_)), "{err}");
    assert_eq!(err.attempts, 2);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let server = MockServer::start().await;
    Mock::given(path("/big")).respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(5000))).mount(&server).await;
    let c = client(HttpSettings { max_body_bytes: 1000, ..settings() });
    let err = c.get(&url(&server, "/big"), None).await.unwrap_err();
    assert!(matches!(err.kind, HttpErrorKind::TooLarge { cap: 1000 }), "{err}");
    assert!(err.to_string().contains("larger than the cap of 1000 bytes"), "{err}");
    assert_eq!(requests_to(&server, "/big").await.len(), 1, "not retried");
}

/// One response with `headers`, then the next request to the same host: it must be held back
/// by at least `min` and counted as a rate-limit wait (or not) as `forced` says.
async fn second_request_delay(headers: &[(&str, String)], min: Duration, forced: bool) {
    let server = MockServer::start().await;
    let mut first = ResponseTemplate::new(200);
    for (k, v) in headers {
        first = first.insert_header(*k, v.as_str());
    }
    Mock::given(path("/a")).respond_with(first).mount(&server).await;
    Mock::given(path("/b")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let c = client(settings());
    c.get(&url(&server, "/a"), None).await.unwrap();
    let t = Instant::now();
    c.get(&url(&server, "/b"), None).await.unwrap();
    assert!(t.elapsed() >= min, "{headers:?}: waited only {:?}", t.elapsed());
    assert!(t.elapsed() < min + Duration::from_secs(3), "{headers:?}: waited {:?}", t.elapsed());
    assert_eq!(waits(&c), forced as u64, "{headers:?}");
}

#[tokio::test]
async fn slows_down_before_the_limit_for_every_header_flavour() {
    // Mastodon: ISO-8601 reset; 10 left of 300 is inside the 5% reserve.
    let iso = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    second_request_delay(
        &[("x-ratelimit-limit", "300".into()), ("x-ratelimit-remaining", "10".into()), ("x-ratelimit-reset", iso)],
        Duration::from_millis(1400),
        true,
    )
    .await;
    // The Mastodon mock and X: epoch seconds.
    // Whole seconds: the reset is 2 to 3 s away.
    let epoch = (chrono::Utc::now().timestamp() + 3).to_string();
    second_request_delay(
        &[("x-ratelimit-limit", "1000".into()), ("x-ratelimit-remaining", "1".into()), ("x-ratelimit-reset", epoch)],
        Duration::from_millis(1900),
        true,
    )
    .await;
    // Reddit: float strings, reset in seconds, no limit header (used + remaining).
    second_request_delay(
        &[("x-ratelimit-used", "599".into()), ("x-ratelimit-remaining", "1.0".into()), ("x-ratelimit-reset", "1".into())],
        Duration::from_millis(900),
        true,
    )
    .await;
    // IETF RateLimit-* (Bluesky PDS): delta seconds.
    second_request_delay(
        &[("ratelimit-limit", "3000".into()), ("ratelimit-remaining", "0".into()), ("ratelimit-reset", "1".into())],
        Duration::from_millis(900),
        true,
    )
    .await;
    // Plenty left: requests are spread over the window (100 of 100 left, 50 s: ~0.5 s apart),
    // which is pacing, not a forced wait.
    second_request_delay(
        &[("x-ratelimit-limit", "100".into()), ("x-ratelimit-remaining", "100".into()), ("x-ratelimit-reset", "50".into())],
        Duration::from_millis(400),
        false,
    )
    .await;
}

#[tokio::test]
async fn concurrency_per_host_is_bounded_and_user_agent_names_the_operator() {
    let server = MockServer::start().await;
    let ua = format!("exposure-monitor/{} (+psd-test@example.invalid)", env!("CARGO_PKG_VERSION"));
    Mock::given(path("/x"))
        .and(header("user-agent", ua.as_str()))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&server)
        .await;
    let hosts = HostRegistry::new();
    let a = HttpClient::new(HttpSettings { max_concurrent_per_host: 1, ..settings() }, "psd-test@example.invalid", hosts.clone())
        .unwrap();
    // A second client (another source) on the same registry shares the host's slot.
    let b = HttpClient::new(
        HttpSettings { max_concurrent_per_host: 1, ..settings() },
        "psd-test@example.invalid",
        Arc::clone(&hosts),
    )
    .unwrap();
    let u = url(&server, "/x");
    let t = Instant::now();
    let (r1, r2, r3) = tokio::join!(a.get(&u, None), a.get(&u, None), b.get(&u, None));
    r1.unwrap();
    r2.unwrap();
    r3.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(880), "3 requests through 1 slot took only {:?}", t.elapsed());
}

// ------------------------------------------------------------------------------------------
// Mastodon source

fn account_json(id: &str, username: &str, note: &str, extra: Value) -> Value {
    let mut a = json!({
        "id": id, "username": username, "acct": username, "display_name": format!("{username} display"),
        "note": note, "url": format!("https://social.example/@{username}"),
        "uri": format!("https://social.example/users/{username}"),
        "fields": [{"name": "Force", "value": "<a href=\"https://x.example\">Kent Police</a>", "verified_at": null}],
        "noindex": false, "indexable": true, "statuses_count": 5,
        "last_status_at": chrono::Utc::now().format("%Y-%m-%d").to_string()
    });
    a.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    a
}

fn status_json(id: &str, account: &Value, html: &str) -> Value {
    json!({
        "id": id, "created_at": "2026-11-30T10:00:00.000Z", "content": html, "spoiler_text": "",
        "language": "en", "visibility": "public", "uri": format!("https://social.example/users/x/statuses/{id}"),
        "url": format!("https://social.example/@x/{id}"), "reblog": null, "media_attachments": [], "account": account
    })
}

fn list(items: &[Value]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(Value::Array(items.to_vec()))
}

fn source(server: &MockServer, extra: &str) -> MastodonSource {
    let directory = if extra.contains("directory = ") { "" } else { "directory = false\n" };
    let text = format!(
        "instance = \"{}\"\n{directory}retry_backoff_ms = 10\nmax_requests_per_second = 1000\nmax_retries = 2\n{extra}",
        server.uri()
    );
    let mut cfg: MastodonConfig = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    MastodonSource::new("masto".into(), cfg, &BuildContext::new("psd-test@example.invalid"))
}

async fn run(src: &mut MastodonSource, cursor: Option<String>) -> (Vec<Page>, Option<String>) {
    common::pages_until_done(src, cursor, 50).await
}

fn post_ids(pages: &[Page]) -> Vec<String> {
    pages.iter().flat_map(|p| p.posts.iter().map(|p| p.url.clone().unwrap().rsplit('/').next().unwrap().to_string())).collect()
}

fn link(server: &MockServer, acc: &str, next_max: Option<&str>, prev_min: &str) -> String {
    let base = format!("{}/api/v1/accounts/{acc}/statuses?limit=2", server.uri());
    let mut parts = vec![];
    if let Some(m) = next_max {
        parts.push(format!("<{base}&max_id={m}>; rel=\"next\""));
    }
    parts.push(format!("<{base}&min_id={prev_min}>; rel=\"prev\""));
    parts.join(", ")
}

#[tokio::test]
async fn pagination_to_the_end_then_incremental_runs_fetch_only_what_is_new() {
    let server = MockServer::start().await;
    let sam = account_json("100", "pc_sam", "<p>PC in <b>Kent</b></p>", json!({}));
    let st = "/api/v1/accounts/100/statuses";
    Mock::given(path("/api/v1/accounts/lookup"))
        .and(query_param("acct", "pc_sam"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&sam))
        .mount(&server)
        .await;
    // First sight: newest page, then one page back through the Link header.
    Mock::given(path(st))
        .and(query_param_is_missing("min_id"))
        .and(query_param_is_missing("max_id"))
        .respond_with(
            list(&[status_json("9", &sam, "<p>nine</p>"), status_json("8", &sam, "<p>eight</p>")])
                .insert_header("link", link(&server, "100", Some("8"), "9").as_str()),
        )
        .mount(&server)
        .await;
    Mock::given(path(st))
        .and(query_param("max_id", "8"))
        .respond_with(
            list(&[status_json("7", &sam, "<p>seven</p>"), status_json("6", &sam, "<p>six</p>")])
                .insert_header("link", link(&server, "100", Some("6"), "7").as_str()),
        )
        .mount(&server)
        .await;
    // Later: forward from the newest stored id, block by block, until a short page.
    Mock::given(path(st))
        .and(query_param("min_id", "9"))
        .respond_with(
            list(&[status_json("11", &sam, "<p>eleven</p>"), status_json("10", &sam, "<p>ten</p>")])
                .insert_header("link", link(&server, "100", Some("10"), "11").as_str()),
        )
        .mount(&server)
        .await;
    Mock::given(path(st))
        .and(query_param("min_id", "11"))
        .respond_with(
            list(&[status_json("12", &sam, "<p>twelve</p>")])
                .insert_header("link", link(&server, "100", Some("12"), "12").as_str()),
        )
        .mount(&server)
        .await;
    Mock::given(path(st)).and(query_param("min_id", "12")).respond_with(list(&[])).mount(&server).await;

    let extra = "handles = [\"@pc_sam\"]\nstatuses_per_request = 2\nfirst_scan_pages = 2";
    let mut src = source(&server, extra);
    let (pages, cursor) = run(&mut src, None).await;
    assert_eq!(post_ids(&pages), ["9", "8", "7", "6"]);
    let acc = &pages[0].accounts[0];
    assert_eq!(acc.bio, "PC in Kent\nForce: Kent Police");
    assert_eq!(
        acc.handle,
        format!(
            "@pc_sam@{}",
            Url::parse(&server.uri()).unwrap().host_str().unwrap().to_string()
                + ":"
                + &Url::parse(&server.uri()).unwrap().port().unwrap().to_string()
        )
    );
    assert_eq!(pages[0].posts[0].author_id, acc.platform_id);
    assert_eq!(pages[0].posts[0].text, "nine");
    let c = Cursor::parse(cursor.as_deref()).unwrap();
    assert_eq!(c.accounts["100"].last.as_deref(), Some("9"));
    assert_eq!(c.pass, None, "the pass finished");

    // Second scan, a new process: only what is newer than 9.
    let before = requests_to(&server, st).await.len();
    let mut src = source(&server, extra);
    let (pages, cursor) = run(&mut src, cursor).await;
    assert_eq!(post_ids(&pages), ["11", "10", "12"]);
    let second: Vec<_> = requests_to(&server, st).await.into_iter().skip(before).collect();
    let mins: Vec<String> = second
        .iter()
        .map(|r| r.url.query_pairs().find(|(k, _)| k == "min_id").map(|(_, v)| v.into_owned()).unwrap_or_default())
        .collect();
    assert_eq!(mins, ["9", "11"], "a short page ends the walk without another request");

    // Third scan: nothing new, nothing read.
    let mut src = source(&server, extra);
    let (pages, cursor) = run(&mut src, cursor).await;
    assert!(post_ids(&pages).is_empty());
    assert_eq!(pages.iter().map(|p| p.accounts.len()).sum::<usize>(), 1, "the profile is still read for identification");
    assert_eq!(Cursor::parse(cursor.as_deref()).unwrap().accounts["100"].last.as_deref(), Some("12"));
}

#[tokio::test]
async fn a_page_cursor_covers_only_that_page_and_a_failure_keeps_it() {
    let server = MockServer::start().await;
    let a = account_json("1", "anna", "", json!({}));
    let b = account_json("2", "ben", "", json!({}));
    Mock::given(path("/api/v2/instance")).respond_with(ResponseTemplate::new(404)).mount(&server).await;
    Mock::given(path("/api/v1/timelines/tag/alpha")).respond_with(list(&[status_json("50", &a, "#alpha")])).mount(&server).await;
    Mock::given(path("/api/v1/timelines/tag/beta")).respond_with(list(&[status_json("60", &b, "#beta")])).mount(&server).await;
    Mock::given(path("/api/v1/accounts/1/statuses")).respond_with(list(&[status_json("50", &a, "#alpha")])).mount(&server).await;
    // ben's statuses fail for good this time.
    Mock::given(path("/api/v1/accounts/2/statuses"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/accounts/2/statuses")).respond_with(list(&[status_json("60", &b, "#beta")])).mount(&server).await;

    let mut src = source(&server, "hashtags = [\"alpha\", \"#beta\"]");
    let p1 = src.next_page(None).await.unwrap();
    assert_eq!(p1.accounts.len(), 1);
    assert!(!p1.done);
    let c1 = Cursor::parse(p1.cursor.as_deref()).unwrap();
    assert_eq!(c1.accounts.keys().collect::<Vec<_>>(), ["1"], "the cursor knows only page 1's account");
    assert_eq!(c1.tags.get("alpha").map(String::as_str), Some("50"));
    assert!(!c1.tags.contains_key("beta"));

    let err = src.next_page(p1.cursor.as_deref()).await.unwrap_err();
    assert!(matches!(err, SourceError::Http(_)), "{err}");
    assert!(err.to_string().contains("/api/v1/accounts/2/statuses") && err.to_string().contains("503"), "{err}");

    // The scan stored nothing of page 2; a fresh run resumes from page 1's cursor at beta.
    let mut src = source(&server, "hashtags = [\"alpha\", \"#beta\"]");
    let (pages, cursor) = run(&mut src, p1.cursor.clone()).await;
    assert_eq!(post_ids(&pages), ["60"]);
    let c = Cursor::parse(cursor.as_deref()).unwrap();
    assert_eq!(c.accounts.keys().collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(requests_to(&server, "/api/v1/timelines/tag/alpha").await.len(), 1, "alpha is not read again");
}

#[tokio::test]
async fn opted_out_accounts_and_reblogs_are_skipped_alt_texts_and_warnings_kept() {
    let server = MockServer::start().await;
    let quiet = account_json("1", "quiet", "PC", json!({"noindex": true}));
    let private = account_json("2", "private", "PC", json!({"indexable": false}));
    let loud = account_json("3", "loud", "PC", json!({}));
    for (h, a) in [("quiet", &quiet), ("private", &private), ("loud", &loud)] {
        Mock::given(path("/api/v1/accounts/lookup"))
            .and(query_param("acct", h))
            .respond_with(ResponseTemplate::new(200).set_body_json(a))
            .mount(&server)
            .await;
    }
    Mock::given(path("/api/v1/accounts/lookup"))
        .and(query_param("acct", "gone"))
        .respond_with(ResponseTemplate::new(404).set_body_string("{\"error\":\"Record not found\"}"))
        .mount(&server)
        .await;
    let mut boost = status_json("31", &loud, "<p>someone else's words</p>");
    boost["reblog"] = status_json("5", &quiet, "<p>orig</p>");
    let mut with_media = status_json("32", &loud, "<p>off duty</p>");
    with_media["spoiler_text"] = json!("work stuff");
    with_media["media_attachments"] =
        json!([{"type": "image", "description": "officers holding pints"}, {"type": "image", "description": null}]);
    Mock::given(path("/api/v1/accounts/3/statuses")).respond_with(list(&[with_media, boost])).mount(&server).await;

    let mut src = source(&server, "handles = [\"quiet\", \"private\", \"loud\", \"gone\"]");
    let (pages, _) = run(&mut src, None).await;
    let page = &pages[0];
    assert_eq!(page.accounts.iter().map(|a| a.handle.as_str()).collect::<Vec<_>>().len(), 1);
    assert!(page.accounts[0].handle.starts_with("@loud@"));
    assert_eq!(page.posts.len(), 1, "the reblog is skipped");
    assert_eq!(page.posts[0].text, "work stuff\n\noff duty");
    assert_eq!(page.posts[0].alt_texts, ["officers holding pints"]);
    assert_eq!(page.posts[0].lang_hints, ["en"]);
    let skipped = page.skipped.join("\n");
    // Opt-outs are respected and counted apart from errors.
    assert_eq!(page.opted_out, 2);
    assert!(!skipped.contains("@quiet@") && !skipped.contains("@private@"), "{skipped}");
    assert!(skipped.contains("@gone not found"), "{skipped}");
    assert!(requests_to(&server, "/api/v1/accounts/1/statuses").await.is_empty(), "nothing of an opted-out account is read");

    // Configurable: with the checks off, both are read.
    Mock::given(path("/api/v1/accounts/1/statuses")).respond_with(list(&[])).mount(&server).await;
    Mock::given(path("/api/v1/accounts/2/statuses")).respond_with(list(&[])).mount(&server).await;
    let mut src = source(&server, "handles = [\"quiet\", \"private\"]\nskip_noindex = false\nskip_not_indexable = false");
    let (pages, _) = run(&mut src, None).await;
    assert_eq!(pages[0].accounts.len(), 2);
    assert_eq!(pages[0].opted_out, 0);
}

#[tokio::test]
async fn malformed_json_is_a_clear_error_or_a_skipped_account() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/accounts/lookup"))
        .and(query_param("acct", "broken"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"id\": \"1\", \"acct"))
        .mount(&server)
        .await;
    let mut src = source(&server, "handles = [\"broken\"]");
    let err = src.next_page(None).await.unwrap_err();
    assert!(matches!(err, SourceError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("/api/v1/accounts/lookup?acct=broken") && err.to_string().contains("JSON"), "{err}");

    // A profile that parses but statuses that do not: the account is skipped and noted, and its
    // mark does not move, so the next scan reads those statuses again.
    let ok = account_json("2", "fine", "PC", json!({}));
    Mock::given(path("/api/v1/accounts/lookup"))
        .and(query_param("acct", "fine"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&ok))
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/accounts/2/statuses"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>oops</html>"))
        .mount(&server)
        .await;
    let mut src = source(&server, "handles = [\"fine\"]");
    let (pages, cursor) = run(&mut src, None).await;
    assert!(
        pages[0].skipped.iter().any(|s| s.contains("statuses of fine") && s.contains("expected a JSON array")),
        "{:?}",
        pages[0].skipped
    );
    assert!(Cursor::parse(cursor.as_deref()).unwrap().accounts.is_empty());

    // One bad item in a list is skipped; the rest are read.
    let mut bad = status_json("41", &ok, "x");
    bad["created_at"] = json!("yesterday");
    server.reset().await;
    Mock::given(path("/api/v1/accounts/lookup")).respond_with(ResponseTemplate::new(200).set_body_json(&ok)).mount(&server).await;
    Mock::given(path("/api/v1/accounts/2/statuses"))
        .respond_with(list(&[status_json("42", &ok, "good"), bad]))
        .mount(&server)
        .await;
    let mut src = source(&server, "handles = [\"fine\"]");
    let (pages, _) = run(&mut src, None).await;
    assert_eq!(post_ids(&pages), ["42"]);
    assert!(pages[0].skipped.iter().any(|s| s.contains("item 1 (id 41)")), "{:?}", pages[0].skipped);
}

#[tokio::test]
async fn rate_limit_waits_are_reported_on_the_page() {
    let server = MockServer::start().await;
    let a = account_json("1", "anna", "", json!({"statuses_count": 0}));
    Mock::given(path("/api/v1/accounts/lookup"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/accounts/lookup")).respond_with(ResponseTemplate::new(200).set_body_json(&a)).mount(&server).await;
    let mut src = source(&server, "handles = [\"anna\"]");
    let page = src.next_page(None).await.unwrap();
    assert_eq!(page.rate_limit_waits, 1);
    assert_eq!(page.accounts.len(), 1);
}

#[tokio::test]
async fn directory_is_paged_to_its_end_or_cap() {
    let server = MockServer::start().await;
    let accts: Vec<Value> =
        (1..=3).map(|i| account_json(&i.to_string(), &format!("u{i}"), "", json!({"statuses_count": 0}))).collect();
    Mock::given(path("/api/v1/directory"))
        .and(query_param("offset", "0"))
        .and(query_param("local", "true"))
        .respond_with(list(&accts))
        .mount(&server)
        .await;
    let mut src = source(&server, "directory = true\ndirectory_max_accounts = 3");
    let (pages, cursor) = run(&mut src, None).await;
    assert_eq!(pages.iter().map(|p| p.accounts.len()).sum::<usize>(), 3);
    assert!(pages.last().unwrap().done);
    assert_eq!(Cursor::parse(cursor.as_deref()).unwrap().pass, None);
    let reqs = requests_to(&server, "/api/v1/directory").await;
    assert_eq!(reqs.len(), 1, "capped at 3: no second directory request");
    assert!(reqs[0].url.query().unwrap().contains("limit=3"));
}

#[test]
fn config_entry_parses_through_the_registry() {
    let text = r##"
[[sources]]
name = "m"
kind = "mastodon"
instance = "https://social.example"
hashtags = ["#police"]
token_env = "not a name"

[mail]
from = "a@example.invalid"

[routing]
default = ["b@example.invalid"]
"##;
    let err = exposure_monitor::config::Config::from_toml(std::path::Path::new("/x/c.toml"), text).unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_eq!((err.errors[0].key.as_str(), err.errors[0].line), ("sources[0].token_env", Some(7)), "{err}");
    let ok = text.replace("token_env = \"not a name\"\n", "");
    let cfg = exposure_monitor::config::Config::from_toml(std::path::Path::new("/x/c.toml"), &ok).unwrap();
    let SourceConfig::Mastodon(m) = &cfg.sources[0].kind else { panic!("mastodon expected") };
    assert_eq!(m.hashtags, ["police"]);
}

#[test]
fn example_config_documents_a_mastodon_source_that_loads() {
    // Only the source table: the rest of the file is other modules' business.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let doc: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut table = doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.get("kind").and_then(|k| k.as_str()) == Some("mastodon"))
        .expect("a mastodon source in config/example.toml")
        .as_table()
        .unwrap()
        .clone();
    for k in ["name", "kind", "enabled"] {
        table.remove(k);
    }
    let mut m: MastodonConfig = toml::Value::Table(table).try_into().unwrap();
    m.validate().unwrap();
    assert_eq!(m.instance, "https://mastodon.social");
    assert_eq!(m.hashtags, ["police", "policelife"]);
}

#[tokio::test]
async fn closed_hashtag_feeds_and_directory_are_noted_not_fatal() {
    let server = MockServer::start().await;
    // Mastodon 4.5 in "authenticated" mode for hashtag feeds, and no public directory.
    Mock::given(path("/api/v2/instance"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"configuration": {"timelines_access": {"hashtag_feeds": {"local": "authenticated", "remote": "disabled"}}}}),
        ))
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/directory"))
        .respond_with(ResponseTemplate::new(401).set_body_string("{\"error\":\"This API requires an authenticated user\"}"))
        .mount(&server)
        .await;
    let mut src = source(&server, "directory = true\nhashtags = [\"police\"]");
    let (pages, _) = run(&mut src, None).await;
    let skipped: Vec<&String> = pages.iter().flat_map(|p| p.skipped.iter()).collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0].contains("hashtag timelines public"), "{skipped:?}");
    assert!(skipped[1].contains("directory not readable") && skipped[1].contains("401"), "{skipped:?}");
    assert!(requests_to(&server, "/api/v1/timelines/tag/police").await.is_empty());

    // An older server (no v2 instance) whose tag timeline needs a login.
    server.reset().await;
    Mock::given(path("/api/v2/instance")).respond_with(ResponseTemplate::new(404)).mount(&server).await;
    Mock::given(path("/api/v1/timelines/tag/police"))
        .respond_with(ResponseTemplate::new(401).set_body_string("{\"error\":\"The access token is invalid\"}"))
        .mount(&server)
        .await;
    let mut src = source(&server, "hashtags = [\"police\"]");
    let (pages, _) = run(&mut src, None).await;
    let skipped: Vec<&String> = pages.iter().flat_map(|p| p.skipped.iter()).collect();
    assert!(
        skipped.len() == 1 && skipped[0].contains("#police not readable") && skipped[0].contains("access token is invalid"),
        "{skipped:?}"
    );
}

#[tokio::test]
async fn a_discovery_too_big_for_one_page_is_spread_over_pages_and_resumes_without_a_duplicate() {
    // Three accounts of ~1,500 statuses each: at most ~2,000 planned posts a page, so one
    // account a page; the cursor stays at the directory request until its last account is read.
    let server = MockServer::start().await;
    let accts: Vec<Value> =
        (1..=3).map(|i| account_json(&i.to_string(), &format!("u{i}"), "", json!({"statuses_count": 1500}))).collect();
    Mock::given(path("/api/v1/directory")).and(query_param("offset", "0")).respond_with(list(&accts)).mount(&server).await;
    for (i, a) in accts.iter().enumerate() {
        let st = format!("/api/v1/accounts/{}/statuses", i + 1);
        let id = format!("{}0", i + 1);
        Mock::given(path(st.as_str()))
            .and(query_param_is_missing("min_id"))
            .respond_with(list(&[status_json(&id, a, "<p>hello</p>")]))
            .mount(&server)
            .await;
        Mock::given(path(st.as_str())).and(query_param("min_id", id.as_str())).respond_with(list(&[])).mount(&server).await;
    }
    let extra = "directory = true\ndirectory_max_accounts = 3\nfirst_scan_pages = 1000\nstatuses_per_request = 2";
    let mut src = source(&server, extra);
    let (pages, cursor) = run(&mut src, None).await;
    // (The last page is the directory's end: a full answer asks once more.)
    assert_eq!(pages.iter().map(|p| p.accounts.len()).collect::<Vec<_>>(), [1, 1, 1, 0]);
    assert_eq!(post_ids(&pages), ["10", "20", "30"]);
    assert_eq!(requests_to(&server, "/api/v1/directory").await.len(), 1, "one discovery, three pages");
    let first = Cursor::parse(pages[0].cursor.as_deref()).unwrap();
    assert_eq!(first.pass, Some(Pass::Directory { offset: 0 }), "still at the discovery");
    assert_eq!(first.accounts.keys().collect::<Vec<_>>(), ["1"]);
    assert_eq!(Cursor::parse(cursor.as_deref()).unwrap().pass, None);

    // A scan killed after page 1 resumes from its cursor: it repeats the discovery, finds
    // nothing new for the account already read, and reads the other two.
    let mut src = source(&server, extra);
    let (pages, cursor) = run(&mut src, pages[0].cursor.clone()).await;
    assert_eq!(post_ids(&pages), ["20", "30"]);
    let c = Cursor::parse(cursor.as_deref()).unwrap();
    assert_eq!(c.accounts.keys().collect::<Vec<_>>(), ["1", "2", "3"]);
    assert_eq!(c.pass, None);
}
