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
