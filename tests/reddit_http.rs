//! The Reddit source against a loopback test server (wiremock): the app-only OAuth flow (token
//! cached, a 401 renews it once), discovery from subreddits and configured users, pagination,
//! incremental runs with `before`, a deleted anchor, opt-outs, 429 with `x-ratelimit-reset`,
//! 5xx, and malformed answers.

mod common;

use std::time::{Duration, Instant};

use exposure_monitor::sources::reddit::{Cursor, RedditConfig, RedditSource};
use exposure_monitor::sources::{BuildContext, Page, Source, SourceError};
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, header, header_regex, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONTACT: &str = "psd-test@example.invalid";

/// Credentials in environment variables unique to the test (tests run in parallel threads).
fn creds(test: &str) -> (String, String) {
    let (id, secret) = (format!("RDT_{test}_ID"), format!("RDT_{test}_SECRET"));
    std::env::set_var(&id, format!("id-{test}"));
    std::env::set_var(&secret, format!("secret-{test}"));
    (id, secret)
}

fn source(server: &MockServer, test: &str, extra: &str) -> RedditSource {
    let (id, secret) = creds(test);
    let text = format!(
        "client_id_env = \"{id}\"\nclient_secret_env = \"{secret}\"\ntoken_url = \"{uri}/api/v1/access_token\"\n\
         api_base = \"{uri}\"\nretry_backoff_ms = 10\nmax_requests_per_second = 1000\nmax_retries = 2\n{extra}",
        uri = server.uri()
    );
    let mut cfg: RedditConfig = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    RedditSource::new("reddit".into(), cfg, &BuildContext::new(CONTACT))
}

async fn mount_token(server: &MockServer, token: &str) {
    Mock::given(method("POST"))
        .and(path("/api/v1/access_token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": token, "token_type": "bearer", "expires_in": 3600, "scope": "*"})),
        )
        .mount(server)
        .await;
}

fn about(name: &str, bio: &str, hide: bool) -> Value {
    json!({"kind": "t2", "data": {
        "name": name, "id": format!("id{}", name.len()), "hide_from_robots": hide, "created_utc": 1_600_000_000.0,
        "subreddit": {"title": format!("{name}'s page"), "public_description": bio, "display_name": format!("u_{name}")}
    }})
}

fn link(id: &str, author: &str, title: &str, body: &str) -> Value {
    json!({"kind": "t3", "data": {
        "id": id, "name": format!("t3_{id}"), "title": title, "selftext": body, "author": author,
        "permalink": format!("/r/policeuk/comments/{id}/slug/"), "created_utc": 1_764_000_000.0, "subreddit": "policeuk"
    }})
}

fn comment(id: &str, author: &str, body: &str) -> Value {
    json!({"kind": "t1", "data": {
        "id": id, "name": format!("t1_{id}"), "body": body, "author": author, "link_id": "t3_zz",
        "permalink": format!("/r/policeuk/comments/zz/slug/{id}/"), "created_utc": 1_764_000_100.0, "subreddit": "policeuk"
    }})
}

fn listing(children: &[Value], after: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"kind": "Listing", "data": {"children": children, "after": after, "before": null, "dist": children.len()}}),
    )
}

async fn mount_about(server: &MockServer, name: &str, bio: &str, hide: bool) {
    Mock::given(path(format!("/user/{name}/about")))
        .respond_with(ResponseTemplate::new(200).set_body_json(about(name, bio, hide)))
        .mount(server)
        .await;
}

async fn run(src: &mut RedditSource, cursor: Option<String>) -> (Vec<Page>, Option<String>) {
    common::pages_until_done(src, cursor, 50).await
}

fn post_ids(pages: &[Page]) -> Vec<String> {
    pages.iter().flat_map(|p| p.posts.iter().map(|p| p.platform_id.clone())).collect()
}

async fn requests_to(server: &MockServer, p: &str) -> Vec<wiremock::Request> {
    server.received_requests().await.unwrap().into_iter().filter(|r| r.url.path() == p).collect()
}

