//! Eval: identify and classify over a labelled corpus in the `../shared/corpus/SPEC.md` format,
//! with no database, and report how well detection agrees with the labels.
//!
//! Owns the metrics (serving-identity P/R/F1, hit P/R/F1 where a hit is "author serving and at
//! least one category", per-category P/R/F1 over every post whatever its author, the identity
//! confusion matrix), the predictions file, and `--compare` (what a change to the pattern
//! files does to the corpus). The detection itself is [`crate::patterns::Detector`]'s.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::forces::Forces;
use crate::identify::PostSignals;
use crate::model::{Account, Category, Identity, Post};
use crate::patterns::Detector;
use crate::sources::replay::{for_each_line, CorpusAccount, CorpusPost};

#[derive(Debug, Deserialize)]
struct AccountLabels {
    identity: String,
}

#[derive(Debug, Deserialize)]
struct PostLabels {
    #[serde(default)]
    categories: Vec<String>,
}

/// One labelled account of the corpus.
#[derive(Debug, Clone)]
pub struct LabelledAccount {
    pub id: String,
    pub account: Account,
    pub identity: Identity,
}

/// One labelled post of the corpus.
#[derive(Debug, Clone)]
pub struct LabelledPost {
    pub id: String,
    pub post: Post,
    pub categories: Vec<Category>,
}

/// A labelled corpus, read whole (corpora are small).
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub accounts: Vec<LabelledAccount>,
    pub posts: Vec<LabelledPost>,
}

impl Corpus {
    /// Read `accounts.jsonl` and `posts.jsonl` from `dir`; a bad line or label is an error that
    /// names the file and line.
    pub fn read(dir: &Path) -> anyhow::Result<Corpus> {
        let mut corpus = Corpus::default();
        let apath = dir.join("accounts.jsonl");
        let ppath = dir.join("posts.jsonl");
        let mut problem: Option<anyhow::Error> = None;
        for_each_line(&apath, |n, line| {
            let r: anyhow::Result<()> = (|| {
                let acc: CorpusAccount = serde_json::from_str(line)?;
                let labels: AccountLabels = serde_json::from_str(line)?;
                let identity: Identity = labels.identity.parse()?;
                corpus.accounts.push(LabelledAccount { id: acc.id.clone(), account: acc.into_account(), identity });
                Ok(())
            })();
            match r {
                Ok(()) => Ok(true),
                Err(e) => {
                    problem = Some(e.context(format!("{}:{n}", apath.display())));
                    Ok(false)
                }
            }
        })
        .with_context(|| format!("reading {}", apath.display()))?;
        if let Some(e) = problem.take() {
            return Err(e);
        }
        for_each_line(&ppath, |n, line| {
            let r: anyhow::Result<()> = (|| {
                let post: CorpusPost = serde_json::from_str(line)?;
                let labels: PostLabels = serde_json::from_str(line)?;
                let categories = labels.categories.iter().map(|c| c.parse::<Category>()).collect::<Result<Vec<_>, _>>()?;
                corpus.posts.push(LabelledPost { id: post.id.clone(), post: post.into_post(), categories });
                Ok(())
            })();
            match r {
                Ok(()) => Ok(true),
                Err(e) => {
                    problem = Some(e.context(format!("{}:{n}", ppath.display())));
                    Ok(false)
                }
            }
        })
        .with_context(|| format!("reading {}", ppath.display()))?;
        if let Some(e) = problem {
            return Err(e);
        }
        if corpus.accounts.is_empty() {
            bail!("{} has no accounts", apath.display());
        }
        Ok(corpus)
    }
}

impl Corpus {
    /// The accounts accepted by `keep` (given an account id) and their posts: a split of the
    /// corpus, e.g. the odd-numbered accounts of `dev` that tuning never looked at.
    pub fn subset(&self, keep: impl Fn(&str) -> bool) -> Corpus {
        Corpus {
            accounts: self.accounts.iter().filter(|a| keep(&a.id)).cloned().collect(),
            posts: self.posts.iter().filter(|p| keep(&p.post.author_id)).cloned().collect(),
        }
    }
}

/// Whether an account id (`a017`) has an odd number: the half of a corpus kept for measuring.
pub fn is_odd_id(id: &str) -> bool {
    let digits: String = id.chars().filter(char::is_ascii_digit).collect();
    digits.parse::<u64>().is_ok_and(|n| n % 2 == 1)
}

/// Precision, recall and F1 from counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prf {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
}

