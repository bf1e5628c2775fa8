//! The binary end to end on the bundled demo data: scan → store → digest into a file outbox.

mod common;

use assert_cmd::Command;
use mail_parser::MessageParser;
use predicates::prelude::*;

fn bin() -> Command {
    Command::cargo_bin("exposure-monitor").unwrap()
}

/// A parsed digest: recipients, subject, text part, HTML part, raw headers.
struct Mail {
    to: String,
    subject: String,
    text: String,
    html: String,
    raw_headers: String,
}

fn parse(raw: &str) -> Mail {
    let msg = MessageParser::default().parse(raw.as_bytes()).expect("parseable .eml");
    let to = msg.to().map(|a| a.iter().filter_map(|x| x.address()).collect::<Vec<_>>().join(",")).unwrap_or_default();
    let header_end = raw.find("\r\n\r\n").or_else(|| raw.find("\n\n")).unwrap_or(raw.len());
    Mail {
        to,
        subject: msg.subject().unwrap_or_default().to_string(),
        text: msg.body_text(0).map(|t| t.to_string()).unwrap_or_default(),
        html: msg.body_html(0).map(|t| t.to_string()).unwrap_or_default(),
        raw_headers: raw[..header_end].to_string(),
    }
}

fn hit_count(config: &std::path::Path) -> usize {
    let out = bin().args(["--config"]).arg(config).args(["hits", "list", "--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().count()
}

#[test]
fn run_on_demo_leaves_a_routed_digest_in_the_outbox_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::demo_config(dir.path(), "");
    bin().arg("--config").arg(&config).arg("run").assert().success().stdout(predicate::str::contains("demo"));

    let mails: Vec<Mail> = common::emls(&dir.path().join("outbox")).iter().map(|r| parse(r)).collect();
    assert!(!mails.is_empty(), "no digest written");
    let kent = mails.iter().find(|m| m.to.contains("psd-kent@")).expect("a message for Kent PSD");
    let tvp = mails.iter().find(|m| m.to.contains("psd-tvp@")).expect("a message for Thames Valley PSD");
    // Routing: each force's hits go only to its own PSD.
    assert!(kent.text.contains("Elmtree Close"), "{}", kent.text);
    assert!(!kent.text.contains("Oxford United"), "a Thames Valley hit in Kent's digest");
    assert!(tvp.text.contains("Oxford United"), "{}", tvp.text);
    assert!(!tvp.text.contains("Elmtree Close"), "a Kent hit in Thames Valley's digest");
    // Personal data in excerpts is masked in both parts; the stored evidence is not.
    for (m, secrets) in [(kent, &["Kelly Brennan", "XWP", "Mill Lane"][..]), (tvp, &["Marcus Vell", "Cowley Road"][..])] {
        for secret in secrets {
            assert!(!m.text.contains(secret) && !m.html.contains(secret), "{secret} unmasked in {}", m.subject);
        }
    }
    assert!(kent.text.contains("KE19 ***") && tvp.text.contains("[address]"), "{}", tvp.text);
    for m in &mails {
        assert!(!m.html.is_empty() && !m.text.is_empty(), "both parts in {}", m.subject);
        // Accounts that are not serving police never produce a hit.
        for not_serving in ["retired_ron", "gmp-bolton-north", "proud_police_mum", "gadget_pete", "fashion-police-freya"] {
            assert!(!m.text.contains(not_serving), "{not_serving} in digest {}", m.subject);
        }
    }

    // Hostile content is escaped in HTML and never reaches a header.
    let all_html: String = mails.iter().map(|m| m.html.as_str()).collect();
    assert!(all_html.contains("&lt;script&gt;"), "hostile post text should appear escaped");
    assert!(!all_html.to_ascii_lowercase().contains("<script"), "unescaped <script> in HTML part");
    for m in &mails {
        assert!(!m.raw_headers.to_ascii_lowercase().contains("\nbcc:"), "header injection: {}", m.raw_headers);
    }

    // Running again finds nothing new and sends nothing twice.
    let hits_before = hit_count(&config);
    assert!(hits_before >= 8, "only {hits_before} hits on the demo data");
    bin().arg("--config").arg(&config).arg("run").assert().success();
    assert_eq!(hit_count(&config), hits_before, "re-running the scan duplicated hits");
    let again: Vec<Mail> = common::emls(&dir.path().join("outbox")).iter().map(|r| parse(r)).collect();
    let with_hits_again = again.len() - mails.len();
    for m in &again[mails.len()..] {
        assert!(!m.text.contains("Elmtree Close"), "a hit was sent twice");
    }
    let _ = with_hits_again;
}

#[test]
fn review_takes_a_hit_out_of_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::demo_config(dir.path(), "");
    bin().arg("--config").arg(&config).arg("scan").assert().success();
    let out = bin().arg("--config").arg(&config).args(["hits", "list", "--status", "new", "--format", "json"]).output().unwrap();
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().next().expect("a new hit")).unwrap();
    let id = first["id"].as_i64().unwrap().to_string();
    let queue = hit_count_with(&config, &["--status", "new"]);
    bin()
        .arg("--config")
        .arg(&config)
        .args(["hits", "review", &id, "--status", "dismissed", "--note", "banter, no breach", "--reviewer", "DS Test"])
        .assert()
        .success();
    assert_eq!(hit_count_with(&config, &["--status", "new"]), queue - 1);
    assert_eq!(hit_count_with(&config, &["--status", "dismissed"]), 1);
    bin()
        .arg("--config")
        .arg(&config)
        .args(["hits", "show", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains("dismissed"))
        .stdout(predicate::str::contains("findings:"))
        .stdout(predicate::str::contains("review log:"))
        .stdout(predicate::str::contains("banter, no breach"));
    // Who read and changed what is in the audit trail.
    bin()
        .arg("--config")
        .arg(&config)
        .args(["audit"])
        .assert()
        .success()
        .stdout(predicate::str::contains("hits review"))
        .stdout(predicate::str::contains(format!("hit {id} -> dismissed")))
        .stdout(predicate::str::contains("hits show"));
    bin()
        .arg("--config")
        .arg(&config)
        .args(["hits", "show", "999999"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("999999"));
}

fn hit_count_with(config: &std::path::Path, filter: &[&str]) -> usize {
    let out = bin().arg("--config").arg(config).args(["hits", "list", "--format", "json"]).args(filter).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().count()
}

#[test]
fn a_bad_config_exits_1_naming_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "databse = \"x.db\"\n[mail]\nfrom = \"a@b.example\"\n[routing]\ndefault = [\"c@d.example\"]\n")
        .unwrap();
    bin()
        .arg("--config")
        .arg(&path)
        .arg("scan")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("line 1"))
        .stderr(predicate::str::contains("databse"));
}

