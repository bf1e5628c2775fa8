//! The fuzz targets' committed corpora (fuzz/corpus/TARGET/) as regression tests: every input,
//! including each minimised crash the fuzzers found, runs through the target's own body
//! (fuzz/src/targets/TARGET.rs, included here as is) on the stable toolchain, with no libFuzzer.
//! A panic names the target and the file.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_common;

use std::path::{Path, PathBuf};

type Target = (&'static str, fn(&[u8]));

const TARGETS: &[Target] = &[
    ("patterns", fuzz_common::patterns::run),
    ("html_to_text", fuzz_common::html_to_text::run),
    ("mastodon_statuses", fuzz_common::mastodon_statuses::run),
    ("mastodon_accounts", fuzz_common::mastodon_accounts::run),
    ("bluesky_feed", fuzz_common::bluesky_feed::run),
    ("bluesky_profiles", fuzz_common::bluesky_profiles::run),
    ("reddit_listing", fuzz_common::reddit_listing::run),
    ("reddit_about", fuzz_common::reddit_about::run),
    ("rss_feed", fuzz_common::rss_feed::run),
    ("jetstream_event", fuzz_common::jetstream_event::run),
    ("cursors", fuzz_common::cursors::run),
    ("rate_headers", fuzz_common::rate_headers::run),
    ("mastodon_link", fuzz_common::mastodon_link::run),
    ("forces", fuzz_common::forces::run),
    ("config", fuzz_common::config::run),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_corpus_input_runs_through_its_target() {
    let mut failed = vec![];
    let mut count = 0;
    for (target, run) in TARGETS {
        for file in inputs(target) {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            count += 1;
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failed.push(format!("{target}: {}", file.display()));
            }
        }
    }
    assert!(failed.is_empty(), "fuzz corpus inputs that panic:\n{}", failed.join("\n"));
    println!("{count} corpus inputs over {} targets", TARGETS.len());
}

#[test]
fn every_fuzz_target_is_listed_here_and_has_a_small_corpus() {
    let mut names: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|e| e.expect("directory entry").path())
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(names, listed, "fuzz/fuzz_targets/ and this test's TARGETS differ");
    for (target, _) in TARGETS {
        let files = inputs(target);
        let bytes: u64 = files.iter().map(|f| f.metadata().map(|m| m.len()).unwrap_or(0)).sum();
        assert!(!files.is_empty(), "{target}: no committed corpus");
        assert!(files.len() <= 60 && bytes <= 64 * 1024, "{target}: corpus too big ({} files, {bytes} bytes)", files.len());
    }
}
