//! The digest's SMTP transport against the real SMTP sink from `../shared/peers`
//! (`start-smtp-sink.sh`, aiosmtpd): plain, STARTTLS + AUTH, implicit TLS, a wrong password, an
//! untrusted certificate, 550 and 451 recipients, and `digest::run` end to end over SMTP.
//!
//! Peers (see `.ci/run`): a plain sink in `SMTP_SINK_HOST`/`SMTP_SINK_PORT`/`SMTP_SINK_OUTDIR`,
//! and a STARTTLS sink requiring AUTH `monitor:s3cret-test` in `SMTP_TLS_SINK_HOST`,
//! `SMTP_TLS_SINK_PORT`, `SMTP_TLS_SINK_SMTPS_PORT`, `SMTP_TLS_SINK_OUTDIR`, `SMTP_TLS_SINK_CA`.
//! A missing peer skips visibly, or fails under `REQUIRE_PEERS=1`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use exposure_monitor::classify::{Classification, Finding};
use exposure_monitor::config::{Config, DigestSettings, MailConfig, Retention, Routing, SmtpConfig, TlsMode, TransportConfig};
use exposure_monitor::digest::{self, Coverage, PlannedDigest, RetryPolicy, SendError, Transport};
use exposure_monitor::identify::IdentityVerdict;
use exposure_monitor::model::{Category, Identity, Severity};
use exposure_monitor::store::{HitRecord, ReviewStatus};
use mail_parser::MessageParser;

const FROM: &str = "Exposure Monitor <monitor@psd.example.invalid>";

struct Sink {
    host: String,
    port: u16,
    outdir: PathBuf,
}

fn plain_sink() -> Option<Sink> {
    Some(Sink {
        host: common::peer("SMTP_SINK_HOST")?,
        port: common::peer("SMTP_SINK_PORT")?.parse().expect("SMTP_SINK_PORT is a port"),
        outdir: common::peer("SMTP_SINK_OUTDIR")?.into(),
    })
}

struct TlsSink {
    sink: Sink,
    smtps_port: u16,
    ca: PathBuf,
}

fn tls_sink() -> Option<TlsSink> {
    Some(TlsSink {
        sink: Sink {
            host: common::peer("SMTP_TLS_SINK_HOST")?,
            port: common::peer("SMTP_TLS_SINK_PORT")?.parse().expect("SMTP_TLS_SINK_PORT is a port"),
            outdir: common::peer("SMTP_TLS_SINK_OUTDIR")?.into(),
        },
        smtps_port: common::peer("SMTP_TLS_SINK_SMTPS_PORT")?.parse().expect("SMTP_TLS_SINK_SMTPS_PORT is a port"),
        ca: common::peer("SMTP_TLS_SINK_CA")?.into(),
    })
}

fn smtp_config(host: &str, port: u16, tls: TlsMode) -> SmtpConfig {
    SmtpConfig { host: host.into(), port, tls, username: None, password_env: None, timeout_secs: 10, ca_file: None }
}

/// Set a password variable unique to the calling test (tests run in parallel threads).
fn password_var(test: &str, value: &str) -> String {
    let var = format!("EM_DIGEST_TEST_PW_{}", test.to_ascii_uppercase());
    std::env::set_var(&var, value);
    var
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy { attempts: 3, base_delay: Duration::from_millis(200) }
}

fn hit(id: i64, force: Option<&str>, handle: &str, text: &str, word: &str) -> HitRecord {
    let at = text.find(word).expect("word in text");
    HitRecord {
        id,
        source: "test".into(),
        platform: "mastodon".into(),
        account_platform_id: format!("acct-{handle}"),
        account_handle: handle.into(),
        account_display_name: format!("PC {handle}\r\nBcc: attacker@example.invalid"),
        profile_url: Some(format!("https://social.example/@{handle}")),
        force: force.map(str::to_string),
        post_platform_id: format!("post-{id}"),
        post_url: Some(format!("https://social.example/@{handle}/{id}")),
        post_created_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 30, 0).unwrap(),
        retrieved_at: Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap(),
        text: text.into(),
        categories: vec![Category::Operational],
        severity: Severity::High,
        classification: Classification {
            lang: None,
            categories: vec![Category::Operational],
            severity: Some(Severity::High),
            findings: vec![Finding {
                rule_id: "operational.test".into(),
                category: Category::Operational,
                severity: Severity::High,
                spans: vec![at..at + word.len()],
                matched: word.into(),
            }],
        },
        identity: IdentityVerdict {
            identity: Identity::Serving,
            score: 0.9,
            force: force.map(str::to_string),
            role: None,
            evidence: vec![],
        },
        status: ReviewStatus::New,
        digest_id: None,
    }
}

