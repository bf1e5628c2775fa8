//! Rendering: stored hits and scan coverage → the plain-text and HTML parts of one digest.
//!
//! Pure and synchronous (no store, no transport), so every rule here is unit-tested. Everything
//! that comes from a post or a profile is hostile: the HTML template is rendered by minijinja
//! with HTML auto-escaping on, and before either template sees it, every value is made safe for
//! its place: single-line fields (names, handles, errors) lose CR/LF and other control
//! characters, bidirectional-override characters are replaced, URLs are shown as links only when
//! they are `http(s)`, and post text is quoted line by line in the text part so it cannot forge
//! the digest's own structure.

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{DateTime, Utc};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::store::{HitRecord, RunReport};

const TEXT_TEMPLATE: &str = include_str!("templates/digest.txt");
const HTML_TEMPLATE: &str = include_str!("templates/digest.html");

/// Bytes of context kept either side of the marked words when a post is long.
const EXCERPT_CONTEXT: usize = 240;
/// Posts up to this many bytes are shown whole.
const EXCERPT_WHOLE: usize = 900;
/// Hard cap on an excerpt's length in bytes (marks beyond it are not shown).
const EXCERPT_MAX: usize = 2400;
/// Longest single-line field (names, handles, errors) in characters.
const FIELD_MAX: usize = 120;

/// What the coverage section says: which sources ran or failed since the last digest and how
/// much they read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// Scan runs covered.
    pub runs: usize,
    pub accounts: u64,
    pub posts: u64,
    pub first_run: Option<String>,
    pub last_run: Option<String>,
    pub sources: Vec<SourceCoverage>,
    /// How many sources failed at least once.
    pub failed_sources: usize,
    /// Findings not stored because a reviewer had dismissed the same finding before.
    pub suppressed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceCoverage {
    pub name: String,
    /// Runs in which the source completed.
    pub ok_runs: u64,
    /// Runs in which the source stopped with an error.
    pub failed_runs: u64,
    pub accounts_seen: u64,
    pub posts_read: u64,
    pub hits: u64,
    /// Items skipped with an error (bad records) while the source kept going.
    pub errors: u64,
    /// The most recent error that stopped the source, single-line.
    pub last_error: Option<String>,
    /// Findings suppressed by earlier dismissals.
    pub suppressed: u64,
}

impl Coverage {
    /// Sum the runs since the last digest (newest first, as the store returns them).
    pub fn from_runs(runs: &[RunReport]) -> Coverage {
        let mut by_name: BTreeMap<String, SourceCoverage> = BTreeMap::new();
        let mut cov = Coverage { runs: runs.len(), ..Coverage::default() };
        // Oldest first, so the last error kept is the newest.
        let mut ordered: Vec<&RunReport> = runs.iter().collect();
        ordered.sort_by_key(|r| (r.started_at, r.id));
        for run in &ordered {
            for s in &run.summaries {
                let e = by_name
                    .entry(s.source.clone())
                    .or_insert_with(|| SourceCoverage { name: one_line(&s.source, FIELD_MAX), ..Default::default() });
                e.accounts_seen += s.accounts_seen;
                e.posts_read += s.posts_read;
                e.hits += s.hits;
                e.errors += s.errors;
                e.suppressed += s.suppressed;
                cov.suppressed += s.suppressed;
                match &s.error {
                    Some(err) => {
                        e.failed_runs += 1;
                        e.last_error = Some(one_line(err, 300));
                    }
                    None => e.ok_runs += 1,
                }
                cov.accounts += s.accounts_seen;
                cov.posts += s.posts_read;
            }
        }
        cov.first_run = ordered.first().map(|r| fmt_time(r.started_at));
        cov.last_run = ordered.last().map(|r| fmt_time(r.finished_at.unwrap_or(r.started_at)));
        cov.sources = by_name.into_values().collect();
        cov.failed_sources = cov.sources.iter().filter(|s| s.failed_runs > 0).count();
        cov
    }
}

/// One part of an excerpt line: plain, or one of the words a rule matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub text: String,
    pub mark: bool,
}

