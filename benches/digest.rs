//! Digest over a large backlog: the real release binary runs `digest` on a database holding
//! 1,000,000 unsent hits (issue 6: "digest over 1M stored hits built in < 1 s; peak RSS <= 128 MB
//! throughout, whatever the backlog").
//!
//!     cargo bench --bench digest
//!     DIGEST_BENCH_HITS=100000 cargo bench --bench digest   # another backlog size
//!
//! Setup (not measured): hits are made from the synthetic stream (`support/stream.rs`: its post
//! texts, 20,000 accounts with the stream's skewed activity) and written through the store's own
//! write path (`Store::commit_page`, 10,000 hits a page). Each hit gets a force from its account
//! (4 forces with a route of their own, 3 without, and unknown: 5 routes), a severity (10% high,
//! 40% medium, 50% low), one or two categories with a finding over words of the text, and was
//! found within the last 10 days (so the chart's 14-day window counts every one). The database is
//! cached under `target/bench-digest/` keyed by the hit count, the schema (migrations) and the
//! day it was made, and copied afresh before every measured run (a digest marks what it sends).
//!
//! Measured: `exposure-monitor --config <cfg> digest` with a file outbox, as cron runs it: load
//! the config, open the database (migrations checked), choose and read each route's hits, count
//! the backlog, render and write each message, mark it sent. Wall time and the child's peak RSS
//! (`wait4`), over RUNS runs; the median is reported against the goals.

#[path = "support/measure.rs"]
mod measure;
#[path = "support/stream.rs"]
mod stream;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use exposure_monitor::classify::{Classification, Finding};
use exposure_monitor::identify::{Evidence, EvidenceSource, IdentityVerdict};
use exposure_monitor::model::{Category, Identity, Severity};
use exposure_monitor::store::{NewHit, PageCommit, Store};
use sha2::{Digest, Sha256};

const DEFAULT_HITS: usize = 1_000_000;
const RUNS: usize = 5;
const PAGE: usize = 10_000;
const GOAL_WALL: Duration = Duration::from_secs(1);
const GOAL_RSS_MIB: f64 = 128.0;

/// Forces by account (account index modulo 10): four routed, three not, one unknown.
const FORCES: [Option<&str>; 10] = [
    Some("Kent Police"),
    Some("Kent Police"),
    Some("Thames Valley Police"),
    Some("Greater Manchester Police"),
    Some("Greater Manchester Police"),
    Some("Metropolitan Police Service"),
    Some("Essex Police"),
    Some("West Yorkshire Police"),
    None,
    Some("Police Scotland"),
];
const ROUTED: [&str; 4] = ["Kent Police", "Thames Valley Police", "Greater Manchester Police", "Metropolitan Police Service"];

