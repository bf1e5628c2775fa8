//! Jetstream replay speed: the real release binary's `scan` reading a large generated Jetstream
//! stream from a WebSocket server on loopback, parsing, identifying, classifying and storing it
//! with the cursor saved.
//!
//!     cargo bench --bench jetstream
//!
//! Goal (issue 6): >= 100k events/s per core parsed, identified, classified and stored, with the
//! cursor saved. Events per core-second are events / the child's CPU time (user + system, all
//! threads); events per wall second are reported too. Peak RSS is the child's.
//!
//! The stream (`JETSTREAM_EVENTS`, default 600,000 frames) is shaped like the genuine captured
//! events in `../shared/fixtures/platforms/bluesky/` (`{did, time_us, kind, commit: {rev,
//! operation, collection, rkey, record, cid}}`): mostly post creates by the synthetic
//! population of `support/stream.rs` (~50% not English, replies, image alt texts), each
//! account's profile (create, then now and then an update) before its first post, with the
//! few % of officers self-identifying in it, post deletes, and identity/account events (which
//! Jetstream sends whatever the collection filter). The server honours `wantedCollections` and
//! `cursor`, sends everything as fast as the client reads, then stays open and silent, so the
//! scan ends on a quiet page as it does when caught up.
//!
//! `JETSTREAM_WRAP` (a command line, split on whitespace) runs the child under that command, to
//! profile the scan on the same stream, e.g.
//!
//!     JETSTREAM_EVENTS=60000 JETSTREAM_WRAP="valgrind --tool=callgrind --callgrind-out-file=/tmp/jet.cg" \
//!         cargo bench --bench jetstream

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exposure_monitor::store::{HitFilter, Store};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/measure.rs"]
mod measure;
#[path = "support/stream.rs"]
mod stream;

const GOAL_EVENTS_PER_CORE_SEC: f64 = 100_000.0;
const PAGE_MS: u64 = 1000;

struct Frame {
    time_us: i64,
    /// `Some` for commit events (filtered by `wantedCollections`).
    collection: Option<&'static str>,
    text: String,
}

#[derive(Default, Debug)]
struct Mix {
    posts: usize,
    risky_posts: usize,
    officer_posts: usize,
    profiles: usize,
    police_profiles: usize,
    deletes: usize,
    other: usize,
}

const POST: &str = "app.bsky.feed.post";
const PROFILE: &str = "app.bsky.actor.profile";

/// A record key shaped like a TID (13 base32-sortable characters).
fn tid(n: u64) -> String {
    const ALPHABET: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";
    let mut v = (1u64 << 62) | n;
    let mut out = [b'2'; 13];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(v & 31) as usize];
        v >>= 5;
    }
    String::from_utf8(out.to_vec()).expect("ASCII")
}

fn cid(rng: &mut StdRng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let tail: String = (0..52).map(|_| ALPHABET[rng.gen_range(0..32)] as char).collect();
    format!("bafyrei{tail}")
}