/// A post's excerpt: lines of segments, with whether text was cut before or after.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Excerpt {
    pub lines: Vec<Vec<Segment>>,
    pub cut_before: bool,
    pub cut_after: bool,
}

impl Excerpt {
    /// The excerpt for the text part: every line quoted with `    | ` (so post content can never
    /// start a line of the digest itself), matched words in `[[...]]`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            out.push_str("    | ");
            if i == 0 && self.cut_before {
                out.push('…');
            }
            for s in line {
                if s.mark {
                    out.push_str("[[");
                    out.push_str(&s.text);
                    out.push_str("]]");
                } else {
                    out.push_str(&s.text);
                }
            }
            if i + 1 == self.lines.len() && self.cut_after {
                out.push('…');
            }
            out.push('\n');
        }
        out
    }
}

/// Merge byte spans into sorted, disjoint ranges on char boundaries of `text`. Out-of-range
/// and empty spans are dropped; overlapping and touching spans become one.
pub fn normalise_spans(text: &str, spans: impl IntoIterator<Item = Range<usize>>) -> Vec<Range<usize>> {
    let mut v: Vec<Range<usize>> = spans
        .into_iter()
        .filter_map(|r| {
            let start = floor_char_boundary(text, r.start.min(text.len()));
            let end = ceil_char_boundary(text, r.end.min(text.len()));
            (start < end).then_some(start..end)
        })
        .collect();
    v.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(v.len());
    for r in v {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The excerpt of `text` with `spans` (byte ranges, possibly overlapping or off char
/// boundaries) marked. Short texts are shown whole; long ones around the marks.
pub fn excerpt(text: &str, spans: impl IntoIterator<Item = Range<usize>>) -> Excerpt {
    let marks = normalise_spans(text, spans);
    let (mut start, mut end) = (0, text.len());
    if text.len() > EXCERPT_WHOLE {
        match (marks.first(), marks.last()) {
            (Some(first), Some(last)) => {
                start = first.start.saturating_sub(EXCERPT_CONTEXT);
                end = (last.end + EXCERPT_CONTEXT).min(text.len());
            }
            _ => end = EXCERPT_WHOLE,
        }
        if end - start > EXCERPT_MAX {
            end = start + EXCERPT_MAX;
        }
        start = floor_char_boundary(text, start);
        end = ceil_char_boundary(text, end);
    }
    let mut ex = Excerpt { lines: vec![vec![]], cut_before: start > 0, cut_after: end < text.len() };
    let mut pos = start;
    let push = |ex: &mut Excerpt, range: Range<usize>, mark: bool| {
        if range.start >= range.end {
            return;
        }
        // Split on line breaks: each line is rendered on its own (quoted in text, <br> in HTML).
        for (i, line) in split_lines(&text[range]).into_iter().enumerate() {
            if i > 0 {
                ex.lines.push(vec![]);
            }
            let clean = clean_inline(line);
            if !clean.is_empty() {
                ex.lines.last_mut().expect("a line").push(Segment { text: clean, mark });
            }
        }
    };
    for m in &marks {
        if m.end <= start || m.start >= end {
            continue;
        }
        let (ms, me) = (m.start.max(start), m.end.min(end));
        push(&mut ex, pos..ms, false);
        push(&mut ex, ms..me, true);
        pos = me;
    }
    push(&mut ex, pos..end, false);
    // Keep deliberate blank lines, at most one in a row, none at the end.
    let mut lines: Vec<Vec<Segment>> = vec![];
    for l in ex.lines {
        if l.is_empty() && lines.last().is_some_and(|p: &Vec<Segment>| p.is_empty()) {
            continue;
        }
        lines.push(l);
    }
    while lines.len() > 1 && lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    ex.lines = lines;
    ex
}

/// Split on every kind of line break (`\r\n`, `\n`, `\r`, U+2028, U+2029); a trailing
/// break yields a trailing empty string.
fn split_lines(s: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut start = 0;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let end = match c {
            '\r' if it.peek().is_some_and(|&(_, n)| n == '\n') => {
                it.next();
                i + 2
            }
            '\r' | '\n' | '\u{2028}' | '\u{2029}' => i + c.len_utf8(),
            _ => continue,
        };
        out.push(&s[start..i]);
        start = end;
    }
    out.push(&s[start..]);
    out
}

/// Text inside one line: tabs become spaces, other control characters and bidirectional
/// overrides (which can make text read differently than it is) become U+FFFD.
fn clean_inline(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() || is_bidi_control(c) => '\u{FFFD}',
            c => c,
        })
        .collect()
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{061C}')
}

