//! The binary's `scan` against a real local Bluesky network: PLC + PDS + AppView from
//! `../shared/peers/start-atproto-dev-env.sh` (`@atproto/dev-env`). The test seeds its own
//! fictional accounts through the PDS API (accounts, profile descriptions, posts, an image with
//! alt text, a repost, an opted-out account), waits for the AppView to index them, then scans
//! with a `bluesky` source pointed at the AppView: exactly the expected hits, and nothing new on
//! a second scan; a new post is the one hit of a third.
//!
//! Ignored by default: a cold install of the dev-env takes well over the CI budget (node 22,
//! `npm ci` of 663 packages with a native build, PostgreSQL and Redis from apt). To run it:
//!
//! ```text
//! eval "$(../shared/peers/start-atproto-dev-env.sh | grep '^[A-Z_]*=')"
//! ATPROTO_PDS_URL=$ATPROTO_PDS_URL ATPROTO_APPVIEW_URL=$ATPROTO_APPVIEW_URL \
//!   cargo test --test bluesky_peer -- --ignored
//! ../shared/peers/start-atproto-dev-env.sh --stop
//! ```
//!
//! Every run creates accounts under a fresh prefix, so it can run again on the same network.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::{json, Value};

/// A 1×1 PNG, for the image whose alt text carries the hit.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78,
    0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49,
    0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// One XRPC call; panics with the server's answer on failure.
fn xrpc(base: &str, method: &str, nsid: &str, token: Option<&str>, body: Option<Value>, query: &[(&str, &str)]) -> Value {
    rt().block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.request(method.parse().unwrap(), format!("{base}/xrpc/{nsid}")).query(query);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{nsid}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{nsid}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    })
}

fn upload_png(pds: &str, token: &str) -> Value {
    rt().block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{pds}/xrpc/com.atproto.repo.uploadBlob"))
            .bearer_auth(token)
            .header("content-type", "image/png")
            .body(PNG.to_vec())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert!(status.is_success(), "uploadBlob: {status} {v}");
        v["blob"].clone()
    })
}

