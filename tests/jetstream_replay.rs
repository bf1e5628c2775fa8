//! Jetstream source against a WebSocket server on loopback that replays the genuine captured
//! events of `../shared/fixtures/platforms/bluesky/` plus generated ones (profiles of serving
//! officers, their posts that hit, non-police profiles, post-only authors, malformed frames),
//! filtered by `wantedCollections` and started at `cursor` as Jetstream does. The server drops
//! the connection mid-stream (or goes quiet, ending a scan); the stored hits and the posts read
//! must then equal those of an uninterrupted run: nothing lost, nothing read twice.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use exposure_monitor::config::Config;
use exposure_monitor::patterns::Detector;
use exposure_monitor::store::{HitFilter, SourceSummary, Store};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// One frame of the replayed stream: the time it is filed under and what is sent.
#[derive(Clone)]
struct Frame {
    time_us: i64,
    /// `Some(collection)` for commit events (filtered by wantedCollections).
    collection: Option<String>,
    text: String,
    malformed: bool,
}

/// What the server does on its n-th connection.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// Send this many frames, then cut the TCP connection without a close frame.
    Drop(usize),
    /// Send this many frames, then stay open and silent.
    Quiet(usize),
    /// Send every frame, this many milliseconds apart, then stay open and silent.
    Slow(u64),
}

#[derive(Default)]
struct Log {
    /// `cursor` asked for on each connection.
    cursors: Vec<Option<i64>>,
    /// Every query string, for checking the subscription.
    queries: Vec<String>,
}

#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn serve(frames: Arc<Vec<Frame>>, plans: Vec<Plan>) -> (SocketAddr, Arc<Mutex<Log>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Log::default()));
    let log2 = log.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let plan = plans.get(n).copied().unwrap_or(Plan::Quiet(usize::MAX));
            n += 1;
            let frames = frames.clone();
            let log = log2.clone();
            tokio::spawn(async move {
                let query = Arc::new(Mutex::new(String::new()));
                let q2 = query.clone();
                let cb = move |req: &Request, resp: Response| {
                    *q2.lock().unwrap() = req.uri().query().unwrap_or("").to_string();
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else { return };
                let query = query.lock().unwrap().clone();
                let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
                let cursor = params.iter().find(|(k, _)| k == "cursor").map(|(_, v)| v.parse::<i64>().unwrap());
                let wanted: Vec<&str> =
                    params.iter().filter(|(k, _)| k == "wantedCollections").map(|(_, v)| v.as_str()).collect();
                {
                    let mut l = log.lock().unwrap();
                    l.cursors.push(cursor);
                    l.queries.push(query.clone());
                }
                let (limit, pause) = match plan {
                    Plan::Drop(k) | Plan::Quiet(k) => (k, 0),
                    Plan::Slow(ms) => (usize::MAX, ms),
                };
                let mut sent = 0;
                for f in frames.iter() {
                    if sent == limit {
                        break;
                    }
                    if cursor.is_some_and(|c| f.time_us < c) {
                        continue;
                    }
                    if f.collection.as_deref().is_some_and(|c| !wanted.contains(&c)) {
                        continue;
                    }
                    if ws.send(Message::text(f.text.clone())).await.is_err() {
                        return;
                    }
                    sent += 1;
                    if pause > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    }
                }
                match plan {
                    // Cut without a close handshake, as a network failure would.
                    Plan::Drop(_) => drop(ws),
                    Plan::Quiet(_) | Plan::Slow(_) => {
                        // Read (and so answer pings) until the client goes away.
                        while let Some(Ok(_)) = ws.next().await {}
                    }
                }
            });
        }
    });
    (addr, log)
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

fn frame_of(text: String) -> Frame {
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    Frame {
        time_us: v["time_us"].as_i64().unwrap(),
        collection: v["commit"]["collection"].as_str().map(str::to_string),
        text,
        malformed: false,
    }
}

fn did_of(id: &str) -> String {
    format!("did:plc:demo{id}")
}

