//! End to end: 1,000,000 posts served by a local Mastodon-compatible paged HTTP API, with 2% of
//! responses 429, fetched, identified, classified and stored by the real release binary's `scan`.
//!
//!     cargo bench --bench e2e
//!
//! Goals (issue 6): <= 60 s wall, no loss and no duplicate, peak RSS <= 128 MB.
//!
//! The server (axum, on 127.0.0.1) serves what the Mastodon source asks for: the profile
//! directory (`/api/v1/directory`, 80 accounts a request, bios as HTML `note`) and each
//! account's statuses (`/api/v1/accounts/:id/statuses`, 40 a request, newest first, paged with
//! `max_id`/`min_id` and a `Link` header, each status carrying its full account entity as
//! Mastodon's do). Content is the synthetic stream (benches/support/stream.rs): 20,000 accounts,
//! 3% of them officers, posting with a skewed activity (the busiest account has ~7,000 posts).
//! Every response carries Mastodon's `X-RateLimit-*` headers; the server throttles the way a
//! rate limit does: every `THROTTLE_EVERY` requests it refuses everything for `THROTTLE_MS` with
//! a 429 whose `X-RateLimit-Reset` (ISO 8601, microseconds, as Mastodon sends it) is the end of
//! the refusal, so every request in flight then is refused too. The client must wait for the
//! reset (it adds 250 ms for clock skew); the bench reports how many 429s were sent.
//!
//! Operator settings for a server that allows the volume (documented in the README): the
//! default `max_requests_per_second = 2` and `max_concurrent_requests = 2` are for public
//! instances; this bench sets 5,000/s and 32 in flight, `first_scan_pages = 1000` (read every
//! account's whole history on its first scan) and `directory_max_accounts = 20000`.
//!
//! After the scan the database is checked against a reference run of the same library stages in
//! this process: every hit the pipeline should find (posts of accounts identified as serving
//! officers that the classifier flags) is stored exactly once and nothing else is, every
//! account's cursor mark is its newest status, and the run read all 1,000,000 posts.
//!
//! For profiling (the goals are then not the point):
//! - `E2E_POSTS=N` serves N posts instead of 1,000,000 (same 20,000 accounts);
//! - `E2E_WRAP="heaptrack -o /tmp/e2e"` (or `valgrind --tool=massif ...`) runs the scan under
//!   that command; the peak RSS printed is then the wrapper's, not the program's;
//! - `MEASURE_RSS_TRACE=FILE` writes the child's VmRSS over time (see `support/measure.rs`).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/measure.rs"]
mod measure;
#[path = "support/stream.rs"]
mod stream;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use exposure_monitor::forces::Forces;
use exposure_monitor::identify::PostSignals;
use exposure_monitor::model::Identity;
use exposure_monitor::patterns::Detector;
use exposure_monitor::sources::mastodon::{self, ApiAccount, ApiMedia, ApiStatus};
use stream::{Stream, StreamSpec};

/// Posts served, unless `E2E_POSTS` says otherwise (profiling a smaller run).
const DEFAULT_POSTS: usize = 1_000_000;
const ACCOUNTS: usize = 20_000;
const THROTTLE_EVERY: u64 = 600;
const THROTTLE_MS: u64 = 20;
const GOAL_SECS: f64 = 60.0;
const GOAL_RSS_MIB: f64 = 128.0;
/// Mastodon ids: numeric, same width, increasing with time.
const ID_BASE: u64 = 110_000_000_000_000_000;

struct Post {
    text: Box<str>,
    alt: Option<Box<str>>,
    lang: &'static str,
    created_at: DateTime<Utc>,
}

