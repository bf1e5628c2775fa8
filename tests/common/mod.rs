//! Helpers shared by the integration tests: where the repository and `../shared` are, and how a
//! test that needs a peer or `../shared` skips visibly (or fails under `REQUIRE_PEERS=1`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The crate root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn required() -> bool {
    std::env::var("REQUIRE_PEERS").map(|v| v == "1").unwrap_or(false)
}

/// `../shared/<rel>` if it exists; otherwise prints a visible skip line and returns `None`,
/// or panics when `REQUIRE_PEERS=1` (CI), so a missing `../shared` can never pass silently.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let p = repo().join("..").join("shared").join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(!required(), "REQUIRE_PEERS=1 but {} does not exist", p.display());
    eprintln!("skipped: ../shared not found ({})", p.display());
    println!("skipped: ../shared not found ({})", p.display());
    None
}

/// The value of a peer's environment variable; skips visibly (or fails under REQUIRE_PEERS=1).
pub fn peer(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(!required(), "REQUIRE_PEERS=1 but {var} is not set: start the peer (see .ci/run)");
            eprintln!("skipped: {var} not set (start the peer from ../shared/peers, see .ci/run)");
            println!("skipped: {var} not set");
            None
        }
    }
}

/// Write a config into `dir` that scans the bundled demo data into a database and outbox inside
/// `dir`, with the repository's pattern files. `extra` is appended (e.g. more routes).
pub fn demo_config(dir: &Path, extra: &str) -> PathBuf {
    let sources = format!(
        "[[sources]]\nname = \"demo\"\nkind = \"replay\"\ndir = \"{}\"\npage_size = 7\n",
        repo().join("config/demo-data").display()
    );
    config_with_sources(dir, &sources, extra)
}

/// Write `dir/config.toml` with the given `[[sources]]` tables, a database and a file outbox
/// inside `dir`, the repository's pattern files, routes for three forces plus the default, and
/// `extra` appended.
pub fn config_with_sources(dir: &Path, sources: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"database = "{db}"
patterns = "{patterns}"
operator_contact = "ci@example.invalid"

{sources}
[mail]
from = "Exposure Monitor <monitor@example.invalid>"
transport = "file"
outbox = "{outbox}"

[routing]
default = ["psd-triage@example.invalid"]

[routing.forces]
"Kent Police" = ["psd-kent@example.invalid"]
"West Yorkshire Police" = ["psd-wyp@example.invalid"]
"Thames Valley Police" = ["psd-tvp@example.invalid"]
{extra}
"#,
        db = dir.join("monitor.db").display(),
        patterns = repo().join("patterns").display(),
        outbox = dir.join("outbox").display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every `.eml` file in a directory, read as text, sorted by file name.
pub fn emls(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "eml")).collect(),
        Err(_) => vec![],
    };
    files.sort();
    files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

/// Every recorded payload (`*.json`, not the `*.headers.json` sidecars) in a fixtures folder is
/// among `checked`: a payload added to `../shared` without a test fails instead of passing unread.
pub fn assert_every_payload_checked(dir: &Path, checked: &std::collections::BTreeSet<&str>) {
    let mut all: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.ends_with(".headers.json"))
        .collect();
    all.sort();
    let missing: Vec<&String> = all.iter().filter(|n| !checked.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "fixtures without a check: {missing:?}");
}

/// Reads a source page by page until it says `done`, carrying the cursor as the scan does;
/// returns the pages and the last cursor. A source that has not finished after `max_pages`
/// pages fails the test (a paging loop that never ends).
pub async fn pages_until_done<S: exposure_monitor::sources::Source>(
    src: &mut S,
    mut cursor: Option<String>,
    max_pages: usize,
) -> (Vec<exposure_monitor::sources::Page>, Option<String>) {
    let mut pages = vec![];
    loop {
        let page = src.next_page(cursor.as_deref()).await.unwrap_or_else(|e| panic!("source failed: {e}"));
        if page.cursor.is_some() {
            cursor = page.cursor.clone();
        }
        let done = page.done;
        pages.push(page);
        if done {
            return (pages, cursor);
        }
        assert!(pages.len() < max_pages, "no end after {max_pages} pages");
    }
}
