//! `digest::run` over the real store: routing split, exactly-once delivery, failed messages
//! leaving their hits unsent, and resending a digest a crash left pending, with the same
//! Message-ID. The `file` transport needs no peer; the failure cases use the real SMTP sink.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{TimeZone, Utc};
use exposure_monitor::classify::{Classification, Finding};
use exposure_monitor::config::{Config, DigestSettings, MailConfig, Retention, Routing, SmtpConfig, TlsMode, TransportConfig};
use exposure_monitor::digest;
use exposure_monitor::identify::IdentityVerdict;
use exposure_monitor::model::{Account, Category, Identity, Post, Severity};
use exposure_monitor::store::{NewHit, PageCommit, Store};
use mail_parser::MessageParser;

fn config(dir: &Path, transport: TransportConfig, kent: &[&str]) -> Config {
    let mut forces = BTreeMap::new();
    forces.insert("Kent Police".to_string(), kent.iter().map(|s| s.to_string()).collect());
    forces.insert("Thames Valley Police".to_string(), vec!["psd-tvp@example.invalid".to_string()]);
    Config {
        path: dir.join("config.toml"),
        database: dir.join("monitor.db"),
        patterns: dir.join("patterns"),
        forces: exposure_monitor::forces::Forces::embedded(),
        operator_contact: String::new(),
        sources: vec![],
        mail: MailConfig { from: "Exposure Monitor <monitor@psd.example.invalid>".into(), transport },
        routing: Routing { forces, default: vec!["triage@example.invalid".into()] },
        retention: Retention { dismissed_days: 30, days: 365 },
        digest: DigestSettings { send_empty: true, subject_prefix: "[em-test]".into(), max_hits_per_route: 150 },
    }
}

fn new_hit(n: u32, force: Option<&str>, text: &str, word: &str) -> NewHit {
    let at = text.find(word).unwrap();
    let account = Account {
        platform: "mastodon".into(),
        platform_id: format!("acct{n}"),
        handle: format!("officer{n}"),
        display_name: format!("Officer {n}\r\nBcc: attacker@example.invalid <script>"),
        bio: "PC, views my own".into(),
        profile_url: Some(format!("https://social.example/@officer{n}")),
    };
    let post = Post {
        platform: "mastodon".into(),
        platform_id: format!("post{n}"),
        author_id: account.platform_id.clone(),
        created_at: Utc.with_ymd_and_hms(2026, 11, 21, 8, n % 60, 0).unwrap(),
        text: text.into(),
        alt_texts: vec![],
        lang_hints: vec!["en".into()],
        url: Some(format!("https://social.example/@officer{n}/{n}")),
    };
    let verdict = IdentityVerdict {
        identity: Identity::Serving,
        score: 0.95,
        force: force.map(str::to_string),
        role: Some("PC".into()),
        evidence: vec![],
    };
    let classification = Classification {
        lang: None,
        categories: vec![Category::Operational],
        severity: Some(Severity::High),
        findings: vec![Finding {
            rule_id: "operational.raid".into(),
            category: Category::Operational,
            severity: Severity::High,
            spans: vec![at..at + word.len()],
            matched: word.into(),
        }],
    };
    NewHit { source: "test".into(), account, verdict, post, classification, retrieved_at: Utc::now() }
}

async fn seeded_store(cfg: &Config) -> Store {
    let store = Store::open(&cfg.database).await.unwrap();
    let hits = vec![
        new_hit(1, Some("Kent Police"), "Raid at Elmtree Close <script>alert(1)</script>", "Raid"),
        new_hit(2, Some("Thames Valley Police"), "Raid at Cowley Road tomorrow", "Raid"),
        new_hit(3, None, "Raid at Nowhere Lane, force unknown", "Raid"),
    ];
    let added = store.commit_page(PageCommit { source: "test".into(), accounts: vec![], hits, cursor: None }).await.unwrap();
    assert_eq!(added, 3);
    store
}

struct Mail {
    to: Vec<String>,
    message_id: String,
    text: String,
    html: String,
}