struct World {
    base: String,
    accounts: Vec<stream::SynthAccount>,
    /// Each account's entity as JSON (embedded in every status, as Mastodon does).
    account_json: Vec<String>,
    /// Post indices of each account, oldest first.
    by_account: Vec<Vec<u32>>,
    posts: Vec<Post>,
    requests: AtomicU64,
    throttled: AtomicU64,
    throttle_until: Mutex<Option<(Instant, DateTime<Utc>)>>,
    window_reset: DateTime<Utc>,
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn username(i: usize, a: &stream::SynthAccount) -> String {
    let h = a.account.handle.split('.').next().unwrap_or("user");
    let _ = i;
    h.to_string()
}

fn status_id(n: u32) -> u64 {
    ID_BASE + n as u64
}

fn note_html(bio: &str) -> String {
    if bio.is_empty() {
        String::new()
    } else {
        format!("<p>{}</p>", escape_html(bio))
    }
}

fn content_html(text: &str) -> String {
    format!("<p>{}</p>", escape_html(text))
}

/// Posts served: `E2E_POSTS`, or [`DEFAULT_POSTS`].
fn posts_to_serve() -> usize {
    std::env::var("E2E_POSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_POSTS)
}

impl World {
    fn build(base: String, posts_n: usize) -> World {
        let mut stream = Stream::new(StreamSpec { accounts: ACCOUNTS, platform: "mastodon", ..StreamSpec::default() });
        let mut by_account: Vec<Vec<u32>> = vec![vec![]; ACCOUNTS];
        let mut posts = Vec::with_capacity(posts_n);
        for n in 0..posts_n {
            let sp = stream.next_post();
            by_account[sp.author].push(n as u32);
            posts.push(Post {
                text: sp.post.text.into_boxed_str(),
                alt: sp.post.alt_texts.into_iter().next().map(String::into_boxed_str),
                lang: sp.lang,
                created_at: sp.post.created_at,
            });
        }
        let accounts = stream.accounts;
        let account_json = accounts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let user = username(i, a);
                let last = by_account[i].last().map(|&n| posts[n as usize].created_at.format("%Y-%m-%d").to_string());
                format!(
                    "{{\"id\":\"{i}\",\"username\":{u},\"acct\":{u},\"display_name\":{d},\"locked\":false,\"bot\":false,\
                     \"note\":{note},\"url\":\"{base}/@{user}\",\"uri\":\"{base}/users/{user}\",\"fields\":[],\
                     \"noindex\":false,\"indexable\":true,\"discoverable\":true,\"last_status_at\":{last},\
                     \"statuses_count\":{count},\"followers_count\":12,\"following_count\":40,\
                     \"created_at\":\"2024-01-01T00:00:00.000Z\",\"avatar\":\"{base}/avatars/original/missing.png\",\
                     \"emojis\":[]}}",
                    u = json_str(&user),
                    d = json_str(&a.account.display_name),
                    note = json_str(&note_html(&a.account.bio)),
                    last = last.map(|l| json_str(&l)).unwrap_or_else(|| "null".into()),
                    count = by_account[i].len(),
                )
            })
            .collect();
        World {
            base,
            accounts,
            account_json,
            by_account,
            posts,
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            throttle_until: Mutex::new(None),
            window_reset: Utc::now() + chrono::Duration::minutes(5),
        }
    }

    fn status_json(&self, account: usize, n: u32, out: &mut String) {
        let p = &self.posts[n as usize];
        let id = status_id(n);
        let user = username(account, &self.accounts[account]);
        let media = match &p.alt {
            Some(alt) => format!(
                "[{{\"id\":\"{id}\",\"type\":\"image\",\"url\":\"{}/media/{id}.jpg\",\"description\":{}}}]",
                self.base,
                json_str(alt)
            ),
            None => "[]".into(),
        };
        out.push_str(&format!(
            "{{\"id\":\"{id}\",\"created_at\":\"{created}\",\"in_reply_to_id\":null,\"sensitive\":false,\
             \"spoiler_text\":\"\",\"visibility\":\"public\",\"language\":\"{lang}\",\
             \"uri\":\"{base}/users/{user}/statuses/{id}\",\"url\":\"{base}/@{user}/{id}\",\
             \"replies_count\":0,\"reblogs_count\":0,\"favourites_count\":1,\"content\":{content},\
             \"reblog\":null,\"media_attachments\":{media},\"mentions\":[],\"tags\":[],\"emojis\":[],\
             \"account\":{acc}}}",
            created = p.created_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            lang = p.lang,
            base = self.base,
            content = json_str(&content_html(&p.text)),
            acc = self.account_json[account],
        ));
    }

