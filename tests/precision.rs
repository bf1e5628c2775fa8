//! Precision controls through the binary: remembered suppression (scan, dismiss, re-scan) and
//! redaction (`hits show` masked by default, `--reveal` unmasked and audited).

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn bin() -> Command {
    Command::cargo_bin("exposure-monitor").unwrap()
}

const ACCOUNTS: &str = r#"{"id": "a1", "platform": "mastodon", "handle": "@nightshift_nell@social.example", "display_name": "Nell", "bio": "PC 4471 | Response team, Maidstone | Kent Police | views my own"}
{"id": "a2", "platform": "mastodon", "handle": "@skipper_sam@social.example", "display_name": "Sam", "bio": "Custody sergeant, Kent Police. Opinions mine."}
"#;

const MEDIA: &str = "Any journos want the real story on the Dewsbury stabbing, DM me. Off the record obviously.";

fn post(id: &str, account: &str, day: u32, text: &str) -> String {
    serde_json::json!({"id": id, "account_id": account, "platform": "mastodon",
        "created_at": format!("2026-11-{day:02}T06:00:00Z"), "text": text})
    .to_string()
        + "\n"
}

/// A config scanning a corpus directory of our own (replay source) into `dir`.
fn setup(dir: &Path, posts: &[String]) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("accounts.jsonl"), ACCOUNTS).unwrap();
    std::fs::write(data.join("posts.jsonl"), posts.concat()).unwrap();
    let config = common::demo_config(dir, "");
    let demo = common::repo().join("config/demo-data").display().to_string();
    let text = std::fs::read_to_string(&config).unwrap().replace(&demo, &data.display().to_string());
    std::fs::write(&config, text).unwrap();
    (config, data)
}

fn append(data: &Path, posts: &[String]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(data.join("posts.jsonl")).unwrap();
    f.write_all(posts.concat().as_bytes()).unwrap();
}

