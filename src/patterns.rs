//! Pattern files: loading, validating and compiling the operator-tuned rules in `patterns/`.
//!
//! Owns the TOML rule format, every load/validation error (file, rule id, line, regex error;
//! all reported at once), compiling rules once per scan, and running each rule's own examples
//! (`patterns test`). Used by [`crate::identify`] and [`crate::classify`]; knows nothing of
//! storage or sources.
//!
//! # The rule format
//! Every `*.toml` file in the pattern directory holds `[[rule]]` tables:
//!
//! ```toml
//! [[rule]]
//! id = "pd.vehicle_registration"      # unique across the directory
//! category = "personal_data"          # a SPEC.md category ...
//! # signal = "serving"                # ... or an identity signal (see identify.rs)
//! severity = "high"                   # low | medium | high
//! languages = ["eng", "cym"]          # which language's posts it applies to (default both)
//! regex = '''\b[A-Z]{2}\d{2} ?[A-Z]{3}\b'''   # or: terms = ["off the record", "DM me"]
//! case_sensitive = true               # default false
//! near = { terms = ["reg", "plate"], within = 6 }     # must occur within 6 words
//! not_near = { regex = 'blurred', within = 10 }       # ... and this must not
//! match = ["KR19 HBT doing 112 on the M40"]           # examples `patterns test` runs
//! no_match = ["the A34 near Oxford"]
//! ```
//!
//! `\b` in a rule's regex is an ASCII word boundary (the Unicode one makes the lazy DFA give up
//! on emoji and accented text, see STYLE.md); `terms` are literal words or phrases. A
//! `not_near` without `within` means "anywhere in the text". Identity rules may also carry
//! `weight` (how much the signal counts), `fields` (`display_name`, `bio`, `posts`) and `role`.
//!
//! # Matching
//! All rules of one kind are compiled into one [`RegexSet`]; a text is scanned once by the set,
//! and only the rules it reports are run individually for spans and context checks.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::Deserialize;
use toml::Spanned;

use crate::classify::Classifier;
use crate::forces::Forces;
use crate::identify::{Identifier, SignalKind};
use crate::model::{Category, Lang, Severity};

/// One problem in a pattern file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default(), rule.as_ref().map(|r| format!(" [rule {r}]")).unwrap_or_default())]
pub struct PatternError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub rule: Option<String>,
    pub message: String,
}

/// Every rule in a pattern directory, compiled: the identity resolver and the classifier.
pub struct Detector {
    pub identifier: Identifier,
    pub classifier: Classifier,
}

impl Detector {
    /// Load and compile every `*.toml` in `dir`; all errors are returned at once.
    pub fn load(dir: &Path, forces: &Forces) -> Result<Detector, Vec<PatternError>> {
        let rules = load_rules(dir)?;
        Detector::from_rules(rules, forces, dir)
    }

    fn from_rules(rules: Vec<Rule>, forces: &Forces, dir: &Path) -> Result<Detector, Vec<PatternError>> {
        let (identity, category): (Vec<Rule>, Vec<Rule>) = rules.into_iter().partition(|r| matches!(r.kind, RuleKind::Signal(_)));
        let identity = RuleSet::new(identity).map_err(|m| vec![dir_error(dir, m)])?;
        let category = RuleSet::new(category).map_err(|m| vec![dir_error(dir, m)])?;
        Ok(Detector { identifier: Identifier::new(identity, forces.clone()), classifier: Classifier::new(category) })
    }
}

fn dir_error(dir: &Path, message: String) -> PatternError {
    PatternError { file: dir.to_path_buf(), line: None, rule: None, message }
}

/// What a rule detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Category(Category),
    Signal(SignalKind),
}

/// Where an identity rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub display_name: bool,
    pub bio: bool,
    pub posts: bool,
}