fn param(r: &wiremock::Request, k: &str) -> Option<String> {
    r.url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn oauth_token_is_requested_once_with_basic_auth_and_sent_as_bearer_with_user_agent_and_raw_json() {
    let server = MockServer::start().await;
    // Basic base64("id-flow:secret-flow").
    Mock::given(method("POST"))
        .and(path("/api/v1/access_token"))
        .and(header("authorization", "Basic aWQtZmxvdzpzZWNyZXQtZmxvdw=="))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(header_regex("user-agent", "^exposure-monitor/.* \\(\\+psd-test@example\\.invalid\\)$"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"access_token": "T1", "token_type": "bearer", "expires_in": 3600})),
        )
        .expect(1)
        .mount(&server)
        .await;
    for name in ["pc_anna", "pc_ben"] {
        Mock::given(path(format!("/user/{name}/about")))
            .and(header("authorization", "Bearer T1"))
            .and(query_param("raw_json", "1"))
            .and(header_regex("user-agent", "psd-test@example\\.invalid"))
            .respond_with(ResponseTemplate::new(200).set_body_json(about(name, "PC in Kent", false)))
            .mount(&server)
            .await;
        for what in ["submitted", "comments"] {
            Mock::given(path(format!("/user/{name}/{what}")))
                .and(header("authorization", "Bearer T1"))
                .and(query_param("raw_json", "1"))
                .and(query_param("sort", "new"))
                .respond_with(listing(&[], None))
                .mount(&server)
                .await;
        }
    }
    let mut src = source(&server, "flow", "users = [\"u/pc_anna\", \"pc_ben\"]\nusers_per_page = 1");
    let (pages, _) = run(&mut src, None).await;
    let handles: Vec<_> = pages.iter().flat_map(|p| p.accounts.iter().map(|a| a.handle.clone())).collect();
    assert_eq!(handles, ["u/pc_anna", "u/pc_ben"]);
    let a = &pages[0].accounts[0];
    assert_eq!((a.bio.as_str(), a.display_name.as_str(), a.platform_id.as_str()), ("PC in Kent", "pc_anna's page", "pc_anna"));
    // Every API request had the bearer token (the mocks above require it); and no secret is in
    // any URL.
    for r in server.received_requests().await.unwrap() {
        assert!(!r.url.as_str().contains("secret-flow") && !r.url.as_str().contains("T1"), "{}", r.url);
    }
    assert_eq!(requests_to(&server, "/api/v1/access_token").await.len(), 1, "the token is cached");
}

