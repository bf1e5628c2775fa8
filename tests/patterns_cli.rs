//! `patterns check` and `patterns test` through the binary: the shipped rules load and pass
//! their own examples (so CI fails on a broken rule), and broken rules are reported with file,
//! line and rule id.

mod common;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

fn bin() -> Command {
    let mut c = Command::cargo_bin("exposure-monitor").unwrap();
    c.current_dir(common::repo()).env_remove("EXPOSURE_MONITOR_CONFIG");
    c
}

#[test]
fn shipped_patterns_load() {
    bin().args(["patterns", "check", "--patterns", "patterns"]).assert().success().stdout(contains("all pattern files load"));
}

#[test]
fn shipped_patterns_pass_their_own_examples() {
    bin().args(["patterns", "test", "--patterns", "patterns"]).assert().success().stdout(contains(" 0 failed"));
}

#[test]
fn one_rule_can_be_tested_alone_and_an_unknown_rule_is_an_error() {
    bin()
        .args(["patterns", "test", "--patterns", "patterns", "--rule", "pd.vehicle_registration"])
        .assert()
        .success()
        .stdout(contains("1 rules"));
    bin().args(["patterns", "test", "--patterns", "patterns", "--rule", "no.such.rule"]).assert().failure();
}

const GOOD: &str = r#"
[[rule]]
id = "t.good"
category = "political"
severity = "low"
terms = ["vote them out"]
match = ["vote them out in May"]
no_match = ["vote of thanks"]
"#;

#[test]
fn a_broken_regex_is_reported_with_file_line_and_rule_id() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.toml"), GOOD).unwrap();
    std::fs::write(
        dir.path().join("broken.toml"),
        "[[rule]]\nid = \"t.broken\"\ncategory = \"operational\"\nseverity = \"high\"\nregex = '''raid (tomorrow'''\nmatch = [\"raid tomorrow\"]\n\n[[rule]]\nid = \"t.badsev\"\ncategory = \"operational\"\nseverity = \"urgent\"\nterms = [\"x\"]\nmatch = [\"x\"]\n",
    )
    .unwrap();
    let out = bin().args(["patterns", "check", "--patterns"]).arg(dir.path()).assert().failure().get_output().stdout.clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("broken.toml:5 [rule t.broken]") && out.contains("unclosed group"), "{out}");
    assert!(out.contains("broken.toml:11 [rule t.badsev]") && out.contains("urgent"), "{out}");
    assert!(out.contains("2 error(s)"), "{out}");
}

#[test]
fn a_failing_example_fails_patterns_test() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.toml"),
        GOOD.replace("no_match = [\"vote of thanks\"]", "no_match = [\"please vote them out\"]"),
    )
    .unwrap();
    bin()
        .args(["patterns", "test", "--patterns"])
        .arg(dir.path())
        .assert()
        .failure()
        .stdout(contains("FAIL t.good").and(contains("should not match")));
}