/// A required or forbidden neighbour of a rule's match.
#[derive(Debug, Clone)]
pub struct Context {
    pub regex: Regex,
    /// At most this many words between the two; `None` = anywhere in the text.
    pub within: Option<usize>,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub kind: RuleKind,
    pub severity: Severity,
    /// Languages whose posts it applies to (never empty).
    pub languages: Vec<Lang>,
    pub fields: Fields,
    pub weight: f32,
    pub role: Option<String>,
    pub pattern: String,
    pub regex: Regex,
    pub near: Option<Context>,
    pub not_near: Option<Context>,
    pub examples_match: Vec<String>,
    pub examples_no_match: Vec<String>,
    pub file: PathBuf,
    pub line: usize,
}

impl Rule {
    pub fn applies_to(&self, lang: Option<Lang>) -> bool {
        match lang {
            None => true,
            Some(l) => self.languages.contains(&l),
        }
    }

    /// Spans of every match of this rule in `text` that satisfies its context, with the spans
    /// of the `near` words that satisfied it. Empty when the rule does not fire.
    pub fn find(&self, text: &str, words: &mut WordIndex) -> Vec<Range<usize>> {
        let mut spans = Vec::new();
        let mut near_spans: Vec<Range<usize>> = Vec::new();
        let mut near_all: Option<Vec<Range<usize>>> = None;
        let mut not_all: Option<Vec<Range<usize>>> = None;
        for m in self.regex.find_iter(text) {
            let span = m.range();
            if span.is_empty() {
                continue;
            }
            if let Some(not) = &self.not_near {
                let all = not_all.get_or_insert_with(|| not.regex.find_iter(text).map(|m| m.range()).collect());
                if all.iter().any(|o| within(words, text, &span, o, not.within)) {
                    continue;
                }
            }
            if let Some(near) = &self.near {
                let all = near_all.get_or_insert_with(|| near.regex.find_iter(text).map(|m| m.range()).collect());
                let close: Vec<_> =
                    all.iter().filter(|o| !overlaps(&span, o) && within(words, text, &span, o, near.within)).cloned().collect();
                if close.is_empty() {
                    continue;
                }
                near_spans.extend(close);
            }
            spans.push(span);
        }
        if spans.is_empty() {
            return spans;
        }
        spans.extend(near_spans);
        spans.sort_by_key(|s| (s.start, s.end));
        spans.dedup();
        spans
    }
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

fn within(words: &mut WordIndex, text: &str, a: &Range<usize>, b: &Range<usize>, limit: Option<usize>) -> bool {
    match limit {
        None => true,
        Some(n) => words.distance(text, a, b) <= n,
    }
}

/// Word start offsets of a text, computed on first use (most texts never need them).
#[derive(Debug, Default)]
pub struct WordIndex {
    starts: Option<Vec<usize>>,
}

impl WordIndex {
    pub fn new() -> WordIndex {
        WordIndex::default()
    }

    fn starts(&mut self, text: &str) -> &[usize] {
        self.starts.get_or_insert_with(|| {
            let mut v = Vec::new();
            let mut prev_word = false;
            for (i, c) in text.char_indices() {
                let w = !c.is_whitespace();
                if w && !prev_word {
                    v.push(i);
                }
                prev_word = w;
            }
            v
        })
    }

    /// How many words lie strictly between two spans (0 when adjacent or overlapping).
    pub fn distance(&mut self, text: &str, a: &Range<usize>, b: &Range<usize>) -> usize {
        let (first, second) = if a.start <= b.start { (a, b) } else { (b, a) };
        if second.start <= first.end {
            return 0;
        }
        let starts = self.starts(text);
        // Words starting after the first span ends and before the second begins.
        let lo = starts.partition_point(|&s| s < first.end);
        let hi = starts.partition_point(|&s| s < second.start);
        hi.saturating_sub(lo)
    }
}

/// A compiled group of rules with its prefilter set.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    set: RegexSet,
}