fn outbox(dir: &Path) -> Vec<Mail> {
    common::emls(dir)
        .iter()
        .map(|raw| {
            let m = MessageParser::default().parse(raw.as_bytes()).expect("parseable .eml");
            Mail {
                to: m.to().unwrap().iter().filter_map(|a| a.address()).map(str::to_string).collect(),
                message_id: m.message_id().unwrap_or_default().to_string(),
                text: m.body_text(0).unwrap_or_default().to_string(),
                html: m.body_html(0).unwrap_or_default().to_string(),
            }
        })
        .collect()
}

#[tokio::test]
async fn file_digest_routes_each_hit_once_and_only_to_its_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("outbox");
    let cfg = config(dir.path(), TransportConfig::File { outbox: out.clone() }, &["psd-kent@example.invalid"]);
    let store = seeded_store(&cfg).await;

    let outcome = digest::run(&cfg, &store, false, &mut Vec::new()).await.unwrap();
    assert_eq!((outcome.messages_sent, outcome.hits_sent), (3, 3), "{outcome:?}");
    assert!(outcome.failures.is_empty(), "{outcome:?}");
    assert!(store.unsent_hits().await.unwrap().is_empty(), "every delivered hit is marked sent");

    let mails = outbox(&out);
    assert_eq!(mails.len(), 3);
    let streets = [
        ("psd-kent@example.invalid", "Elmtree Close"),
        ("psd-tvp@example.invalid", "Cowley Road"),
        ("triage@example.invalid", "Nowhere Lane"),
    ];
    for m in &mails {
        assert_eq!(m.to.len(), 1, "{:?}", m.to);
        for (to, street) in streets {
            let mine = m.to[0] == to;
            assert_eq!(m.text.contains(street), mine, "{street} in the message to {}", m.to[0]);
            assert_eq!(m.html.contains(street), mine, "{street} in the HTML to {}", m.to[0]);
        }
        assert!(!m.html.to_ascii_lowercase().contains("<script"), "{}", m.html);
    }

    // Next run: nothing new, so only "nothing found" messages, never a hit again.
    let again = digest::run(&cfg, &store, false, &mut Vec::new()).await.unwrap();
    assert_eq!((again.messages_sent, again.hits_sent), (3, 0), "{again:?}");
    for m in &outbox(&out)[3..] {
        assert!(m.text.contains("Nothing found"), "{}", m.text);
        assert!(!m.text.contains("Raid"), "a hit was sent twice: {}", m.text);
    }
    // And again the same day, still without a scan: a new message each, with its own Message-ID.
    let third = digest::run(&cfg, &store, false, &mut Vec::new()).await.unwrap();
    assert_eq!((third.messages_sent, third.failures.len()), (3, 0), "{third:?}");
    let ids: std::collections::HashSet<String> = outbox(&out).into_iter().map(|m| m.message_id).collect();
    assert_eq!(ids.len(), 9, "every message has its own Message-ID");
}

#[tokio::test]
async fn a_digest_left_pending_by_a_crash_is_resent_with_the_same_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("outbox");
    let cfg = config(dir.path(), TransportConfig::File { outbox: out.clone() }, &["psd-kent@example.invalid"]);
    let store = seeded_store(&cfg).await;
    let kent = store.unsent_hits().await.unwrap().into_iter().find(|h| h.force.as_deref() == Some("Kent Police")).unwrap();
    // A run that recorded the Kent digest as pending, then died before marking it.
    let crashed = "<digest.crashed@psd.example.invalid>";
    store.begin_digest("Kent Police", &["psd-kent@example.invalid".to_string()], crashed, &[kent.id]).await.unwrap();

    let outcome = digest::run(&cfg, &store, false, &mut Vec::new()).await.unwrap();
    assert!(outcome.failures.is_empty(), "{outcome:?}");
    assert_eq!(outcome.hits_sent, 3, "{outcome:?}");
    assert!(store.pending_digests().await.unwrap().is_empty(), "the resent digest is marked");
    let mails = outbox(&out);
    let resent: Vec<&Mail> = mails.iter().filter(|m| m.text.contains("Elmtree Close")).collect();
    assert_eq!(resent.len(), 1, "the Kent hit goes out once");
    assert_eq!(resent[0].message_id, crashed.trim_matches(['<', '>']));
    // Kent also gets this run's own message, which does not carry the resent hit.
    let kent_mails: Vec<&Mail> = mails.iter().filter(|m| m.to == ["psd-kent@example.invalid"]).collect();
    assert_eq!(kent_mails.len(), 2);
}