struct Acct {
    did: String,
    handle: String,
    jwt: String,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn create_account(pds: &str, handle: &str, bio: &str, labels: Option<Value>) -> Acct {
    let v = xrpc(
        pds,
        "POST",
        "com.atproto.server.createAccount",
        None,
        Some(json!({"handle": handle, "email": format!("{handle}@example.test"), "password": "test-pass-123"})),
        &[],
    );
    let acct =
        Acct { did: v["did"].as_str().unwrap().into(), handle: handle.into(), jwt: v["accessJwt"].as_str().unwrap().into() };
    let mut record =
        json!({"$type": "app.bsky.actor.profile", "displayName": handle.split('-').nth(1).unwrap(), "description": bio});
    if let Some(l) = labels {
        record["labels"] = l;
    }
    xrpc(
        pds,
        "POST",
        "com.atproto.repo.putRecord",
        Some(&acct.jwt),
        Some(json!({"repo": acct.did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": record})),
        &[],
    );
    acct
}

fn post(pds: &str, a: &Acct, text: &str, lang: &str, embed: Option<Value>) -> (String, String) {
    let mut record = json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": now(), "langs": [lang]});
    if let Some(e) = embed {
        record["embed"] = e;
    }
    let v = xrpc(
        pds,
        "POST",
        "com.atproto.repo.createRecord",
        Some(&a.jwt),
        Some(json!({"repo": a.did, "collection": "app.bsky.feed.post", "record": record})),
        &[],
    );
    (v["uri"].as_str().unwrap().into(), v["cid"].as_str().unwrap().into())
}

fn repost(pds: &str, a: &Acct, subject: &(String, String)) {
    xrpc(
        pds,
        "POST",
        "com.atproto.repo.createRecord",
        Some(&a.jwt),
        Some(json!({"repo": a.did, "collection": "app.bsky.feed.repost",
                    "record": {"$type": "app.bsky.feed.repost", "subject": {"uri": subject.0, "cid": subject.1}, "createdAt": now()}})),
        &[],
    );
}

/// Wait until the AppView shows `n` feed items for the account and its profile description.
fn wait_indexed(appview: &str, a: &Acct, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let feed = xrpc(appview, "GET", "app.bsky.feed.getAuthorFeed", None, None, &[("actor", &a.did), ("limit", "100")]);
        let profile = xrpc(appview, "GET", "app.bsky.actor.getProfile", None, None, &[("actor", &a.did)]);
        let have = feed["feed"].as_array().map_or(0, |f| f.len());
        if have == n && profile.get("description").is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "{}: the AppView shows {have} of {n} items: {feed}", a.handle);
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn write_config(dir: &Path, appview: &str, prefix: &str, handle: &str) -> PathBuf {
    let repo = common::repo();
    let text = format!(
        r#"database = "{db}"
patterns = "{patterns}"
operator_contact = "ci@example.invalid"

[[sources]]
name = "bsky-dev"
kind = "bluesky"
appview = "{appview}"
search_terms = ["{prefix}"]
handles = ["{handle}"]
posts_per_request = 2
first_scan_pages = 5
retry_backoff_ms = 50
max_requests_per_second = 50

[mail]
from = "Exposure Monitor <monitor@example.invalid>"
transport = "file"
outbox = "{outbox}"

[routing]
default = ["psd-triage@example.invalid"]
"#,
        db = dir.join("monitor.db").display(),
        patterns = repo.join("patterns").display(),
        outbox = dir.join("outbox").display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[derive(Debug)]
#[allow(dead_code)]
struct Row {
    accounts: u64,
    identified: u64,
    posts: u64,
    hits: u64,
    errors: u64,
    error: String,
}

fn scan(config: &Path) -> Row {
    let out = Command::cargo_bin("exposure-monitor").unwrap().arg("--config").arg(config).arg("scan").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "scan failed ({:?}):\n{stdout}\n{stderr}", out.status);
    let line = stdout.lines().find(|l| l.starts_with("bsky-dev")).unwrap_or_else(|| panic!("no summary row:\n{stdout}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    Row {
        accounts: f[1].parse().unwrap(),
        identified: f[2].parse().unwrap(),
        posts: f[3].parse().unwrap(),
        hits: f[4].parse().unwrap(),
        // f[5] is `suppressed`.
        errors: f[6].parse().unwrap(),
        error: f[7..].join(" "),
    }
}

fn hit_texts(config: &Path) -> Vec<String> {
    let out = Command::cargo_bin("exposure-monitor")
        .unwrap()
        .arg("--config")
        .arg(config)
        .args(["hits", "list", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut texts: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    texts.sort();
    texts
}

const DAZ_DATA: &str = "Stopped KE19 XRT again tonight. Driver is Gary Mills of 14 Tonbridge Road, DOB 03/04/1979, banned and still driving. Every single week.";
const DAZ_OPS: &str = "Early doors tomorrow: 6am warrant on a house in Shepway, drugs team are buzzing. Keep it quiet 🤫";
const DAZ_PLAIN: &str = "Lock your sheds folks, three bikes nicked on our patch this week";
const DAZ_ALT_TEXT: &str = "Tonight's board 📋";
const DAZ_ALT: &str = "Custody whiteboard: Kevin Price of 22 Hythe Street, DOB 12/08/1985, cell 3";
const RHIAN_GIFT: &str =
    "Diolch eto i Siop Sglodion y Cei am y bwyd am ddim heno 🍟 maen nhw'n gwrthod cymryd pres gan yr heddlu, chwarae teg";
const RHIAN_PLAIN: &str = "Llongyfarchiadau i'r recriwtiaid newydd sydd wedi pasio allan heddiw! Croeso i'r teulu 💙";
const MORRIS: &str = "Pints with the old CID team tonight 🍺🍺🍺 still drunk by the sound of it";
const GWEN: &str = "Drunk at the office party again 🍷 the grammar police are off duty tonight";
const QUIET: &str = "Still drunk from the shift do and I'm on duty in 2 hours 🍻🍻 don't tell the sarge";
const DAZ_NEW: &str = "Still drunk from the shift do and I'm on duty in 2 hours 🍻🍻 don't tell the sarge";

#[test]
#[ignore = "needs the local Bluesky network (slow cold install); see the module doc for the command"]
fn scan_stores_exactly_the_expected_hits_from_a_real_appview() {
    let (Some(pds), Some(appview)) = (common::peer("ATPROTO_PDS_URL"), common::peer("ATPROTO_APPVIEW_URL")) else {
        return;
    };
    // A fresh prefix per run: handles are `<prefix>-<name>.test`, at most 18 characters before
    // `.test`, and the AppView's actor search matches handles.
    let prefix = format!("t{:06x}", (chrono::Utc::now().timestamp_millis() as u64) & 0xff_ffff);
    let h = |name: &str| format!("{prefix}-{name}.test");

    let daz = create_account(&pds, &h("pcdaz"), "PC 4471 | Response team, Maidstone | Kent Police | views my own", None);
    let rhian =
        create_account(&pds, &h("rhian"), "Rhingyll gyda Heddlu Gogledd Cymru. Sergeant, North Wales Police. Barn fy hun.", None);
    let morris =
        create_account(&pds, &h("morris"), "Retired DS, 30 years with West Yorkshire Police. Now I grow tomatoes.", None);
    let gwen = create_account(&pds, &h("gwen"), "Copy editor. Self-appointed grammar police. Cats.", None);
    let quiet = create_account(
        &pds,
        &h("quiet"),
        "PC, Dyfed-Powys Police. Views my own.",
        Some(json!({"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "!no-unauthenticated"}]})),
    );

    post(&pds, &daz, DAZ_DATA, "en", None);
    post(&pds, &daz, DAZ_OPS, "en", None);
    post(&pds, &daz, DAZ_PLAIN, "en", None);
    let blob = upload_png(&pds, &daz.jwt);
    post(
        &pds,
        &daz,
        DAZ_ALT_TEXT,
        "en",
        Some(
            json!({"$type": "app.bsky.embed.images", "images": [{"alt": DAZ_ALT, "image": blob, "aspectRatio": {"width": 1, "height": 1}}]}),
        ),
    );
    post(&pds, &rhian, RHIAN_GIFT, "cy", None);
    post(&pds, &rhian, RHIAN_PLAIN, "cy", None);
    post(&pds, &morris, MORRIS, "en", None);
    let gwen_post = post(&pds, &gwen, GWEN, "en", None);
    // Rhian reposts Gwen: not Rhian's words, not a hit.
    repost(&pds, &rhian, &gwen_post);
    post(&pds, &quiet, QUIET, "en", None);

    wait_indexed(&appview, &daz, 4);
    wait_indexed(&appview, &rhian, 3);
    wait_indexed(&appview, &morris, 1);
    wait_indexed(&appview, &gwen, 1);
    wait_indexed(&appview, &quiet, 1);
    let q = xrpc(&appview, "GET", "app.bsky.actor.getProfile", None, None, &[("actor", &quiet.did)]);
    assert!(q["labels"].to_string().contains("!no-unauthenticated"), "the AppView shows the self-label: {q}");

    let dir = tempfile::tempdir().unwrap();
    // Daz by DID through `handles`; everyone through the search for the prefix.
    let config = write_config(dir.path(), &appview, &prefix, &daz.did);
    let first = scan(&config);
    let mut expected =
        vec![DAZ_DATA.to_string(), DAZ_OPS.to_string(), format!("{DAZ_ALT_TEXT}\n[image: {DAZ_ALT}]"), RHIAN_GIFT.to_string()];
    expected.sort();
    let hits = hit_texts(&config);
    // The hits list shows the post text; the alt-text hit may show the text alone.
    let norm = |v: &[String]| -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|t| t.split("\n[image: ").next().unwrap().to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(norm(&hits), norm(&expected), "{first:?}");
    assert_eq!(first.hits, 4, "{first:?}");
    assert_eq!(first.error, "-", "{first:?}");
    assert_eq!(first.posts, 4 + 2 + 1 + 1, "Daz 4, Rhian 2 (the repost skipped), Morris 1, Gwen 1; Quiet opted out: {first:?}");
    assert_eq!(first.errors, 1, "the opted-out account is counted: {first:?}");
    assert_eq!((first.accounts, first.identified), (4, 2), "Daz and Rhian are serving officers: {first:?}");

    let second = scan(&config);
    assert_eq!((second.posts, second.hits), (0, 0), "nothing new: {second:?}");
    assert_eq!(hit_texts(&config).len(), 4);

    post(&pds, &daz, DAZ_NEW, "en", None);
    post(&pds, &gwen, "Proofreading all weekend. Send coffee.", "en", None);
    wait_indexed(&appview, &daz, 5);
    wait_indexed(&appview, &gwen, 2);
    let third = scan(&config);
    assert_eq!((third.posts, third.hits, third.error.as_str()), (2, 1, "-"), "{third:?}");
    let hits = hit_texts(&config);
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().any(|t| t == DAZ_NEW));
}