/// The generated stream, in time order, and what it holds.
fn generate(events: usize) -> (Vec<Frame>, Mix) {
    let mut s = stream::Stream::new(stream::StreamSpec { platform: "bluesky", ..Default::default() });
    let mut rng = StdRng::seed_from_u64(7_000_001);
    let mut profiled = vec![false; s.accounts.len()];
    let mut frames: Vec<Frame> = Vec::with_capacity(events);
    let mut mix = Mix::default();
    // 2026-11-01 00:00 UTC, ~40 µs apart (a busy network): long past, so the scan is never
    // "caught up" and reads until the server goes quiet.
    let mut t: i64 = 1_793_491_200_000_000;
    let mut seq: u64 = 0;
    let mut next_time = |rng: &mut StdRng| {
        t += rng.gen_range(1..80);
        t
    };
    let profile = |rng: &mut StdRng, a: &stream::SynthAccount, time_us: i64, op: &str, seq: u64| {
        let created = "2025-03-02T10:11:12.000Z";
        json!({"did": a.account.platform_id, "time_us": time_us, "kind": "commit", "commit": {
            "rev": tid(seq), "operation": op, "collection": PROFILE, "rkey": "self",
            "record": {"$type": PROFILE,
                "avatar": {"$type": "blob", "ref": {"$link": cid(rng)}, "mimeType": "image/jpeg", "size": rng.gen_range(20_000..900_000)},
                "createdAt": created, "description": a.account.bio, "displayName": a.account.display_name},
            "cid": cid(rng)}})
        .to_string()
    };
    while frames.len() < events {
        let p = s.next_post();
        let author = p.author;
        if !profiled[author] {
            profiled[author] = true;
            let a = &s.accounts[author];
            let time_us = next_time(&mut rng);
            seq += 1;
            frames.push(Frame { time_us, collection: Some(PROFILE), text: profile(&mut rng, a, time_us, "create", seq) });
            mix.profiles += 1;
            mix.police_profiles += usize::from(a.police);
        } else if rng.gen_ratio(1, 100) {
            // A profile update (new avatar, edited bio) of someone already seen.
            let a = &s.accounts[author];
            let time_us = next_time(&mut rng);
            seq += 1;
            frames.push(Frame { time_us, collection: Some(PROFILE), text: profile(&mut rng, a, time_us, "update", seq) });
            mix.profiles += 1;
            mix.police_profiles += usize::from(a.police);
        }
        let did = &s.accounts[author].account.platform_id;
        let time_us = next_time(&mut rng);
        seq += 1;
        let rkey = tid(seq);
        let mut record = json!({"$type": POST, "createdAt": p.post.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "langs": [p.lang], "text": p.post.text});
        if rng.gen_ratio(3, 10) {
            let parent = format!("at://did:plc:synth{:08}/{POST}/{}", rng.gen_range(0..s.accounts.len()), tid(seq / 2));
            let c = cid(&mut rng);
            record["reply"] = json!({"parent": {"cid": c, "uri": parent}, "root": {"cid": c, "uri": parent}});
        }
        if let Some(alt) = p.post.alt_texts.first() {
            record["embed"] = json!({"$type": "app.bsky.embed.images", "images": [{"alt": alt, "aspectRatio": {"height": 1080, "width": 1440},
                "image": {"$type": "blob", "ref": {"$link": cid(&mut rng)}, "mimeType": "image/jpeg", "size": 312_004}}]});
        }
        let ev = json!({"did": did, "time_us": time_us, "kind": "commit", "commit": {"rev": rkey, "operation": "create",
            "collection": POST, "rkey": rkey, "record": record, "cid": cid(&mut rng)}});
        frames.push(Frame { time_us, collection: Some(POST), text: ev.to_string() });
        mix.posts += 1;
        mix.risky_posts += usize::from(p.risky);
        mix.officer_posts += usize::from(s.accounts[author].police);
        if rng.gen_ratio(1, 30) {
            let time_us = next_time(&mut rng);
            seq += 1;
            let ev = json!({"did": did, "time_us": time_us, "kind": "commit", "commit": {"rev": tid(seq), "operation": "delete",
                "collection": POST, "rkey": tid(seq.saturating_sub(40))}});
            frames.push(Frame { time_us, collection: Some(POST), text: ev.to_string() });
            mix.deletes += 1;
        }
        if rng.gen_ratio(1, 200) {
            let time_us = next_time(&mut rng);
            let ev = if rng.gen_bool(0.5) {
                json!({"did": did, "time_us": time_us, "kind": "identity", "identity": {"did": did,
                    "handle": s.accounts[author].account.handle, "seq": seq, "time": "2026-11-01T00:00:00.000Z"}})
            } else {
                json!({"did": did, "time_us": time_us, "kind": "account", "account": {"active": true, "did": did, "seq": seq,
                    "time": "2026-11-01T00:00:00.000Z"}})
            };
            frames.push(Frame { time_us, collection: None, text: ev.to_string() });
            mix.other += 1;
        }
    }
    (frames, mix)
}

