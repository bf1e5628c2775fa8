//! Store tests, each on a fresh temp-file database.

use super::*;
use crate::classify::Finding;
use crate::config::Retention;
use crate::identify::{Evidence, EvidenceSource};
use crate::model::Identity;

struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Store,
}

async fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    // A parent that does not exist yet: `open` creates it.
    let path = dir.path().join("state").join("monitor.db");
    let store = Store::open(&path).await.unwrap();
    Db { _dir: dir, path, store }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn account(id: &str, handle: &str) -> Account {
    Account {
        platform: "mastodon".into(),
        platform_id: id.into(),
        handle: handle.into(),
        display_name: format!("{handle} <b>display</b>"),
        bio: "PC in Kent, views my own".into(),
        profile_url: Some(format!("https://social.example/@{handle}")),
    }
}

fn verdict(force: Option<&str>) -> IdentityVerdict {
    IdentityVerdict {
        identity: Identity::Serving,
        score: 0.9,
        force: force.map(str::to_string),
        role: Some("PC".into()),
        evidence: vec![Evidence { source: EvidenceSource::Bio, signal: "rank.pc".into(), text: "PC in Kent".into() }],
    }
}

fn classification(cats: &[Category]) -> Classification {
    Classification {
        lang: Some(crate::model::Lang::Eng),
        categories: cats.to_vec(),
        severity: Some(Severity::High),
        findings: cats
            .iter()
            .map(|c| Finding {
                rule_id: format!("{c}.rule"),
                category: *c,
                severity: Severity::High,
                spans: std::iter::once(0..5).collect(),
                matched: "words".into(),
            })
            .collect(),
    }
}

fn post(id: &str, author: &str, created: &str) -> Post {
    Post {
        platform: "mastodon".into(),
        platform_id: id.into(),
        author_id: author.into(),
        created_at: t(created),
        text: format!("post {id}: <script>alert(1)</script> at the custody suite"),
        alt_texts: vec!["a photo of a briefing board".into()],
        lang_hints: vec!["en".into()],
        url: Some(format!("https://social.example/posts/{id}")),
    }
}

struct HitSpec<'a> {
    post: &'a str,
    author: &'a str,
    handle: &'a str,
    force: Option<&'a str>,
    cats: &'a [Category],
    created: &'a str,
    retrieved: DateTime<Utc>,
}

impl Default for HitSpec<'_> {
    fn default() -> Self {
        HitSpec {
            post: "p1",
            author: "a1",
            handle: "pc_smith",
            force: Some("Kent Police"),
            cats: &[Category::Operational],
            created: "2026-01-10T08:00:00Z",
            retrieved: Utc::now(),
        }
    }
}

fn hit(s: HitSpec<'_>) -> NewHit {
    NewHit {
        source: "demo".into(),
        account: account(s.author, s.handle),
        verdict: verdict(s.force),
        post: post(s.post, s.author, s.created),
        classification: classification(s.cats),
        retrieved_at: s.retrieved,
    }
}

fn page(hits: Vec<NewHit>, cursor: Option<&str>) -> PageCommit {
    let mut accounts: Vec<AccountUpdate> = vec![];
    for h in &hits {
        if !accounts.iter().any(|a| a.account.platform_id == h.account.platform_id) {
            accounts.push(AccountUpdate {
                account: h.account.clone(),
                verdict: h.verdict.clone(),
                post_signals: PostSignals {
                    evidence: vec![Evidence {
                        source: EvidenceSource::Post { platform_id: h.post.platform_id.clone() },
                        signal: "role.response".into(),
                        text: "on shift".into(),
                    }],
                },
            });
        }
    }
    PageCommit { source: "demo".into(), accounts, hits, cursor: cursor.map(str::to_string) }
}

/// From now on, inserting a hit on the post `boom` fails (an injected write failure).
async fn fail_inserting_post_boom(store: &Store) {
    sqlx::query(
        "CREATE TRIGGER inject BEFORE INSERT ON hits WHEN NEW.post_platform_id = 'boom' \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(&store.pool)
    .await
    .unwrap();
}

async fn hit_count(store: &Store) -> i64 {
    sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM hits").fetch_one(&store.pool).await.unwrap().0
}

#[tokio::test]
async fn fresh_file_is_migrated_private_and_in_wal_mode() {
    let db = db().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "database file mode {mode:o}");
    }
    let tables: Vec<(String,)> = sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(&db.store.pool)
        .await
        .unwrap();
    let tables: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
    for want in ["accounts", "audit", "digest_hits", "digests", "hits", "review_log", "run_sources", "scan_runs", "source_state"]
    {
        assert!(tables.contains(&want), "table {want} missing from {tables:?}");
    }
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(&db.store.pool).await.unwrap();
    assert_eq!(mode, "wal");
    let (fk,): (i64,) = sqlx::query_as("PRAGMA foreign_keys").fetch_one(&db.store.pool).await.unwrap();
    assert_eq!(fk, 1);
    // Opening again applies nothing twice and keeps the data.
    db.store.commit_page(page(vec![hit(HitSpec::default())], Some("c1"))).await.unwrap();
    #[cfg(unix)]
    for suffix in ["-wal", "-shm"] {
        // SQLite gives its side files the database file's mode: they hold post text too.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(with_suffix(&db.path, suffix)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{suffix} file mode {mode:o}");
    }
    db.store.close().await;
    let again = Store::open(&db.path).await.unwrap();
    assert_eq!(again.cursor("demo").await.unwrap().as_deref(), Some("c1"));
    assert_eq!(hit_count(&again).await, 1);
}

#[cfg(unix)]
#[tokio::test]
async fn existing_world_readable_file_is_restricted_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitor.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _store = Store::open(&path).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_an_open_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitor.db");
    std::fs::write(&path, b"this is not an SQLite database, it is a text file of some length").unwrap();
    let err = Store::open(&path).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }) && msg.contains("monitor.db") && msg.contains("not a database"), "{msg}");
    // Nothing was overwritten.
    assert!(std::fs::read_to_string(&path).unwrap().starts_with("this is not"));
}