fn stdout(config: &Path, args: &[&str]) -> String {
    let out = bin().arg("--config").arg(config).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Stored hits by post id.
fn hits(config: &Path) -> Vec<serde_json::Value> {
    stdout(config, &["hits", "list", "--format", "json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn hit_for<'a>(hits: &'a [serde_json::Value], post: &str) -> Option<&'a serde_json::Value> {
    hits.iter().find(|h| h["post_platform_id"] == post)
}

fn rules(hit: &serde_json::Value) -> Vec<String> {
    hit["classification"]["findings"].as_array().unwrap().iter().map(|f| f["rule_id"].as_str().unwrap().to_string()).collect()
}

/// The `suppressed` column of the scan table's row for the `demo` source.
fn suppressed_in_scan(table: &str) -> u64 {
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let col = header.iter().position(|h| *h == "suppressed").expect("a suppressed column");
    let row: Vec<&str> = table.lines().find(|l| l.starts_with("demo")).unwrap().split_whitespace().collect();
    row[col].parse().unwrap()
}

#[test]
fn a_dismissed_finding_is_suppressed_in_later_scans_and_counted_in_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    // p1b: the same account posted the same thing twice before anyone reviewed it.
    let (config, data) = setup(dir.path(), &[post("p1", "a1", 10, MEDIA), post("p1b", "a1", 11, MEDIA)]);
    let first = stdout(&config, &["scan"]);
    assert_eq!(suppressed_in_scan(&first), 0);
    let all = hits(&config);
    let p1 = hit_for(&all, "p1").expect("the media contact post is a hit");
    let p1_rules = rules(p1);
    assert!(p1_rules.len() >= 2, "{p1_rules:?}");
    let p1_id = p1["id"].to_string();

    let out = stdout(&config, &["hits", "review", &p1_id, "--status", "dismissed", "--note", "banter", "--reviewer", "DS Test"]);
    assert!(out.contains(&format!("{} finding(s) of this account will be suppressed", p1_rules.len())), "{out}");

    // The same findings again (other case and punctuation) from the same account; one of them
    // next to a new, different finding; the same post from another serving account.
    append(
        &data,
        &[
            post("p3", "a1", 12, "Journos: want the REAL story on the Dewsbury stabbing?? DM me... Off the record, obviously!"),
            post("p4", "a1", 13, "Off the record: warrant going in at 5am Thursday on the Ringlestone estate. Say no more"),
            post("p5", "a2", 14, MEDIA),
        ],
    );
    let second = stdout(&config, &["scan"]);
    let all = hits(&config);
    assert!(hit_for(&all, "p3").is_none(), "a fully suppressed post was stored: {all:#?}");
    let p4 = hit_for(&all, "p4").expect("a post with a finding that is not suppressed is still a hit");
    let p4_rules = rules(p4);
    assert!(!p4_rules.is_empty() && p4_rules.iter().all(|r| !p1_rules.contains(r)), "{p4_rules:?} vs {p1_rules:?}");
    assert!(!p4["categories"].as_array().unwrap().iter().any(|c| c == "media_contact"), "{p4}");
    let p5 = hit_for(&all, "p5").expect("another account's identical post still hits");
    assert_eq!(rules(p5), p1_rules);
    // p3's findings plus p4's suppressed one.
    let expected = p1_rules.len() as u64 + 1;
    assert_eq!(suppressed_in_scan(&second), expected, "{second}");

    // The digest's coverage says so, in both parts.
    let dry = stdout(&config, &["digest", "--dry-run"]);
    assert!(dry.contains(&format!("Suppressed: {expected} findings not reported again")), "{dry}");
    stdout(&config, &["digest"]);
    let mail = common::emls(&dir.path().join("outbox")).concat();
    assert!(mail.contains("Suppressed:"), "{mail}");

    // Confirming another hit with the same finding lifts nothing, and says what still holds.
    let p5_id = p5["id"].to_string();
    let out = stdout(&config, &["hits", "review", &p5_id, "--status", "confirmed", "--note", "real", "--reviewer", "DS Test"]);
    assert!(!out.contains("lifted") && !out.contains("reported again"), "{out}");
    // Confirming the same account's other hit with the same finding changes nothing either,
    // and says which dismissal still suppresses it.
    let p1b_id = hit_for(&all, "p1b").expect("the repeated post was stored before the dismissal")["id"].to_string();
    let out = stdout(&config, &["hits", "review", &p1b_id, "--status", "confirmed", "--note", "real", "--reviewer", "DS Test"]);
    assert!(out.contains(&format!("stays suppressed in later scans by the dismissal of hit {p1_id}")), "{out}");
    assert!(!out.contains("reported again"), "{out}");

    // Re-reviewing the dismissed hit itself lifts its suppressions, out loud and in the audit.
    let out =
        stdout(&config, &["hits", "review", &p1_id, "--status", "escalated", "--note", "second look", "--reviewer", "DI X"]);
    assert!(out.contains(&format!("{} suppressed finding(s) will be reported again", p1_rules.len())), "{out}");
    let audit = stdout(&config, &["audit"]);
    assert!(audit.contains("suppression added") && audit.contains("suppression lifted"), "{audit}");
    append(&data, &[post("p6", "a1", 15, MEDIA)]);
    let third = stdout(&config, &["scan"]);
    assert_eq!(suppressed_in_scan(&third), 0);
    assert!(hit_for(&hits(&config), "p6").is_some(), "after the lift the finding hits again");
    // The status report keeps the per-run counts (stored with each run).
    let status = stdout(&config, &["status"]);
    assert!(status.contains(&format!("suppressed {expected}")), "{status}");
}

#[test]
fn hits_show_masks_personal_data_and_reveal_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        "Job on Elmtree Close tonight: the victim is Kelly Brennan, 34, same bloke as last month. His van KE19 XWP outside.";
    let (config, _) = setup(dir.path(), &[post("p2", "a1", 11, text)]);
    stdout(&config, &["scan"]);
    let all = hits(&config);
    let id = hit_for(&all, "p2").expect("a personal data hit")["id"].to_string();

    let masked = stdout(&config, &["hits", "show", &id]);
    for secret in ["Kelly", "Brennan", "XWP"] {
        assert!(!masked.contains(secret), "{secret} shown without --reveal:\n{masked}");
    }
    assert!(masked.contains("[name]") && masked.contains("KE19 ***"), "{masked}");
    assert!(masked.contains(&format!("hits show {id} --reveal")), "{masked}");
    let audit = stdout(&config, &["audit"]);
    assert!(!audit.contains("reveal"), "{audit}");

    let revealed = stdout(&config, &["hits", "show", &id, "--reveal"]);
    assert!(revealed.contains("Kelly Brennan") && revealed.contains("KE19 XWP"), "{revealed}");
    let audit = stdout(&config, &["audit"]);
    let line = audit.lines().find(|l| l.contains("reveal")).expect("an audit entry for the reveal");
    assert!(line.contains(&format!("hit {id}")), "{line}");
    // The table of `hits list` is masked too; the JSON (machine) output is the evidence as stored.
    let table = stdout(&config, &["hits", "list"]);
    assert!(!table.contains("Brennan"), "{table}");
}