/// A single-line field (display name, handle, error): line breaks and other controls become
/// spaces, bidi overrides U+FFFD, runs of whitespace collapse, and it is cut to `max` chars.
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    let mut n = 0;
    let mut last_space = true;
    for c in s.chars() {
        let c = if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            ' '
        } else if is_bidi_control(c) {
            '\u{FFFD}'
        } else {
            c
        };
        if c.is_whitespace() {
            if last_space {
                continue;
            }
            last_space = true;
            // Any kind of Unicode space becomes a plain one.
            out.push(' ');
        } else {
            last_space = false;
            out.push(c);
        }
        n += 1;
        if n >= max {
            out.push('…');
            break;
        }
    }
    out.trim_end().to_string()
}

/// A URL worth linking: `http` or `https` only (a platform could hand us `javascript:`), no
/// whitespace or controls.
pub fn safe_url(url: Option<&str>) -> Option<String> {
    let u = url?.trim();
    let lower = u.to_ascii_lowercase();
    let ok = (lower.starts_with("https://") || lower.starts_with("http://"))
        && u.len() <= 2000
        && !u.chars().any(|c| c.is_whitespace() || c.is_control() || is_bidi_control(c));
    ok.then(|| u.to_string())
}

pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// One hit as the templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct HitView {
    pub id: i64,
    pub severity: &'static str,
    pub categories: String,
    pub rules: String,
    pub time: String,
    pub url: Option<String>,
    pub excerpt: Excerpt,
    pub excerpt_text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub display_name: String,
    pub handle: String,
    pub platform: String,
    pub profile_url: Option<String>,
    pub identity: String,
    pub hits: Vec<HitView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ForceView {
    pub name: String,
    pub hits: usize,
    pub accounts: Vec<AccountView>,
}

/// Everything one digest message shows.
#[derive(Debug, Clone, Serialize)]
pub struct DigestView {
    /// Who the message is for, e.g. "Kent Police" or "Default route".
    pub route: String,
    pub date: String,
    pub generated: String,
    pub total_hits: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub accounts: usize,
    pub forces: Vec<ForceView>,
    pub coverage: Coverage,
    /// "part 1 of 3" when a route's hits are split over several messages.
    pub part: Option<String>,
    /// The route's hits per category over the last 14 days (messages with hits only).
    pub chart: Option<super::chart::ChartView>,
    /// The route's hits left waiting for later digests (only when there are some).
    pub backlog: Option<super::backlog::BacklogView>,
}

/// A force's hits by account (platform, platform id).
type ByAccount<'a> = BTreeMap<(String, String), Vec<&'a HitRecord>>;

/// Label of a hit whose force is unknown.
pub const UNKNOWN_FORCE: &str = "Force not identified";

impl DigestView {
    /// Group `hits` by force, then account (platform + platform id), then post time.
    pub fn new(route: &str, hits: &[&HitRecord], coverage: &Coverage, now: DateTime<Utc>) -> DigestView {
        let mut forces: BTreeMap<(bool, String), ByAccount<'_>> = BTreeMap::new();
        for h in hits {
            let force = h.force.as_deref().map(|f| one_line(f, FIELD_MAX));
            let key = (force.is_none(), force.unwrap_or_else(|| UNKNOWN_FORCE.to_string()));
            forces.entry(key).or_default().entry((h.platform.clone(), h.account_platform_id.clone())).or_default().push(h);
        }
        let mut accounts = 0;
        let forces = forces
            .into_iter()
            .map(|((_, name), accs)| {
                let mut accs: Vec<AccountView> = accs.into_values().map(account_view).collect();
                accs.sort_by(|a, b| (a.handle.to_lowercase(), &a.platform).cmp(&(b.handle.to_lowercase(), &b.platform)));
                accounts += accs.len();
                ForceView { name, hits: accs.iter().map(|a| a.hits.len()).sum(), accounts: accs }
            })
            .collect();
        let count = |s: crate::model::Severity| hits.iter().filter(|h| h.severity == s).count();
        DigestView {
            route: one_line(route, FIELD_MAX),
            date: now.format("%Y-%m-%d").to_string(),
            generated: fmt_time(now),
            total_hits: hits.len(),
            high: count(crate::model::Severity::High),
            medium: count(crate::model::Severity::Medium),
            low: count(crate::model::Severity::Low),
            accounts,
            forces,
            coverage: coverage.clone(),
            part: None,
            chart: None,
            backlog: None,
        }
    }