#[tokio::test]
async fn a_401_renews_the_token_once_and_a_second_401_fails_the_source() {
    let server = MockServer::start().await;
    // The first token is refused by the API; the second works.
    Mock::given(method("POST"))
        .and(path("/api/v1/access_token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"access_token": "OLD", "token_type": "bearer", "expires_in": 3600})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_token(&server, "NEW").await;
    Mock::given(path("/user/pc_anna/about"))
        .and(header("authorization", "Bearer OLD"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", "Bearer realm=\"reddit\", error=\"invalid_token\"")
                .set_body_string("{\"error\": 401}"),
        )
        .mount(&server)
        .await;
    mount_about(&server, "pc_anna", "", false).await;
    for what in ["submitted", "comments"] {
        Mock::given(path(format!("/user/pc_anna/{what}"))).respond_with(listing(&[], None)).mount(&server).await;
    }
    let mut src = source(&server, "renew", "users = [\"pc_anna\"]");
    let (pages, _) = run(&mut src, None).await;
    assert_eq!(pages[0].accounts.len(), 1);
    assert_eq!(requests_to(&server, "/api/v1/access_token").await.len(), 2);
    let abouts = requests_to(&server, "/user/pc_anna/about").await;
    let auths: Vec<_> = abouts.iter().map(|r| r.headers["authorization"].to_str().unwrap().to_string()).collect();
    assert_eq!(auths, ["Bearer OLD", "Bearer NEW"]);

    // An API that refuses every token: one renewal, then the source fails with the 401.
    let server = MockServer::start().await;
    mount_token(&server, "ANY").await;
    Mock::given(path("/user/pc_anna/about"))
        .respond_with(ResponseTemplate::new(401).set_body_string("{\"error\": 401}"))
        .mount(&server)
        .await;
    let mut src = source(&server, "renew2", "users = [\"pc_anna\"]");
    let err = src.next_page(None).await.unwrap_err();
    assert!(err.to_string().contains("401") && err.to_string().contains("/user/pc_anna/about"), "{err}");
    assert_eq!(requests_to(&server, "/api/v1/access_token").await.len(), 2);
    assert_eq!(requests_to(&server, "/user/pc_anna/about").await.len(), 2);
}

#[tokio::test]
async fn refused_credentials_and_missing_variables_are_setup_errors_that_never_show_the_secret() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/access_token"))
        .respond_with(ResponseTemplate::new(401).set_body_string("{\"message\": \"Unauthorized\", \"error\": 401}"))
        .mount(&server)
        .await;
    let mut src = source(&server, "refused", "users = [\"pc_anna\"]");
    let err = src.next_page(None).await.unwrap_err();
    assert!(matches!(err, SourceError::Setup(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("RDT_refused_ID") && text.contains("RDT_refused_SECRET") && text.contains("401"), "{text}");
    assert!(!text.contains("secret-refused") && !text.contains("id-refused"), "{text}");
    assert!(requests_to(&server, "/user/pc_anna/about").await.is_empty());

    // A variable that is not set: no request at all.
    let server = MockServer::start().await;
    let mut src = source(&server, "unset", "users = [\"pc_anna\"]");
    std::env::remove_var("RDT_unset_SECRET");
    let err = src.next_page(None).await.unwrap_err();
    assert!(matches!(err, SourceError::Setup(_)) && err.to_string().contains("RDT_unset_SECRET"), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn first_sight_pages_back_then_incremental_runs_read_only_what_is_new_with_before() {
    let server = MockServer::start().await;
    mount_token(&server, "T").await;
    mount_about(&server, "pc_sam", "Response officer", false).await;
    let sub = "/user/pc_sam/submitted";
    let com = "/user/pc_sam/comments";
    // First sight: the newest page, then one more back with `after`.
    Mock::given(path(sub))
        .and(query_param_is_missing("before"))
        .and(query_param_is_missing("after"))
        .respond_with(listing(&[link("p9", "pc_sam", "nine", "body nine"), link("p8", "pc_sam", "eight", "")], Some("t3_p8")))
        .mount(&server)
        .await;
    Mock::given(path(sub))
        .and(query_param("after", "t3_p8"))
        .respond_with(listing(&[link("p7", "pc_sam", "seven", ""), link("p6", "pc_sam", "six", "")], Some("t3_p6")))
        .mount(&server)
        .await;
    Mock::given(path(com))
        .and(query_param_is_missing("before"))
        .and(query_param_is_missing("after"))
        .respond_with(listing(&[comment("c5", "pc_sam", "comment five")], None))
        .mount(&server)
        .await;
    // Later: forward from the newest stored, block by block, until a short page.
    Mock::given(path(sub))
        .and(query_param("before", "t3_p9"))
        .respond_with(listing(&[link("pb", "pc_sam", "eleven", ""), link("pa", "pc_sam", "ten", "")], None))
        .mount(&server)
        .await;
    Mock::given(path(sub))
        .and(query_param("before", "t3_pb"))
        .respond_with(listing(&[link("pc", "pc_sam", "twelve", "[removed]")], None))
        .mount(&server)
        .await;
    Mock::given(path(sub)).and(query_param("before", "t3_pc")).respond_with(listing(&[], None)).mount(&server).await;
    Mock::given(path(com)).and(query_param("before", "t1_c5")).respond_with(listing(&[], None)).mount(&server).await;

    let extra = "users = [\"pc_sam\"]\nitems_per_request = 2\nfirst_scan_pages = 2";
    let mut src = source(&server, "incr", extra);
    let (pages, cursor) = run(&mut src, None).await;
    assert_eq!(post_ids(&pages), ["t3_p9", "t3_p8", "t3_p7", "t3_p6", "t1_c5"]);
    let p = &pages[0].posts[0];
    assert_eq!(p.text, "nine\n\nbody nine");
    assert_eq!(p.url.as_deref(), Some("https://www.reddit.com/r/policeuk/comments/p9/slug/"));
    assert_eq!(p.author_id, "pc_sam");
    assert_eq!(pages[0].posts[1].text, "eight");
    let c = Cursor::parse(cursor.as_deref()).unwrap();
    assert_eq!(c.users["pc_sam"].submitted.as_deref(), Some("t3_p9"));
    assert_eq!(c.users["pc_sam"].comments.as_deref(), Some("t1_c5"));
    assert!(c.pass.is_none() && c.queue.is_empty());

    // Second scan, a new process: only what is newer than p9.
    let before = requests_to(&server, sub).await.len();
    let mut src = source(&server, "incr", extra);
    let (pages, cursor) = run(&mut src, cursor).await;
    assert_eq!(post_ids(&pages), ["t3_pb", "t3_pa", "t3_pc"]);
    assert_eq!(pages[0].posts[2].text, "twelve", "a removed body leaves the title");
    let second: Vec<_> = requests_to(&server, sub).await.into_iter().skip(before).collect();
    let befores: Vec<_> = second.iter().map(|r| param(r, "before").unwrap_or_default()).collect();
    assert_eq!(befores, ["t3_p9", "t3_pb"], "a short page ends the walk");
    assert!(second.iter().all(|r| param(r, "limit").as_deref() == Some("2") && param(r, "sort").as_deref() == Some("new")));

    // Third scan: nothing new; the anchors were checked today, so no extra read.
    let before = requests_to(&server, sub).await.len();
    let mut src = source(&server, "incr", extra);
    let (pages, cursor) = run(&mut src, cursor).await;
    assert!(post_ids(&pages).is_empty());
    assert_eq!(pages[0].accounts.len(), 1, "the profile is still read for identification");
    assert_eq!(requests_to(&server, sub).await.len() - before, 1);
    assert_eq!(Cursor::parse(cursor.as_deref()).unwrap().users["pc_sam"].submitted.as_deref(), Some("t3_pc"));
}

#[tokio::test]
async fn a_deleted_anchor_is_noticed_and_only_newer_items_are_read() {
    let server = MockServer::start().await;
    mount_token(&server, "T").await;
    mount_about(&server, "pc_sam", "", false).await;
    let sub = "/user/pc_sam/submitted";
    // The anchor t3_p5 was deleted: `before` gives nothing; the newest page has one newer post
    // and older ones already stored.
    Mock::given(path(sub)).and(query_param("before", "t3_p5")).respond_with(listing(&[], None)).mount(&server).await;
    Mock::given(path(sub))
        .and(query_param_is_missing("before"))
        .respond_with(listing(&[link("p7", "pc_sam", "new one", ""), link("p4", "pc_sam", "old", "")], None))
        .mount(&server)
        .await;
    Mock::given(path("/user/pc_sam/comments")).respond_with(listing(&[], None)).mount(&server).await;
    let cursor = json!({"v": 1, "users": {"pc_sam": {"submitted": "t3_p5", "anchors_checked": "2020-01-01"}}}).to_string();
    let mut src = source(&server, "anchor", "users = [\"pc_sam\"]");
    let (pages, cursor) = run(&mut src, Some(cursor)).await;
    assert_eq!(post_ids(&pages), ["t3_p7"]);
    let c = Cursor::parse(cursor.as_deref()).unwrap();
    assert_eq!(c.users["pc_sam"].submitted.as_deref(), Some("t3_p7"));
    assert_eq!(c.users["pc_sam"].anchors_checked, chrono::Utc::now().date_naive());
}

#[tokio::test]
async fn subreddit_authors_are_discovered_deduplicated_and_read_a_few_per_page() {
    let server = MockServer::start().await;
    mount_token(&server, "T").await;
    Mock::given(path("/r/policeuk/new"))
        .and(query_param("raw_json", "1"))
        .respond_with(listing(
            &[
                link("a1", "pc_anna", "x", ""),
                link("a2", "[deleted]", "x", ""),
                link("a3", "AutoModerator", "x", ""),
                link("a4", "pc_ben", "x", ""),
            ],
            Some("t3_a4"),
        ))
        .mount(&server)
        .await;
    Mock::given(path("/r/policeuk/comments"))
        .respond_with(listing(&[comment("b1", "PC_ANNA", "x"), comment("b2", "pc_cara", "x")], None))
        .mount(&server)
        .await;
    // A private subreddit: noted, the others carry on.
    Mock::given(path("/r/secretsub/new"))
        .respond_with(ResponseTemplate::new(403).set_body_string("{\"error\": 403}"))
        .mount(&server)
        .await;
    for name in ["pc_anna", "pc_ben", "pc_cara", "pc_dan"] {
        mount_about(&server, name, "", false).await;
        for what in ["submitted", "comments"] {
            Mock::given(path(format!("/user/{name}/{what}"))).respond_with(listing(&[], None)).mount(&server).await;
        }
    }
    let extra = "users = [\"pc_dan\"]\nsubreddits = [\"r/policeuk\", \"secretsub\"]\nusers_per_page = 2";
    let mut src = source(&server, "disc", extra);
    let p1 = src.next_page(None).await.unwrap();
    assert_eq!(p1.accounts.iter().map(|a| a.handle.as_str()).collect::<Vec<_>>(), ["u/pc_dan"]);
    assert!(!p1.done);
    let p2 = src.next_page(p1.cursor.as_deref()).await.unwrap();
    assert_eq!(p2.accounts.iter().map(|a| a.handle.as_str()).collect::<Vec<_>>(), ["u/pc_anna", "u/pc_ben"]);
    // A new process resumes from page 2's cursor: the queue and the pass position are in it.
    let mut src = source(&server, "disc", extra);
    let (rest, _) = run(&mut src, p2.cursor.clone()).await;
    let handles: Vec<_> = rest.iter().flat_map(|p| p.accounts.iter().map(|a| a.handle.clone())).collect();
    assert_eq!(handles, ["u/pc_cara"], "PC_ANNA is pc_anna; [deleted] and AutoModerator are not read");
    let skipped: Vec<_> = rest.iter().flat_map(|p| p.skipped.clone()).collect();
    assert!(skipped.iter().any(|s| s.contains("r/secretsub not readable") && s.contains("403")), "{skipped:?}");
    assert_eq!(requests_to(&server, "/r/policeuk/new").await.len(), 1, "subreddit_pages = 1");
    assert_eq!(requests_to(&server, "/user/pc_anna/about").await.len(), 1);
    assert!(requests_to(&server, "/user/AutoModerator/about").await.is_empty());
}

#[tokio::test]
async fn hide_from_robots_users_are_skipped_and_counted_as_opted_out() {
    let server = MockServer::start().await;
    mount_token(&server, "T").await;
    mount_about(&server, "quiet_pc", "PC", true).await;
    mount_about(&server, "loud_pc", "PC", false).await;
    for name in ["quiet_pc", "loud_pc"] {
        for what in ["submitted", "comments"] {
            Mock::given(path(format!("/user/{name}/{what}"))).respond_with(listing(&[], None)).mount(&server).await;
        }
    }
    let mut src = source(&server, "robots", "users = [\"quiet_pc\", \"loud_pc\"]");
    let (pages, _) = run(&mut src, None).await;
    assert_eq!(pages[0].accounts.iter().map(|a| a.handle.as_str()).collect::<Vec<_>>(), ["u/loud_pc"]);
    assert_eq!(pages[0].opted_out, 1);
    assert!(pages[0].skipped.is_empty(), "an opt-out is not an error: {:?}", pages[0].skipped);
    assert!(requests_to(&server, "/user/quiet_pc/submitted").await.is_empty(), "nothing of an opted-out user is read");

    let mut src = source(&server, "robots", "users = [\"quiet_pc\"]\nskip_hide_from_robots = false");
    let (pages, _) = run(&mut src, None).await;
    assert_eq!((pages[0].accounts.len(), pages[0].opted_out), (1, 0));
}

#[tokio::test]
async fn a_429_waits_for_the_x_ratelimit_reset_and_is_counted() {
    let server = MockServer::start().await;
    mount_token(&server, "T").await;
    Mock::given(path("/user/pc_sam/about"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-used", "1000")
                .insert_header("x-ratelimit-remaining", "0.0")
                .insert_header("x-ratelimit-reset", "1")
                .set_body_string("{\"message\": \"Too Many Requests\", \"error\": 429}"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_about(&server, "pc_sam", "", false).await;
    for what in ["submitted", "comments"] {
        Mock::given(path(format!("/user/pc_sam/{what}")))
            .respond_with(
                listing(&[], None)
                    .insert_header("x-ratelimit-used", "3")
                    .insert_header("x-ratelimit-remaining", "997.0")
                    .insert_header("x-ratelimit-reset", "300"),
            )
            .mount(&server)
            .await;
    }
    let mut src = source(&server, "ratelimit", "users = [\"pc_sam\"]");
    let t = Instant::now();
    let (pages, _) = run(&mut src, None).await;
    assert!(t.elapsed() >= Duration::from_millis(950), "{:?}", t.elapsed());
    assert_eq!(pages[0].accounts.len(), 1);
    assert_eq!(pages[0].rate_limit_waits, 1);
}

#[tokio::test]
async fn server_errors_are_retried_and_a_lasting_one_fails_the_page_without_moving_the_cursor() {
    let server = MockServer::start().await;
    mount_token(&server, "T").await;
    mount_about(&server, "pc_sam", "", false).await;
    Mock::given(path("/user/pc_sam/submitted"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/user/pc_sam/submitted"))
        .respond_with(listing(&[link("p1", "pc_sam", "one", "")], None))
        .mount(&server)
        .await;
    Mock::given(path("/user/pc_sam/comments")).respond_with(ResponseTemplate::new(500)).mount(&server).await;
    let mut src = source(&server, "fivexx", "users = [\"pc_sam\"]");
    let err = src.next_page(None).await.unwrap_err();
    assert!(matches!(err, SourceError::Http(_)) && err.to_string().contains("/user/pc_sam/comments"), "{err}");
    assert!(err.to_string().contains("HTTP 500") && err.to_string().contains("3 attempts"), "{err}");
    assert_eq!(requests_to(&server, "/user/pc_sam/submitted").await.len(), 3, "two 503s, then success");
}

#[tokio::test]
async fn malformed_answers_are_skipped_and_counted_and_the_marks_stay() {
    let server = MockServer::start().await;
    mount_token(&server, "T").await;
    // Not JSON at all.
    Mock::given(path("/user/broken/about"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>oops"))
        .mount(&server)
        .await;
    // A good profile whose submissions are not a listing, and whose comments have a bad child.
    mount_about(&server, "pc_sam", "", false).await;
    Mock::given(path("/user/pc_sam/submitted"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"kind\": \"t2\", \"data\": {}}"))
        .mount(&server)
        .await;
    Mock::given(path("/user/pc_sam/comments"))
        .respond_with(listing(
            &[json!({"kind": "t1", "data": {"name": "t1_bad", "body": 5}}), comment("c1", "pc_sam", "fine")],
            None,
        ))
        .mount(&server)
        .await;
    // A user that does not exist.
    Mock::given(path("/user/ghost_pc/about"))
        .respond_with(ResponseTemplate::new(404).set_body_string("{\"message\": \"Not Found\", \"error\": 404}"))
        .mount(&server)
        .await;
    let mut src = source(&server, "malformed", "users = [\"broken\", \"pc_sam\", \"ghost_pc\"]");
    let (pages, cursor) = run(&mut src, None).await;
    let skipped = pages[0].skipped.join("\n");
    assert!(skipped.contains("/user/broken/about") && skipped.contains("expected a Reddit account"), "{skipped}");
    assert!(skipped.contains("/user/pc_sam/submitted") && skipped.contains("expected a Listing"), "{skipped}");
    assert!(skipped.contains("t1_bad"), "{skipped}");
    assert!(skipped.contains("u/ghost_pc unavailable") && skipped.contains("404"), "{skipped}");
    assert_eq!(pages[0].skipped.len(), 4, "{skipped}");
    assert_eq!(pages[0].accounts.iter().map(|a| a.handle.as_str()).collect::<Vec<_>>(), ["u/pc_sam"]);
    assert!(pages[0].posts.is_empty(), "a listing that failed keeps its user's marks and posts for next time");
    assert!(!Cursor::parse(cursor.as_deref()).unwrap().users.contains_key("pc_sam"));
    // A stored cursor that is not ours is a clear error.
    let err = src.next_page(Some("p42")).await.unwrap_err();
    assert!(matches!(err, SourceError::BadCursor { .. }), "{err}");
}

#[test]
fn example_config_documents_a_reddit_source_that_loads() {
    // Only the source table: the rest of the file is other modules' business.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let mut table = doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.get("kind").and_then(|k| k.as_str()) == Some("reddit"))
        .expect("a reddit source in config/example.toml")
        .as_table()
        .unwrap()
        .clone();
    for k in ["name", "kind", "enabled"] {
        table.remove(k);
    }
    let mut cfg: RedditConfig = toml::Value::Table(table).try_into().unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.api_base, "https://oauth.reddit.com");
    assert_eq!(cfg.token_url, "https://www.reddit.com/api/v1/access_token");
    assert!(cfg.skip_hide_from_robots && !cfg.subreddits.is_empty());
    for key in ["client_id_env", "client_secret_env", "skip_hide_from_robots", "users_per_page", "anchor_check_days"] {
        assert!(text.contains(&format!("#   {key}")), "{key} is not documented");
    }
}