#[tokio::test]
async fn commit_page_is_idempotent_and_round_trips_the_hit() {
    let db = db().await;
    let h = hit(HitSpec::default());
    let p = page(vec![h.clone()], Some("p1"));
    assert_eq!(db.store.commit_page(p.clone()).await.unwrap(), 1);
    assert_eq!(db.store.commit_page(p).await.unwrap(), 0);
    assert_eq!(hit_count(&db.store).await, 1);

    let hits = db.store.list_hits(&HitFilter::default()).await.unwrap();
    assert_eq!(hits.len(), 1);
    let r = &hits[0];
    assert_eq!(r.source, "demo");
    assert_eq!(r.platform, "mastodon");
    assert_eq!(r.account_platform_id, "a1");
    assert_eq!(r.account_handle, "pc_smith");
    assert_eq!(r.account_display_name, h.account.display_name);
    assert_eq!(r.profile_url, h.account.profile_url);
    assert_eq!(r.force.as_deref(), Some("Kent Police"));
    assert_eq!(r.post_platform_id, "p1");
    assert_eq!(r.post_url, h.post.url);
    assert_eq!(r.post_created_at, h.post.created_at);
    assert_eq!(r.retrieved_at, h.retrieved_at);
    assert_eq!(r.text, h.post.full_text());
    assert!(r.text.contains("[image: a photo of a briefing board]"));
    assert_eq!(r.categories, vec![Category::Operational]);
    assert_eq!(r.severity, Severity::High);
    assert_eq!(r.classification, h.classification);
    assert_eq!(r.identity, h.verdict);
    assert_eq!(r.status, ReviewStatus::New);
    assert_eq!(r.digest_id, None);
    assert_eq!(db.store.get_hit(r.id).await.unwrap(), *r);
    assert!(matches!(db.store.get_hit(r.id + 100).await, Err(StoreError::HitNotFound(_))));

    // The same post by another account is another hit.
    let other = hit(HitSpec { author: "a2", handle: "sgt_jones", ..HitSpec::default() });
    assert_eq!(db.store.commit_page(page(vec![other], None)).await.unwrap(), 1);
    assert_eq!(hit_count(&db.store).await, 2);
}

#[tokio::test]
async fn accounts_keep_verdict_and_signals_but_no_bio_or_post_text() {
    let db = db().await;
    assert_eq!(db.store.post_signals("mastodon", "a1").await.unwrap(), None);
    let mut p = page(vec![], None);
    p.accounts.push(AccountUpdate {
        account: account("a1", "pc_smith"),
        verdict: verdict(Some("Kent Police")),
        post_signals: PostSignals {
            evidence: vec![Evidence { source: EvidenceSource::DisplayName, signal: "rank.pc".into(), text: "PC".into() }],
        },
    });
    db.store.commit_page(p.clone()).await.unwrap();
    let got = db.store.post_signals("mastodon", "a1").await.unwrap().unwrap();
    assert_eq!(got, p.accounts[0].post_signals);
    assert_eq!(db.store.post_signals("bluesky", "a1").await.unwrap(), None);

    // An update replaces the signals and the account's details.
    p.accounts[0].post_signals.evidence.push(Evidence {
        source: EvidenceSource::Post { platform_id: "p9".into() },
        signal: "role.custody".into(),
        text: "custody".into(),
    });
    p.accounts[0].account.handle = "pc_smith_renamed".into();
    db.store.commit_page(p.clone()).await.unwrap();
    assert_eq!(db.store.post_signals("mastodon", "a1").await.unwrap().unwrap().evidence.len(), 2);
    let (n, handle): (i64, String) =
        sqlx::query_as("SELECT count(*), max(handle) FROM accounts").fetch_one(&db.store.pool).await.unwrap();
    assert_eq!((n, handle.as_str()), (1, "pc_smith_renamed"));
    let bio_stored: Vec<(i64,)> =
        sqlx::query_as("SELECT id FROM accounts WHERE verdict LIKE '%views my own%' OR post_signals LIKE '%views my own%'")
            .fetch_all(&db.store.pool)
            .await
            .unwrap();
    assert!(bio_stored.is_empty());
}

#[tokio::test]
async fn cursor_is_committed_with_its_page() {
    let db = db().await;
    assert_eq!(db.store.cursor("demo").await.unwrap(), None);
    db.store.commit_page(page(vec![hit(HitSpec::default())], Some("p1"))).await.unwrap();
    assert_eq!(db.store.cursor("demo").await.unwrap().as_deref(), Some("p1"));
    // A page with no cursor leaves the stored one alone.
    db.store.commit_page(page(vec![], None)).await.unwrap();
    assert_eq!(db.store.cursor("demo").await.unwrap().as_deref(), Some("p1"));
    db.store.commit_page(page(vec![], Some("p7"))).await.unwrap();
    assert_eq!(db.store.cursor("demo").await.unwrap().as_deref(), Some("p7"));
    assert_eq!(db.store.cursor("other").await.unwrap(), None);
}

#[tokio::test]
async fn a_page_that_fails_half_way_leaves_nothing_written() {
    let db = db().await;
    db.store.commit_page(page(vec![hit(HitSpec::default())], Some("p1"))).await.unwrap();
    // Inject a failure on the second hit of the next page, after its account and first hit.
    fail_inserting_post_boom(&db.store).await;
    let bad = page(
        vec![
            hit(HitSpec { post: "p2", author: "a2", handle: "new_account", ..HitSpec::default() }),
            hit(HitSpec { post: "boom", author: "a2", handle: "new_account", ..HitSpec::default() }),
        ],
        Some("p3"),
    );
    let err = db.store.commit_page(bad).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(hit_count(&db.store).await, 1);
    assert_eq!(db.store.post_signals("mastodon", "a2").await.unwrap(), None);
    assert_eq!(db.store.cursor("demo").await.unwrap().as_deref(), Some("p1"));
}

#[tokio::test]
async fn review_log_is_append_only_and_sets_the_status() {
    let db = db().await;
    db.store.commit_page(page(vec![hit(HitSpec::default())], None)).await.unwrap();
    let id = db.store.list_hits(&HitFilter::default()).await.unwrap()[0].id;

    assert!(matches!(
        db.store.review_hit(id + 1, ReviewStatus::Confirmed, "x", "r").await,
        Err(StoreError::HitNotFound(n)) if n == id + 1
    ));
    let (log_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM review_log").fetch_one(&db.store.pool).await.unwrap();
    assert_eq!(log_rows, 0);

    db.store.review_hit(id, ReviewStatus::Escalated, "looks operational", "alice").await.unwrap();
    assert_eq!(db.store.get_hit(id).await.unwrap().status, ReviewStatus::Escalated);
    db.store.review_hit(id, ReviewStatus::Dismissed, "training exercise, public", "bob").await.unwrap();
    assert_eq!(db.store.get_hit(id).await.unwrap().status, ReviewStatus::Dismissed);

    let log = db.store.review_log(id).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].reviewer.as_str(), log[0].status, log[0].note.as_str()),
        ("alice", ReviewStatus::Escalated, "looks operational")
    );
    assert_eq!((log[1].reviewer.as_str(), log[1].status), ("bob", ReviewStatus::Dismissed));
    assert!(log[0].at <= log[1].at);

    let err = sqlx::query("UPDATE review_log SET note = 'rewritten'").execute(&db.store.pool).await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[tokio::test]
