//! Scan: one pass over every enabled source, driving sources → identify → classify → store.
//!
//! Owns the order of work and its safety: a page's results and the cursor after it are
//! committed in one transaction (so killing a scan loses nothing and re-running it duplicates
//! nothing), one failing source is recorded and the others carry on, and memory is bounded by a
//! page. It knows no platform, rule or SQL detail: those live behind the stage interfaces.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use crate::classify::Classification;
use crate::config::{Config, SourceEntry};
use crate::identify::{EvidenceSource, IdentityVerdict, PostSignals};
use crate::model::{Account, Identity, Post};
use crate::patterns::Detector;
use crate::sources::{self, Page, Source};
use crate::store::{
    AccountUpdate, BatchLimits, BatchWriter, NewHit, PageCommit, SourceSummary, StagedPage, Store, StoreError, StoredAccount,
    SuppressionSet,
};

/// The outcome of a scan: one summary per enabled source.
#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    pub run_id: i64,
    pub summaries: Vec<SourceSummary>,
}

impl ScanReport {
    /// Sources that stopped with an error.
    pub fn failed(&self) -> usize {
        self.summaries.iter().filter(|s| s.error.is_some()).count()
    }
}

/// Told of progress after every stored page (the CLI draws a progress bar with it).
pub type ProgressFn<'a> = &'a (dyn Fn(&SourceSummary) + Sync);

/// Scan every enabled source once. A source error is recorded in its summary; only a database
/// error (which would put every source at risk) stops the whole scan.
pub async fn run(
    config: &Config,
    store: &Store,
    detector: &Detector,
    progress: ProgressFn<'_>,
) -> Result<ScanReport, StoreError> {
    let run_id = store.begin_run().await?;
    let mut report = ScanReport { run_id, summaries: vec![] };
    let ctx = sources::BuildContext::new(&config.operator_contact);
    // Sources are read concurrently (each behind its own rate limiter), a few at a time; their
    // summaries are recorded in the configured order.
    let entries: Vec<&SourceEntry> = config.enabled_sources().collect();
    let ctx = &ctx;
    let scans = futures_util::stream::iter(entries.into_iter().map(|entry| async move {
        let mut source = sources::build(entry, ctx);
        scan_source(entry, source.as_mut(), store, detector, progress).await
    }))
    .buffered(CONCURRENT_SOURCES);
    futures_util::pin_mut!(scans);
    while let Some(summary) = scans.next().await {
        let summary = summary?;
        store.record_source(run_id, &summary).await?;
        report.summaries.push(summary);
    }
    store.finish_run(run_id).await?;
    Ok(report)
}

/// Pages fetched ahead of processing: one (the next page is fetched while this one is
/// processed), so memory stays bounded by a few pages whatever the volume.
const FETCH_AHEAD: usize = 1;
/// Processed pages (their hits and accounts only) waiting for the writer.
const WRITE_QUEUE: usize = 4;

/// Sources read at once by [`run`].
const CONCURRENT_SOURCES: usize = 4;

/// Read one source from its stored cursor to the end, page by page, as a pipeline of three
/// stages run concurrently: the source fetches the next page while the previous one is
/// identified and classified, and a single writer group-commits processed pages (see
/// [`BatchWriter`]). Each committed batch carries the cursor after its last page, so a scan
/// killed at any point loses nothing and re-running it duplicates nothing.
pub async fn scan_source(
    entry: &SourceEntry,
    source: &mut dyn Source,
    store: &Store,
    detector: &Detector,
    progress: ProgressFn<'_>,
) -> Result<SourceSummary, StoreError> {
    scan_source_with(entry, source, store, detector, progress, BatchLimits::default()).await
}