fn config(transport: TransportConfig, routes: &[(&str, &[&str])], default: &[&str], dir: &Path) -> Config {
    let forces: BTreeMap<String, Vec<String>> =
        routes.iter().map(|(f, r)| (f.to_string(), r.iter().map(|s| s.to_string()).collect())).collect();
    Config {
        path: dir.join("config.toml"),
        database: dir.join("monitor.db"),
        patterns: dir.join("patterns"),
        forces: exposure_monitor::forces::Forces::embedded(),
        operator_contact: String::new(),
        sources: vec![],
        mail: MailConfig { from: FROM.into(), transport },
        routing: Routing { forces, default: default.iter().map(|s| s.to_string()).collect() },
        retention: Retention { dismissed_days: 30, days: 365 },
        digest: DigestSettings { send_empty: true, subject_prefix: "[em-test]".into(), max_hits_per_route: 150 },
    }
}

/// A one-route digest with a unique marker word, so parallel tests tell their mail apart.
fn planned(to: &[&str], marker: &str) -> PlannedDigest {
    let dir = std::env::temp_dir();
    let cfg = config(TransportConfig::File { outbox: dir.join("unused") }, &[("Kent Police", to)], &["x@example.invalid"], &dir);
    let text = format!("<script>alert(1)</script> briefing {marker} at Elmtree Close");
    // The Message-ID derives from route + hit ids: give each test its own hit id.
    let id = marker.bytes().fold(7i64, |h, b| (h * 31 + b as i64) % 1_000_000_007);
    let hits = vec![hit(id, Some("Kent Police"), "pc_kent", &text, marker)];
    let mut plans = digest::plan(&cfg, &hits, &[], &Coverage::default(), Utc::now()).unwrap().messages;
    plans.retain(|p| p.route == "Kent Police");
    assert_eq!(plans.len(), 1);
    plans.pop().unwrap()
}

/// The message the sink saved with this Message-ID, with its envelope (`NNNNNN.json`).
fn received(outdir: &Path, message_id: &str) -> Option<(String, serde_json::Value)> {
    let want = message_id.trim_matches(['<', '>']);
    for entry in std::fs::read_dir(outdir).ok()? {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "eml") {
            let raw = std::fs::read_to_string(&path).unwrap();
            let msg = MessageParser::default().parse(raw.as_bytes()).unwrap();
            if msg.message_id() == Some(want) {
                let json = std::fs::read_to_string(path.with_extension("json")).unwrap();
                return Some((raw, serde_json::from_str(&json).unwrap()));
            }
        }
    }
    None
}