async fn list_filters_by_status_force_category_since_and_limit() {
    let db = db().await;
    let hits = vec![
        hit(HitSpec { post: "p1", created: "2026-01-01T10:00:00Z", cats: &[Category::Operational], ..HitSpec::default() }),
        hit(HitSpec {
            post: "p2",
            created: "2026-01-05T10:00:00Z",
            cats: &[Category::PersonalData, Category::Political],
            ..HitSpec::default()
        }),
        hit(HitSpec {
            post: "p3",
            author: "a2",
            handle: "wyp_officer",
            force: Some("West Yorkshire Police"),
            created: "2026-01-03T10:00:00Z",
            cats: &[Category::Political],
            ..HitSpec::default()
        }),
        hit(HitSpec {
            post: "p4",
            author: "a3",
            handle: "anon",
            force: None,
            created: "2026-01-04T10:00:00Z",
            ..HitSpec::default()
        }),
    ];
    assert_eq!(db.store.commit_page(page(hits, None)).await.unwrap(), 4);
    let ids = |v: Vec<HitRecord>| v.into_iter().map(|h| h.post_platform_id).collect::<Vec<_>>();

    assert_eq!(ids(db.store.list_hits(&HitFilter::default()).await.unwrap()), ["p2", "p4", "p3", "p1"]);
    let f = |force: &str| HitFilter { force: Some(force.into()), ..HitFilter::default() };
    assert_eq!(ids(db.store.list_hits(&f("Kent Police")).await.unwrap()), ["p2", "p1"]);
    assert_eq!(ids(db.store.list_hits(&f("West Yorkshire Police")).await.unwrap()), ["p3"]);
    let c = |cat| HitFilter { category: Some(cat), ..HitFilter::default() };
    assert_eq!(ids(db.store.list_hits(&c(Category::Political)).await.unwrap()), ["p2", "p3"]);
    assert_eq!(ids(db.store.list_hits(&c(Category::PersonalData)).await.unwrap()), ["p2"]);
    assert!(db.store.list_hits(&c(Category::AlcoholDrugs)).await.unwrap().is_empty());
    let since = HitFilter { since: Some(t("2026-01-04T10:00:00Z")), ..HitFilter::default() };
    assert_eq!(ids(db.store.list_hits(&since).await.unwrap()), ["p2", "p4"]);
    let limit = HitFilter { limit: Some(2), ..HitFilter::default() };
    assert_eq!(ids(db.store.list_hits(&limit).await.unwrap()), ["p2", "p4"]);

    let p3 = db.store.list_hits(&f("West Yorkshire Police")).await.unwrap()[0].id;
    db.store.review_hit(p3, ReviewStatus::Confirmed, "", "alice").await.unwrap();
    let s = |status| HitFilter { status: Some(status), ..HitFilter::default() };
    assert_eq!(ids(db.store.list_hits(&s(ReviewStatus::Confirmed)).await.unwrap()), ["p3"]);
    assert_eq!(ids(db.store.list_hits(&s(ReviewStatus::New)).await.unwrap()), ["p2", "p4", "p1"]);
    let combined = HitFilter {
        status: Some(ReviewStatus::New),
        category: Some(Category::Political),
        force: Some("Kent Police".into()),
        ..HitFilter::default()
    };
    assert_eq!(ids(db.store.list_hits(&combined).await.unwrap()), ["p2"]);
}

#[tokio::test]
async fn digests_deliver_each_hit_exactly_once() {
    let db = db().await;
    let hits = vec![
        hit(HitSpec { post: "p1", handle: "zed", created: "2026-01-02T10:00:00Z", ..HitSpec::default() }),
        hit(HitSpec { post: "p2", handle: "zed", created: "2026-01-01T10:00:00Z", ..HitSpec::default() }),
        hit(HitSpec { post: "p3", author: "a2", handle: "amy", ..HitSpec::default() }),
        hit(HitSpec { post: "p4", author: "a3", handle: "nobody", force: None, ..HitSpec::default() }),
        hit(HitSpec { post: "p5", author: "a4", handle: "wy", force: Some("West Yorkshire Police"), ..HitSpec::default() }),
    ];
    db.store.commit_page(page(hits, None)).await.unwrap();
    let unsent = db.store.unsent_hits().await.unwrap();
    let order: Vec<&str> = unsent.iter().map(|h| h.post_platform_id.as_str()).collect();
    // Force (unknown last), then handle, then post time.
    assert_eq!(order, ["p3", "p2", "p1", "p5", "p4"]);
    let kent: Vec<i64> = unsent.iter().filter(|h| h.force.as_deref() == Some("Kent Police")).map(|h| h.id).collect();
    let rcpt = vec!["psd-kent@example.invalid".to_string()];

    // Pending: recorded, still unsent, and resendable with the same Message-ID.
    let d1 = db.store.begin_digest("Kent Police", &rcpt, "<d1@monitor>", &kent).await.unwrap();
    assert_eq!(db.store.unsent_hits().await.unwrap().len(), 5);
    let pending = db.store.pending_digests().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].id, pending[0].route.as_str(), pending[0].message_id.as_str()), (d1, "Kent Police", "<d1@monitor>"));
    assert_eq!(pending[0].recipients, rcpt);
    assert_eq!(pending[0].hit_ids, kent);

    // Failed: error kept, not pending, hits still unsent.
    db.store.digest_failed(d1, "451 try again later").await.unwrap();
    assert!(db.store.pending_digests().await.unwrap().is_empty());
    assert_eq!(db.store.unsent_hits().await.unwrap().len(), 5);
    let (state, error): (String, Option<String>) =
        sqlx::query_as("SELECT state, error FROM digests WHERE id = ?").bind(d1).fetch_one(&db.store.pool).await.unwrap();
    assert_eq!((state.as_str(), error.as_deref()), ("failed", Some("451 try again later")));

    // A Message-ID is never reused for a different digest.
    assert!(db.store.begin_digest("Kent Police", &rcpt, "<d1@monitor>", &kent).await.is_err());

    // Sent: the hits leave the unsent list and carry the digest id.
    let d2 = db.store.begin_digest("Kent Police", &rcpt, "<d2@monitor>", &kent).await.unwrap();
    db.store.digest_sent(d2).await.unwrap();
    let left: Vec<String> = db.store.unsent_hits().await.unwrap().into_iter().map(|h| h.post_platform_id).collect();
    assert_eq!(left, ["p5", "p4"]);
    for id in &kent {
        assert_eq!(db.store.get_hit(*id).await.unwrap().digest_id, Some(d2));
    }
    assert!(db.store.pending_digests().await.unwrap().is_empty());
    // Marking again changes nothing; a late failure report does not un-send it.
    db.store.digest_sent(d2).await.unwrap();
    db.store.digest_failed(d2, "late error").await.unwrap();
    let (state,): (String,) =
        sqlx::query_as("SELECT state FROM digests WHERE id = ?").bind(d2).fetch_one(&db.store.pool).await.unwrap();
    assert_eq!(state, "sent");
    assert_eq!(db.store.unsent_hits().await.unwrap().len(), 2);

    // A delivered hit cannot be reserved again, and the refused digest leaves no trace.
    let err = db.store.begin_digest("Kent Police", &rcpt, "<d3@monitor>", &kent[..1]).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadySent { hit, digest } if hit == kent[0] && digest == d2), "{err}");
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM digests WHERE message_id = '<d3@monitor>'").fetch_one(&db.store.pool).await.unwrap();
    assert_eq!(n, 0);
    assert!(matches!(db.store.begin_digest("x", &rcpt, "<d4@monitor>", &[9999]).await, Err(StoreError::HitNotFound(9999))));
    assert!(matches!(db.store.digest_sent(9999).await, Err(StoreError::DigestNotFound(9999))));
    assert!(matches!(db.store.digest_failed(9999, "e").await, Err(StoreError::DigestNotFound(9999))));

    // An empty digest ("nothing found") can be recorded and sent too.
    let d5 = db.store.begin_digest("default", &rcpt, "<d5@monitor>", &[]).await.unwrap();
    db.store.digest_sent(d5).await.unwrap();
    assert_eq!(db.store.status().await.unwrap().unsent_hits, 2);
}

