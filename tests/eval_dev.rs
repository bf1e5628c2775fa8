//! Detection quality on the development corpus (`../shared/corpus/dev`), measured through the
//! library exactly as `eval` does. Skips visibly without `../shared`; fails under
//! REQUIRE_PEERS=1. Issue 4's targets are serving F1 0.95, hit P 0.92 / R 0.90, category F1 0.80.
//! The category rules were rewritten on structure (not dev phrases) and then corrected only on
//! error classes seen in the even-numbered half of dev; the thresholds are what that rule set
//! reaches on the whole of dev, rounded down.
//! Then (detect3) rules were widened by behaviour class (synonyms, slang, Welsh, emoji, gifts
//! from businesses, covert methods, first names next to a victim or suspect): dev hit P 1.000
//! R 0.943 F1 0.970; the odd-numbered half (its misses were read for classes, never phrases)
//! P 1.000 R 0.920. Thresholds are those figures rounded down.

mod common;

use exposure_monitor::eval;
use exposure_monitor::forces::Forces;
use exposure_monitor::model::Identity;
use exposure_monitor::patterns::Detector;

fn report() -> Option<eval::EvalReport> {
    let corpus = common::shared("corpus/dev")?;
    let detector = Detector::load(&common::repo().join("patterns"), &Forces::embedded()).expect("pattern files load");
    Some(eval::run(&corpus, &detector).expect("corpus reads"))
}

#[test]
fn dev_corpus_meets_the_detection_targets() {
    let Some(r) = report() else { return };
    println!("{r}");
    assert!(r.serving.f1() >= 0.97, "serving F1 {}", r.serving);
    assert!(r.hits.precision() >= 0.99, "hit precision {}", r.hits);
    assert!(r.hits.recall() >= 0.94, "hit recall {}", r.hits);
    assert!(r.hits.f1() >= 0.97, "hit F1 {}", r.hits);
    for (c, prf) in &r.categories {
        assert!(prf.f1() >= 0.84, "{c} F1 {prf}");
    }
    let false_hits: usize = r.false_hits_by_identity.values().sum();
    assert_eq!(false_hits, 0, "hits from official/associated/none accounts: {:?}", r.false_hits_by_identity);
}

#[test]
fn the_odd_numbered_half_of_dev_meets_its_thresholds() {
    let Some(dir) = common::shared("corpus/dev") else { return };
    let detector = Detector::load(&common::repo().join("patterns"), &Forces::embedded()).expect("pattern files load");
    let corpus = eval::Corpus::read(&dir).expect("corpus reads").subset(eval::is_odd_id);
    assert!(corpus.accounts.len() > 40 && corpus.posts.len() > 300, "odd half: {} accounts", corpus.accounts.len());
    let r = eval::evaluate(&corpus, &detector);
    println!("{r}");
    assert!(r.hits.precision() >= 0.97, "hit precision {}", r.hits);
    assert!(r.hits.recall() >= 0.91, "hit recall {}", r.hits);
    assert!(r.hits.f1() >= 0.95, "hit F1 {}", r.hits);
    let false_hits: usize = r.false_hits_by_identity.values().sum();
    assert_eq!(false_hits, 0, "hits from official/associated/none accounts: {:?}", r.false_hits_by_identity);
}

#[test]
fn official_and_none_accounts_are_never_read_as_serving() {
    let Some(r) = report() else { return };
    for a in &r.accounts {
        if matches!(a.truth, Identity::Official | Identity::None) {
            assert_ne!(a.predicted, Identity::Serving, "{} labelled {} predicted serving", a.id, a.truth);
        }
    }
}

#[test]
fn eval_command_prints_metrics_and_writes_predictions() {
    let Some(corpus) = common::shared("corpus/dev") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pred = dir.path().join("pred.jsonl");
    let out = assert_cmd::Command::cargo_bin("exposure-monitor")
        .unwrap()
        .current_dir(common::repo())
        .args(["eval", "--corpus"])
        .arg(&corpus)
        .arg("--predictions")
        .arg(&pred)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    for needle in ["serving identity: P", "hits:", "personal_data", "identity confusion"] {
        assert!(out.contains(needle), "missing {needle} in:\n{out}");
    }
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&pred).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let accounts = lines.iter().filter(|v| v["kind"] == "account").count();
    let posts: Vec<_> = lines.iter().filter(|v| v["kind"] == "post").collect();
    assert!(accounts > 0 && !posts.is_empty());
    assert!(posts.iter().all(|p| p["categories"].is_array() && p["hit"].is_boolean() && p["id"].is_string()));
}

#[test]
fn compare_lists_what_a_pattern_change_does() {
    let Some(corpus) = common::shared("corpus/dev") else {
        return;
    };
    // OLD = the shipped rules without the vehicle-registration rule.
    let old = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::repo().join("patterns")).unwrap() {
        let p = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&p).unwrap();
        if p.file_name().unwrap() == "personal_data.toml" {
            let start = text.find("[[rule]]\nid = \"pd.vehicle_registration\"").expect("rule present");
            let end = text[start + 8..].find("[[rule]]").map(|e| start + 8 + e).unwrap();
            text.replace_range(start..end, "");
        }
        // An `[[exception]]` for the removed rule would (rightly) be an error: drop it too.
        if let Some(start) = text.find("[[exception]]\nrule = \"pd.vehicle_registration\"") {
            let end = text[start + 13..].find("[[").map(|e| start + 13 + e).unwrap_or(text.len());
            text.replace_range(start..end, "");
        }
        std::fs::write(old.path().join(p.file_name().unwrap()), text).unwrap();
    }
    let out = assert_cmd::Command::cargo_bin("exposure-monitor")
        .unwrap()
        .current_dir(common::repo())
        .args(["eval", "--corpus"])
        .arg(&corpus)
        .arg("--compare")
        .arg(old.path())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("metrics (old -> new)"), "{out}");
    assert!(out.contains("personal_data") && out.contains("pd.vehicle_registration"), "{out}");
    assert!(out.contains("post(s) change"), "{out}");
}