impl Prf {
    pub fn add(&mut self, truth: bool, pred: bool) {
        match (truth, pred) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => {}
        }
    }
    pub fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

impl fmt::Display for Prf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "P {:.3}  R {:.3}  F1 {:.3}  (tp {}, fp {}, fn {})",
            self.precision(),
            self.recall(),
            self.f1(),
            self.tp,
            self.fp,
            self.fn_
        )
    }
}

/// The prediction for one account.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountResult {
    pub id: String,
    pub truth: Identity,
    pub predicted: Identity,
    pub force: Option<String>,
}

/// The prediction for one post.
#[derive(Debug, Clone, PartialEq)]
pub struct PostResult {
    pub id: String,
    pub account_id: String,
    pub truth: Vec<Category>,
    pub predicted: Vec<Category>,
    pub truth_hit: bool,
    pub predicted_hit: bool,
    /// Rule ids that fired.
    pub rules: Vec<String>,
}

/// Everything `eval` prints and writes.
#[derive(Debug, Clone, Default)]
pub struct EvalReport {
    pub accounts: Vec<AccountResult>,
    pub posts: Vec<PostResult>,
    pub serving: Prf,
    pub hits: Prf,
    pub categories: BTreeMap<Category, Prf>,
    /// (truth, predicted) → count.
    pub confusion: BTreeMap<(Identity, Identity), usize>,
    /// Predicted hits by the author's true identity, for identities that must never produce one.
    pub false_hits_by_identity: BTreeMap<Identity, usize>,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Prediction<'a> {
    Account { id: &'a str, identity: &'a str },
    Post { id: &'a str, categories: Vec<&'a str>, hit: bool },
}

impl EvalReport {
    pub fn write_predictions(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        for a in &self.accounts {
            let line = serde_json::to_string(&Prediction::Account { id: &a.id, identity: a.predicted.as_str() })?;
            writeln!(w, "{line}")?;
        }
        for p in &self.posts {
            let line = serde_json::to_string(&Prediction::Post {
                id: &p.id,
                categories: p.predicted.iter().map(|c| c.as_str()).collect(),
                hit: p.predicted_hit,
            })?;
            writeln!(w, "{line}")?;
        }
        Ok(())
    }

    /// The lowest per-category F1 (categories with no labelled or predicted posts count 1.0).
    pub fn min_category_f1(&self) -> f64 {
        self.categories.values().map(Prf::f1).fold(1.0, f64::min)
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "accounts: {}  posts: {}", self.accounts.len(), self.posts.len())?;
        writeln!(f, "serving identity: {}", self.serving)?;
        writeln!(f, "hits:             {}", self.hits)?;
        writeln!(f, "categories:")?;
        for (c, prf) in &self.categories {
            writeln!(f, "  {:<26}{prf}", c.as_str())?;
        }
        writeln!(f, "identity confusion (rows: labelled, columns: predicted):")?;
        write!(f, "  {:<12}", "")?;
        for p in Identity::ALL {
            write!(f, "{:>11}", p.as_str())?;
        }
        writeln!(f)?;
        for t in Identity::ALL {
            write!(f, "  {:<12}", t.as_str())?;
            for p in Identity::ALL {
                write!(f, "{:>11}", self.confusion.get(&(*t, *p)).copied().unwrap_or(0))?;
            }
            writeln!(f)?;
        }
        let false_hits: usize = self.false_hits_by_identity.values().sum();
        write!(f, "hits from official/associated/none accounts: {false_hits}")?;
        for (i, n) in &self.false_hits_by_identity {
            write!(f, " ({} {n})", i.as_str())?;
        }
        writeln!(f)
    }
}

/// Identify and classify every account and post of the corpus in `corpus_dir`.
pub fn run(corpus_dir: &Path, detector: &Detector) -> anyhow::Result<EvalReport> {
    let corpus = Corpus::read(corpus_dir)?;
    Ok(evaluate(&corpus, detector))
}