#[tokio::test]
async fn a_refused_message_leaves_its_hits_unsent_for_the_next_run() {
    let Some(host) = common::peer("SMTP_SINK_HOST") else { return };
    let Some(port) = common::peer("SMTP_SINK_PORT") else { return };
    let dir = tempfile::tempdir().unwrap();
    let smtp = |_: ()| {
        TransportConfig::Smtp(SmtpConfig {
            host: host.clone(),
            port: port.parse().unwrap(),
            tls: TlsMode::None,
            username: None,
            password_env: None,
            timeout_secs: 10,
            ca_file: None,
        })
    };
    // Kent's PSD address is refused (550): Kent's message fails, the others go.
    let cfg = config(dir.path(), smtp(()), &["reject-kent@example.invalid"]);
    let store = seeded_store(&cfg).await;
    let outcome = digest::run(&cfg, &store, false, &mut Vec::new()).await.unwrap();
    assert_eq!(outcome.failures.len(), 1, "{outcome:?}");
    assert_eq!(outcome.failures[0].0, "Kent Police");
    assert!(outcome.failures[0].1.contains("550"), "{outcome:?}");
    assert_eq!(outcome.hits_sent, 2);
    let unsent = store.unsent_hits().await.unwrap();
    assert_eq!(unsent.len(), 1);
    assert_eq!(unsent[0].force.as_deref(), Some("Kent Police"));
    assert!(store.pending_digests().await.unwrap().is_empty(), "a refused digest is recorded as failed, not pending");

    // The address is fixed: the next run delivers the Kent hit, once.
    let fixed = config(dir.path(), smtp(()), &["psd-kent@example.invalid"]);
    let outcome = digest::run(&fixed, &store, false, &mut Vec::new()).await.unwrap();
    assert!(outcome.failures.is_empty(), "{outcome:?}");
    assert_eq!(outcome.hits_sent, 1);
    assert!(store.unsent_hits().await.unwrap().is_empty());
}

/// A hit of `force` with `severity`, found `minutes` after a fixed start, by account `acct`.
fn backlog_hit(n: u32, force: Option<&str>, severity: Severity, minutes: i64, acct: u32) -> NewHit {
    let mut h = new_hit(n, force, &format!("Raid number {n} at Queue Street"), "Raid");
    h.classification.severity = Some(severity);
    h.classification.findings[0].severity = severity;
    if n % 2 == 0 {
        h.classification.categories.push(Category::Political);
    }
    h.account.platform_id = format!("acct{acct}");
    h.account.handle = format!("officer{acct}");
    h.account.display_name = format!("<i>Officer {acct}</i>");
    h.retrieved_at = Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap() + chrono::Duration::minutes(minutes);
    h
}