/// A rule that fired on a text.
#[derive(Debug, Clone)]
pub struct RuleMatch<'a> {
    pub rule: &'a Rule,
    pub spans: Vec<Range<usize>>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> Result<RuleSet, String> {
        let set = RegexSetBuilder::new(rules.iter().map(|r| r.pattern.as_str()))
            .size_limit(64 << 20)
            .dfa_size_limit(32 << 20)
            .build()
            .map_err(|e| format!("compiling the rule set: {e}"))?;
        Ok(RuleSet { rules, set })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every rule accepted by `keep` that fires on `text`.
    pub fn matches<'a>(&'a self, text: &str, keep: impl Fn(&Rule) -> bool) -> Vec<RuleMatch<'a>> {
        let mut out = Vec::new();
        if text.is_empty() || self.rules.is_empty() {
            return out;
        }
        let mut words = WordIndex::new();
        for i in self.set.matches(text).iter() {
            let rule = &self.rules[i];
            if !keep(rule) {
                continue;
            }
            let spans = rule.find(text, &mut words);
            if !spans.is_empty() {
                out.push(RuleMatch { rule, spans });
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    category: Option<Spanned<String>>,
    #[serde(default)]
    signal: Option<Spanned<String>>,
    #[serde(default)]
    severity: Option<Spanned<String>>,
    #[serde(default)]
    languages: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    regex: Option<Spanned<String>>,
    #[serde(default)]
    terms: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    case_sensitive: bool,
    #[serde(default)]
    near: Option<Spanned<RawContext>>,
    #[serde(default)]
    not_near: Option<Spanned<RawContext>>,
    #[serde(default)]
    fields: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    weight: Option<f32>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default, rename = "match")]
    examples_match: Vec<String>,
    #[serde(default)]
    no_match: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    terms: Option<Vec<String>>,
    #[serde(default)]
    within: Option<usize>,
    #[serde(default)]
    case_sensitive: Option<bool>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// Every `*.toml` file in `dir`, sorted by name.
fn pattern_files(dir: &Path) -> Result<Vec<PathBuf>, Vec<PatternError>> {
    let rd = std::fs::read_dir(dir).map_err(|e| vec![dir_error(dir, format!("cannot read pattern directory: {e}"))])?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(vec![dir_error(dir, "no *.toml pattern files".into())]);
    }
    Ok(files)
}