    /// Mastodon's rate-limit headers; during a throttle, the 429 itself.
    fn rate_limit(&self) -> Result<HeaderMap, Response> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut throttle = self.throttle_until.lock().unwrap();
        if n % THROTTLE_EVERY == 0 && throttle.map_or(true, |(t, _)| t <= now) {
            *throttle =
                Some((now + Duration::from_millis(THROTTLE_MS), Utc::now() + chrono::Duration::milliseconds(THROTTLE_MS as i64)));
        }
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit", HeaderValue::from_static("1000000"));
        if let Some((until, reset)) = *throttle {
            if until > now {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
                let reset = reset.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
                h.insert("x-ratelimit-reset", HeaderValue::from_str(&reset).unwrap());
                h.insert("content-type", HeaderValue::from_static("application/json"));
                return Err((StatusCode::TOO_MANY_REQUESTS, h, "{\"error\":\"Too many requests\"}").into_response());
            }
        }
        let remaining = 1_000_000u64.saturating_sub(n);
        h.insert("x-ratelimit-remaining", HeaderValue::from_str(&remaining.to_string()).unwrap());
        let reset = self.window_reset.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        h.insert("x-ratelimit-reset", HeaderValue::from_str(&reset).unwrap());
        h.insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
        Ok(h)
    }
}

async fn directory(State(w): State<Arc<World>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let headers = match w.rate_limit() {
        Ok(h) => h,
        Err(r) => return r,
    };
    let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(40).min(80);
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let end = (offset + limit).min(w.accounts.len());
    let items: Vec<&str> = (offset.min(end)..end).map(|i| w.account_json[i].as_str()).collect();
    (headers, format!("[{}]", items.join(","))).into_response()
}