/// The hit numbers a message carries ("Hit #N" lines of the text part, as stored ids).
fn hit_numbers(text: &str) -> Vec<i64> {
    let mut v: Vec<i64> =
        text.lines().filter_map(|l| l.trim().strip_prefix("Hit #")).filter_map(|l| l.split(' ').next()?.parse().ok()).collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn a_backlog_over_the_cap_goes_out_most_severe_first_over_several_runs_each_hit_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("outbox");
    let mut cfg = config(dir.path(), TransportConfig::File { outbox: out.clone() }, &["psd-kent@example.invalid"]);
    cfg.digest.max_hits_per_route = 4;
    cfg.digest.send_empty = false;
    let store = Store::open(&cfg.database).await.unwrap();
    let mut hits = vec![];
    // Kent: 10 hits; 3 high (found late), 7 low (hit 1 found first). Account 1 has 6 of them.
    for n in 1..=10u32 {
        let severity = if n >= 8 { Severity::High } else { Severity::Low };
        hits.push(backlog_hit(n, Some("Kent Police"), severity, i64::from(n) * 10, if n <= 6 { 1 } else { 2 }));
    }
    // Thames Valley: 2 hits, under the cap.
    hits.push(backlog_hit(11, Some("Thames Valley Police"), Severity::Low, 5, 3));
    hits.push(backlog_hit(12, Some("Thames Valley Police"), Severity::High, 6, 3));
    // Default route: unknown force and Essex (no route of its own), 6 hits over both.
    for n in 13..=15u32 {
        hits.push(backlog_hit(n, None, Severity::Medium, 100 - i64::from(n), 4));
    }
    for n in 16..=18u32 {
        hits.push(backlog_hit(n, Some("Essex Police"), Severity::Medium, 100 - i64::from(n), 5));
    }
    let added = store.commit_page(PageCommit { source: "test".into(), accounts: vec![], hits, cursor: None }).await.unwrap();
    assert_eq!(added, 18);
    let id_of = |n: u32| -> i64 { i64::from(n) }; // ids follow insertion order in a fresh database

    let first = digest::run(&cfg, &store, false, &mut Vec::new()).await.unwrap();
    assert!(first.failures.is_empty(), "{first:?}");
    assert_eq!((first.messages_sent, first.hits_sent), (3, 10), "one message per route: {first:?}");
    let mails = outbox(&out);
    assert_eq!(mails.len(), 3);
    let to = |addr: &str| mails.iter().find(|m| m.to == [addr]).unwrap_or_else(|| panic!("no mail to {addr}"));
    let kent = to("psd-kent@example.invalid");
    // The 3 high ones, then the longest-waiting low one (hit 1).
    assert_eq!(hit_numbers(&kent.text), vec![id_of(1), id_of(8), id_of(9), id_of(10)], "{}", kent.text);
    assert!(kent.text.contains("Backlog: 6 more hits waiting for this route"), "{}", kent.text);
    assert!(kent.text.contains("By severity: 0 high, 0 medium, 6 low."), "{}", kent.text);
    // Waiting: 2..=7; even ones are also political (2, 4, 6).
    assert!(kent.text.contains("By category: operational 6, political 3 "), "{}", kent.text);
    assert!(kent.text.contains("Longest waiting: found 2026-11-20 08:20 UTC"), "{}", kent.text);
    assert!(
        kent.text
            .replace("\r\n", "\n")
            .contains("  5 - <i>Officer 1</i> (officer1 on mastodon)\n  1 - <i>Officer 2</i> (officer2 on mastodon)"),
        "{}",
        kent.text
    );
    assert!(kent.text.contains("List them now: exposure-monitor hits list --unsent --route 'Kent Police' --limit 6"));
    assert!(kent.html.contains("&lt;i&gt;Officer 1&lt;&#x2f;i&gt;") && !kent.html.contains("<i>Officer"), "names escaped");
    let tvp = to("psd-tvp@example.invalid");
    assert_eq!(hit_numbers(&tvp.text), vec![id_of(11), id_of(12)]);
    assert!(!tvp.text.contains("Backlog:") && !tvp.html.contains("Backlog:"));
    let default = to("triage@example.invalid");
    // Medium all: the longest waiting across both forces: 18, 17, 16 (Essex), 15 (unknown).
    assert_eq!(hit_numbers(&default.text), vec![id_of(15), id_of(16), id_of(17), id_of(18)], "{}", default.text);
    assert!(default.text.contains("Backlog: 2 more hits waiting"), "{}", default.text);
    assert!(default.text.contains("--route default --limit 2"), "{}", default.text);
    for m in &mails {
        for n in 1..=18 {
            let street = format!("Raid number {n} at");
            let routed = match n {
                1..=10 => "psd-kent@example.invalid",
                11 | 12 => "psd-tvp@example.invalid",
                _ => "triage@example.invalid",
            };
            if m.text.contains(&street) {
                assert_eq!(m.to, [routed], "hit {n} went to the wrong route");
            }
        }
    }
    let unsent = store.unsent_hits().await.unwrap();
    let mut left: Vec<i64> = unsent.iter().map(|h| h.id).collect();
    left.sort_unstable();
    assert_eq!(left, vec![2, 3, 4, 5, 6, 7, 13, 14], "what was not sent stays unsent");

    // Next runs deliver the rest, oldest first, each hit once; then nothing is left.
    let second = digest::run(&cfg, &store, false, &mut Vec::new()).await.unwrap();
    assert_eq!((second.messages_sent, second.hits_sent), (2, 6), "{second:?}");
    let mails = outbox(&out);
    let kent2 = mails[3..].iter().find(|m| m.to == ["psd-kent@example.invalid"]).unwrap();
    assert_eq!(hit_numbers(&kent2.text), vec![2, 3, 4, 5]);
    assert!(kent2.text.contains("Backlog: 2 more hits waiting"), "{}", kent2.text);
    let default2 = mails[3..].iter().find(|m| m.to == ["triage@example.invalid"]).unwrap();
    assert_eq!(hit_numbers(&default2.text), vec![13, 14]);
    assert!(!default2.text.contains("Backlog:"), "{}", default2.text);
    let third = digest::run(&cfg, &store, false, &mut Vec::new()).await.unwrap();
    assert_eq!((third.messages_sent, third.hits_sent), (1, 2), "{third:?}");
    assert!(store.unsent_hits().await.unwrap().is_empty());
    let mut all: Vec<i64> = outbox(&out).iter().flat_map(|m| hit_numbers(&m.text)).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=18).collect::<Vec<i64>>(), "every hit delivered exactly once");
}