/// Identify and classify every account and post of an in-memory corpus.
pub fn evaluate(corpus: &Corpus, detector: &Detector) -> EvalReport {
    let mut signals: HashMap<&str, PostSignals> = HashMap::new();
    for p in &corpus.posts {
        signals.entry(p.post.author_id.as_str()).or_default().merge(detector.identifier.post_signals(&p.post));
    }
    let mut report = EvalReport::default();
    for c in Category::ALL {
        report.categories.insert(*c, Prf::default());
    }
    let mut predicted: HashMap<&str, Identity> = HashMap::new();
    let mut truth: HashMap<&str, Identity> = HashMap::new();
    let empty = PostSignals::default();
    for a in &corpus.accounts {
        let v = detector.identifier.identify(&a.account, signals.get(a.id.as_str()).unwrap_or(&empty));
        predicted.insert(a.id.as_str(), v.identity);
        truth.insert(a.id.as_str(), a.identity);
        report.serving.add(a.identity == Identity::Serving, v.identity == Identity::Serving);
        *report.confusion.entry((a.identity, v.identity)).or_insert(0) += 1;
        report.accounts.push(AccountResult { id: a.id.clone(), truth: a.identity, predicted: v.identity, force: v.force });
    }
    for p in &corpus.posts {
        let author = p.post.author_id.as_str();
        let c = detector.classifier.classify(&p.post);
        let author_truth = truth.get(author).copied().unwrap_or(Identity::None);
        let author_pred = predicted.get(author).copied().unwrap_or(Identity::None);
        let truth_hit = author_truth == Identity::Serving && !p.categories.is_empty();
        let predicted_hit = author_pred == Identity::Serving && c.is_hit_content();
        report.hits.add(truth_hit, predicted_hit);
        if predicted_hit && matches!(author_truth, Identity::Official | Identity::Associated | Identity::None) {
            *report.false_hits_by_identity.entry(author_truth).or_insert(0) += 1;
        }
        for cat in Category::ALL {
            report.categories.get_mut(cat).expect("all categories").add(p.categories.contains(cat), c.categories.contains(cat));
        }
        let mut rules: Vec<String> = c.findings.iter().map(|f| f.rule_id.clone()).collect();
        rules.dedup();
        report.posts.push(PostResult {
            id: p.id.clone(),
            account_id: author.to_string(),
            truth: p.categories.clone(),
            predicted: c.categories,
            truth_hit,
            predicted_hit,
            rules,
        });
    }
    report
}

/// What changes between two pattern directories on a corpus.
pub struct CompareReport {
    pub old: EvalReport,
    pub new: EvalReport,
}

fn cats(c: &[Category]) -> String {
    if c.is_empty() {
        "-".into()
    } else {
        c.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",")
    }
}

fn delta(name: &str, old: &Prf, new: &Prf) -> String {
    let d = new.f1() - old.f1();
    format!(
        "  {name:<26}F1 {:.3} -> {:.3} ({}{:.3})   P {:.3} -> {:.3}   R {:.3} -> {:.3}\n",
        old.f1(),
        new.f1(),
        if d >= 0.0 { "+" } else { "" },
        d,
        old.precision(),
        new.precision(),
        old.recall(),
        new.recall()
    )
}

impl fmt::Display for CompareReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (o, n) = (&self.old, &self.new);
        let mut s = String::new();
        s.push_str("metrics (old -> new):\n");
        s.push_str(&delta("serving identity", &o.serving, &n.serving));
        s.push_str(&delta("hits", &o.hits, &n.hits));
        for (c, prf) in &n.categories {
            let old = o.categories.get(c).copied().unwrap_or_default();
            if old != *prf {
                s.push_str(&delta(c.as_str(), &old, prf));
            }
        }
        let mut changed_accounts = 0;
        s.push_str("accounts whose identity changes:\n");
        for (a, b) in o.accounts.iter().zip(&n.accounts) {
            if a.predicted != b.predicted {
                changed_accounts += 1;
                let verdict = if b.predicted == b.truth {
                    "now right"
                } else if a.predicted == a.truth {
                    "now WRONG"
                } else {
                    "still wrong"
                };
                let _ = writeln!(s, "  {:<8}{} -> {}  (labelled {}; {verdict})", b.id, a.predicted, b.predicted, b.truth);
            }
        }
        if changed_accounts == 0 {
            s.push_str("  (none)\n");
        }
        let mut changed_posts = 0;
        s.push_str("posts whose categories or hit change:\n");
        for (a, b) in o.posts.iter().zip(&n.posts) {
            if a.predicted != b.predicted || a.predicted_hit != b.predicted_hit {
                changed_posts += 1;
                let right = |p: &PostResult| p.predicted == p.truth;
                let verdict = match (right(a), right(b)) {
                    (false, true) => "now right",
                    (true, false) => "now WRONG",
                    _ => "still wrong",
                };
                let _ = writeln!(
                    s,
                    "  {:<8}{} -> {}  hit {} -> {}  (labelled {}; {verdict}) rules: {}",
                    b.id,
                    cats(&a.predicted),
                    cats(&b.predicted),
                    a.predicted_hit,
                    b.predicted_hit,
                    cats(&b.truth),
                    if b.rules.is_empty() { "-".to_string() } else { b.rules.join(",") }
                );
            }
        }
        if changed_posts == 0 {
            s.push_str("  (none)\n");
        }
        let _ = writeln!(s, "{changed_accounts} account(s) and {changed_posts} post(s) change");
        f.write_str(&s)
    }
}

