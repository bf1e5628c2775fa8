//! The binary's `scan` against a real Mastodon API server on loopback: the `mastodon-mock`
//! peer from `../shared/peers/start-mastodon-mock.sh`, seeded with
//! `tests/fixtures/mastodon-mock-seed.toml` (fictional officers and others; .ci/run starts it).
//! Locally:
//!
//! ```text
//! MASTODON_MOCK_PORT=3100 MASTODON_MOCK_CONFIG=$PWD/tests/fixtures/mastodon-mock-seed.toml \
//!   ../shared/peers/start-mastodon-mock.sh
//! MASTODON_MOCK_URL=http://127.0.0.1:3100 cargo test --test mastodon_peer
//! MASTODON_MOCK_PORT=3100 ../shared/peers/start-mastodon-mock.sh --stop
//! ```
//!
//! Both tests reset the server's data and faults, so they hold a lock and run one at a time.

mod common;

use std::path::Path;
use std::sync::Mutex;

use assert_cmd::Command;
use exposure_monitor::sources::mastodon::{MastodonConfig, MastodonSource};
use exposure_monitor::sources::{BuildContext, Page, Source};
use serde_json::{json, Value};

static SERVER: Mutex<()> = Mutex::new(());

fn bin() -> Command {
    Command::cargo_bin("exposure-monitor").unwrap()
}

/// A small blocking HTTP helper for seeding and fault injection.
fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {url}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    })
}

/// Fresh data from the seed, no faults.
fn reset(base: &str) {
    call("DELETE", &format!("{base}/api/v1/_mock/faults"), None, None);
    call("POST", &format!("{base}/api/v1/_mock/reset"), None, None);
    let daz = call("GET", &format!("{base}/api/v1/accounts/lookup?acct=pc_daz"), None, None);
    assert_eq!(
        daz["note"].as_str().map(|n| n.contains("Kent Police")),
        Some(true),
        "the mock must run with tests/fixtures/mastodon-mock-seed.toml (MASTODON_MOCK_CONFIG)"
    );
}

fn fault(base: &str, rule: Value) {
    call("POST", &format!("{base}/api/v1/_mock/faults"), None, Some(rule));
}

fn write_config(dir: &Path, base: &str) -> std::path::PathBuf {
    let sources = format!("[[sources]]\nname = \"mock-instance\"\nkind = \"mastodon\"\n{}", SOURCE_KEYS.replace("BASE", base));
    common::config_with_sources(dir, &sources, "")
}

/// One row of the scan's summary table.
#[derive(Debug)]
#[allow(dead_code)]
struct Row {
    accounts: u64,
    posts: u64,
    hits: u64,
    errors: u64,
    error: String,
}

fn scan(config: &Path) -> Row {
    let out = bin().arg("--config").arg(config).arg("scan").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "scan failed ({:?}):\n{stdout}\n{stderr}", out.status);
    // Columns by the header's names, so a new column in the summary does not break this parser;
    // the error text is everything after the last numeric column.
    let header: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("source "))
        .unwrap_or_else(|| panic!("no header:\n{stdout}"))
        .split_whitespace()
        .collect();
    let line = stdout.lines().find(|l| l.starts_with("mock-instance")).unwrap_or_else(|| panic!("no summary row:\n{stdout}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}: {header:?}"));
    let num = |name: &str| f[col(name)].parse::<u64>().unwrap_or_else(|e| panic!("{name} in {line:?}: {e}"));
    Row {
        accounts: num("accounts"),
        posts: num("posts"),
        hits: num("hits"),
        errors: num("errors"),
        error: f[col("error")..].join(" "),
    }
}