/// Parse and compile every rule in `dir`, collecting every error.
pub fn load_rules(dir: &Path) -> Result<Vec<Rule>, Vec<PatternError>> {
    let files = pattern_files(dir)?;
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    let mut seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(PatternError { file: file.clone(), line: None, rule: None, message: format!("cannot read: {e}") });
                continue;
            }
        };
        for rule in parse_file(&file, &text, &mut errors) {
            if let Some((f, l)) = seen.get(&rule.id) {
                errors.push(PatternError {
                    file: file.clone(),
                    line: Some(rule.line),
                    rule: Some(rule.id.clone()),
                    message: format!("duplicate rule id (first defined at {}:{l})", f.display()),
                });
                continue;
            }
            seen.insert(rule.id.clone(), (file.clone(), rule.line));
            rules.push(rule);
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// Parse one file's text; problems go to `errors`, good rules are returned.
pub fn parse_file(file: &Path, text: &str, errors: &mut Vec<PatternError>) -> Vec<Rule> {
    let raw: RawFile = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            errors.push(PatternError {
                file: file.to_path_buf(),
                line: e.span().map(|s| line_of(text, s.start)),
                rule: None,
                message: e.message().trim().to_string(),
            });
            return vec![];
        }
    };
    let mut out = Vec::new();
    for spanned in raw.rule {
        let line = line_of(text, spanned.span().start);
        let raw = spanned.into_inner();
        let mut err = |at: Option<usize>, message: String| {
            errors.push(PatternError {
                file: file.to_path_buf(),
                line: Some(at.map(|o| line_of(text, o)).unwrap_or(line)),
                rule: Some(raw.id.clone()),
                message,
            });
        };
        let mut failed = false;
        if raw.id.trim().is_empty() || raw.id.chars().any(char::is_whitespace) {
            err(None, "rule id must be non-empty and without spaces".into());
            failed = true;
        }
        let kind = match (&raw.category, &raw.signal) {
            (Some(c), None) => match c.get_ref().parse::<Category>() {
                Ok(c) => Some(RuleKind::Category(c)),
                Err(e) => {
                    err(Some(c.span().start), e.to_string());
                    None
                }
            },
            (None, Some(s)) => match s.get_ref().parse::<SignalKind>() {
                Ok(k) => Some(RuleKind::Signal(k)),
                Err(e) => {
                    err(Some(s.span().start), e);
                    None
                }
            },
            (Some(_), Some(_)) => {
                err(None, "a rule has either `category` or `signal`, not both".into());
                None
            }
            (None, None) => {
                err(None, "missing `category` (a SPEC.md category) or `signal` (an identity signal)".into());
                None
            }
        };
        let severity = match &raw.severity {
            Some(s) => match s.get_ref().parse::<Severity>() {
                Ok(v) => Some(v),
                Err(e) => {
                    err(Some(s.span().start), e.to_string());
                    None
                }
            },
            None if matches!(kind, Some(RuleKind::Category(_))) => {
                err(None, "missing `severity` (low, medium or high)".into());
                None
            }
            None => Some(Severity::Low),
        };
        let languages = match &raw.languages {
            None => Some(vec![Lang::Eng, Lang::Cym]),
            Some(l) => {
                let mut v = Vec::new();
                let mut ok = true;
                for s in l.get_ref() {
                    match s.parse::<Lang>() {
                        Ok(x) => v.push(x),
                        Err(e) => {
                            err(Some(l.span().start), e.to_string());
                            ok = false;
                        }
                    }
                }
                if ok && v.is_empty() {
                    err(Some(l.span().start), "`languages` is empty".into());
                    ok = false;
                }
                ok.then_some(v)
            }
        };
        let fields = match &raw.fields {
            None => Some(Fields { display_name: true, bio: true, posts: true }),
            Some(f) => {
                let mut fl = Fields { display_name: false, bio: false, posts: false };
                let mut ok = true;
                for s in f.get_ref() {
                    match s.as_str() {
                        "display_name" => fl.display_name = true,
                        "bio" => fl.bio = true,
                        "posts" => fl.posts = true,
                        other => {
                            err(Some(f.span().start), format!("unknown field `{other}` (expected display_name, bio, posts)"));
                            ok = false;
                        }
                    }
                }
                ok.then_some(fl)
            }
        };
        let pattern = match (&raw.regex, &raw.terms) {
            (Some(r), None) => {
                let p = ascii_word_boundaries(r.get_ref());
                let p = if raw.case_sensitive { p } else { format!("(?i){p}") };
                match compile(&p) {
                    Ok(re) => Some((p, re)),
                    Err(e) => {
                        err(Some(r.span().start), format!("bad regex: {e}"));
                        None
                    }
                }
            }
            (None, Some(t)) => match terms_pattern(t.get_ref(), raw.case_sensitive) {
                Ok(p) => match compile(&p) {
                    Ok(re) => Some((p, re)),
                    Err(e) => {
                        err(Some(t.span().start), format!("bad terms: {e}"));
                        None
                    }
                },
                Err(e) => {
                    err(Some(t.span().start), e);
                    None
                }
            },
            (Some(_), Some(_)) => {
                err(None, "a rule has either `regex` or `terms`, not both".into());
                None
            }
            (None, None) => {
                err(None, "missing `regex` or `terms`".into());
                None
            }
        };
        let mut context = |c: &Option<Spanned<RawContext>>, name: &str| -> Result<Option<Context>, ()> {
            let Some(c) = c else { return Ok(None) };
            let at = Some(c.span().start);
            let rc = c.get_ref();
            let cs = rc.case_sensitive.unwrap_or(raw.case_sensitive);
            let p = match (&rc.regex, &rc.terms) {
                (Some(r), None) => {
                    let p = ascii_word_boundaries(r);
                    Ok(if cs { p } else { format!("(?i){p}") })
                }
                (None, Some(t)) => terms_pattern(t, cs),
                _ => Err(format!("`{name}` needs exactly one of `regex` or `terms`")),
            };
            match p.and_then(|p| compile(&p).map_err(|e| format!("bad `{name}` regex: {e}"))) {
                Ok(regex) => Ok(Some(Context { regex, within: rc.within })),
                Err(e) => {
                    err(at, e);
                    Err(())
                }
            }
        };
        let near = context(&raw.near, "near");
        let not_near = context(&raw.not_near, "not_near");
        if let Some(w) = raw.weight {
            if !(w.is_finite() && (-100.0..=100.0).contains(&w)) {
                err(None, format!("`weight` {w} is out of range (-100 to 100)"));
                failed = true;
            }
        }
        if raw.examples_match.is_empty() {
            err(None, "every rule needs at least one `match` example".into());
            failed = true;
        }
        let _ = &raw.description;
        match (kind, severity, languages, fields, pattern, near, not_near) {
            (Some(kind), Some(severity), Some(languages), Some(fields), Some((pattern, regex)), Ok(near), Ok(not_near))
                if !failed =>
            {
                out.push(Rule {
                    id: raw.id,
                    kind,
                    severity,
                    languages,
                    fields,
                    weight: raw.weight.unwrap_or(1.0),
                    role: raw.role,
                    pattern,
                    regex,
                    near,
                    not_near,
                    examples_match: raw.examples_match,
                    examples_no_match: raw.no_match,
                    file: file.to_path_buf(),
                    line,
                });
            }
            _ => {}
        }
    }
    out
}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).size_limit(8 << 20).dfa_size_limit(8 << 20).build()
}