const RULES: [(&str, Category); 9] = [
    ("operational.warrant_address", Category::Operational),
    ("personal_data.vrm", Category::PersonalData),
    ("media_contact.off_record", Category::MediaContact),
    ("discriminatory.slur", Category::DiscriminatoryOffensive),
    ("alcohol_drugs.drunk", Category::AlcoholDrugs),
    ("sexual.explicit", Category::SexualNudity),
    ("political.party", Category::Political),
    ("gifts.free_tickets", Category::GiftsHospitality),
    ("secondary.side_job", Category::SecondaryEmployment),
];

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs benches in test mode: skip.
    if std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench") {
        println!("digest bench: run with `cargo bench --bench digest`");
        return;
    }
    let hits: usize = std::env::var("DIGEST_BENCH_HITS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_HITS);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-digest");
    std::fs::create_dir_all(&dir).unwrap();
    let cached = dir.join(format!("hits-{hits}-schema-{}-{}.db", schema_version(), Utc::now().format("%Y%m%d")));
    if !cached.exists() {
        let start = Instant::now();
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        rt.block_on(build_db(&cached, hits));
        let secs = start.elapsed().as_secs_f64();
        println!("setup: {hits} hits written through Store::commit_page in {secs:.1} s ({:.0} hits/s)", hits as f64 / secs);
    } else {
        println!("setup: reusing {}", cached.display());
    }
    println!("database: {:.0} MiB", std::fs::metadata(&cached).unwrap().len() as f64 / 1048576.0);

    let work = dir.join("work");
    let mut results = vec![];
    for run in 1..=RUNS {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let db = work.join("monitor.db");
        std::fs::copy(&cached, &db).unwrap();
        // On disk before the run, as a production database is: otherwise the first fsync of the
        // run (SQLite's checkpoint) would write out the whole fresh copy and be timed with it.
        std::fs::File::open(&db).unwrap().sync_all().unwrap();
        let config = write_config(&work, &db);
        let m = measure::run(Command::new(measure::binary()).arg("--config").arg(&config).arg("digest"));
        m.assert_success("digest");
        let mails = std::fs::read_dir(work.join("outbox")).unwrap().count();
        println!(
            "run {run}: {:.3} s, peak RSS {:.1} MiB, {mails} messages; {}",
            m.wall.as_secs_f64(),
            m.peak_rss_mib(),
            m.stdout.lines().last().unwrap_or("")
        );
        if run == 1 {
            check_messages(&work.join("outbox"), hits);
        }
        results.push(m);
    }
    let mut walls: Vec<Duration> = results.iter().map(|m| m.wall).collect();
    walls.sort();
    let mut rss: Vec<f64> = results.iter().map(|m| m.peak_rss_mib()).collect();
    rss.sort_by(f64::total_cmp);
    let (wall, peak) = (walls[RUNS / 2], rss[RUNS / 2]);
    let max_rss = rss[RUNS - 1];
    println!();
    println!("digest over {hits} unsent hits (5 routes, 20,000 accounts), median of {RUNS} runs:");
    println!(
        "  wall time  {:.3} s   (goal < {:.0} s)        {}",
        wall.as_secs_f64(),
        GOAL_WALL.as_secs_f64(),
        if wall < GOAL_WALL { "MET" } else { "MISSED" }
    );
    println!(
        "  peak RSS   {peak:.1} MiB (max {max_rss:.1})  (goal <= {GOAL_RSS_MIB:.0} MB)  {}",
        if max_rss <= GOAL_RSS_MIB { "MET" } else { "MISSED" }
    );

    // The digest's "list them now" command over the whole backlog: `hits export` streams rows,
    // so its memory does not grow with the backlog either.
    let config = write_config(&work, &work.join("monitor.db"));
    let export = work.join("backlog.jsonl");
    let m = measure::run(
        Command::new(measure::binary())
            .arg("--config")
            .arg(&config)
            .args(["hits", "export", "--unsent", "--format", "json", "--limit", &hits.to_string(), "--output"])
            .arg(&export),
    );
    m.assert_success("hits export");
    let lines = std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&export).unwrap())).count();
    println!(
        "  hits export --unsent of {lines} hits: {:.1} s, peak RSS {:.1} MiB  (goal <= {GOAL_RSS_MIB:.0} MB)  {}",
        m.wall.as_secs_f64(),
        m.peak_rss_mib(),
        if m.peak_rss_mib() <= GOAL_RSS_MIB { "MET" } else { "MISSED" }
    );
    let _ = std::fs::remove_file(&export);
    println!("  load average: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
}

