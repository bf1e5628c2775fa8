//! Store write speed: hit rows per second through the batched writer into a real SQLite file.
//!
//!     cargo bench --bench store
//!
//! Goal (issue 6): >= 200,000 hit rows/s. The rows are realistic: officers' posts from the
//! synthetic stream (benches/support/stream.rs) classified by the full rule set, each with its
//! evidence text, findings, categories, identity verdict and account, paged 40 posts a page as a
//! source delivers them, with the account records and the cursor of every page. Setting the rows
//! up (generating and classifying posts) is not timed; serialising them and writing them is.
//! The database is a fresh file on disk in WAL mode with `synchronous = FULL`, as `scan` uses it.
//!
//! Settings (environment): `STORE_BENCH_ROWS` (fewer rows, the batched writer only),
//! `STORE_BENCH_KEEP=FILE` (keep a copy of the database written), `STORE_BENCH_INDEXES=1` (also
//! time SQLite's copy of the rows with one `hits` index at a time: what each index costs).

#[path = "support/stream.rs"]
mod stream;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use exposure_monitor::forces::Forces;
use exposure_monitor::identify::PostSignals;
use exposure_monitor::model::Identity;
use exposure_monitor::patterns::Detector;
use exposure_monitor::store::{AccountUpdate, BatchLimits, BatchWriter, NewHit, PageCommit, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stream::{Stream, StreamSpec};

/// Hit rows written in the timed run (`STORE_BENCH_ROWS` sets fewer, e.g. for a profile).
const ROWS: usize = 300_000;
/// Hits per page (a Mastodon page of 40 statuses all from officers: the worst case for the writer).
const PER_PAGE: usize = 40;
const GOAL_ROWS_PER_SEC: f64 = 200_000.0;

/// CPU seconds (user + system, all threads) this process has used so far.
fn cpu_secs() -> f64 {
    // SAFETY: `rusage` is plain data the kernel fills in.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() {
    let rows_wanted: usize = std::env::var("STORE_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(ROWS);
    let only_batched = std::env::var_os("STORE_BENCH_ROWS").is_some();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let detector = Detector::load(&repo.join("patterns"), &Forces::embedded()).expect("load patterns/");
    let mut stream = Stream::new(StreamSpec { platform: "mastodon", ..StreamSpec::default() });
    let verdicts: Vec<_> = stream
        .accounts
        .iter()
        .map(|a| if a.police { Some(detector.identifier.identify(&a.account, &PostSignals::default())) } else { None })
        .collect();

    // A pool of real hits: officers' posts the classifier flags.
    let setup = Instant::now();
    let mut pool: Vec<NewHit> = vec![];
    while pool.len() < 2_000.min(rows_wanted / 10).max(10) {
        let sp = stream.next_post();
        let Some(verdict) = &verdicts[sp.author] else { continue };
        if verdict.identity != Identity::Serving {
            continue;
        }
        let classification = detector.classifier.classify(&sp.post);
        if !classification.is_hit_content() {
            continue;
        }
        pool.push(NewHit {
            source: "bench".into(),
            account: stream.accounts[sp.author].account.clone(),
            verdict: verdict.clone(),
            post: sp.post,
            classification,
            retrieved_at: Utc::now(),
        });
    }
    // ROWS distinct hits (each a distinct post id), paged with their accounts and a cursor.
    // Each row has times of its own, as a scan's rows do: it is retrieved when its page is
    // fetched (so `retrieved_at` only grows), about a post a millisecond (a scan at the goal's
    // rate), and its post was written at most a day before (a scan reads recent posts, in no
    // particular order across accounts). Rows copied from the pool with the pool's times would
    // repeat 2,000 timestamps in a cycle, an order no scan writes and the time-keyed indexes
    // handle worst.
    let mut times = StdRng::seed_from_u64(6);
    let start_at = Utc::now();
    let mut pages: Vec<PageCommit> = Vec::with_capacity(rows_wanted / PER_PAGE + 1);
    let mut n = 0usize;
    while n < rows_wanted {
        let mut page = PageCommit { source: "bench".into(), accounts: vec![], hits: vec![], cursor: None };
        let retrieved_at = start_at + chrono::Duration::milliseconds(n as i64);
        for _ in 0..PER_PAGE.min(rows_wanted - n) {
            let mut h = pool[n % pool.len()].clone();
            h.post.platform_id = format!("https://social.example/statuses/{n:09}");
            h.post.url = Some(h.post.platform_id.clone());
            h.retrieved_at = retrieved_at;
            h.post.created_at = retrieved_at - chrono::Duration::seconds(times.gen_range(0..86_400));
            if !page.accounts.iter().any(|a: &AccountUpdate| a.account.platform_id == h.account.platform_id) {
                page.accounts.push(AccountUpdate {
                    account: h.account.clone(),
                    verdict: h.verdict.clone(),
                    post_signals: PostSignals::default(),
                });
            }
            page.hits.push(h);
            n += 1;
        }
        page.cursor = Some(format!("{{\"v\":1,\"n\":{n}}}"));
        pages.push(page);
    }
    let text_bytes: usize = pool.iter().map(|h| h.post.text.len()).sum::<usize>() / pool.len();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("store: load average before: {}", load.trim());
    println!(
        "store: {rows_wanted} hit rows in {} pages of {PER_PAGE} (mean post text {text_bytes} bytes), set up in {:.1} s",
        pages.len(),
        setup.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        for (label, limits) in [
            ("one page per transaction (before)", BatchLimits { max_rows: 1, max_delay: Duration::ZERO }),
            ("batched writer (<= 5,000 rows or 250 ms)", BatchLimits::default()),
        ] {
            if only_batched && limits.max_rows == 1 {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("bench.db")).await.unwrap();
            let work: Vec<PageCommit> = if limits.max_rows == 1 { pages[..pages.len() / 5].to_vec() } else { pages.clone() };
            let rows: usize = work.iter().map(|p| p.hits.len()).sum();
            let start = Instant::now();
            let cpu_start = cpu_secs();
            let mut writer = BatchWriter::new(store.clone(), limits);
            let mut stored = 0u64;
            for p in work {
                stored += writer.push_page(p).await.unwrap();
            }
            stored += writer.flush().await.unwrap();
            let secs = start.elapsed().as_secs_f64();
            let cpu = cpu_secs() - cpu_start;
            assert_eq!(stored as usize, rows, "every hit stored once");
            let rate = rows as f64 / secs;
            let db_mib = std::fs::metadata(store.path()).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0
                + std::fs::metadata(dir.path().join("bench.db-wal")).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
            println!(
                "store: {label}: {rows} rows in {secs:.2} s = {rate:.0} hit rows/s; {cpu:.2} CPU s = {:.0} rows per CPU second (db {db_mib:.0} MiB)",
                rows as f64 / cpu
            );
            if limits.max_rows > 1 {
                let verdict = if rate >= GOAL_ROWS_PER_SEC { "MET" } else { "MISSED" };
                println!("store: goal >= {GOAL_ROWS_PER_SEC:.0} hit rows/s: {rate:.0} -> {verdict}");
            }
            store.close().await;
            if let Some(keep) = std::env::var_os("STORE_BENCH_KEEP") {
                std::fs::copy(store.path(), keep).unwrap();
            }
            if limits.max_rows > 1 {
                sqlite_alone(store.path(), rows).await;
            }
        }
    });
}

/// The ceiling: SQLite copying the same rows by itself (`INSERT ... SELECT` from the database
/// just written, 5,000 rows a transaction, same pragmas), into the migrated schema and into a
/// table with no index at all. No Rust, no serialising, no binding: what the engine and this
/// disk allow for these rows, as `rg` is for the classify bench.
///
/// With `STORE_BENCH_INDEXES` set, also what each `hits` index costs: the same copy into the
/// schema with only that one of its indexes (and the unique key, which cannot be dropped), and
/// into the schema without the two indexes keyed by account.
async fn sqlite_alone(written: &Path, rows: usize) {
    let copy = |label: String, drop: Vec<String>| copy_rows(written, rows, label, drop);
    copy("into the schema (every hits index)".into(), vec![]).await;
    copy("into a table with no index".into(), vec!["*".into()]).await;
    if std::env::var_os("STORE_BENCH_INDEXES").is_none() {
        return;
    }
    let indexes = hits_indexes().await;
    for keep in &indexes {
        let drop = indexes.iter().filter(|i| *i != keep).cloned().collect();
        copy(format!("into the schema with only {keep} (and the unique key)"), drop).await;
    }
    let by_account = vec!["hits_account".to_string(), "hits_unsent_accounts".to_string()];
    copy("into the schema without hits_account and hits_unsent_accounts".into(), by_account).await;
}

/// The droppable indexes of the migrated `hits` table.
async fn hits_indexes() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("schema.db")).await.unwrap();
    store.close().await;
    let mut conn = connect(&dir.path().join("schema.db")).await;
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'hits' AND sql IS NOT NULL ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    names.into_iter().map(|(n,)| n).collect()
}