/// [`scan_source`] with the writer's batch limits given.
pub async fn scan_source_with(
    entry: &SourceEntry,
    source: &mut dyn Source,
    store: &Store,
    detector: &Detector,
    progress: ProgressFn<'_>,
    limits: BatchLimits,
) -> Result<SourceSummary, StoreError> {
    let name = entry.name.as_str();
    let start_cursor = store.cursor(name).await?;
    let (page_tx, mut page_rx) = tokio::sync::mpsc::channel::<Page>(FETCH_AHEAD);
    let (commit_tx, mut commit_rx) = tokio::sync::mpsc::channel::<StagedPage>(WRITE_QUEUE);
    let hits = AtomicU64::new(0);

    // Stage 1: fetch pages, each from the cursor of the one before, until done or an error.
    let fetch = async move {
        let mut cursor = start_cursor;
        let mut failure = None;
        loop {
            match source.next_page(cursor.as_deref()).await {
                Ok(page) => {
                    let done = page.done;
                    if let Some(c) = &page.cursor {
                        cursor = Some(c.clone());
                    }
                    // The receiver is gone only when a later stage failed: stop fetching.
                    if page_tx.send(page).await.is_err() || done {
                        break;
                    }
                }
                Err(e) => {
                    warn!(source = name, error = %e, "source failed");
                    failure = Some(e);
                    break;
                }
            }
        }
        failure
    };

    // Stage 2: identify and classify, staging each page's results for the writer.
    let process = async {
        let mut summary = SourceSummary { source: name.to_string(), ..Default::default() };
        let mut seen_accounts = SeenAccounts::default();
        while let Some(page) = page_rx.recv().await {
            tally_page(name, &page, &mut summary);
            let commit = match process_page(name, page, store, detector, &mut summary, &mut seen_accounts).await {
                Ok(c) => c,
                Err(e) => return (summary, Err(e)),
            };
            summary.accounts_seen = seen_accounts.len() as u64;
            if commit_tx.send(store.stage(commit)).await.is_err() {
                break; // the writer failed; its error is reported
            }
            summary.hits = hits.load(Ordering::Relaxed);
            progress(&summary);
        }
        drop(commit_tx);
        summary.accounts_seen = seen_accounts.len() as u64;
        (summary, Ok(()))
    };

    // Stage 3: the single writer, committing a batch when it is full or due.
    let write = async {
        let mut writer = BatchWriter::new(store.clone(), limits);
        loop {
            let next = match writer.deadline() {
                Some(deadline) => match tokio::time::timeout_at(deadline.into(), commit_rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        hits.fetch_add(writer.flush().await?, Ordering::Relaxed);
                        continue;
                    }
                },
                None => commit_rx.recv().await,
            };
            match next {
                Some(page) => {
                    hits.fetch_add(writer.push(page).await?, Ordering::Relaxed);
                }
                None => break,
            }
        }
        hits.fetch_add(writer.flush().await?, Ordering::Relaxed);
        Ok::<(), StoreError>(())
    };

    let (failure, (mut summary, processed), written) = tokio::join!(fetch, process, write);
    // A database error stops the scan; what was committed before it stays.
    written?;
    processed?;
    summary.hits = hits.load(Ordering::Relaxed);
    if let Some(e) = failure {
        summary.errors += 1;
        // A source that gave up because the platform asked for a longer wait than allowed was
        // throttled too: count the wait it would not make.
        if is_rate_limited(&e) {
            summary.rate_limit_waits += 1;
        }
        summary.error = Some(e.to_string());
    }
    progress(&summary);
    info!(
        source = name,
        accounts = summary.accounts_seen,
        identified = summary.identified,
        posts = summary.posts_read,
        hits = summary.hits,
        suppressed = summary.suppressed,
        errors = summary.errors,
        opted_out = summary.opted_out,
        rate_limit_waits = summary.rate_limit_waits,
        "source scanned"
    );
    Ok(summary)
}

/// Count what a page reports beside its accounts and posts: records skipped as unreadable
/// (errors), accounts skipped because their owner opted out (not errors), and forced waits for a
/// rate limit.
fn tally_page(source_name: &str, page: &Page, summary: &mut SourceSummary) {
    for skipped in &page.skipped {
        warn!(source = source_name, record = %skipped, "skipped a record");
    }
    summary.errors += page.skipped.len() as u64;
    summary.opted_out += page.opted_out;
    summary.rate_limit_waits += page.rate_limit_waits;
}