fn assert_digest_mail(raw: &str, envelope: &serde_json::Value, digest: &PlannedDigest, marker: &str) {
    let msg = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(msg.subject(), Some(digest.rendered.subject.as_str()));
    let to: Vec<&str> = msg.to().unwrap().iter().filter_map(|a| a.address()).collect();
    assert_eq!(to, digest.recipients.iter().map(String::as_str).collect::<Vec<_>>());
    let rcpt: Vec<&str> = envelope["rcpt_tos"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(rcpt, to, "envelope recipients are the route's, nobody else");
    assert_eq!(envelope["mail_from"], "monitor@psd.example.invalid");
    let text = msg.body_text(0).unwrap();
    let html = msg.body_html(0).unwrap();
    assert!(text.contains(&format!("[[{marker}]] at Elmtree Close")), "{text}");
    assert!(html.contains(&format!("<b>{marker}</b></mark>")), "{html}");
    assert!(!html.to_ascii_lowercase().contains("<script"), "{html}");
    assert!(html.contains("&lt;script&gt;"));
    let header_end = raw.find("\r\n\r\n").unwrap_or(raw.len());
    let headers = raw[..header_end].to_ascii_lowercase();
    assert!(!headers.contains("\nbcc:") && !headers.contains("attacker"), "{headers}");
    assert!(headers.contains("content-type: multipart/alternative"), "{headers}");
}

#[tokio::test]
async fn plain_sink_receives_a_multipart_digest_for_the_route_only() {
    let Some(sink) = plain_sink() else { return };
    let d = planned(&["psd-kent@example.invalid", "duty-kent@example.invalid"], "plainmarker");
    let msg = digest::build_message(FROM, &d).unwrap();
    let t = Transport::smtp(&smtp_config(&sink.host, sink.port, TlsMode::None), fast_retry()).unwrap();
    t.send(&msg, &d.route).await.expect("plain sink accepts");
    let (raw, env) = received(&sink.outdir, &d.message_id).expect("the sink saved the message");
    assert_digest_mail(&raw, &env, &d, "plainmarker");
    assert_eq!(env["tls"], false);
}

#[tokio::test]
async fn starttls_with_auth_delivers_over_tls() {
    let Some(s) = tls_sink() else { return };
    let mut cfg = smtp_config(&s.sink.host, s.sink.port, TlsMode::Starttls);
    cfg.ca_file = Some(s.ca.clone());
    cfg.username = Some("monitor".into());
    cfg.password_env = Some(password_var("starttls", "s3cret-test"));
    let d = planned(&["psd-kent@example.invalid"], "starttlsmarker");
    let t = Transport::smtp(&cfg, fast_retry()).unwrap();
    t.send(&digest::build_message(FROM, &d).unwrap(), &d.route).await.expect("STARTTLS + AUTH accepted");
    let (raw, env) = received(&s.sink.outdir, &d.message_id).expect("the sink saved the message");
    assert_digest_mail(&raw, &env, &d, "starttlsmarker");
    assert_eq!(env["tls"], true);
    assert_eq!(env["auth_login"], "monitor");
}

#[tokio::test]
async fn implicit_tls_delivers() {
    let Some(s) = tls_sink() else { return };
    let mut cfg = smtp_config(&s.sink.host, s.smtps_port, TlsMode::Implicit);
    cfg.ca_file = Some(s.ca.clone());
    cfg.username = Some("monitor".into());
    cfg.password_env = Some(password_var("implicit", "s3cret-test"));
    let d = planned(&["psd-kent@example.invalid"], "smtpsmarker");
    let t = Transport::smtp(&cfg, fast_retry()).unwrap();
    t.send(&digest::build_message(FROM, &d).unwrap(), &d.route).await.expect("implicit TLS accepted");
    let (_, env) = received(&s.sink.outdir, &d.message_id).expect("the sink saved the message");
    assert_eq!(env["tls"], true);
}

#[tokio::test]
async fn wrong_password_is_a_permanent_failure_and_nothing_is_delivered() {
    let Some(s) = tls_sink() else { return };
    let mut cfg = smtp_config(&s.sink.host, s.sink.port, TlsMode::Starttls);
    cfg.ca_file = Some(s.ca.clone());
    cfg.username = Some("monitor".into());
    cfg.password_env = Some(password_var("wrongpw", "not-the-password"));
    let d = planned(&["psd-kent@example.invalid"], "wrongpwmarker");
    let t = Transport::smtp(&cfg, fast_retry()).unwrap();
    let started = Instant::now();
    let err = t.send(&digest::build_message(FROM, &d).unwrap(), &d.route).await.unwrap_err();
    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    assert_eq!(err.code(), Some("535"), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "the password leaked into the error: {err}");
    assert!(started.elapsed() < fast_retry().base_delay, "a permanent failure must not be retried");
    assert!(received(&s.sink.outdir, &d.message_id).is_none());
}

#[tokio::test]
async fn untrusted_certificate_is_refused() {
    let Some(s) = tls_sink() else { return };
    // The sink's certificate is signed by its own CA; without ca_file it must not be trusted.
    let mut cfg = smtp_config(&s.sink.host, s.sink.port, TlsMode::Starttls);
    cfg.username = Some("monitor".into());
    cfg.password_env = Some(password_var("untrusted", "s3cret-test"));
    let d = planned(&["psd-kent@example.invalid"], "untrustedmarker");
    let t = Transport::smtp(&cfg, fast_retry()).unwrap();
    let err = t.send(&digest::build_message(FROM, &d).unwrap(), &d.route).await.unwrap_err();
    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    assert!(received(&s.sink.outdir, &d.message_id).is_none());
}

#[tokio::test]
async fn starttls_required_refuses_a_server_without_it() {
    let Some(sink) = plain_sink() else { return };
    // The plain sink offers no STARTTLS: with tls = starttls nothing may go out in clear.
    let d = planned(&["psd-kent@example.invalid"], "nostarttlsmarker");
    let t = Transport::smtp(&smtp_config(&sink.host, sink.port, TlsMode::Starttls), fast_retry()).unwrap();
    let err = t.send(&digest::build_message(FROM, &d).unwrap(), &d.route).await.unwrap_err();
    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    assert!(received(&sink.outdir, &d.message_id).is_none());
}

#[tokio::test]
async fn rejected_recipient_550_is_permanent_and_nothing_is_delivered() {
    let Some(sink) = plain_sink() else { return };
    let d = planned(&["psd-kent@example.invalid", "reject-me@example.invalid"], "rejectmarker");
    let t = Transport::smtp(&smtp_config(&sink.host, sink.port, TlsMode::None), fast_retry()).unwrap();
    let started = Instant::now();
    let err = t.send(&digest::build_message(FROM, &d).unwrap(), &d.route).await.unwrap_err();
    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    assert_eq!(err.code(), Some("550"), "{err}");
    assert!(started.elapsed() < fast_retry().base_delay, "a permanent failure must not be retried");
    assert!(received(&sink.outdir, &d.message_id).is_none(), "a partly refused digest must not be half-delivered");
}

#[tokio::test]
async fn tempfail_recipient_451_is_retried_with_backoff_then_reported() {
    let Some(sink) = plain_sink() else { return };
    let d = planned(&["psd-kent@example.invalid", "tempfail@example.invalid"], "tempfailmarker");
    let retry = fast_retry();
    let t = Transport::smtp(&smtp_config(&sink.host, sink.port, TlsMode::None), retry).unwrap();
    let started = Instant::now();
    let err = t.send(&digest::build_message(FROM, &d).unwrap(), &d.route).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, SendError::Transient { attempts: 3, .. }), "{err:?}");
    assert_eq!(err.code(), Some("451"), "{err}");
    // Two waits between three attempts: base, then twice base.
    assert!(elapsed >= retry.base_delay * 3, "no backoff between attempts: {elapsed:?}");
    assert!(received(&sink.outdir, &d.message_id).is_none());
}