/// Rewrite `\b` as the ASCII word boundary `(?-u:\b)`, leaving `\\b` (a literal backslash
/// then `b`) alone.
pub fn ascii_word_boundaries(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 16);
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('b') => out.push_str("(?-u:\\b)"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A regex matching any of `terms` as whole words (where the term starts/ends with a word
/// character), longest first.
pub fn terms_pattern(terms: &[String], case_sensitive: bool) -> Result<String, String> {
    let mut ts: Vec<&str> = terms.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).collect();
    if ts.is_empty() {
        return Err("`terms` is empty".into());
    }
    ts.sort_by_key(|t| std::cmp::Reverse(t.len()));
    let alts: Vec<String> = ts
        .iter()
        .map(|t| {
            let first = t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
            let last = t.chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric());
            // Spaces in a term match any run of whitespace.
            let body = t.split_whitespace().map(regex::escape).collect::<Vec<_>>().join(r"\s+");
            format!("{}{}{}", if first { r"(?-u:\b)" } else { "" }, body, if last { r"(?-u:\b)" } else { "" })
        })
        .collect();
    Ok(format!("{}(?:{})", if case_sensitive { "" } else { "(?i)" }, alts.join("|")))
}

// ---------------------------------------------------------------------------------------------
// Examples

/// Result of running rules' own examples.
#[derive(Debug, Default)]
pub struct ExampleReport {
    pub rules_checked: usize,
    pub examples_run: usize,
    /// Human-readable failures: rule id, the example, what was expected.
    pub failures: Vec<String>,
}

/// Run every rule's `examples` (or only rule `only`), against the loaded rules.
pub fn test_examples(dir: &Path, forces: &Forces, only: Option<&str>) -> Result<ExampleReport, Vec<PatternError>> {
    let rules = load_rules(dir)?;
    // The whole directory must also compile together (the set), as a scan would.
    Detector::from_rules(rules.clone(), forces, dir)?;
    let mut report = ExampleReport::default();
    for rule in rules.iter().filter(|r| only.map_or(true, |o| o == r.id)) {
        report.rules_checked += 1;
        let loc = format!("{}:{}", rule.file.display(), rule.line);
        for ex in &rule.examples_match {
            report.examples_run += 1;
            if rule.find(ex, &mut WordIndex::new()).is_empty() {
                report.failures.push(format!("{} ({loc}): should match but does not: {ex:?}", rule.id));
            }
        }
        for ex in &rule.examples_no_match {
            report.examples_run += 1;
            let spans = rule.find(ex, &mut WordIndex::new());
            if !spans.is_empty() {
                let what: Vec<&str> = spans.iter().map(|s| &ex[s.clone()]).collect();
                report.failures.push(format!("{} ({loc}): should not match but matches {what:?} in: {ex:?}", rule.id));
            }
        }
    }
    Ok(report)
}