/// The genuine captured events, in time order, then the generated stream after them: each demo
/// account's profile (update), and the demo posts later (in other pages than the profiles), plus
/// hit-like posts by an author with no profile, and malformed frames.
fn stream(shared: &Path) -> (Vec<Frame>, usize) {
    let bsky = shared.join("fixtures/platforms/bluesky");
    let mut frames: Vec<Frame> = read_lines(&bsky.join("jetstream_v1_golden_10_events.jsonl"))
        .into_iter()
        .chain(read_lines(&bsky.join("jetstream_v1_capture_152_events.jsonl")))
        .map(frame_of)
        .collect();
    frames.sort_by_key(|f| f.time_us);
    let demo = common::repo().join("config/demo-data");
    let mut t = frames.last().unwrap().time_us + 1_000_000;
    // 200 ms apart: a 5 s rewind re-sends about 25 of them.
    let mut tick = || {
        t += 200_000;
        t
    };
    let mut malformed = 0;
    for line in read_lines(&demo.join("accounts.jsonl")) {
        let a: serde_json::Value = serde_json::from_str(&line).unwrap();
        let did = did_of(a["id"].as_str().unwrap());
        let ev = json!({"did": did, "time_us": tick(), "kind": "commit", "commit": {"rev": "3gen", "operation": "update",
            "collection": "app.bsky.actor.profile", "rkey": "self", "cid": "bafygen",
            "record": {"$type": "app.bsky.actor.profile", "displayName": a["display_name"], "description": a["bio"]}}});
        frames.push(frame_of(ev.to_string()));
    }
    for (i, line) in read_lines(&demo.join("posts.jsonl")).into_iter().enumerate() {
        let p: serde_json::Value = serde_json::from_str(&line).unwrap();
        let did = did_of(p["account_id"].as_str().unwrap());
        let rkey = format!("3gen{i:04}");
        let ev = json!({"did": did, "time_us": tick(), "kind": "commit", "commit": {"rev": "3gen", "operation": "create",
            "collection": "app.bsky.feed.post", "rkey": rkey, "cid": "bafygen",
            "record": {"$type": "app.bsky.feed.post", "createdAt": p["created_at"], "text": p["text"], "langs": ["en"]}}});
        frames.push(frame_of(ev.to_string()));
        if i % 9 == 4 {
            // Malformed frames among them: skipped and counted, never fatal.
            let at = tick();
            frames.push(Frame {
                time_us: at,
                collection: None,
                text: format!("{{\"did\":\"did:plc:x\",\"time_us\":{at},"),
                malformed: true,
            });
            malformed += 1;
        }
        if i % 11 == 0 {
            // A delete of that post and a post by someone whose profile never appears.
            let del = json!({"did": did, "time_us": tick(), "kind": "commit", "commit": {"rev": "3gen", "operation": "delete",
                "collection": "app.bsky.feed.post", "rkey": "3other"}});
            frames.push(frame_of(del.to_string()));
            let stranger = json!({"did": "did:plc:stranger", "time_us": tick(), "kind": "commit", "commit": {"rev": "3gen",
                "operation": "create", "collection": "app.bsky.feed.post", "rkey": format!("3str{i:04}"), "cid": "bafygen",
                "record": {"text": "Warrant going in at 5am Thursday on the Ringlestone estate", "createdAt": "2026-11-01T00:00:00Z"}}});
            frames.push(frame_of(stranger.to_string()));
        }
    }
    (frames, malformed)
}

fn config(dir: &Path, addr: SocketAddr) -> Config {
    let text = config_text(dir, addr);
    Config::from_toml(&dir.join("config.toml"), &text).unwrap()
}

fn config_text(dir: &Path, addr: SocketAddr) -> String {
    format!(
        r#"database = "{db}"
patterns = "{patterns}"
operator_contact = "ci@example.invalid"

[[sources]]
name = "jet"
kind = "jetstream"
hosts = ["ws://{addr}/subscribe"]
page_events = 7
page_ms = 400
max_seconds = 60
rewind_seconds = 5
max_backoff_seconds = 1

[mail]
from = "Exposure Monitor <monitor@example.invalid>"

[routing]
default = ["psd-triage@example.invalid"]
"#,
        db = dir.join("monitor.db").display(),
        patterns = common::repo().join("patterns").display(),
    )
}

type HitKey = (String, String, String, Vec<String>);

struct Outcome {
    hits: BTreeSet<HitKey>,
    hit_rows: usize,
    summaries: Vec<SourceSummary>,
    log: Arc<Mutex<Log>>,
    cursor: Option<String>,
}