#[tokio::test]
async fn run_sends_one_message_per_route_and_reports_the_failed_route() {
    let Some(sink) = plain_sink() else { return };
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("runmarker{}", std::process::id());
    let prefix = format!("[{marker}]");
    let mut cfg = config(
        TransportConfig::Smtp(smtp_config(&sink.host, sink.port, TlsMode::None)),
        &[("Kent Police", &["psd-kent@example.invalid"]), ("Essex Police", &["reject-essex@example.invalid"])],
        &["triage@example.invalid"],
        dir.path(),
    );
    cfg.digest.subject_prefix = prefix.clone();
    let store = exposure_monitor::store::Store::open(&cfg.database).await.unwrap();
    // A fresh database: no hits, so every route gets the "nothing found" message.
    let mut out = Vec::new();
    let outcome = digest::run(&cfg, &store, false, &mut out).await.unwrap();
    assert_eq!(outcome.messages_sent, 2, "{outcome:?}");
    assert_eq!(outcome.failures.len(), 1, "{outcome:?}");
    assert_eq!(outcome.failures[0].0, "Essex Police");
    assert!(outcome.failures[0].1.contains("550"), "{outcome:?}");
    // What the sink got: exactly one message each for Kent and the default route, to them only.
    let mut got: Vec<(Vec<String>, String)> = vec![];
    for entry in std::fs::read_dir(&sink.outdir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "eml") {
            let raw = std::fs::read(&path).unwrap();
            let msg = MessageParser::default().parse(&raw).unwrap();
            let subject = msg.subject().unwrap_or_default().to_string();
            if subject.starts_with(&prefix) {
                let to = msg.to().unwrap().iter().filter_map(|a| a.address()).map(str::to_string).collect();
                assert!(msg.body_text(0).unwrap().contains("Nothing found"));
                got.push((to, subject));
            }
        }
    }
    got.sort();
    let tos: Vec<&[String]> = got.iter().map(|(t, _)| t.as_slice()).collect();
    assert_eq!(tos, vec![&["psd-kent@example.invalid".to_string()][..], &["triage@example.invalid".to_string()][..]]);
    assert!(got[0].1.contains("Kent Police: nothing found"), "{got:?}");
    assert!(got[1].1.contains("Default route: nothing found"), "{got:?}");
}

#[tokio::test]
async fn dry_run_prints_and_sends_nothing() {
    let Some(sink) = plain_sink() else { return };
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("drymarker{}", std::process::id());
    let mut cfg = config(
        TransportConfig::Smtp(smtp_config(&sink.host, sink.port, TlsMode::None)),
        &[("Kent Police", &["psd-kent@example.invalid"])],
        &["triage@example.invalid"],
        dir.path(),
    );
    cfg.digest.subject_prefix = format!("[{marker}]");
    let store = exposure_monitor::store::Store::open(&cfg.database).await.unwrap();
    let mut out = Vec::new();
    let outcome = digest::run(&cfg, &store, true, &mut out).await.unwrap();
    assert_eq!((outcome.messages_sent, outcome.failures.len()), (0, 0));
    let printed = String::from_utf8(out).unwrap();
    assert!(printed.contains("To: psd-kent@example.invalid") && printed.contains("To: triage@example.invalid"), "{printed}");
    assert!(printed.contains("Nothing found"), "{printed}");
    for entry in std::fs::read_dir(&sink.outdir).unwrap() {
        let raw = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains(&marker), "a dry run sent mail");
    }
}