async fn statuses(
    State(w): State<Arc<World>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut headers = match w.rate_limit() {
        Ok(h) => h,
        Err(r) => return r,
    };
    let Some(account) = id.parse::<usize>().ok().filter(|&i| i < w.accounts.len()) else {
        return (StatusCode::NOT_FOUND, headers, "{\"error\":\"Record not found\"}").into_response();
    };
    let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(20).clamp(1, 40);
    let id_of = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    let all = &w.by_account[account];
    // Posts strictly between min_id/since_id and max_id, ids ascending.
    let lo = id_of("min_id").or(id_of("since_id"));
    let start = lo.map_or(0, |lo| all.partition_point(|&n| status_id(n) <= lo));
    let end = id_of("max_id").map_or(all.len(), |hi| all.partition_point(|&n| status_id(n) < hi));
    let window = &all[start.min(end)..end];
    // min_id: the block right above it; otherwise the newest block below max_id.
    let chosen = if id_of("min_id").is_some() {
        &window[..limit.min(window.len())]
    } else {
        &window[window.len().saturating_sub(limit)..]
    };
    let mut body = String::with_capacity(chosen.len() * 2048 + 2);
    body.push('[');
    for (k, &n) in chosen.iter().rev().enumerate() {
        if k > 0 {
            body.push(',');
        }
        w.status_json(account, n, &mut body);
    }
    body.push(']');
    if let (Some(&oldest), Some(&newest)) = (chosen.first(), chosen.last()) {
        let path = format!("{}/api/v1/accounts/{account}/statuses", w.base);
        let link = format!(
            "<{path}?limit={limit}&max_id={}>; rel=\"next\", <{path}?limit={limit}&min_id={}>; rel=\"prev\"",
            status_id(oldest),
            status_id(newest)
        );
        headers.insert("link", HeaderValue::from_str(&link).unwrap());
    }
    (headers, body).into_response()
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");

    let setup = Instant::now();
    let total_posts = posts_to_serve();
    let world = Arc::new(World::build(base.clone(), total_posts));
    println!("e2e: {total_posts} posts by {ACCOUNTS} accounts generated in {:.1} s", setup.elapsed().as_secs_f64());

    // The reference: the same stages in this process, on the posts as the source will see them.
    let detector = Detector::load(&repo.join("patterns"), &Forces::embedded()).expect("load patterns/");
    let domain = addr.to_string();
    let mut expected: HashSet<String> = HashSet::new();
    let mut planted = 0usize;
    let mut planted_found = 0usize;
    let mut police_identified = 0usize;
    let stream_police: Vec<bool> = world.accounts.iter().map(|a| a.police).collect();
    {
        let spec = StreamSpec { accounts: ACCOUNTS, platform: "mastodon", ..StreamSpec::default() };
        let mut labels = Stream::new(spec);
        let risky: Vec<bool> = (0..total_posts).map(|_| labels.next_post().risky).collect();
        for (i, posts) in world.by_account.iter().enumerate() {
            let api: ApiAccount = serde_json::from_str(&world.account_json[i]).unwrap();
            let account = mastodon::to_account(&api, &base, &domain);
            let converted: Vec<(u32, exposure_monitor::model::Post)> = posts
                .iter()
                .filter_map(|&n| {
                    let p = &world.posts[n as usize];
                    let id = status_id(n);
                    let user = username(i, &world.accounts[i]);
                    let s = ApiStatus {
                        id: id.to_string(),
                        created_at: p.created_at,
                        content: content_html(&p.text),
                        spoiler_text: String::new(),
                        language: Some(p.lang.to_string()),
                        visibility: Some("public".into()),
                        uri: Some(format!("{base}/users/{user}/statuses/{id}")),
                        url: Some(format!("{base}/@{user}/{id}")),
                        reblog: None,
                        media_attachments: p.alt.iter().map(|a| ApiMedia { description: Some(a.to_string()) }).collect(),
                        account: api.clone(),
                    };
                    mastodon::to_post(&s, &account.platform_id, &base).map(|post| (n, post))
                })
                .collect();
            let mut signals = PostSignals::default();
            for (_, p) in &converted {
                signals.merge(detector.identifier.post_signals(p));
            }
            let verdict = detector.identifier.identify(&account, &signals);
            if verdict.identity != Identity::Serving {
                planted += converted.iter().filter(|(n, _)| risky[*n as usize]).count();
                continue;
            }
            if stream_police[i] {
                police_identified += 1;
            }
            for (n, p) in &converted {
                let hit = detector.classifier.classify(p).is_hit_content();
                if risky[*n as usize] {
                    planted += 1;
                    planted_found += usize::from(hit);
                }
                if hit {
                    expected.insert(p.platform_id.clone());
                }
            }
        }
    }
    let police_total = stream_police.iter().filter(|p| **p).count();
    println!(
        "e2e: reference: {police_identified} of {police_total} officer accounts identified; {} hits expected; \
         {planted_found} of {planted} planted risky posts among them; set up in {:.1} s",
        expected.len(),
        setup.elapsed().as_secs_f64()
    );

    let app = Router::new()
        .route("/api/v1/directory", get(directory))
        .route("/api/v1/accounts/{id}/statuses", get(statuses))
        .with_state(Arc::clone(&world));
    server_rt.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("monitor.db");
    let source = format!(
        r#"[[sources]]
name = "mastodon-local"
kind = "mastodon"
instance = "{base}"
directory = true
directory_local = true
directory_max_accounts = {ACCOUNTS}
first_scan_pages = 1000
statuses_per_request = 40
max_concurrent_requests = 32
max_requests_per_second = 5000
max_rate_limit_wait_secs = 60
"#
    );
    let config = common::config_with_sources(dir.path(), &source, "");

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let m = measure::run(measure::program("E2E_WRAP").arg("--config").arg(&config).arg("scan"));
    if m.exit_code != Some(0) {
        eprintln!(
            "stdout:\n{}\nstderr:\n{}",
            m.stdout,
            m.stderr.chars().rev().take(4000).collect::<String>().chars().rev().collect::<String>()
        );
    }
    m.assert_success("scan");
    let requests = world.requests.load(Ordering::Relaxed);
    let throttled = world.throttled.load(Ordering::Relaxed);

    // Check the database.
    let check_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (stored, distinct, cursor, posts_read, hits_reported, errors) = check_rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display())).await.unwrap();
        let rows: Vec<(String,)> = sqlx::query_as("SELECT post_platform_id FROM hits").fetch_all(&pool).await.unwrap();
        let stored: Vec<String> = rows.into_iter().map(|r| r.0).collect();
        let (distinct,): (i64,) =
            sqlx::query_as("SELECT count(DISTINCT post_platform_id) FROM hits").fetch_one(&pool).await.unwrap();
        let (cursor,): (Option<String>,) =
            sqlx::query_as("SELECT cursor FROM source_state WHERE source = 'mastodon-local'").fetch_one(&pool).await.unwrap();
        let (posts_read, hits, errors): (i64, i64, i64) =
            sqlx::query_as("SELECT posts_read, hits, errors FROM run_sources ORDER BY id DESC LIMIT 1")
                .fetch_one(&pool)
                .await
                .unwrap();
        (stored, distinct, cursor, posts_read, hits, errors)
    });
    let stored_set: HashSet<&str> = stored.iter().map(String::as_str).collect();
    let lost = expected.iter().filter(|p| !stored_set.contains(p.as_str())).count();
    let extra = stored_set.iter().filter(|p| !expected.contains(**p)).count();
    let duplicates = stored.len() - distinct as usize;
    let cursor = mastodon::Cursor::parse(cursor.as_deref()).expect("a Mastodon cursor");
    let mut wrong_marks = 0usize;
    for (i, posts) in world.by_account.iter().enumerate() {
        let want = posts.last().map(|&n| status_id(n).to_string());
        let got = cursor.accounts.get(&i.to_string()).and_then(|m| m.last.clone());
        if got != want {
            wrong_marks += 1;
        }
    }

    let secs = m.wall.as_secs_f64();
    let rss = m.peak_rss_mib();
    println!(
        "e2e: scan of {total_posts} posts: {secs:.1} s wall ({:.0} posts/s), peak RSS {rss:.1} MiB; load before: {}",
        total_posts as f64 / secs,
        load.trim()
    );
    println!(
        "e2e: {requests} requests, {throttled} answered 429 ({:.1}%); run summary: {posts_read} posts read, {hits_reported} hits, {errors} errors",
        throttled as f64 * 100.0 / requests.max(1) as f64
    );
    println!(
        "e2e: hits stored {} (expected {}): lost {lost}, unexpected {extra}, duplicates {duplicates}; cursor: pass finished {}, wrong account marks {wrong_marks}",
        stored.len(),
        expected.len(),
        cursor.pass.is_none()
    );
    let correct = lost == 0
        && extra == 0
        && duplicates == 0
        && wrong_marks == 0
        && cursor.pass.is_none()
        && posts_read as usize == total_posts;
    let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
    println!("e2e: goal no loss, no duplicate, all {total_posts} posts read, cursors right: {}", verdict(correct));
    println!("e2e: goal wall <= {GOAL_SECS:.0} s: {secs:.1} s -> {}", verdict(secs <= GOAL_SECS));
    println!("e2e: goal peak RSS <= {GOAL_RSS_MIB:.0} MB: {rss:.1} MiB -> {}", verdict(rss * 1.048576 <= GOAL_RSS_MIB));
    if !correct {
        std::process::exit(1);
    }
}