fn is_rate_limited(e: &sources::SourceError) -> bool {
    matches!(e, sources::SourceError::Http(h) if matches!(h.kind, sources::http::HttpErrorKind::RateLimited { .. }))
}

/// Identify the authors on a page and classify the posts of those who are serving police.
async fn process_page(
    source_name: &str,
    mut page: Page,
    store: &Store,
    detector: &Detector,
    summary: &mut SourceSummary,
    seen: &mut SeenAccounts,
) -> Result<PageCommit, StoreError> {
    let retrieved_at = Utc::now();
    // The cursor moves into the commit, not copied: a cursor such as Mastodon's, with a mark per
    // account, is megabytes, and the scan already holds one per page in flight.
    let cursor = page.cursor.take();
    summary.posts_read += page.posts.len() as u64;
    let mut posts_by_author: HashMap<&str, Vec<&Post>> = HashMap::new();
    for post in &page.posts {
        posts_by_author.entry(post.author_id.as_str()).or_default().push(post);
    }
    let mut commit = PageCommit { source: source_name.to_string(), accounts: vec![], hits: vec![], cursor };
    let mut remembered =
        remembered_accounts(store, page.accounts.iter().map(|a| (a.platform.as_str(), a.platform_id.as_str()))).await?;
    for account in &page.accounts {
        let first_time = seen.insert(&account.platform, &account.platform_id);
        let posts = posts_by_author.remove(account.platform_id.as_str()).unwrap_or_default();
        let stored = remembered.take(&account.platform, &account.platform_id).map(|s| s.post_signals);
        let was_stored = stored.is_some();
        let mut signals: PostSignals = stored.unwrap_or_default();
        for post in &posts {
            signals.merge(detector.identifier.post_signals(post));
        }
        let verdict = detector.identifier.identify(account, &signals);
        let ctx = AccountPosts { account, verdict, signals, was_stored, first_time };
        classify_posts(source_name, ctx, &posts, store, detector, summary, &mut commit, retrieved_at).await?;
    }
    // Posts whose author's profile is not on the page (a stream such as Jetstream sends a
    // profile only when it changes): the author is identified from what the store remembers
    // of them (names and the verdict reached with their profile) plus the signals of their
    // posts, so accounts whose posts alone identify them are found too.
    let mut authors: Vec<(&str, Vec<&Post>)> = posts_by_author.into_iter().collect();
    authors.sort_by_key(|(author, _)| *author);
    let mut remembered =
        remembered_accounts(store, authors.iter().map(|(author, posts)| (posts[0].platform.as_str(), *author))).await?;
    for (author, posts) in authors {
        let platform = posts[0].platform.as_str();
        let first_time = seen.insert(platform, author);
        let stored = remembered.take(platform, author);
        let was_stored = stored.is_some();
        let (account, stored_verdict, mut signals) = match stored {
            Some(s) => (s.account, Some(s.verdict), s.post_signals),
            None => (
                Account {
                    platform: platform.to_string(),
                    platform_id: author.to_string(),
                    handle: author.to_string(),
                    display_name: String::new(),
                    bio: String::new(),
                    profile_url: None,
                },
                None,
                PostSignals::default(),
            ),
        };
        for post in &posts {
            signals.merge(detector.identifier.post_signals(post));
        }
        let mut verdict = detector.identifier.identify(&account, &signals);
        // The bio is not stored, so a verdict reached with it stands until the profile is seen
        // again; without profile evidence, the display name and posts decide afresh.
        if let Some(v) = stored_verdict {
            if v.evidence.iter().any(|e| matches!(e.source, EvidenceSource::Bio | EvidenceSource::DisplayName)) {
                verdict = v;
            }
        }
        debug!(source = source_name, author, posts = posts.len(), identity = %verdict.identity, "posts without a profile on the page");
        let ctx = AccountPosts { account: &account, verdict, signals, was_stored, first_time };
        classify_posts(source_name, ctx, &posts, store, detector, summary, &mut commit, retrieved_at).await?;
    }
    Ok(commit)
}