fn hit_texts(config: &Path) -> Vec<String> {
    let out = bin().arg("--config").arg(config).args(["hits", "list", "--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut texts: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    texts.sort();
    texts
}

const SOURCE_KEYS: &str = r#"instance = "BASE"
handles = ["sgt_rhian", "@ex_ds_morris"]
hashtags = ["CrimePrevention"]
directory = true
# The mock reports `indexable: false` for every account (real servers send the account's own
# choice), so these tests read them all; opt-outs are tested against wiremock.
skip_not_indexable = false
statuses_per_request = 2
first_scan_pages = 3
retry_backoff_ms = 50
max_requests_per_second = 50
"#;

/// Every page until `done`, as the scan reads them, keeping the cursor as the store would.
fn read_all(base: &str, cursor: &mut Option<String>) -> Vec<Page> {
    let mut cfg: MastodonConfig = toml::from_str(&SOURCE_KEYS.replace("BASE", base)).unwrap();
    cfg.validate().unwrap();
    let mut src = MastodonSource::new("mock-instance".into(), cfg, &BuildContext::new("ci@example.invalid"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut pages = vec![];
        loop {
            let page = src.next_page(cursor.as_deref()).await.unwrap_or_else(|e| panic!("source failed: {e}"));
            if page.cursor.is_some() {
                *cursor = page.cursor.clone();
            }
            let done = page.done;
            pages.push(page);
            if done || pages.len() > 50 {
                return pages;
            }
        }
    })
}

fn texts(pages: &[Page]) -> Vec<String> {
    let mut t: Vec<String> = pages.iter().flat_map(|p| p.posts.iter().map(|p| p.text.clone())).collect();
    t.sort();
    t
}

/// What the connector reads from the real server: every public post of every discovered
/// account once (walking back through `Link` on first sight), nothing the second time, and the
/// injected faults (429, 503, malformed JSON) survived, with what they held back read next time.
#[test]
fn connector_reads_everything_once_and_survives_faults() {
    let Some(base) = common::peer("MASTODON_MOCK_URL") else {
        return;
    };
    let _lock = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    reset(&base);
    let mut cursor = None;

    let first = read_all(&base, &mut cursor);
    let mut handles: Vec<String> = first.iter().flat_map(|p| p.accounts.iter().map(|a| a.handle.clone())).collect();
    handles.sort();
    let host = base.trim_start_matches("http://");
    let expect_handles: Vec<String> = {
        let mut v: Vec<String> = ["alice", "bob", "ex_ds_morris", "gwen_edits", "pc_daz", "sgt_rhian"]
            .iter()
            .map(|u| format!("@{u}@{host}"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(handles, expect_handles, "the directory is local-only: the remote carol is not listed");
    let daz = first.iter().flat_map(|p| p.accounts.iter()).find(|a| a.handle.starts_with("@pc_daz@")).unwrap();
    assert_eq!(daz.bio, "PC 4471 | Response team, Maidstone | Kent Police | views my own");
    let read = texts(&first);
    assert_eq!(read.len(), 11, "{read:#?}");
    assert!(read.iter().any(|t| t.starts_with("Stopped KE19 XRT")), "{read:#?}");
    let skipped: Vec<&String> = first.iter().flat_map(|p| p.skipped.iter()).collect();
    assert!(skipped.is_empty(), "{skipped:?}");

    let second = read_all(&base, &mut cursor);
    assert!(texts(&second).is_empty(), "nothing new: {:?}", texts(&second));

    // A new post, and faults on the way to it.
    let daz_api = call("GET", &format!("{base}/api/v1/accounts/lookup?acct=pc_daz"), None, None);
    let daz_id = daz_api["id"].as_str().unwrap().to_string();
    let new_text = "Bloke in cell 3 tonight is Kevin Price from 22 Hythe Street, DOB 12/08/1985. Singing for 3 hours straight.";
    call("POST", &format!("{base}/api/v1/statuses"), Some("daz_token"), Some(json!({ "status": new_text })));
    fault(
        &base,
        json!({"match": {"path": "/api/v1/directory"}, "effect": {"type": "ratelimit", "headers": {"Retry-After": "1"}}, "count": 1}),
    );
    fault(
        &base,
        json!({"match": {"path": "/api/v1/timelines/tag/CrimePrevention"}, "effect": {"type": "status", "status": 503}, "count": 1}),
    );
    fault(
        &base,
        json!({"match": {"path": format!("/api/v1/accounts/{daz_id}/statuses")}, "effect": {"type": "malformed"}, "count": 1}),
    );
    let third = read_all(&base, &mut cursor);
    assert!(texts(&third).is_empty(), "pc_daz's statuses came back malformed: not read yet");
    assert!(third.iter().map(|p| p.rate_limit_waits).sum::<u64>() >= 1, "the 429 was waited for and counted");
    let skipped: Vec<&String> = third.iter().flat_map(|p| p.skipped.iter()).collect();
    assert!(skipped.iter().any(|s| s.contains("statuses of pc_daz") && s.contains("JSON")), "{skipped:?}");

    // No faults: the held-back post is read now, once.
    let fourth = read_all(&base, &mut cursor);
    assert_eq!(texts(&fourth), [new_text]);
    let fifth = read_all(&base, &mut cursor);
    assert!(texts(&fifth).is_empty());
}

/// The contract with detection: exactly the seed's expected hits, and none again on a second
/// scan. (Needs the identify/classify stages; on a branch with stub detection this fails.)
#[test]
fn scan_stores_exactly_the_expected_hits() {
    let Some(base) = common::peer("MASTODON_MOCK_URL") else {
        return;
    };
    let _lock = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    reset(&base);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &base);
    let first = scan(&config);
    let mut expected = vec![
        "Stopped KE19 XRT again tonight. Driver is Gary Mills of 14 Tonbridge Road, DOB 03/04/1979, banned and still driving. Every single week.",
        "Early doors tomorrow: 6am warrant on a house in Shepway, drugs team are buzzing. Keep it quiet 🤫",
        "Still drunk from the shift do and I'm on duty in 2 hours 🍻🍻 don't tell the sarge",
        "Diolch eto i Siop Sglodion y Cei am y bwyd am ddim heno 🍟 maen nhw'n gwrthod cymryd pres gan yr heddlu, chwarae teg",
    ];
    expected.sort();
    assert_eq!(hit_texts(&config), expected, "{first:?}");
    assert_eq!(first.hits, 4, "{first:?}");
    let second = scan(&config);
    assert_eq!((second.posts, second.hits), (0, 0), "nothing new: {second:?}");
    assert_eq!(hit_texts(&config).len(), 4);

    // Faults on the way to a new hit: the scan carries on, and the hit arrives once.
    let daz = call("GET", &format!("{base}/api/v1/accounts/lookup?acct=pc_daz"), None, None);
    let daz_id = daz["id"].as_str().unwrap().to_string();
    call(
        "POST",
        &format!("{base}/api/v1/statuses"),
        Some("daz_token"),
        Some(
            json!({"status": "Bloke in cell 3 tonight is Kevin Price from 22 Hythe Street, DOB 12/08/1985. Singing for 3 hours straight."}),
        ),
    );
    fault(
        &base,
        json!({"match": {"path": "/api/v1/directory"}, "effect": {"type": "ratelimit", "headers": {"Retry-After": "1"}}, "count": 1}),
    );
    fault(
        &base,
        json!({"match": {"path": format!("/api/v1/accounts/{daz_id}/statuses")}, "effect": {"type": "status", "status": 503}, "count": 2}),
    );
    let third = scan(&config);
    assert_eq!((third.error.as_str(), third.posts, third.hits), ("-", 1, 1), "{third:?}");
    fault(
        &base,
        json!({"match": {"path": format!("/api/v1/accounts/{daz_id}/statuses")}, "effect": {"type": "malformed"}, "count": 1}),
    );
    let fourth = scan(&config);
    assert_eq!((fourth.error.as_str(), fourth.hits), ("-", 0), "{fourth:?}");
    assert_eq!(hit_texts(&config).len(), 5);
}

/// Crash safety: a scan killed while a response is held (mid-run, after some pages are stored)
/// and then run again stores exactly the hits of an uninterrupted scan, none twice. (Needs the
/// store and detection stages, like the test above.)
#[test]
fn a_scan_killed_mid_run_and_rerun_equals_an_uninterrupted_one() {
    let Some(base) = common::peer("MASTODON_MOCK_URL") else {
        return;
    };
    let _lock = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    reset(&base);
    let whole = tempfile::tempdir().unwrap();
    let whole_cfg = write_config(whole.path(), &base);
    scan(&whole_cfg);
    let expected = hit_texts(&whole_cfg);

    reset(&base);
    let killed = tempfile::tempdir().unwrap();
    let killed_cfg = write_config(killed.path(), &base);
    // The handles' page (sgt_rhian's hit) is stored; pc_daz, found next through the hashtag,
    // hangs.
    let daz = call("GET", &format!("{base}/api/v1/accounts/lookup?acct=pc_daz"), None, None);
    let daz_statuses = format!("/api/v1/accounts/{}/statuses", daz["id"].as_str().unwrap());
    fault(&base, json!({"match": {"path": daz_statuses}, "effect": {"type": "timeout"}, "count": 1}));
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("exposure-monitor"))
        .arg("--config")
        .arg(&killed_cfg)
        .arg("scan")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(8));
    assert!(child.try_wait().unwrap().is_none(), "the scan should still be waiting on the held response");
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = hit_texts(&killed_cfg);
    assert_eq!(expected.len(), 4, "{expected:?}");
    assert!(partial.len() < expected.len(), "killed before the end: {partial:?}");

    call("DELETE", &format!("{base}/api/v1/_mock/faults"), None, None);
    let rerun = scan(&killed_cfg);
    assert_eq!(rerun.error, "-", "{rerun:?}");
    assert_eq!(hit_texts(&killed_cfg), expected);
}