#[tokio::test]
async fn a_crash_between_send_and_mark_leaves_the_digest_pending_after_reopen() {
    let db = db().await;
    db.store.commit_page(page(vec![hit(HitSpec::default())], None)).await.unwrap();
    let ids: Vec<i64> = db.store.unsent_hits().await.unwrap().iter().map(|h| h.id).collect();
    db.store.begin_digest("Kent Police", &["psd@example.invalid".into()], "<crash@monitor>", &ids).await.unwrap();
    db.store.close().await;
    let store = Store::open(&db.path).await.unwrap();
    let pending = store.pending_digests().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message_id, "<crash@monitor>");
    assert_eq!(pending[0].hit_ids, ids);
    assert_eq!(store.unsent_hits().await.unwrap().len(), 1);
    store.digest_sent(pending[0].id).await.unwrap();
    assert!(store.unsent_hits().await.unwrap().is_empty());
}

#[tokio::test]
async fn runs_sources_and_status() {
    let db = db().await;
    let run1 = db.store.begin_run().await.unwrap();
    let ok = SourceSummary {
        source: "demo".into(),
        accounts_seen: 5,
        identified: 2,
        posts_read: 40,
        hits: 3,
        errors: 1,
        error: None,
        suppressed: 4,
        rate_limit_waits: 3,
        opted_out: 2,
    };
    let bad = SourceSummary {
        source: "mastodon".into(),
        error: Some("HTTP 503 from social.example".into()),
        errors: 1,
        ..Default::default()
    };
    db.store.record_source(run1, &ok).await.unwrap();
    db.store.record_source(run1, &bad).await.unwrap();
    db.store.finish_run(run1).await.unwrap();
    assert!(matches!(db.store.record_source(run1 + 50, &ok).await, Err(StoreError::RunNotFound(_))));
    assert!(matches!(db.store.finish_run(run1 + 50).await, Err(StoreError::RunNotFound(_))));
    db.store.commit_page(page(vec![hit(HitSpec::default())], Some("p1"))).await.unwrap();

    let st = db.store.status().await.unwrap();
    assert_eq!(st.runs.len(), 1);
    assert_eq!(st.runs[0].id, run1);
    assert!(st.runs[0].finished_at.is_some());
    assert_eq!(st.runs[0].summaries, vec![ok.clone(), bad.clone()]);
    assert_eq!(st.unsent_hits, 1);
    let demo = st.sources.iter().find(|s| s.source == "demo").unwrap();
    assert_eq!(demo.cursor.as_deref(), Some("p1"));
    assert!(demo.last_success.is_some() && demo.last_error.is_none());
    let masto = st.sources.iter().find(|s| s.source == "mastodon").unwrap();
    assert_eq!(masto.last_error.as_deref(), Some("HTTP 503 from social.example"));
    assert!(masto.last_error_at.is_some() && masto.last_success.is_none());

    // The size counts the main file and the write-ahead log.
    let main = std::fs::metadata(&db.path).unwrap().len();
    let wal = std::fs::metadata(with_suffix(&db.path, "-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(wal > 0, "WAL mode writes a -wal file");
    assert_eq!(st.database_bytes, main + wal);

    // Coverage: every run until a digest is sent, then only the runs after it.
    assert_eq!(db.store.runs_since_last_digest().await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [run1]);
    let d = db.store.begin_digest("default", &[], "<cov@monitor>", &[]).await.unwrap();
    db.store.digest_sent(d).await.unwrap();
    assert!(db.store.runs_since_last_digest().await.unwrap().is_empty());
    let run2 = db.store.begin_run().await.unwrap();
    db.store.record_source(run2, &ok).await.unwrap();
    db.store.finish_run(run2).await.unwrap();
    let run3 = db.store.begin_run().await.unwrap(); // crashed: never finished
    let cov = db.store.runs_since_last_digest().await.unwrap();
    assert_eq!(cov.iter().map(|r| r.id).collect::<Vec<_>>(), [run3, run2]);
    assert_eq!(cov[1].summaries, vec![ok]);
    assert!(cov[0].finished_at.is_none());
    // A later success keeps the last error visible with its time.
    let st = db.store.status().await.unwrap();
    assert_eq!(st.runs.iter().map(|r| r.id).collect::<Vec<_>>(), [run3, run2, run1]);
}

#[tokio::test]
async fn purge_deletes_old_hits_and_blanks_dismissed_evidence() {
    let db = db().await;
    let now = Utc::now();
    let hits = vec![
        hit(HitSpec { post: "old", retrieved: now - chrono::Duration::days(400), ..HitSpec::default() }),
        hit(HitSpec { post: "dismissed", ..HitSpec::default() }),
        hit(HitSpec { post: "kept", ..HitSpec::default() }),
    ];
    db.store.commit_page(page(hits, None)).await.unwrap();
    let id_of = |all: &[HitRecord], p: &str| all.iter().find(|h| h.post_platform_id == p).unwrap().id;
    let all = db.store.list_hits(&HitFilter::default()).await.unwrap();
    let (old, dismissed, kept) = (id_of(&all, "old"), id_of(&all, "dismissed"), id_of(&all, "kept"));
    db.store.review_hit(old, ReviewStatus::Confirmed, "note", "alice").await.unwrap();
    db.store.review_hit(dismissed, ReviewStatus::Dismissed, "nothing in it", "alice").await.unwrap();
    let d = db.store.begin_digest("Kent Police", &[], "<p@monitor>", &[old]).await.unwrap();
    db.store.digest_sent(d).await.unwrap();
    let retention = Retention { dismissed_days: 30, days: 365 };

    // Today: only the hit retrieved 400 days ago goes (with its review log and digest link).
    let r = db.store.purge(&retention, now).await.unwrap();
    assert_eq!(r, PurgeReport { hits_deleted: 1, hits_blanked: 0, accounts_deleted: 0 });
    assert!(matches!(db.store.get_hit(old).await, Err(StoreError::HitNotFound(_))));
    assert!(db.store.review_log(old).await.unwrap().is_empty());
    let (links,): (i64,) = sqlx::query_as("SELECT count(*) FROM digest_hits").fetch_one(&db.store.pool).await.unwrap();
    assert_eq!(links, 0);
    assert!(db.store.get_hit(dismissed).await.unwrap().text.starts_with("post dismissed: "));

    // 31 days on: the dismissed hit's text and evidence are blanked; the other is untouched.
    let later = now + chrono::Duration::days(31);
    assert_eq!(db.store.purge_expired(&retention, later).await.unwrap(), 1);
    let h = db.store.get_hit(dismissed).await.unwrap();
    assert_eq!(h.text, "");
    assert!(h.classification.findings.iter().all(|f| f.matched.is_empty() && f.spans.is_empty()));
    assert_eq!(h.classification.findings[0].rule_id, "operational.rule");
    assert!(h.identity.evidence.iter().all(|e| e.text.is_empty()));
    assert_eq!(h.status, ReviewStatus::Dismissed);
    let k = db.store.get_hit(kept).await.unwrap();
    assert!(k.text.contains("custody suite"));
    assert_eq!(k.classification.findings[0].matched, "words");
    // Nothing left to do: a second pass changes nothing.
    assert_eq!(db.store.purge_expired(&retention, later).await.unwrap(), 0);

    // A year on: every hit goes, then the accounts no hit refers to.
    let much_later = now + chrono::Duration::days(400);
    let r = db.store.purge(&retention, much_later).await.unwrap();
    assert_eq!(r, PurgeReport { hits_deleted: 2, hits_blanked: 0, accounts_deleted: 1 });
    assert_eq!(hit_count(&db.store).await, 0);
    assert_eq!(db.store.post_signals("mastodon", "a1").await.unwrap(), None);

    let audit = db.store.audit_log(10).await.unwrap();
    assert_eq!(audit.len(), 4, "one entry per pass, even an empty one");
    assert!(audit.iter().all(|a| a.actor == "retention" && a.action == "purge"));
    assert!(audit[0].detail.contains("deleted 2 hit(s)"), "{}", audit[0].detail);
}

#[tokio::test]
async fn purge_blanks_a_dismissed_hit_even_when_its_evidence_is_corrupt() {
    let db = db().await;
    db.store.commit_page(page(vec![hit(HitSpec::default())], None)).await.unwrap();
    let id = db.store.unsent_hits().await.unwrap()[0].id;
    db.store.review_hit(id, ReviewStatus::Dismissed, "", "alice").await.unwrap();
    sqlx::query("UPDATE hits SET classification = '{not json' WHERE id = ?").bind(id).execute(&db.store.pool).await.unwrap();
    let n = db
        .store
        .purge_expired(&Retention { dismissed_days: 0, days: 365 }, Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let h = db.store.get_hit(id).await.unwrap();
    assert_eq!(h.text, "");
    assert!(h.classification.findings.is_empty());
}

#[tokio::test]
async fn corrupt_json_is_reported_with_the_hit_and_column() {
    let db = db().await;
    db.store.commit_page(page(vec![hit(HitSpec::default())], None)).await.unwrap();
    let id = db.store.unsent_hits().await.unwrap()[0].id;
    for (column, value) in [
        ("classification", "{\"findings\": 3"),
        ("identity", "[]"),
        ("categories", "[\"gossip\"]"),
        ("post_created_at", "yesterday"),
    ] {
        let original: (String,) =
            sqlx::query_as(&format!("SELECT {column} FROM hits WHERE id = ?")).bind(id).fetch_one(&db.store.pool).await.unwrap();
        sqlx::query(&format!("UPDATE hits SET {column} = ? WHERE id = ?"))
            .bind(value)
            .bind(id)
            .execute(&db.store.pool)
            .await
            .unwrap();
        let err = db.store.get_hit(id).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("hit {id}")) && msg.contains(column), "{msg}");
        assert!(matches!(db.store.list_hits(&HitFilter::default()).await, Err(StoreError::Corrupt { .. })));
        sqlx::query(&format!("UPDATE hits SET {column} = ? WHERE id = ?"))
            .bind(original.0)
            .bind(id)
            .execute(&db.store.pool)
            .await
            .unwrap();
        db.store.get_hit(id).await.unwrap();
    }
    sqlx::query("UPDATE accounts SET post_signals = 'nope'").execute(&db.store.pool).await.unwrap();
    let err = db.store.post_signals("mastodon", "a1").await.unwrap_err();
    assert!(err.to_string().contains("mastodon/a1") && err.to_string().contains("post_signals"), "{err}");
}

#[tokio::test]
async fn audit_trail_is_append_only_and_newest_first() {
    let db = db().await;
    db.store.audit("alice", "hits list", "status=new").await.unwrap();
    db.store.audit("bob", "hits review", "hit 3 dismissed").await.unwrap();
    db.store.audit("carol", "hits show", "hit 4").await.unwrap();
    let log = db.store.audit_log(2).await.unwrap();
    assert_eq!(log.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(), ["carol", "bob"]);
    assert_eq!((log[1].action.as_str(), log[1].detail.as_str()), ("hits review", "hit 3 dismissed"));
    assert!(log[0].at >= log[1].at);
    for sql in ["UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"] {
        let err = sqlx::query(sql).execute(&db.store.pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(db.store.audit_log(100).await.unwrap().len(), 3);
}

#[test]
fn stored_times_sort_as_text_in_time_order() {
    let a = t("2026-01-01T00:00:00.5Z");
    let b = t("2026-01-01T00:00:01Z");
    let c = t("2026-01-01T00:00:01.000000001Z");
    assert!(ts(a) < ts(b) && ts(b) < ts(c));
    assert_eq!(ts(a).len(), ts(b).len());
    assert_eq!(parse_ts(&ts(c), String::new).unwrap(), c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_writing_at_once_wait_for_each_other() {
    // A reviewer's `hits review` while the timer's scan commits pages: separate pools on one file.
    let db = db().await;
    db.store.commit_page(page(vec![hit(HitSpec::default())], None)).await.unwrap();
    let id = db.store.unsent_hits().await.unwrap()[0].id;
    let other = Store::open(&db.path).await.unwrap();
    let scanner = {
        let store = db.store.clone();
        tokio::spawn(async move {
            let mut new = 0;
            for i in 0..40 {
                let post = format!("s{i}");
                new +=
                    store.commit_page(page(vec![hit(HitSpec { post: &post, ..HitSpec::default() })], Some(&post))).await.unwrap();
            }
            new
        })
    };
    let reviewer = tokio::spawn(async move {
        for i in 0..40 {
            let status = if i % 2 == 0 { ReviewStatus::Confirmed } else { ReviewStatus::Escalated };
            other.review_hit(id, status, &format!("pass {i}"), "alice").await.unwrap();
            other.audit("alice", "hits review", &format!("hit {id}")).await.unwrap();
        }
        other
    });
    assert_eq!(scanner.await.unwrap(), 40);
    let other = reviewer.await.unwrap();
    assert_eq!(other.review_log(id).await.unwrap().len(), 40);
    assert_eq!(hit_count(&db.store).await, 41);
    assert_eq!(db.store.cursor("demo").await.unwrap().as_deref(), Some("s39"));
}

#[tokio::test]
async fn get_hits_and_daily_category_counts() {
    let db = db().await;
    let day1 = t("2026-03-01T23:59:59Z");
    let day2 = t("2026-03-02T00:00:00Z");
    let hits = vec![
        hit(HitSpec { post: "p1", retrieved: day1, cats: &[Category::Political, Category::Operational], ..HitSpec::default() }),
        hit(HitSpec { post: "p2", retrieved: day2, cats: &[Category::Operational], ..HitSpec::default() }),
        hit(HitSpec { post: "p3", retrieved: day2, cats: &[Category::Operational], ..HitSpec::default() }),
        hit(HitSpec { post: "p0", retrieved: t("2026-02-01T12:00:00Z"), ..HitSpec::default() }),
    ];
    db.store.commit_page(page(hits, None)).await.unwrap();
    let counts = db.store.daily_category_counts(t("2026-02-15T00:00:00Z")).await.unwrap();
    let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    assert_eq!(
        counts,
        vec![
            DailyCount { day: d("2026-03-01"), category: Category::Operational, hits: 1 },
            DailyCount { day: d("2026-03-01"), category: Category::Political, hits: 1 },
            DailyCount { day: d("2026-03-02"), category: Category::Operational, hits: 2 },
        ]
    );

    // The chart's rows: only hits in the window, with their categories, no text.
    let rows = db.store.hit_categories_since(t("2026-02-15T00:00:00Z")).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].1, day1);
    assert_eq!(rows[0].2, vec![Category::Political, Category::Operational]);
    assert!(rows.iter().all(|(_, at, _)| *at >= t("2026-02-15T00:00:00Z")));

    let all = db.store.list_hits(&HitFilter::default()).await.unwrap();
    let ids: Vec<i64> = all.iter().rev().map(|h| h.id).collect();
    let got: Vec<i64> = db.store.get_hits(&ids).await.unwrap().iter().map(|h| h.id).collect();
    assert_eq!(got, ids);
    assert!(matches!(db.store.get_hits(&[ids[0], 4242]).await, Err(StoreError::HitNotFound(4242))));
}

#[test]
fn matched_text_is_normalised_before_it_is_remembered() {
    assert_eq!(normalise_matched("  Raid,  at\tElmtree   CLOSE! "), "raid at elmtree close");
    assert_eq!(normalise_matched("KE19-XWP"), "ke19xwp");
    assert_eq!(normalise_matched("“off the record” … DM me"), "off the record dm me");
    assert_eq!(normalise_matched("🍺🍺"), "🍺🍺", "emoji are kept");
    assert_eq!(matched_key("Off the record!"), matched_key("off  the record"));
    assert_ne!(matched_key("off the record"), matched_key("on the record"));
    assert_eq!(matched_key(" … "), None, "nothing left: never a key");
    let set = SuppressionSet::from_findings([("media.rule", "DM me")]);
    assert!(set.suppresses("media.rule", "dm me!"));
    assert!(!set.suppresses("other.rule", "dm me"));
    assert!(!set.suppresses("media.rule", "dm him"));
}

fn finding(rule: &str, matched: &str) -> Finding {
    Finding {
        rule_id: rule.into(),
        category: Category::Operational,
        severity: Severity::High,
        spans: std::iter::once(0..4).collect(),
        matched: matched.into(),
    }
}

#[tokio::test]
async fn dismissal_remembers_findings_and_other_decisions_never_lift_silently() {
    let db = db().await;
    let mut a = hit(HitSpec { post: "p1", ..Default::default() });
    a.classification.findings = vec![finding("op.raid", "Raid at Elmtree Close"), finding("op.time", "5am")];
    let mut b = hit(HitSpec { post: "p2", ..Default::default() });
    b.classification.findings = vec![finding("op.raid", "raid at elmtree close!")];
    let mut other_account = hit(HitSpec { post: "p3", author: "a2", handle: "pc_jones", ..Default::default() });
    other_account.classification.findings = vec![finding("op.raid", "Raid at Elmtree Close")];
    db.store.commit_page(page(vec![a, b, other_account], None)).await.unwrap();
    let id = |post: &str| {
        let post = post.to_string();
        let store = db.store.clone();
        async move {
            store.list_hits(&HitFilter::default()).await.unwrap().into_iter().find(|h| h.post_platform_id == post).unwrap().id
        }
    };
    let (h1, h2, h3) = (id("p1").await, id("p2").await, id("p3").await);
    assert!(db.store.suppressions("mastodon", "a1").await.unwrap().is_empty());

    let out = db.store.review(h1, ReviewStatus::Dismissed, "banter", "alice").await.unwrap();
    assert_eq!(out.suppressions_added, 2);
    assert_eq!(out.previous, Some(ReviewStatus::New));
    let set = db.store.suppressions("mastodon", "a1").await.unwrap();
    assert!(set.suppresses("op.raid", "RAID at Elmtree Close"));
    assert!(set.suppresses("op.time", "5am"));
    assert!(set.is_origin("p1") && !set.is_origin("p2"));
    // Same rule and text on another account is not suppressed.
    assert!(db.store.suppressions("mastodon", "a2").await.unwrap().is_empty());

    // Confirming a later hit with the same finding says so and changes nothing.
    let out = db.store.review(h2, ReviewStatus::Confirmed, "real this time", "bob").await.unwrap();
    assert_eq!(out.suppressions_lifted, 0);
    assert_eq!(out.suppressed_by_other, vec![("op.raid".to_string(), Some(h1))]);
    assert!(db.store.suppressions("mastodon", "a1").await.unwrap().suppresses("op.raid", "raid at elmtree close"));

    // Dismissing it too adds nothing new (h1's key stands); un-dismissing h1 hands the shared
    // finding to h2 and lifts only what no other dismissal covers.
    let out = db.store.review(h2, ReviewStatus::Dismissed, "no", "bob").await.unwrap();
    assert_eq!(out.suppressions_added, 0);
    let out = db.store.review(h1, ReviewStatus::Escalated, "second look", "carol").await.unwrap();
    assert_eq!(out.suppressions_lifted, 1, "op.time lifted; op.raid handed to h2");
    let set = db.store.suppressions("mastodon", "a1").await.unwrap();
    assert!(set.suppresses("op.raid", "raid at elmtree close") && !set.suppresses("op.time", "5am"));
    assert_eq!(
        db.store.review(h1, ReviewStatus::Confirmed, "", "carol").await.unwrap().suppressed_by_other,
        vec![("op.raid".to_string(), Some(h2))]
    );
    // The review log keeps every decision; the unrelated hit is untouched.
    assert_eq!(db.store.review_log(h1).await.unwrap().len(), 3);
    assert_eq!(db.store.get_hit(h3).await.unwrap().status, ReviewStatus::New);
    assert!(matches!(db.store.review(h3 + 100, ReviewStatus::Dismissed, "", "x").await, Err(StoreError::HitNotFound(_))));

    // Retention deleting the dismissed hit keeps the decision.
    db.store.purge(&Retention { dismissed_days: 30, days: 0 }, Utc::now() + chrono::Duration::days(1)).await.unwrap();
    assert!(db.store.get_hit(h2).await.is_err());
    assert!(db.store.suppressions("mastodon", "a1").await.unwrap().suppresses("op.raid", "Raid at Elmtree Close"));
}

#[tokio::test]
async fn rate_limit_waits_and_opt_outs_are_stored_per_run_and_shown_for_the_last_run() {
    let db = db().await;
    let throttled =
        SourceSummary { source: "reddit".into(), posts_read: 7, rate_limit_waits: 4, opted_out: 3, ..Default::default() };
    let calm = SourceSummary { source: "masto".into(), opted_out: 1, ..Default::default() };
    let run1 = db.store.begin_run().await.unwrap();
    db.store.record_source(run1, &throttled).await.unwrap();
    db.store.record_source(run1, &calm).await.unwrap();
    db.store.finish_run(run1).await.unwrap();
    let st = db.store.status().await.unwrap();
    assert_eq!(st.runs[0].summaries, vec![throttled.clone(), calm.clone()], "both counts round-trip");
    let by_name = |st: &crate::store::StatusReport, name: &str| {
        let s = st.sources.iter().find(|s| s.source == name).unwrap();
        (s.last_run_rate_limit_waits, s.last_run_opted_out)
    };
    assert_eq!(by_name(&st, "reddit"), (Some(4), Some(3)));
    assert_eq!(by_name(&st, "masto"), (Some(0), Some(1)));

    // The next run is calm for reddit: status shows the last run's counts, not a total.
    let run2 = db.store.begin_run().await.unwrap();
    db.store.record_source(run2, &SourceSummary { source: "reddit".into(), ..Default::default() }).await.unwrap();
    let st = db.store.status().await.unwrap();
    assert_eq!(by_name(&st, "reddit"), (Some(0), Some(0)));
    assert_eq!(by_name(&st, "masto"), (Some(0), Some(1)), "a source missing from the newest run keeps its own last run");
    // Re-recording a source in the same run replaces its counts.
    db.store
        .record_source(run2, &SourceSummary { source: "reddit".into(), rate_limit_waits: 9, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_name(&db.store.status().await.unwrap(), "reddit"), (Some(9), Some(0)));
    assert_eq!(db.store.runs_since_last_digest().await.unwrap()[0].summaries[0].rate_limit_waits, 9);
}

#[test]
fn summaries_from_before_the_new_counts_still_deserialise() {
    let old = r#"{"source":"s","accounts_seen":1,"identified":0,"posts_read":2,"hits":0,"errors":0,"error":null}"#;
    let s: SourceSummary = serde_json::from_str(old).unwrap();
    assert_eq!((s.rate_limit_waits, s.opted_out, s.posts_read), (0, 0, 2));
}

#[tokio::test]
async fn a_version_2_database_gains_the_new_columns_and_keeps_its_runs() {
    // Build a database at schema version 2 (migrations 0001 and 0002 only), with a run in it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.migrations = std::borrow::Cow::Owned(migrator.migrations.iter().filter(|m| m.version <= 2).cloned().collect());
        migrator.run(&pool).await.unwrap();
        sqlx::query("INSERT INTO scan_runs (id, started_at, finished_at) VALUES (1, ?, ?)")
            .bind(ts(Utc::now()))
            .bind(ts(Utc::now()))
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO run_sources (run_id, source, accounts_seen, identified, posts_read, hits, errors, recorded_at, \
             suppressed) VALUES (1, 'old', 5, 1, 9, 2, 0, ?, 1)",
        )
        .bind(ts(Utc::now()))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = Store::open(&path).await.unwrap();
    let st = store.status().await.unwrap();
    let s = &st.runs[0].summaries[0];
    assert_eq!((s.source.as_str(), s.posts_read, s.hits, s.suppressed), ("old", 9, 2, 1));
    assert_eq!((s.rate_limit_waits, s.opted_out), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// The batched writer

fn hits_for(posts: std::ops::Range<usize>, author: &str) -> Vec<NewHit> {
    posts.map(|i| hit(HitSpec { post: &format!("q{i}"), author, ..HitSpec::default() })).collect()
}

async fn stored_posts(store: &Store) -> Vec<String> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT post_platform_id FROM hits ORDER BY post_platform_id").fetch_all(&store.pool).await.unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

#[tokio::test]
async fn batched_writer_commits_several_pages_in_one_transaction_with_the_last_cursor() {
    let db = db().await;
    let limits = BatchLimits { max_rows: 10_000, max_delay: Duration::from_secs(3600) };
    let mut w = BatchWriter::new(db.store.clone(), limits);
    assert_eq!(w.push_page(page(hits_for(0..3, "a1"), Some("c1"))).await.unwrap(), 0);
    assert_eq!(w.push_page(page(vec![], None)).await.unwrap(), 0);
    assert_eq!(w.push_page(page(hits_for(3..5, "a2"), Some("c3"))).await.unwrap(), 0);
    assert_eq!(w.waiting(), 3);
    // Only the last cursor of the batch is kept while it waits (a cursor can be megabytes).
    let cursors: Vec<Option<&str>> = w.pending.iter().map(|p| p.page.cursor.as_deref()).collect();
    assert_eq!(cursors, [None, None, Some("c3")]);
    assert_eq!(w.rows, (3 + 1) + (2 + 1) + 1, "rows: hits and accounts of each page, and one cursor");
    // Nothing is in the database yet, but the staged accounts already answer reads (the next
    // page is processed against them).
    assert_eq!(hit_count(&db.store).await, 0);
    assert_eq!(db.store.cursor("demo").await.unwrap(), None);
    let staged = db.store.stored_account("mastodon", "a2").await.unwrap().expect("staged account");
    assert!(staged.account.bio.is_empty(), "the bio is never handed back");
    assert_eq!(db.store.post_signals("mastodon", "a1").await.unwrap().unwrap().evidence.len(), 1);
    assert_eq!(w.flush().await.unwrap(), 5);
    assert_eq!(w.waiting(), 0);
    assert_eq!(hit_count(&db.store).await, 5);
    assert_eq!(db.store.cursor("demo").await.unwrap().as_deref(), Some("c3"));
    assert!(db.store.staged.lock().unwrap().accounts.is_empty(), "committed records are unstaged");
    // The same reads now come from the database.
    assert!(db.store.stored_account("mastodon", "a2").await.unwrap().is_some());
    assert_eq!(w.flush().await.unwrap(), 0, "an empty flush writes nothing");
}

#[tokio::test]
async fn batched_writer_commits_when_full_or_due() {
    let db = db().await;
    // Each page: 1 account, 2 hits, 1 cursor = 4 rows; a batch keeps only its last cursor, so
    // two pages are 7 rows.
    let mut w = BatchWriter::new(db.store.clone(), BatchLimits { max_rows: 7, max_delay: Duration::from_secs(3600) });
    assert_eq!(w.push_page(page(hits_for(0..2, "a1"), Some("c1"))).await.unwrap(), 0);
    assert_eq!(w.push_page(page(hits_for(2..4, "a1"), Some("c2"))).await.unwrap(), 4, "full at 7 rows");
    assert_eq!(db.store.cursor("demo").await.unwrap().as_deref(), Some("c2"));
    let mut w = BatchWriter::new(db.store.clone(), BatchLimits { max_rows: 10_000, max_delay: Duration::from_millis(30) });
    assert_eq!(w.deadline(), None);
    assert_eq!(w.push_page(page(hits_for(4..5, "a1"), Some("c3"))).await.unwrap(), 0);
    assert!(w.deadline().is_some());
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(w.push_page(page(hits_for(5..6, "a1"), Some("c4"))).await.unwrap(), 2, "the oldest page was due");
    assert_eq!(hit_count(&db.store).await, 6);
}

#[tokio::test]
async fn batched_writer_stores_a_hit_once_within_a_batch_and_across_batches() {
    let db = db().await;
    let mut w = BatchWriter::new(db.store.clone(), BatchLimits { max_rows: 10_000, max_delay: Duration::from_secs(3600) });
    w.push_page(page(hits_for(0..3, "a1"), Some("c1"))).await.unwrap();
    // The same posts again in the same batch (a re-read page), and one new.
    w.push_page(page(hits_for(1..4, "a1"), Some("c2"))).await.unwrap();
    assert_eq!(w.flush().await.unwrap(), 4);
    w.push_page(page(hits_for(2..6, "a1"), Some("c3"))).await.unwrap();
    assert_eq!(w.flush().await.unwrap(), 2);
    assert_eq!(stored_posts(&db.store).await, ["q0", "q1", "q2", "q3", "q4", "q5"]);
    // The same post by another account is another hit (as with one page at a time).
    assert_eq!(db.store.commit_page(page(hits_for(0..1, "a2"), None)).await.unwrap(), 1);
    // Many rows: more than one multi-row statement per batch.
    w.push_page(page(hits_for(100..400, "a3"), Some("c4"))).await.unwrap();
    w.push_page(page(hits_for(300..500, "a3"), Some("c5"))).await.unwrap();
    assert_eq!(w.flush().await.unwrap(), 400);
    assert_eq!(hit_count(&db.store).await, 7 + 400);
}

#[tokio::test]
async fn a_crash_before_a_batch_commits_loses_it_whole_and_a_rescan_restores_it_exactly() {
    // Pages q0..q9 with cursor "c{n}" after page n; pages are re-fetched from the stored cursor.
    fn source_page(n: usize) -> PageCommit {
        page(hits_for(n * 3..n * 3 + 3, if n % 2 == 0 { "a1" } else { "a2" }), Some(&format!("c{n}")))
    }
    fn next_after(cursor: Option<&str>) -> usize {
        cursor.map_or(0, |c| c[1..].parse::<usize>().unwrap() + 1)
    }
    let db = db().await;
    let limits = BatchLimits { max_rows: 10_000, max_delay: Duration::from_secs(3600) };
    {
        let mut w = BatchWriter::new(db.store.clone(), limits);
        for n in 0..4 {
            w.push_page(source_page(n)).await.unwrap();
        }
        assert_eq!(w.flush().await.unwrap(), 12);
        for n in 4..7 {
            w.push_page(source_page(n)).await.unwrap();
        }
        // The process dies here: the second batch was never committed.
        drop(w);
        db.store.close().await;
    }
    let store = Store::open(&db.path).await.unwrap();
    let cursor = store.cursor("demo").await.unwrap();
    assert_eq!(cursor.as_deref(), Some("c3"), "the cursor of the last committed batch");
    assert_eq!(hit_count(&store).await, 12);
    // The rescan starts right after it and stores pages 4..9: nothing lost, nothing twice.
    let mut w = BatchWriter::new(store.clone(), BatchLimits { max_rows: 7, max_delay: Duration::from_secs(3600) });
    let mut new = 0;
    for n in next_after(cursor.as_deref())..10 {
        new += w.push_page(source_page(n)).await.unwrap();
    }
    new += w.flush().await.unwrap();
    assert_eq!(new, 18);
    let want: Vec<String> = {
        let mut v: Vec<String> = (0..30).map(|i| format!("q{i}")).collect();
        v.sort();
        v
    };
    assert_eq!(stored_posts(&store).await, want);
    assert_eq!(store.cursor("demo").await.unwrap().as_deref(), Some("c9"));
}

#[tokio::test]
async fn a_failed_batch_leaves_nothing_written_and_nothing_staged() {
    let db = db().await;
    fail_inserting_post_boom(&db.store).await;
    let mut w = BatchWriter::new(db.store.clone(), BatchLimits { max_rows: 10_000, max_delay: Duration::from_secs(3600) });
    w.push_page(page(hits_for(0..2, "a1"), Some("c1"))).await.unwrap();
    w.push_page(page(vec![hit(HitSpec { post: "boom", author: "a2", ..HitSpec::default() })], Some("c2"))).await.unwrap();
    let err = w.flush().await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(hit_count(&db.store).await, 0);
    assert_eq!(db.store.cursor("demo").await.unwrap(), None);
    assert_eq!(db.store.post_signals("mastodon", "a1").await.unwrap(), None, "nothing staged stays readable");
}

#[tokio::test]
async fn stored_accounts_reads_many_at_once_from_the_database_and_the_staged_pages() {
    let db = db().await;
    db.store.commit_page(page(hits_for(0..1, "a1"), None)).await.unwrap();
    db.store.commit_page(page(hits_for(1..2, "a2"), None)).await.unwrap();
    let _staged = db.store.stage(page(hits_for(2..3, "a3"), None));
    // More ids than one query takes, with the remembered ones spread among strangers.
    let strangers: Vec<String> = (0..1200).map(|n| format!("stranger{n}")).collect();
    let mut ids: Vec<&str> = strangers.iter().map(String::as_str).collect();
    ids.insert(0, "a1");
    ids.insert(700, "a3");
    ids.push("a2");
    let found = db.store.stored_accounts("mastodon", &ids).await.unwrap();
    let mut keys: Vec<&str> = found.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["a1", "a2", "a3"]);
    for (id, stored) in &found {
        assert_eq!(&stored.account.platform_id, id);
        assert!(stored.account.bio.is_empty(), "the bio is never handed back");
        assert_eq!(stored.post_signals.evidence.len(), 1, "{id}");
    }
    // One at a time gives the same.
    let one = db.store.stored_account("mastodon", "a2").await.unwrap().unwrap();
    assert_eq!(one.account.handle, found["a2"].account.handle);
    assert!(db.store.stored_accounts("bluesky", &["a1"]).await.unwrap().is_empty(), "another platform's a1");
    // A list padded to a power of two (here 3 to 4, with the stranger repeated) finds the same.
    let few = db.store.stored_accounts("mastodon", &["a2", "a1", "stranger"]).await.unwrap();
    let mut keys: Vec<&str> = few.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["a1", "a2"]);
}