/// The accounts seen in a scan of one source, per platform: looked up by `&str`, so an author
/// seen before (most authors of a busy stream, on every page) costs no allocation.
#[derive(Default)]
struct SeenAccounts {
    by_platform: HashMap<String, std::collections::HashSet<String>>,
}

impl SeenAccounts {
    /// Note the account; `true` the first time it is seen.
    fn insert(&mut self, platform: &str, id: &str) -> bool {
        let ids = match self.by_platform.get_mut(platform) {
            Some(ids) => ids,
            None => self.by_platform.entry(platform.to_string()).or_default(),
        };
        if ids.contains(id) {
            return false;
        }
        ids.insert(id.to_string())
    }

    fn len(&self) -> usize {
        self.by_platform.values().map(|ids| ids.len()).sum()
    }
}

/// What the store remembers of the accounts of a page, per platform and id (taken out by
/// `&str`, without building an owned key per author).
struct Remembered(HashMap<String, HashMap<String, StoredAccount>>);

impl Remembered {
    fn take(&mut self, platform: &str, id: &str) -> Option<StoredAccount> {
        self.0.get_mut(platform)?.remove(id)
    }
}

/// What the store remembers of the accounts of a page: read per platform a few hundred at a
/// time, not one query per account (a page of a whole-network stream has an author per post).
async fn remembered_accounts<'a>(
    store: &Store,
    accounts: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<Remembered, StoreError> {
    let mut by_platform: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for (platform, id) in accounts {
        by_platform.entry(platform).or_default().push(id);
    }
    let mut remembered = HashMap::new();
    for (platform, ids) in by_platform {
        remembered.insert(platform.to_string(), store.stored_accounts(platform, &ids).await?);
    }
    Ok(Remembered(remembered))
}

/// One author of a page and what is known of them.
struct AccountPosts<'a> {
    account: &'a Account,
    verdict: IdentityVerdict,
    signals: PostSignals,
    /// The store already remembers the account (its record is then kept up to date).
    was_stored: bool,
    first_time: bool,
}

/// Classify the posts of one author if they are serving police, adding hits (and the account
/// record, if there is anything policing-related about it) to the page's commit.
#[allow(clippy::too_many_arguments)]
async fn classify_posts(
    source_name: &str,
    a: AccountPosts<'_>,
    posts: &[&Post],
    store: &Store,
    detector: &Detector,
    summary: &mut SourceSummary,
    commit: &mut PageCommit,
    retrieved_at: chrono::DateTime<Utc>,
) -> Result<(), StoreError> {
    let AccountPosts { account, verdict, signals, was_stored, first_time } = a;
    if verdict.identity == Identity::Serving {
        if first_time {
            summary.identified += 1;
        }
        // Loaded once per account, and only when one of its posts has findings.
        let mut suppressions: Option<SuppressionSet> = None;
        for post in posts {
            let mut classification = detector.classifier.classify(post);
            if !classification.is_hit_content() {
                continue;
            }
            let set = match &mut suppressions {
                Some(set) => set,
                None => suppressions.insert(store.suppressions(&account.platform, &account.platform_id).await?),
            };
            let dropped = remove_suppressed(&mut classification, set);
            // Re-reading the dismissed post itself is not a new suppression.
            if !set.is_origin(&post.platform_id) {
                summary.suppressed += dropped;
            }
            if classification.is_hit_content() {
                commit.hits.push(NewHit {
                    source: source_name.to_string(),
                    account: account.clone(),
                    verdict: verdict.clone(),
                    post: (*post).clone(),
                    classification,
                    retrieved_at,
                });
            }
        }
    }
    // Remember only accounts with something policing-related about them (and keep the record
    // of one already remembered up to date, e.g. when its bio no longer says police).
    if verdict.identity != Identity::None || !signals.is_empty() || was_stored {
        commit.accounts.push(AccountUpdate { account: account.clone(), verdict, post_signals: signals });
    }
    Ok(())
}