#[test]
fn a_broken_source_is_reported_and_the_others_still_store() {
    let dir = tempfile::tempdir().unwrap();
    let extra =
        format!("\n[[sources]]\nname = \"broken\"\nkind = \"replay\"\ndir = \"{}\"\n", dir.path().join("missing").display());
    // Sources must come before [mail]; write a config with the broken source appended to the list.
    let config = common::demo_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).unwrap().replace("[mail]", &format!("{extra}\n[mail]"));
    std::fs::write(&config, text).unwrap();
    bin()
        .arg("--config")
        .arg(&config)
        .arg("scan")
        .assert()
        .code(2)
        .stdout(predicate::str::contains("broken"))
        .stdout(predicate::str::contains("missing"));
    assert!(hit_count(&config) > 0, "the working source's hits were not stored");
    bin().arg("--config").arg(&config).arg("status").assert().success().stdout(predicate::str::contains("broken"));
}

#[test]
fn dry_run_prints_the_digest_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::demo_config(dir.path(), "");
    bin().arg("--config").arg(&config).arg("scan").assert().success();
    bin()
        .arg("--config")
        .arg(&config)
        .args(["digest", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Elmtree Close"));
    assert!(common::emls(&dir.path().join("outbox")).is_empty(), "dry run wrote mail");
    bin().arg("--config").arg(&config).arg("digest").assert().success();
    assert!(!common::emls(&dir.path().join("outbox")).is_empty());
}

#[test]
fn an_overlapping_run_exits_3_and_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::demo_config(dir.path(), "");
    // Hold the lock as a slow scan would.
    let lock =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.path().join("monitor.db.lock")).unwrap();
    lock.lock().unwrap();
    bin()
        .arg("--config")
        .arg(&config)
        .arg("run")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("another exposure-monitor run is in progress"));
    assert!(!dir.path().join("monitor.db").exists(), "the locked-out run touched the database");
    drop(lock);
    bin().arg("--config").arg(&config).arg("scan").assert().success();
}

#[test]
fn export_gives_each_hit_its_url_retrieval_time_and_evidence_hash() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::demo_config(dir.path(), "");
    bin().arg("--config").arg(&config).arg("scan").assert().success();
    let json = bin().arg("--config").arg(&config).args(["hits", "export", "--format", "json"]).output().unwrap();
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8(json.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), hit_count(&config));
    let csv_path = dir.path().join("case.csv");
    bin().arg("--config").arg(&config).args(["hits", "export", "--format", "csv", "--output"]).arg(&csv_path).assert().success();
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), rows.len(), "one CSV row per hit, whatever the post text contains");
    for (row, rec) in rows.iter().zip(&records) {
        let hash = row["evidence_sha256"].as_str().unwrap();
        assert_eq!(hash.len(), 64);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(&rec[col("evidence_sha256")], hash, "the same hash in both formats");
        assert_eq!(&rec[col("id")], row["id"].to_string());
        assert!(!rec[col("retrieved_at")].is_empty());
        // Replay data has no post URLs; the column is there for platform hits.
        let _ = col("post_url");
        // A formula in post text must not run when PSD opens the export in a spreadsheet.
        assert!(!rec[col("text")].starts_with(['=', '+', '@']));
    }
    // The same evidence gives the same hash on a second export.
    let again = bin().arg("--config").arg(&config).args(["hits", "export", "--format", "json"]).output().unwrap();
    let again: Vec<serde_json::Value> =
        String::from_utf8(again.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows[0]["evidence_sha256"], again[0]["evidence_sha256"]);
    bin().arg("--config").arg(&config).args(["audit"]).assert().success().stdout(predicate::str::contains("hits export"));
}

#[test]
fn hits_list_prints_a_table_row_per_hit_and_says_when_there_are_none() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::demo_config(dir.path(), "");
    bin().arg("--config").arg(&config).arg("scan").assert().success();
    let n = hit_count(&config);
    assert!(n > 0, "the demo scan stored no hits");

    let out = bin().arg("--config").arg(&config).args(["hits", "list"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("id") && lines[0].contains("excerpt"), "{table}");
    assert_eq!(lines.len(), n + 1, "a header and one row per hit:\n{table}");
    // Personal data is masked in the excerpt column, as in the digest.
    assert!(!table.contains("Kelly Brennan"), "{table}");

    let limited = bin().arg("--config").arg(&config).args(["hits", "list", "--limit", "1"]).output().unwrap();
    assert_eq!(String::from_utf8(limited.stdout).unwrap().lines().count(), 2);

    let none = bin().arg("--config").arg(&config).args(["hits", "list", "--status", "escalated"]).output().unwrap();
    assert!(none.status.success());
    assert!(String::from_utf8(none.stdout).unwrap().contains("(no hits)"));
}