/// Scan once per element of `scans` (each with its own server plans), all into one database.
async fn run(frames: &Arc<Vec<Frame>>, scans: &[Vec<Plan>]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut summaries = vec![];
    let mut log = None;
    let mut store_cfg = None;
    for plans in scans {
        let (addr, l) = serve(frames.clone(), plans.clone()).await;
        let cfg = config(dir.path(), addr);
        let store = Store::open(&cfg.database).await.unwrap();
        let detector = Detector::load(&cfg.patterns, &cfg.forces).unwrap();
        let report = exposure_monitor::scan::run(&cfg, &store, &detector, &|_| {}).await.unwrap();
        summaries.extend(report.summaries);
        store.close().await;
        log = Some(l);
        store_cfg = Some(cfg);
    }
    let cfg = store_cfg.unwrap();
    let store = Store::open(&cfg.database).await.unwrap();
    let rows = store
        .list_hits(&HitFilter { status: None, force: None, category: None, since: None, limit: Some(100_000) })
        .await
        .unwrap();
    let hits: BTreeSet<HitKey> = rows
        .iter()
        .map(|h| {
            (
                h.post_platform_id.clone(),
                h.account_platform_id.clone(),
                h.text.clone(),
                h.categories.iter().map(|c| c.as_str().to_string()).collect(),
            )
        })
        .collect();
    let cursor = store.cursor("jet").await.unwrap();
    store.close().await;
    Outcome { hit_rows: rows.len(), hits, summaries, log: log.unwrap(), cursor }
}