/// A hash of every migration: a changed schema means a new cached database.
fn schema_version() -> String {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(std::fs::read(f).unwrap());
    }
    h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn write_config(dir: &Path, db: &Path) -> PathBuf {
    let mut routes = String::new();
    for (i, f) in ROUTED.iter().enumerate() {
        routes.push_str(&format!("{f:?} = [\"psd{i}@example.police.uk\"]\n"));
    }
    let text = format!(
        "database = {db:?}\n\n[mail]\nfrom = \"Exposure Monitor <monitor@example.police.uk>\"\ntransport = \"file\"\n\
         outbox = {:?}\n\n[routing]\ndefault = [\"triage@example.police.uk\"]\n\n[routing.forces]\n{routes}",
        dir.join("outbox")
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The messages are what a reviewer should get: one per route, each with the cap's worth of
/// hits and a backlog section whose counts add up to the rest.
fn check_messages(outbox: &Path, hits: usize) {
    let mut waiting = 0u64;
    let mut carried = 0u64;
    for e in std::fs::read_dir(outbox).unwrap() {
        let raw = std::fs::read(e.unwrap().path()).unwrap();
        let mail = mail_parser::MessageParser::default().parse(&raw[..]).expect("a parseable message");
        let subject = mail.subject().unwrap_or("").to_string();
        // "...: 150 hits (15 high) from N accounts, 123456 more waiting — ..."
        let num_before = |marker: &str| -> u64 {
            subject
                .split(marker)
                .next()
                .and_then(|s| s.split_whitespace().last())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count before {marker:?} in {subject}"))
        };
        carried += num_before(" hits (");
        waiting += num_before(" more waiting");
    }
    assert_eq!(carried + waiting, hits as u64, "every hit is either in a message or counted as waiting");
    println!("check: {carried} hits in messages + {waiting} counted as waiting = {hits}");
}

async fn build_db(path: &Path, hits: usize) {
    let tmp = path.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let store = Store::open(&tmp).await.unwrap();
    let mut stream = stream::Stream::new(stream::StreamSpec::default());
    let now = Utc::now();
    let window_ms = 10 * 24 * 3600 * 1000i64;
    let mut page = Vec::with_capacity(PAGE);
    for n in 0..hits {
        let p = stream.next_post();
        page.push(make_hit(
            &stream,
            p,
            n,
            now - chrono::Duration::milliseconds(window_ms - (n as i64 * window_ms / hits as i64)),
        ));
        if page.len() == PAGE || n + 1 == hits {
            let batch = std::mem::take(&mut page);
            let added = store
                .commit_page(PageCommit { source: "bench".into(), accounts: vec![], hits: batch, cursor: None })
                .await
                .unwrap();
            assert!(added > 0);
        }
    }
    store.close().await;
    std::fs::rename(&tmp, path).unwrap();
}

fn make_hit(stream: &stream::Stream, p: stream::SynthPost, n: usize, found: chrono::DateTime<Utc>) -> NewHit {
    let account = stream.accounts[p.author].account.clone();
    let force = FORCES[p.author % FORCES.len()];
    let severity = match n % 10 {
        0 => Severity::High,
        1..=4 => Severity::Medium,
        _ => Severity::Low,
    };
    let text = p.post.full_text().into_owned();
    let word_end = text.char_indices().nth(12).map(|(i, _)| i).unwrap_or(text.len());
    let mut findings = vec![];
    let (rule, category) = RULES[n % RULES.len()];
    findings.push(Finding {
        rule_id: rule.into(),
        category,
        severity,
        spans: vec![0..word_end],
        matched: text[..word_end].to_string(),
    });
    if n % 4 == 0 {
        let (rule, category) = RULES[(n / 4 + 3) % RULES.len()];
        findings.push(Finding {
            rule_id: rule.into(),
            category,
            severity: Severity::Low,
            spans: vec![0..word_end],
            matched: text[..word_end].to_string(),
        });
    }
    let mut categories: Vec<Category> = findings.iter().map(|f| f.category).collect();
    categories.sort_unstable();
    categories.dedup();
    let verdict = IdentityVerdict {
        identity: Identity::Serving,
        score: 0.9,
        force: force.map(str::to_string),
        role: Some("PC".into()),
        evidence: vec![Evidence { source: EvidenceSource::Bio, signal: "identity.role".into(), text: "PC".into() }],
    };
    NewHit {
        source: "bench".into(),
        account,
        verdict,
        post: p.post,
        classification: Classification { lang: None, categories, severity: Some(severity), findings },
        retrieved_at: found,
    }
}