#[tokio::test]
async fn hits_list_shows_a_routes_unsent_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("outbox");
    let cfg = config(dir.path(), TransportConfig::File { outbox: out.clone() }, &["psd-kent@example.invalid"]);
    let store = seeded_store(&cfg).await;
    let essex = backlog_hit(20, Some("Essex Police"), Severity::Low, 0, 9);
    store.commit_page(PageCommit { source: "test".into(), accounts: vec![], hits: vec![essex], cursor: None }).await.unwrap();
    store.close().await;
    let config_file = dir.path().join("config.toml");
    std::fs::write(
        &config_file,
        format!(
            "database = {:?}\n[mail]\nfrom = \"m@psd.example.invalid\"\noutbox = {:?}\n[routing]\ndefault = [\"triage@example.invalid\"]\n\
             [routing.forces]\n\"Kent Police\" = [\"psd-kent@example.invalid\"]\n\"Thames Valley Police\" = [\"psd-tvp@example.invalid\"]\n",
            cfg.database, out
        ),
    )
    .unwrap();
    let list = |args: &[&str]| -> (bool, Vec<String>, String) {
        let o = assert_cmd::Command::cargo_bin("exposure-monitor")
            .unwrap()
            .arg("--config")
            .arg(&config_file)
            .args(["hits", "list", "--format", "json"])
            .args(args)
            .output()
            .unwrap();
        let forces = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["force"].as_str().unwrap_or("(none)").to_string())
            .collect();
        (o.status.success(), forces, String::from_utf8_lossy(&o.stderr).to_string())
    };
    assert_eq!(list(&["--unsent", "--route", "Kent Police"]).1, ["Kent Police"]);
    assert_eq!(list(&["--unsent", "--route", "TVP"]).1, ["Thames Valley Police"], "an alias names its force's route");
    let mut default = list(&["--unsent", "--route", "default"]).1;
    default.sort();
    assert_eq!(default, ["(none)", "Essex Police"], "unknown and unrouted forces");
    let (ok, _, err) = list(&["--route", "Essex Police"]);
    assert!(!ok && err.contains("not a route") && err.contains("Kent Police, Thames Valley Police"), "{err}");

    // Once sent, a hit is no longer in the backlog.
    let store = Store::open(&cfg.database).await.unwrap();
    digest::run(&cfg, &store, false, &mut Vec::new()).await.unwrap();
    store.close().await;
    assert!(list(&["--unsent", "--route", "Kent Police"]).1.is_empty());
    assert_eq!(list(&["--route", "Kent Police"]).1, ["Kent Police"]);
}