/// Rules per file and kind, for `patterns check` summaries.
pub fn summary(rules: &[Rule]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rules {
        let k = match r.kind {
            RuleKind::Category(c) => c.as_str().to_string(),
            RuleKind::Signal(s) => format!("identity:{}", s.as_str()),
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn one(text: &str) -> Rule {
        let mut errors = vec![];
        let mut rules = parse_file(Path::new("t.toml"), text, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        rules.remove(0)
    }

    #[test]
    fn every_error_is_reported_with_file_line_and_rule() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.toml",
            r#"
[[rule]]
id = "ok.one"
category = "political"
severity = "low"
terms = ["vote"]
match = ["vote"]

[[rule]]
id = "bad.regex"
category = "political"
severity = "low"
regex = '(unclosed'
match = ["x"]

[[rule]]
id = "bad.category"
category = "gossip"
severity = "loud"
terms = ["x"]
match = ["x"]
"#,
        );
        write(dir.path(), "b.toml", "[[rule]]\nid = \"ok.one\"\ncategory = \"political\"\nseverity = \"low\"\nterms = [\"v\"]\nmatch = [\"v\"]\n[[rule]]\nid = \"typo\"\ncategroy = \"political\"\n");
        let errors = load_rules(dir.path()).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let find = |needle: &str| text.iter().find(|t| t.contains(needle)).unwrap_or_else(|| panic!("{needle} not in {text:#?}"));
        let re = find("bad.regex");
        assert!(re.contains("a.toml:13") && re.contains("unclosed group"), "{re}");
        assert!(find("gossip").contains("a.toml"));
        assert!(find("loud").contains("[rule bad.category]"));
        // The second file fails to deserialise (unknown key) and names its line.
        let typo = find("categroy");
        assert!(typo.contains("b.toml:"), "{typo}");
        assert!(errors.len() >= 4, "{text:#?}");
    }

    #[test]
    fn duplicate_ids_across_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let r = "[[rule]]\nid = \"dup\"\ncategory = \"political\"\nseverity = \"low\"\nterms = [\"vote\"]\nmatch = [\"vote\"]\n";
        write(dir.path(), "a.toml", r);
        write(dir.path(), "b.toml", r);
        let errors = load_rules(dir.path()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("duplicate") && errors[0].to_string().contains("a.toml:1"));
    }

    #[test]
    fn proximity_and_exceptions_count_words() {
        let r = one(r#"[[rule]]
id = "op.planned"
category = "operational"
severity = "high"
terms = ["raid", "warrant"]
near = { terms = ["tomorrow"], within = 3 }
not_near = { terms = ["of control"], within = 2 }
match = ["raid tomorrow"]
"#);
        let f = |t: &str| r.find(t, &mut WordIndex::new());
        assert!(f("the raid is on, one two three four tomorrow").is_empty());
        assert!(!f("the raid is on two tomorrow").is_empty());
        assert!(f("a raid on the estate").is_empty());
        assert!(f("6am warrant of control tomorrow").is_empty());
        let spans = f("big raid tomorrow");
        assert_eq!(spans, vec![4..8, 9..17]);
    }

    #[test]
    fn terms_are_whole_words_and_word_boundaries_are_ascii() {
        let r = one("[[rule]]\nid = \"x\"\ncategory = \"alcohol_drugs\"\nseverity = \"low\"\nterms = [\"ket\", \"🍺🍺\"]\nmatch = [\"ket\"]\n");
        assert!(r.find("did a bit of ket 😂", &mut WordIndex::new()).len() == 1);
        assert!(r.find("a basket of apples", &mut WordIndex::new()).is_empty());
        assert!(!r.find("pints🍺🍺", &mut WordIndex::new()).is_empty());
        assert_eq!(ascii_word_boundaries(r"\bPC\b \\b"), r"(?-u:\b)PC(?-u:\b) \\b");
    }
}