/// Serve `frames` to every connection (filtered and started at `cursor` as Jetstream does),
/// then stay open and silent. Returns the address and when the last frame of the first
/// connection was handed to the socket.
async fn serve(frames: Arc<Vec<Frame>>) -> (SocketAddr, Arc<std::sync::Mutex<Option<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    let sent_all = Arc::new(std::sync::Mutex::new(None));
    let sent2 = sent_all.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            tcp.set_nodelay(true).ok();
            let frames = frames.clone();
            let sent_all = sent2.clone();
            tokio::spawn(async move {
                let query = Arc::new(std::sync::Mutex::new(String::new()));
                let q2 = query.clone();
                #[allow(clippy::result_large_err)]
                let cb = move |req: &Request, resp: Response| {
                    *q2.lock().unwrap() = req.uri().query().unwrap_or("").to_string();
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else { return };
                let query = query.lock().unwrap().clone();
                let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
                let cursor = params.iter().find(|(k, _)| k == "cursor").and_then(|(_, v)| v.parse::<i64>().ok());
                let wanted: Vec<String> =
                    params.iter().filter(|(k, _)| k == "wantedCollections").map(|(_, v)| v.clone()).collect();
                let mut pending = 0;
                for f in frames.iter() {
                    if cursor.is_some_and(|c| f.time_us < c) || f.collection.is_some_and(|c| !wanted.iter().any(|w| w == c)) {
                        continue;
                    }
                    if ws.feed(Message::text(f.text.clone())).await.is_err() {
                        return;
                    }
                    pending += 1;
                    if pending == 256 {
                        pending = 0;
                        if ws.flush().await.is_err() {
                            return;
                        }
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
                sent_all.lock().unwrap().get_or_insert_with(Instant::now);
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (addr, sent_all)
}

/// The benchmark's config: the shared test config (database and outbox in `dir`, the shipped
/// patterns, the test routes) with one Jetstream source reading the local server.
fn write_config(dir: &Path, addr: SocketAddr) -> std::path::PathBuf {
    let source = format!(
        "[[sources]]\nname = \"jet\"\nkind = \"jetstream\"\nhosts = [\"ws://{addr}/subscribe\"]\npage_ms = {PAGE_MS}\nmax_seconds = 600\n"
    );
    common::config_with_sources(dir, &source, "")
}

fn main() {
    let n: usize = std::env::var("JETSTREAM_EVENTS").ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(600_000);
    let started = Instant::now();
    let (frames, mix) = generate(n);
    let bytes: usize = frames.iter().map(|f| f.text.len()).sum();
    let last_time = frames.iter().map(|f| f.time_us).max().expect("frames");
    println!(
        "jetstream benchmark: {} frames ({:.0} MB of JSON, mean {} bytes), generated in {:.1} s",
        frames.len(),
        bytes as f64 / 1e6,
        bytes / frames.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "  {} post creates ({} by officers, {} risky), {} profile events ({} self-identifying), {} deletes, {} identity/account",
        mix.posts, mix.officer_posts, mix.risky_posts, mix.profiles, mix.police_profiles, mix.deletes, mix.other
    );
    let frames = Arc::new(frames);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a tokio runtime");
    let (addr, sent_all) = rt.block_on(serve(frames.clone()));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = write_config(dir.path(), addr);

    // `JETSTREAM_WRAP`: a profiler to run the scan under (see the header).
    let m = measure::run(measure::program("JETSTREAM_WRAP").arg("--config").arg(&config).arg("scan"));
    m.assert_success("exposure-monitor scan");
    let events = frames.len() as f64;
    // The scan ends on one quiet page after the last event.
    let busy_wall = m.wall.saturating_sub(Duration::from_millis(PAGE_MS));
    let per_core = events / m.cpu.as_secs_f64();
    println!(
        "scan: {:.2} s wall ({:.2} s without the final quiet page of {PAGE_MS} ms), {:.2} s CPU, peak RSS {:.0} MiB",
        m.wall.as_secs_f64(),
        busy_wall.as_secs_f64(),
        m.cpu.as_secs_f64(),
        m.peak_rss_mib()
    );
    println!("  {:.0} events/s per core (events / CPU s), {:.0} events/s wall", per_core, events / busy_wall.as_secs_f64());
    let _ = sent_all;
    for line in m.stdout.lines().chain(m.stderr.lines()).filter(|l| !l.trim().is_empty()).take(12) {
        println!("  | {line}");
    }

    // What was stored: the cursor is the last event's time_us, and the officers' risky posts hit.
    let (cursor, hits) = rt.block_on(async {
        let store = Store::open(&dir.path().join("monitor.db")).await.expect("open the benchmark's database");
        let cursor = store.cursor("jet").await.expect("read the cursor");
        let hits = store
            .list_hits(&HitFilter { status: None, force: None, category: None, since: None, limit: Some(1_000_000) })
            .await
            .expect("list hits");
        store.close().await;
        (cursor, hits.len())
    });
    let cursor_ok = cursor.as_deref() == Some(last_time.to_string().as_str());
    println!(
        "stored: cursor {} ({}), {hits} hits",
        cursor.as_deref().unwrap_or("none"),
        if cursor_ok { "= the last event's time_us" } else { "NOT the last event's time_us" }
    );
    assert!(cursor_ok, "the saved cursor {cursor:?} is not the last event's time_us {last_time}");
    assert!(hits > 0, "no hits stored from {} risky officer posts", mix.risky_posts);
    let met = per_core >= GOAL_EVENTS_PER_CORE_SEC;
    println!(
        "goal >= {:.0}k events/s/core parsed, identified, classified and stored: {} ({:.0}k)",
        GOAL_EVENTS_PER_CORE_SEC / 1000.0,
        if met { "MET" } else { "MISSED" },
        per_core / 1000.0
    );
    rt.shutdown_timeout(Duration::from_secs(1));
}