    /// The subject (without the prefix): counts and date. Built only from numbers and the
    /// route name from the config, never from post content.
    pub fn subject(&self, prefix: &str) -> String {
        let body = if self.total_hits == 0 {
            format!(
                "{}: nothing found, {} accounts and {} posts checked",
                self.route, self.coverage.accounts, self.coverage.posts
            )
        } else {
            format!(
                "{}: {} hit{} ({} high) from {} account{}",
                self.route,
                self.total_hits,
                plural(self.total_hits),
                self.high,
                self.accounts,
                plural(self.accounts)
            )
        };
        let body = match &self.part {
            Some(part) => format!("{body} ({part})"),
            None => body,
        };
        let body = match self.backlog.as_ref().filter(|b| b.waiting > 0) {
            Some(b) => format!("{body}, {} more waiting", b.waiting),
            None => body,
        };
        let prefix = one_line(prefix, FIELD_MAX);
        let s =
            if prefix.is_empty() { format!("{body} — {}", self.date) } else { format!("{prefix} {body} — {}", self.date) };
        one_line(&s, 250)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn account_view(mut hits: Vec<&HitRecord>) -> AccountView {
    hits.sort_by_key(|h| (h.post_created_at, h.id));
    let first = hits[0];
    let identity = {
        let v = &first.identity;
        let mut s = v.identity.as_str().to_string();
        if let Some(role) = v.role.as_deref().filter(|r| !r.is_empty()) {
            s.push_str(", ");
            s.push_str(role);
        }
        one_line(&s, FIELD_MAX)
    };
    AccountView {
        display_name: one_line(&first.account_display_name, FIELD_MAX),
        handle: one_line(&first.account_handle, FIELD_MAX),
        platform: one_line(&first.platform, 40),
        profile_url: safe_url(first.profile_url.as_deref()),
        identity,
        hits: hits.into_iter().map(hit_view).collect(),
    }
}

fn hit_view(h: &HitRecord) -> HitView {
    let spans = h.classification.findings.iter().flat_map(|f| f.spans.iter().cloned());
    // Personal data is masked before the excerpt is cut; the marks move with the masks.
    let (text, spans) = crate::redact::apply(&h.text, spans);
    let excerpt = excerpt(&text, spans);
    let mut rules: Vec<&str> = h.classification.findings.iter().map(|f| f.rule_id.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    HitView {
        id: h.id,
        severity: h.severity.as_str(),
        categories: h.categories.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
        rules: one_line(&rules.join(", "), 300),
        time: fmt_time(h.post_created_at),
        url: safe_url(h.post_url.as_deref()),
        excerpt_text: excerpt.to_text(),
        excerpt,
    }
}

/// The rendered parts of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The chart's image, when the HTML shows one.
    pub chart: Option<super::chart::InlineImage>,
}

/// The template engine: the text template unescaped, the HTML template with HTML
/// auto-escaping; undefined variables are errors, not silent blanks.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| if name.ends_with(".html") { AutoEscape::Html } else { AutoEscape::None });
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_template("digest.txt", TEXT_TEMPLATE).expect("digest.txt template parses");
    env.add_template("digest.html", HTML_TEMPLATE).expect("digest.html template parses");
    env
}

/// Render both parts and the subject of one digest.
pub fn render(env: &Environment<'_>, view: &DigestView, subject_prefix: &str) -> Result<Rendered, minijinja::Error> {
    let subject = view.subject(subject_prefix);
    let ctx = minijinja::context! { d => view, subject => &subject };
    let text = env.get_template("digest.txt")?.render(&ctx)?;
    let html = env.get_template("digest.html")?.render(&ctx)?;
    let chart =
        match &view.chart {
            Some(chart) => Some(chart.image().map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("drawing the chart: {e:#}"))
            })?),
            None => None,
        };
    Ok(Rendered { subject, text, html, chart })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::classify::{Classification, Finding};
    use crate::identify::IdentityVerdict;
    use crate::model::{Category, Identity, Severity};
    use crate::store::{ReviewStatus, SourceSummary};
    use chrono::TimeZone;

    pub(crate) fn hit(id: i64, force: Option<&str>, handle: &str, text: &str, words: &[&str]) -> HitRecord {
        let spans: Vec<Range<usize>> = words
            .iter()
            .map(|w| {
                let s = text.find(w).unwrap_or_else(|| panic!("{w:?} not in {text:?}"));
                s..s + w.len()
            })
            .collect();
        HitRecord {
            id,
            source: "demo".into(),
            platform: "mastodon".into(),
            account_platform_id: format!("id-{handle}"),
            account_handle: handle.into(),
            account_display_name: format!("Name of {handle}"),
            profile_url: Some(format!("https://social.example/@{handle}")),
            force: force.map(str::to_string),
            post_platform_id: format!("p{id}"),
            post_url: Some(format!("https://social.example/@{handle}/{id}")),
            post_created_at: Utc.with_ymd_and_hms(2026, 11, 21, 10, id as u32 % 60, 0).unwrap(),
            retrieved_at: Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap(),
            text: text.into(),
            categories: vec![Category::Operational],
            severity: Severity::High,
            classification: Classification {
                lang: None,
                categories: vec![Category::Operational],
                severity: Some(Severity::High),
                findings: vec![Finding {
                    rule_id: "op.test".into(),
                    category: Category::Operational,
                    severity: Severity::High,
                    spans,
                    matched: words.join(" … "),
                }],
            },
            identity: IdentityVerdict {
                identity: Identity::Serving,
                score: 0.9,
                force: force.map(str::to_string),
                role: Some("PC".into()),
                evidence: vec![],
            },
            status: ReviewStatus::New,
            digest_id: None,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 7, 0, 0).unwrap()
    }

    fn render_hits(hits: &[HitRecord]) -> Rendered {
        let refs: Vec<&HitRecord> = hits.iter().collect();
        let cov = Coverage::from_runs(&[]);
        render(&environment(), &DigestView::new("Kent Police", &refs, &cov, now()), "[em]").unwrap()
    }

    fn marked(ex: &Excerpt) -> Vec<String> {
        ex.lines.iter().flatten().filter(|s| s.mark).map(|s| s.text.clone()).collect()
    }

    #[test]
    fn marks_the_matched_words_in_multibyte_text() {
        let text = "Café shift: raid on Ffordd Ŵyn at 0600, don't tell anyone 🚓 tonight";
        let raid = text.find("raid").unwrap();
        let wyn = text.find("Ŵyn").unwrap();
        let emoji = text.find('🚓').unwrap();
        // Spans in bytes; one cuts the emoji in the middle (must widen to the whole char).
        let ex = excerpt(text, [raid..raid + 4, wyn..wyn + "Ŵyn".len(), emoji + 1..emoji + 2]);
        assert_eq!(marked(&ex), vec!["raid", "Ŵyn", "🚓"]);
        let t = ex.to_text();
        assert!(t.contains("[[raid]] on Ffordd [[Ŵyn]] at 0600"), "{t}");
        assert!(t.contains("[[🚓]] tonight"), "{t}");
        assert!(!ex.cut_before && !ex.cut_after);
    }

    #[test]
    fn overlapping_touching_and_bad_spans_merge_or_drop() {
        let text = "abcdefghij";
        assert_eq!(normalise_spans(text, [2..5, 4..7, 7..8, 20..30, 5..5, 9..40]), vec![2..8, 9..10]);
        let ex = excerpt(text, [2..5, 4..7]);
        assert_eq!(ex.to_text(), "    | ab[[cdefg]]hij\n");
        // A span inside a multi-byte char widens to the char, never panics.
        let t = "xéy";
        assert_eq!(normalise_spans(t, [2..2, 2..3]), vec![1..3]);
    }

    #[test]
    fn long_posts_are_cut_around_the_marks() {
        let text = format!("{}needle{}", "a ".repeat(1000), " b".repeat(1000));
        let at = text.find("needle").unwrap();
        let ex = excerpt(&text, [at..at + 6]);
        assert!(ex.cut_before && ex.cut_after);
        let t = ex.to_text();
        assert!(t.contains("[[needle]]"));
        assert!(t.len() < 2 * EXCERPT_CONTEXT + 40, "{}", t.len());
    }

    #[test]
    fn post_lines_are_quoted_so_content_cannot_forge_digest_structure() {
        let text = "line one\r\nSubject: fake\n\nHit #999 · high\rend";
        let ex = excerpt(text, [0..4]);
        let t = ex.to_text();
        for line in t.lines() {
            assert!(line.starts_with("    | "), "unquoted line {line:?} in {t:?}");
        }
        assert_eq!(t, "    | [[line]] one\n    | Subject: fake\n    | \n    | Hit #999 · high\n    | end\n");
    }

    #[test]
    fn hostile_content_is_escaped_in_both_parts() {
        let mut h = hit(7, Some("Kent Police"), "evil", "<script>alert(1)</script> raid at \"6\" & 'go'", &["raid"]);
        h.account_display_name = "PC Evil\r\nBcc: victim@example.com\r\n<img src=x onerror=alert(1)>".into();
        h.account_handle = "evil\n@x".into();
        h.post_url = Some("javascript:alert(1)".into());
        h.profile_url = Some("https://ok.example/\"><script>".into());
        let r = render_hits(&[h]);
        let html_lower = r.html.to_ascii_lowercase();
        assert!(!html_lower.contains("<script"), "{}", r.html);
        assert!(!html_lower.contains("<img"), "{}", r.html);
        assert!(!html_lower.contains("javascript:"), "{}", r.html);
        assert!(r.html.contains("&lt;script&gt;alert(1)&lt;"), "{}", r.html);
        assert!(r.html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{}", r.html);
        assert!(r.html.contains("&quot;6&quot; &amp; &#x27;go&#x27;"), "{}", r.html);
        // CR/LF in names never make a line of their own in either part.
        for part in [&r.text, &r.html] {
            assert!(!part.contains("\nBcc:") && !part.contains("\r"), "{part}");
            assert!(part.contains("PC Evil Bcc: victim@example.com"), "{part}");
        }
        // The text part quotes post content and keeps it verbatim otherwise.
        assert!(r.text.contains("    | <script>alert(1)</script> [[raid]] at \"6\""), "{}", r.text);
        assert!(!r.text.contains("javascript:"), "{}", r.text);
        assert!(!r.subject.contains('\n') && !r.subject.contains("Evil"), "{}", r.subject);
    }

    #[test]
    fn html_marks_words_and_has_no_external_resources() {
        let r = render_hits(&[hit(3, Some("Kent Police"), "pc_a", "Raid at Elmtree Close tomorrow", &["Raid", "Elmtree Close"])]);
        assert!(r.html.contains("<mark"), "{}", r.html);
        let after = &r.html[r.html.find("Hit #3").unwrap()..];
        let marks: Vec<&str> = after.split("<mark").skip(1).map(|s| s.split("</mark>").next().unwrap()).collect();
        assert_eq!(marks.len(), 2, "{}", r.html);
        assert!(marks[0].ends_with(">Raid</b>") && marks[1].ends_with(">Elmtree Close</b>"), "{marks:?}");
        let lower = r.html.to_ascii_lowercase();
        for bad in ["<script", "<link", "<style", "src=\"http", "url(", "@import"] {
            assert!(!lower.contains(bad), "{bad} in HTML");
        }
        assert!(lower.contains("<table"));
        assert!(r.html.contains("hits show 3"));
        assert!(r.text.contains("hits show 3") && r.text.contains("[[Raid]] at [[Elmtree Close]] tomorrow"), "{}", r.text);
        assert!(r.text.contains("https://social.example/@pc_a/3"));
        // minijinja escapes `/` too: `&#x2f;` is what a browser decodes back to `/`.
        assert!(r.html.contains("href=\"https:&#x2f;&#x2f;social.example&#x2f;@pc_a&#x2f;3\""), "{}", r.html);
    }

    #[test]
    fn groups_by_force_then_account_then_time() {
        let hits = vec![
            hit(5, Some("Kent Police"), "zed", "late raid", &["raid"]),
            hit(1, None, "anon", "some raid", &["raid"]),
            hit(4, Some("Essex Police"), "bob", "raid bob", &["raid"]),
            hit(2, Some("Kent Police"), "amy", "raid two", &["raid"]),
            hit(3, Some("Kent Police"), "zed", "early raid", &["raid"]),
        ];
        let refs: Vec<&HitRecord> = hits.iter().collect();
        let v = DigestView::new("Default route", &refs, &Coverage::default(), now());
        let names: Vec<&str> = v.forces.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["Essex Police", "Kent Police", UNKNOWN_FORCE]);
        let kent = &v.forces[1];
        let handles: Vec<&str> = kent.accounts.iter().map(|a| a.handle.as_str()).collect();
        assert_eq!(handles, vec!["amy", "zed"]);
        let zed: Vec<i64> = kent.accounts[1].hits.iter().map(|h| h.id).collect();
        assert_eq!(zed, vec![3, 5], "by post time");
        assert_eq!((v.total_hits, v.accounts, v.high), (5, 4, 5));
        let r = render(&environment(), &v, "[em]").unwrap();
        let (e, k, u) =
            (r.text.find("Essex Police").unwrap(), r.text.find("Kent Police").unwrap(), r.text.find(UNKNOWN_FORCE).unwrap());
        assert!(e < k && k < u, "{}", r.text);
        assert!(r.text.find("early [[raid]]").unwrap() < r.text.find("late [[raid]]").unwrap());
        assert!(r.subject.starts_with("[em] Default route: 5 hits (5 high) from 4 accounts — 2026-11-22"), "{}", r.subject);
    }

    fn run(id: i64, summaries: Vec<SourceSummary>) -> RunReport {
        RunReport {
            id,
            started_at: Utc.with_ymd_and_hms(2026, 11, 21, 6, id as u32, 0).unwrap(),
            finished_at: Some(Utc.with_ymd_and_hms(2026, 11, 21, 6, id as u32 + 1, 0).unwrap()),
            summaries,
        }
    }

    fn summary(source: &str, accounts: u64, posts: u64, error: Option<&str>) -> SourceSummary {
        SourceSummary {
            source: source.into(),
            accounts_seen: accounts,
            identified: 0,
            posts_read: posts,
            hits: 0,
            errors: 0,
            error: error.map(str::to_string),
            suppressed: 0,
            ..Default::default()
        }
    }

    #[test]
    fn coverage_sums_runs_and_keeps_the_newest_error() {
        let runs = vec![
            run(2, vec![summary("masto", 10, 100, Some("HTTP 503\r\nfrom <server>")), summary("bsky", 5, 50, None)]),
            run(1, vec![summary("masto", 7, 70, Some("old error")), summary("bsky", 3, 30, None)]),
        ];
        let c = Coverage::from_runs(&runs);
        assert_eq!((c.runs, c.accounts, c.posts, c.failed_sources), (2, 25, 250, 1));
        let masto = c.sources.iter().find(|s| s.name == "masto").unwrap();
        assert_eq!((masto.ok_runs, masto.failed_runs), (0, 2));
        assert_eq!(masto.last_error.as_deref(), Some("HTTP 503 from <server>"));
        let r = render(&environment(), &DigestView::new("Kent Police", &[], &c, now()), "[em]").unwrap();
        assert!(r.html.contains("HTTP 503 from &lt;server&gt;"), "{}", r.html);
        assert!(r.text.contains("masto") && r.text.contains("HTTP 503 from <server>"), "{}", r.text);
    }

    #[test]
    fn coverage_says_how_many_findings_were_suppressed() {
        let mut a = summary("masto", 10, 100, None);
        a.suppressed = 3;
        let mut b = summary("masto", 5, 50, None);
        b.suppressed = 2;
        let c = Coverage::from_runs(&[run(2, vec![a]), run(1, vec![b, summary("bsky", 1, 1, None)])]);
        assert_eq!(c.suppressed, 5);
        assert_eq!(c.sources.iter().find(|s| s.name == "masto").unwrap().suppressed, 5);
        let r = render(&environment(), &DigestView::new("Kent Police", &[], &c, now()), "[em]").unwrap();
        let line = "Suppressed: 5 findings not reported again because a reviewer dismissed the same finding";
        assert!(r.text.contains(line), "{}", r.text);
        assert!(r.text.contains("150 posts, 0 hits, 5 suppressed"), "{}", r.text);
        assert!(r.html.contains("Suppressed: <b>5</b> findings not reported again"), "{}", r.html);
        let none = Coverage::from_runs(&[run(1, vec![summary("bsky", 1, 1, None)])]);
        let r = render(&environment(), &DigestView::new("Kent Police", &[], &none, now()), "[em]").unwrap();
        assert!(r.text.contains("Suppressed: 0 findings"), "{}", r.text);
    }

    #[test]
    fn personal_data_is_masked_in_both_parts_and_marks_stay_on_the_finding() {
        let text = "Stopped reg KE19 XWP again. The victim is Kelly Brennan, lives at 12 Mill Lane, ring 07700 900123";
        let h = hit(9, Some("Kent Police"), "pc_a", text, &["KE19 XWP", "victim is Kelly Brennan"]);
        let r = render_hits(&[h]);
        for part in [&r.text, &r.html] {
            for secret in ["XWP", "Kelly", "Brennan", "Mill Lane", "900123"] {
                assert!(!part.contains(secret), "{secret} shown in {part}");
            }
        }
        assert!(
            r.text.contains("reg [[KE19 ***]] again. The [[victim is [name]]], lives at [address], ring [phone]"),
            "{}",
            r.text
        );
        let after = &r.html[r.html.find("Hit #9").unwrap()..];
        let marks: Vec<&str> = after.split("<mark").skip(1).map(|s| s.split("</mark>").next().unwrap()).collect();
        assert_eq!(marks.len(), 2, "{}", r.html);
        assert!(marks[0].ends_with(">KE19 ***</b>") && marks[1].ends_with(">victim is [name]</b>"), "{marks:?}");
    }

    #[test]
    fn empty_day_says_nothing_found_with_counts() {
        let runs = vec![run(1, vec![summary("masto", 12, 340, None)])];
        let c = Coverage::from_runs(&runs);
        let r = render(&environment(), &DigestView::new("Kent Police", &[], &c, now()), "[em]").unwrap();
        assert_eq!(r.subject, "[em] Kent Police: nothing found, 12 accounts and 340 posts checked — 2026-11-22");
        for part in [&r.text, &r.html] {
            assert!(part.contains("Nothing found"), "{part}");
            assert!(part.contains("12 accounts and 340 posts checked"), "{part}");
        }
        assert!(!r.html.contains("<mark"));
    }

    #[test]
    fn no_scan_since_last_digest_is_said_plainly() {
        let r = render(&environment(), &DigestView::new("Kent Police", &[], &Coverage::default(), now()), "").unwrap();
        assert!(r.text.contains("No scan ran since the last digest"), "{}", r.text);
        assert!(r.html.contains("No scan ran since the last digest"), "{}", r.html);
        assert!(r.subject.starts_with("Kent Police: nothing found"), "{}", r.subject);
    }

    #[test]
    fn one_line_and_safe_url() {
        assert_eq!(one_line("a\r\n\tb\u{202E}c  d", 50), "a b\u{FFFD}c d");
        assert_eq!(one_line(&"x".repeat(10), 4), "xxxx…");
        assert_eq!(safe_url(Some("https://a.example/x")), Some("https://a.example/x".into()));
        assert_eq!(safe_url(Some("HTTP://a.example/")), Some("HTTP://a.example/".into()));
        assert_eq!(safe_url(Some("javascript:alert(1)")), None);
        assert_eq!(safe_url(Some("https://a.example/\nBcc: x")), None);
        assert_eq!(safe_url(None), None);
    }
}