fn load(dir: &Path, forces: &Forces) -> anyhow::Result<Detector> {
    Detector::load(dir, forces).map_err(|errors| {
        let mut msg = format!("{} error(s) in pattern files in {}:", errors.len(), dir.display());
        for e in &errors {
            msg.push_str(&format!("\n  {e}"));
        }
        anyhow::anyhow!(msg)
    })
}

/// Evaluate the corpus with the pattern files in `old` and in `new`, and list what changes.
pub fn compare(old: &Path, new: &Path, corpus: &Path, forces: &Forces) -> anyhow::Result<CompareReport> {
    let corpus = Corpus::read(corpus)?;
    let old_d = load(old, forces).context("loading the OLD pattern directory")?;
    let new_d = load(new, forces).context("loading the new pattern directory")?;
    Ok(CompareReport { old: evaluate(&corpus, &old_d), new: evaluate(&corpus, &new_d) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prf_counts_and_edge_cases() {
        let mut p = Prf::default();
        for (t, q) in [(true, true), (true, false), (false, true), (false, false), (true, true)] {
            p.add(t, q);
        }
        assert_eq!((p.tp, p.fp, p.fn_), (2, 1, 1));
        assert!((p.precision() - 2.0 / 3.0).abs() < 1e-9);
        assert!((p.f1() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(Prf::default().f1(), 1.0);
        let none_right = Prf { tp: 0, fp: 3, fn_: 2 };
        assert_eq!(none_right.f1(), 0.0);
    }

    #[test]
    fn predictions_are_one_json_object_a_line_in_the_documented_shape() {
        let r = EvalReport {
            accounts: vec![AccountResult {
                id: "a001".into(),
                truth: Identity::Serving,
                predicted: Identity::Serving,
                force: None,
            }],
            posts: vec![PostResult {
                id: "p0001".into(),
                account_id: "a001".into(),
                truth: vec![],
                predicted: vec![Category::Operational],
                truth_hit: false,
                predicted_hit: true,
                rules: vec![],
            }],
            ..Default::default()
        };
        let mut out = Vec::new();
        r.write_predictions(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"kind\":\"account\",\"id\":\"a001\",\"identity\":\"serving\"}\n{\"kind\":\"post\",\"id\":\"p0001\",\"categories\":[\"operational\"],\"hit\":true}\n"
        );
    }

    #[test]
    fn a_subset_keeps_the_chosen_accounts_and_only_their_posts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("accounts.jsonl"),
            "{\"id\":\"a1\",\"platform\":\"rss\",\"handle\":\"h\",\"identity\":\"serving\"}\n{\"id\":\"a2\",\"platform\":\"rss\",\"handle\":\"g\",\"identity\":\"none\"}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("posts.jsonl"),
            "{\"id\":\"p1\",\"account_id\":\"a1\",\"platform\":\"rss\",\"created_at\":\"2026-01-01T00:00:00Z\",\"text\":\"x\",\"categories\":[]}\n{\"id\":\"p2\",\"account_id\":\"a2\",\"platform\":\"rss\",\"created_at\":\"2026-01-01T00:00:00Z\",\"text\":\"y\",\"categories\":[]}\n",
        )
        .unwrap();
        let c = Corpus::read(dir.path()).unwrap();
        let odd = c.subset(is_odd_id);
        assert_eq!(odd.accounts.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["a1"]);
        assert_eq!(odd.posts.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["p1"]);
        assert!(is_odd_id("a017") && !is_odd_id("a120") && !is_odd_id("x"));
    }

    #[test]
    fn a_bad_label_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("accounts.jsonl"),
            "{\"id\":\"a1\",\"platform\":\"rss\",\"handle\":\"h\",\"identity\":\"serving\"}\n{\"id\":\"a2\",\"platform\":\"rss\",\"handle\":\"h\",\"identity\":\"cop\"}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("posts.jsonl"), "").unwrap();
        let err = Corpus::read(dir.path()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("accounts.jsonl:2") && msg.contains("cop"), "{msg}");
    }
}