/// Drop the findings a dismissal suppresses (same rule, same normalised matched text) and
/// recompute the categories and severity from what is left. Returns how many were dropped.
/// When nothing is left, the post is not a hit.
pub fn remove_suppressed(c: &mut Classification, suppressions: &SuppressionSet) -> u64 {
    if suppressions.is_empty() {
        return 0;
    }
    let before = c.findings.len();
    c.findings.retain(|f| !suppressions.suppresses(&f.rule_id, &f.matched));
    let dropped = (before - c.findings.len()) as u64;
    if dropped > 0 {
        c.categories = c.findings.iter().map(|f| f.category).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        c.severity = c.findings.iter().map(|f| f.severity).max();
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Finding;
    use crate::model::{Category, Severity};

    fn finding(rule: &str, category: Category, severity: Severity, matched: &str) -> Finding {
        Finding { rule_id: rule.into(), category, severity, spans: std::iter::once(0..1).collect(), matched: matched.into() }
    }

    /// A source that hands out prepared pages (or errors) in order.
    struct Scripted {
        pages: std::collections::VecDeque<Result<Page, sources::SourceError>>,
    }

    #[async_trait::async_trait]
    impl Source for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        async fn next_page(&mut self, _cursor: Option<&str>) -> Result<Page, sources::SourceError> {
            self.pages.pop_front().expect("the scan asked for a page after `done` or an error")
        }
    }

    fn page(n: u64, skipped: usize, opted_out: u64, waits: u64, done: bool) -> Page {
        Page {
            skipped: (0..skipped).map(|i| format!("record {i} unreadable")).collect(),
            opted_out,
            rate_limit_waits: waits,
            cursor: Some(format!("c{n}")),
            done,
            ..Default::default()
        }
    }

    /// A fresh database in a temporary directory (kept alive by the returned guard) and the
    /// shipped rules.
    async fn store_and_detector() -> (tempfile::TempDir, Store, Detector) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).await.unwrap();
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let detector = Detector::load(&repo.join("patterns"), &crate::forces::Forces::embedded()).unwrap();
        (dir, store, detector)
    }

    /// The config entry a scripted source runs under.
    fn scripted_entry(dir: &std::path::Path) -> SourceEntry {
        SourceEntry {
            name: "scripted".into(),
            enabled: true,
            kind: crate::config::SourceConfig::Replay(crate::sources::replay::ReplayConfig {
                dir: dir.to_path_buf(),
                page_size: 1,
            }),
        }
    }

    async fn scan_scripted(pages: Vec<Result<Page, sources::SourceError>>) -> (SourceSummary, Option<String>) {
        let (dir, store, detector) = store_and_detector().await;
        let entry = scripted_entry(dir.path());
        let mut src = Scripted { pages: pages.into_iter().collect() };
        let summary = scan_source(&entry, &mut src, &store, &detector, &|_| {}).await.unwrap();
        (summary, store.cursor("scripted").await.unwrap())
    }

    #[tokio::test]
    async fn opt_outs_and_rate_limit_waits_are_summed_apart_from_errors() {
        let (s, cursor) =
            scan_scripted(vec![Ok(page(1, 2, 3, 1, false)), Ok(page(2, 0, 4, 0, false)), Ok(page(3, 1, 0, 2, true))]).await;
        assert_eq!((s.errors, s.opted_out, s.rate_limit_waits), (3, 7, 3));
        assert!(s.error.is_none());
        assert_eq!(cursor.as_deref(), Some("c3"));
    }

    #[tokio::test]
    async fn a_source_that_gives_up_on_a_rate_limit_counts_it_and_keeps_earlier_counts() {
        let refused = sources::SourceError::Http(sources::http::HttpError {
            method: "GET",
            url: "https://oauth.example/user/x/about".into(),
            kind: sources::http::HttpErrorKind::RateLimited { wait_secs: 3600, max_secs: 900 },
            attempts: 1,
        });
        let (s, cursor) = scan_scripted(vec![Ok(page(1, 0, 1, 2, false)), Err(refused)]).await;
        assert_eq!((s.errors, s.opted_out, s.rate_limit_waits), (1, 1, 3));
        assert!(s.error.as_deref().unwrap().contains("rate limited"), "{:?}", s.error);
        assert_eq!(cursor.as_deref(), Some("c1"), "the failed page moved nothing");
        // Any other failure is not a rate-limit wait.
        let other = sources::SourceError::Setup("environment variable X is not set".into());
        let (s, _) = scan_scripted(vec![Err(other)]).await;
        assert_eq!((s.errors, s.rate_limit_waits), (1, 0));
    }

    #[tokio::test]
    async fn a_page_is_processed_against_the_accounts_of_pages_not_yet_committed() {
        // Page 1 carries an officer's profile; page 2 only a post of theirs (as Jetstream sends
        // them). With one batch for the whole scan, page 2 is processed before page 1 is
        // committed, and must still know the author is an officer.
        let (dir, store, detector) = store_and_detector().await;
        let account = Account {
            platform: "mastodon".into(),
            platform_id: "https://social.example/users/pc_sam".into(),
            handle: "@pc_sam@social.example".into(),
            display_name: "Sam Jones".into(),
            bio: "Response officer, Kent Police. Views my own.".into(),
            profile_url: None,
        };
        let post = Post {
            platform: "mastodon".into(),
            platform_id: "https://social.example/statuses/1".into(),
            author_id: account.platform_id.clone(),
            created_at: Utc::now(),
            text: "Warrant at 14 Elmtree Close tomorrow 6am, bring the big key.".into(),
            alt_texts: vec![],
            lang_hints: vec!["en".into()],
            url: None,
        };
        let page1 = Page { accounts: vec![account], cursor: Some("c1".into()), ..Default::default() };
        let page2 = Page { posts: vec![post], cursor: Some("c2".into()), done: true, ..Default::default() };
        let entry = scripted_entry(dir.path());
        let mut src = Scripted { pages: vec![Ok(page1), Ok(page2)].into_iter().collect() };
        let limits = BatchLimits { max_rows: 1_000_000, max_delay: std::time::Duration::from_secs(3600) };
        let summary = scan_source_with(&entry, &mut src, &store, &detector, &|_| {}, limits).await.unwrap();
        assert_eq!((summary.identified, summary.hits, summary.posts_read), (1, 1, 1), "{summary:?}");
        assert_eq!(store.cursor("scripted").await.unwrap().as_deref(), Some("c2"));
        let hits = store.unsent_hits().await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].account_display_name, "Sam Jones");
    }

    #[test]
    fn suppressed_findings_are_dropped_and_the_rest_recomputed() {
        let mut c = Classification {
            lang: None,
            categories: vec![Category::Operational, Category::PersonalData],
            severity: Some(Severity::High),
            findings: vec![
                finding("op.raid", Category::Operational, Severity::High, "Raid tomorrow"),
                finding("pd.reg", Category::PersonalData, Severity::Medium, "KE19 XWP"),
            ],
        };
        assert_eq!(remove_suppressed(&mut c, &SuppressionSet::default()), 0);
        assert_eq!(c.findings.len(), 2);
        let set = SuppressionSet::from_findings([("op.raid", "raid, tomorrow")]);
        assert_eq!(remove_suppressed(&mut c, &set), 1);
        assert_eq!(c.categories, vec![Category::PersonalData]);
        assert_eq!(c.severity, Some(Severity::Medium));
        assert!(c.is_hit_content());
        let all = SuppressionSet::from_findings([("pd.reg", "ke19 xwp")]);
        assert_eq!(remove_suppressed(&mut c, &all), 1);
        assert!(!c.is_hit_content() && c.severity.is_none());
    }
}