async fn connect(path: &Path) -> sqlx::SqliteConnection {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use sqlx::ConnectOptions;
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .pragma("cache_size", "-8192")
        .pragma("temp_store", "MEMORY")
        .connect()
        .await
        .unwrap()
}

/// Copy the hits of `written` into a freshly migrated database with the `drop`ped indexes
/// gone (`*`: into a table of the same columns with no index at all), timed.
async fn copy_rows(written: &Path, rows: usize, label: String, drop: Vec<String>) {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    // Migrated by the program's own `Store::open`, then written through one bare connection.
    let target = dir.path().join("copy.db");
    Store::open(&target).await.unwrap().close().await;
    let mut conn = connect(&target).await;
    sqlx::query("ATTACH ? AS src").bind(written.display().to_string()).execute(&mut conn).await.unwrap();
    let table = if drop.iter().any(|d| d == "*") {
        sqlx::query("CREATE TABLE bare AS SELECT * FROM src.hits WHERE 0").execute(&mut conn).await.unwrap();
        "bare"
    } else {
        for index in &drop {
            sqlx::query(&format!("DROP INDEX main.{index}")).execute(&mut conn).await.unwrap();
        }
        "hits"
    };
    let (max_id,): (i64,) = sqlx::query_as("SELECT max(id) FROM src.hits").fetch_one(&mut conn).await.unwrap();
    let start = Instant::now();
    let cpu_start = cpu_secs();
    for first in (1..=max_id).step_by(5_000) {
        let mut tx = conn.begin().await.unwrap();
        sqlx::query(&format!("INSERT INTO main.{table} SELECT * FROM src.hits WHERE id BETWEEN ? AND ?"))
            .bind(first)
            .bind(first + 4_999)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_start;
    println!(
        "store: ceiling, SQLite alone copying the same {rows} rows {label}: {:.0} rows/s; {:.0} rows per CPU second",
        rows as f64 / secs,
        rows as f64 / cpu
    );
    conn.close().await.unwrap();
}