fn total(o: &Outcome, f: impl Fn(&SourceSummary) -> u64) -> u64 {
    o.summaries.iter().map(f).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_and_resumed_scans_lose_and_duplicate_nothing() {
    let Some(shared) = common::shared("fixtures/platforms/bluesky") else { return };
    let shared = shared.parent().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let (frames, malformed) = stream(&shared);
    let frames = Arc::new(frames);
    let wanted = frames
        .iter()
        .filter(|f| f.collection.as_deref().map_or(true, |c| c == "app.bsky.feed.post" || c == "app.bsky.actor.profile"))
        .count();
    let last_time = frames.last().unwrap().time_us;

    // Uninterrupted: one connection sends everything, then goes quiet; the scan ends on a quiet page.
    let whole = run(&frames, &[vec![Plan::Quiet(usize::MAX)]]).await;
    assert_eq!(whole.summaries.len(), 1);
    let s = &whole.summaries[0];
    assert!(s.error.is_none(), "{s:?}");
    assert_eq!(whole.cursor.as_deref(), Some(last_time.to_string().as_str()), "cursor = time_us of the last event");
    // 17 captured post creates + the reply in the golden file + the demo posts + the strangers'.
    let demo_posts = read_lines(&common::repo().join("config/demo-data/posts.jsonl")).len() as u64;
    let strangers = (0..demo_posts).filter(|i| i % 11 == 0).count() as u64;
    assert_eq!(s.posts_read, 18 + demo_posts + strangers, "{s:?}");
    assert_eq!(s.errors, malformed as u64, "each malformed frame skipped and counted once: {s:?}");
    assert!(!whole.hits.is_empty(), "no hits from the generated officers' posts");
    assert_eq!(whole.hit_rows, whole.hits.len());
    // The officers' posts that hit, identified from profiles stored on earlier pages.
    let kent = did_of("d01");
    assert!(
        whole.hits.iter().any(|h| h.1 == kent && h.2.contains("Elmtree Close")),
        "the Kent officer's post naming a victim is not a hit: {:#?}",
        whole.hits
    );
    for not_serving in ["d04", "d05", "d06", "d07"].map(did_of).iter().chain([&"did:plc:stranger".to_string()]) {
        assert!(!whole.hits.iter().any(|h| &h.1 == not_serving), "a hit for {not_serving}");
    }
    assert!(whole.hits.iter().all(|h| h.0.starts_with("at://did:plc:demo") && h.0.contains("/app.bsky.feed.post/")));
    // The subscription asks for posts and profiles only.
    let q = whole.log.lock().unwrap().queries[0].clone();
    assert!(q.contains("wantedCollections=app.bsky.feed.post") && q.contains("wantedCollections=app.bsky.actor.profile"), "{q}");
    assert!(!q.contains("compress"), "{q}");

    // Dropped mid-stream three times within one scan: reconnects rewind and dedupe.
    let dropped = run(&frames, &[vec![Plan::Drop(23), Plan::Drop(40), Plan::Drop(31), Plan::Quiet(usize::MAX)]]).await;
    let d = &dropped.summaries[0];
    assert!(d.error.is_none(), "{d:?}");
    assert_eq!(dropped.hits, whole.hits, "hits differ after dropped connections");
    assert_eq!(dropped.hit_rows, whole.hit_rows);
    assert_eq!(d.posts_read, s.posts_read, "posts lost or read twice across reconnections");
    assert_eq!(dropped.cursor, whole.cursor);
    let cursors = dropped.log.lock().unwrap().cursors.clone();
    assert_eq!(cursors.len(), 4, "one connection per drop plus the first");
    assert_eq!(cursors[0], None);
    for c in &cursors[1..] {
        assert!(c.is_some(), "a reconnection must resume from a cursor: {:?}", cursors);
    }
    assert!(d.errors >= malformed as u64, "{d:?}");

    // Two scans: the first ends when the server goes quiet part-way; the second resumes from the
    // stored cursor (rewound, so the server re-sends events the first scan already stored).
    let first_part = wanted * 2 / 3;
    let resumed = run(&frames, &[vec![Plan::Quiet(first_part)], vec![Plan::Quiet(usize::MAX)]]).await;
    assert_eq!(resumed.summaries.len(), 2);
    assert!(resumed.summaries.iter().all(|s| s.error.is_none()), "{:?}", resumed.summaries);
    assert!(resumed.summaries[0].posts_read > 0 && resumed.summaries[1].posts_read > 0);
    assert_eq!(resumed.hits, whole.hits, "hits differ after resuming from the stored cursor");
    assert_eq!(resumed.hit_rows, whole.hit_rows);
    assert_eq!(total(&resumed, |s| s.posts_read), s.posts_read, "posts lost or read twice across scans");
    let asked = resumed.log.lock().unwrap().cursors[0].expect("the second scan resumes from the stored cursor");
    let stored_after_first: i64 = frames
        .iter()
        .filter(|f| f.collection.as_deref().map_or(true, |c| c == "app.bsky.feed.post" || c == "app.bsky.actor.profile"))
        .take(first_part)
        .filter(|f| !f.malformed)
        .map(|f| f.time_us)
        .max()
        .unwrap();
    assert_eq!(asked, stored_after_first - 5_000_000, "resume = stored cursor rewound by rewind_seconds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_host_is_switched_for_the_next() {
    let Some(shared) = common::shared("fixtures/platforms/bluesky") else { return };
    let shared = shared.parent().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let (frames, _) = stream(&shared);
    let frames = Arc::new(frames);
    let (addr, log) = serve(frames.clone(), vec![Plan::Quiet(usize::MAX)]).await;
    // A port nobody listens on (bound, then released).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), addr);
    let exposure_monitor::config::SourceConfig::Jetstream(j) = &mut cfg.sources[0].kind else { panic!() };
    j.hosts = vec![format!("ws://{dead}/subscribe"), format!("ws://{addr}/subscribe")];
    j.failures_before_switch = 2;
    let store = Store::open(&cfg.database).await.unwrap();
    let detector = Detector::load(&cfg.patterns, &cfg.forces).unwrap();
    let report = exposure_monitor::scan::run(&cfg, &store, &detector, &|_| {}).await.unwrap();
    let s = &report.summaries[0];
    assert!(s.error.is_none(), "{s:?}");
    assert!(s.posts_read > 0 && s.hits > 0, "{s:?}");
    assert_eq!(log.lock().unwrap().cursors.len(), 1);

    // No host at all: the source fails with a message naming the host, the scan carries on.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), dead);
    let exposure_monitor::config::SourceConfig::Jetstream(j) = &mut cfg.sources[0].kind else { panic!() };
    j.max_seconds = 3;
    let store = Store::open(&cfg.database).await.unwrap();
    let report = exposure_monitor::scan::run(&cfg, &store, &detector, &|_| {}).await.unwrap();
    let err = report.summaries[0].error.clone().expect("an unreachable host is an error");
    assert!(err.contains(&dead.to_string()), "{err}");
    assert_eq!(store.cursor("jet").await.unwrap(), None);
}

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_exposure-monitor"))
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `watch` stores pages as it reads, leaves the Jetstream source to it while it runs (a `scan`
/// skips it, a second `watch` is refused), and on SIGTERM stops after storing the page it was
/// reading: a later scan resumes from there and the result equals an uninterrupted run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stores_continuously_and_stops_cleanly_on_sigterm() {
    let Some(shared) = common::shared("fixtures/platforms/bluesky") else { return };
    let shared = shared.parent().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let (frames, _) = stream(&shared);
    let frames = Arc::new(frames);
    let whole = run(&frames, &[vec![Plan::Quiet(usize::MAX)]]).await;
    let whole_posts = whole.summaries[0].posts_read;

    let (addr, _log) = serve(frames.clone(), vec![Plan::Slow(100)]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config_text(dir.path(), addr)).unwrap();
    let cfg = Config::load(&path).unwrap();
    let mut child = bin().arg("--config").arg(&path).arg("watch").spawn().unwrap();
    let store = Store::open(&cfg.database).await.unwrap();
    // Pages are stored while watch runs.
    wait_until("a stored page", || async { store.cursor("jet").await.unwrap().is_some() }).await;

    // A second watch is refused; a scan leaves the watched source alone.
    let second = bin().arg("--config").arg(&path).arg("watch").output().unwrap();
    assert_eq!(second.status.code(), Some(3), "{}", String::from_utf8_lossy(&second.stderr));
    let scan = bin().arg("--config").arg(&path).arg("scan").output().unwrap();
    assert!(scan.status.success(), "{}", String::from_utf8_lossy(&scan.stderr));
    let out = String::from_utf8_lossy(&scan.stdout);
    assert!(!out.lines().any(|l| l.starts_with("jet ")), "scan read the watched source:\n{out}");

    // Stop mid-stream.
    let status = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "watch did not stop on SIGTERM");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(code.success(), "watch exited with {code:?}");
    let st = store.status().await.unwrap();
    let watched: Vec<&SourceSummary> = st.runs.iter().flat_map(|r| r.summaries.iter()).filter(|s| s.source == "jet").collect();
    assert_eq!(watched.len(), 1, "{:?}", st.runs);
    assert!(st.runs.iter().all(|r| r.finished_at.is_some()), "a run left unfinished: {:?}", st.runs);
    let watched_posts = watched[0].posts_read;
    let stopped_at: i64 = store.cursor("jet").await.unwrap().unwrap().parse().unwrap();
    assert!(stopped_at < frames.last().unwrap().time_us, "SIGTERM came too late to stop mid-stream");
    store.close().await;

    // A scan resumes where watch stopped: together they read and stored exactly what an
    // uninterrupted run did.
    let (addr, log) = serve(frames.clone(), vec![Plan::Quiet(usize::MAX)]).await;
    let cfg = config(dir.path(), addr);
    let store = Store::open(&cfg.database).await.unwrap();
    let detector = Detector::load(&cfg.patterns, &cfg.forces).unwrap();
    let report = exposure_monitor::scan::run(&cfg, &store, &detector, &|_| {}).await.unwrap();
    assert_eq!(log.lock().unwrap().cursors, vec![Some(stopped_at - 5_000_000)]);
    assert_eq!(watched_posts + report.summaries[0].posts_read, whole_posts, "posts lost or read twice across SIGTERM");
    let rows = store
        .list_hits(&HitFilter { status: None, force: None, category: None, since: None, limit: Some(100_000) })
        .await
        .unwrap();
    let hits: BTreeSet<HitKey> = rows
        .iter()
        .map(|h| {
            (
                h.post_platform_id.clone(),
                h.account_platform_id.clone(),
                h.text.clone(),
                h.categories.iter().map(|c| c.as_str().to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(hits, whole.hits);
    assert_eq!(rows.len(), whole.hit_rows);
}

/// An author whose profile never comes down the stream, but whose posts alone identify them as
/// serving police (per the identity rules), has the post that hits stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_author_identified_by_posts_alone_is_classified() {
    let did = "did:plc:postsonly";
    let mut t = 1_780_000_000_000_000i64;
    let frames: Vec<Frame> = read_lines(&common::repo().join("config/demo-data/posts.jsonl"))
        .into_iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(&l).unwrap())
        .filter(|p| p["account_id"] == "d11")
        .enumerate()
        .map(|(i, p)| {
            t += 100_000;
            frame_of(
                json!({"did": did, "time_us": t, "kind": "commit", "commit": {"rev": "3gen", "operation": "create",
                    "collection": "app.bsky.feed.post", "rkey": format!("3po{i}"), "cid": "bafygen",
                    "record": {"text": p["text"], "createdAt": p["created_at"]}}})
                .to_string(),
            )
        })
        .collect();
    assert_eq!(frames.len(), 3);
    let out = run(&Arc::new(frames), &[vec![Plan::Quiet(usize::MAX)]]).await;
    assert!(
        out.hits.iter().any(|h| h.1 == did && h.2.contains("Mill Lane")),
        "the post naming a suspect's address is not a hit: {:#?} {:?}",
        out.hits,
        out.summaries
    );
    assert_eq!(out.summaries[0].identified, 1, "{:?}", out.summaries);
}
