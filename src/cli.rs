//! Command line: parses arguments (clap), sets up logging, and calls the stages.
//!
//! Owns exit codes and everything printed for people. Exit codes: 0 success; 1 nothing could
//! run (bad config, pattern files or database); 2 some sources failed but the others' results
//! were stored, or some digest routes could not be sent; 3 another run holds the lock.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::forces::Forces;
use crate::model::Category;
use crate::patterns::Detector;
use crate::store::{HitFilter, HitRecord, HitScope, ReviewStatus, RouteFilter, Store};

/// Exit code: some sources (or digest routes) failed, the rest succeeded and were stored.
pub const EXIT_PARTIAL: u8 = 2;
/// Exit code: nothing could run.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: another run holds the lock (e.g. a slow scan when the next timer fires).
pub const EXIT_LOCKED: u8 = 3;

/// Held while a command that writes runs: two overlapping runs never run at once.
struct RunLock {
    _file: std::fs::File,
}

#[derive(Debug, thiserror::Error)]
#[error("another exposure-monitor run is in progress (lock {path} is held); this run exits without doing anything")]
struct Locked {
    path: String,
}

impl RunLock {
    /// Take the lock beside the database, or fail at once with [`Locked`].
    fn acquire(config: &Config) -> Result<RunLock> {
        RunLock::acquire_suffix(config, ".lock")
    }

    /// Take the lock file `<database><suffix>` (`watch` holds its own, `.watch.lock`).
    fn acquire_suffix(config: &Config, suffix: &str) -> Result<RunLock> {
        let mut path = config.database.clone().into_os_string();
        path.push(suffix);
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).with_context(|| format!("opening lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Locked { path: path.display().to_string() }.into()),
            Err(std::fs::TryLockError::Error(e)) => Err(anyhow::Error::new(e).context(format!("locking {}", path.display()))),
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "exposure-monitor",
    version,
    about = "Finds police officers and staff who identify themselves on public social media, \
             flags their posts that put integrity at risk, and emails a daily digest to PSD.",
    long_about = None,
    after_help = "Typical daily use (from a timer): exposure-monitor --config /etc/exposure-monitor/config.toml run\n\
                  Reviewer's queue:                    exposure-monitor --config ... hits list --status new"
)]
pub struct Cli {
    /// Config file (TOML; see config/example.toml).
    #[arg(long, short, global = true, env = "EXPOSURE_MONITOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log detail (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch what is new from every enabled source, identify police accounts, classify their
    /// posts and store the hits. Exit 0: all sources ran; 2: some failed; 1: nothing could run.
    Scan,
    /// Email the digest of hits not yet sent (one message per PSD route).
    Digest(DigestArgs),
    /// `scan`, then `digest`, then `purge`: the one command a daily timer calls.
    Run(DigestArgs),
    /// Apply the retention settings: delete post text and evidence of dismissed hits after
    /// `retention.dismissed_days`, and every hit after `retention.days`.
    Purge,
    /// List, show and review stored hits.
    #[command(subcommand)]
    Hits(HitsCommand),
    /// Check and test the pattern files operators edit.
    #[command(subcommand)]
    Patterns(PatternsCommand),
    /// Measure detection on a labelled corpus (SPEC.md format) without touching any database.
    Eval(EvalArgs),
    /// Read the enabled Jetstream sources without end (for a systemd service), storing each
    /// page as it is read; digests are left to the daily `run`, whose scan then skips the
    /// Jetstream sources. SIGTERM or Ctrl-C stops it after the page being read is stored.
    Watch,
    /// Last scan runs, each source's cursor and last error, hits not yet sent, database size.
    Status,
    /// The audit trail: who listed, read, reviewed or purged hits, and when (newest first).
    Audit {
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Args)]
pub struct DigestArgs {
    /// Print the digest instead of sending it; nothing is marked sent.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum HitsCommand {
    /// List hits, newest first (the reviewer's queue is `--status new`).
    List(ListArgs),
    /// Show one hit with all its evidence. Personal data in the post (registrations, names
    /// next to victim/suspect words, phone numbers, addresses...) is masked unless --reveal.
    Show {
        /// Hit id (from `hits list`).
        id: i64,
        /// Show the post text unmasked. Every reveal is written to the audit trail.
        #[arg(long)]
        reveal: bool,
    },
    /// Export hits for a case file: each with its post URL, retrieval time and a SHA-256 of the
    /// stored evidence.
    Export(ExportArgs),
    /// Record a review decision for a hit. Dismissing a hit suppresses the same finding (same
    /// account, rule and matched words) in later scans; the command says what it suppressed or
    /// lifted.
    Review {
        /// Hit id (from `hits list`).
        id: i64,
        /// The decision.
        #[arg(long, value_enum)]
        status: Decision,
        /// Why (kept in the append-only review log).
        #[arg(long)]
        note: String,
        /// Who decided (default: the login name).
        #[arg(long, env = "USER")]
        reviewer: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Decision {
    Confirmed,
    Dismissed,
    Escalated,
}

impl From<Decision> for ReviewStatus {
    fn from(d: Decision) -> Self {
        match d {
            Decision::Confirmed => ReviewStatus::Confirmed,
            Decision::Dismissed => ReviewStatus::Dismissed,
            Decision::Escalated => ReviewStatus::Escalated,
        }
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    #[arg(long, value_enum)]
    pub status: Option<ReviewStatus>,
    /// Force name or alias (e.g. "GMP").
    #[arg(long)]
    pub force: Option<String>,
    /// A SPEC.md category, e.g. personal_data.
    #[arg(long)]
    pub category: Option<Category>,
    /// Only hits on posts created on or after this date (YYYY-MM-DD) or time (RFC 3339).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// At most this many hits.
    #[arg(long, default_value_t = 200)]
    pub limit: u32,
    /// Only hits no digest has delivered yet (a digest's backlog).
    #[arg(long)]
    pub unsent: bool,
    /// Only hits a digest sends to this route: a force with a route of its own in the config
    /// (name or alias), or "default" (unknown forces and forces without a route).
    #[arg(long)]
    pub route: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum PatternsCommand {
    /// Load every pattern file and report every error (file, line, rule id, regex error).
    Check(PatternDirArgs),
    /// Run every rule's own examples (must match / must not match).
    Test {
        #[command(flatten)]
        dir: PatternDirArgs,
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct PatternDirArgs {
    /// Pattern directory (default: the config's `patterns`, else ./patterns).
    #[arg(long)]
    pub patterns: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Corpus directory with accounts.jsonl and posts.jsonl.
    #[arg(long)]
    pub corpus: PathBuf,
    /// Write one JSON prediction per account and post to this file.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Compare against the pattern files in OLD_DIR: metric changes and changed predictions.
    #[arg(long, value_name = "OLD_DIR")]
    pub compare: Option<PathBuf>,
    #[command(flatten)]
    pub dir: PatternDirArgs,
}

fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| format!("`{s}` is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) if e.is::<Locked>() => {
            eprintln!("{e}");
            ExitCode::from(EXIT_LOCKED)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Keep glibc malloc from holding on to memory the program has freed, so that a long scan's
/// resident size stays near what it uses (measured with `cargo bench --bench e2e`: a 1M-post scan
/// peaked at 144 MiB with glibc's defaults, 121 MiB with both settings; the scan was not slower).
///
/// - One arena per core at most (`M_ARENA_MAX`): by default every thread that allocates gets an
///   arena of its own, up to eight per core, and what one arena frees is not reused by another.
///   A scan allocates on the tokio workers and on each SQLite connection's thread (sqlx), so
///   freed pages, posts and cursors were stranded in several arenas.
/// - A fixed mmap threshold (`M_MMAP_THRESHOLD`, glibc's initial 128 KiB): glibc otherwise raises
///   the threshold to the size of the largest block freed so far (up to 32 MiB), after which the
///   megabyte buffers a scan makes for every page (the page's posts, a source cursor with a mark
///   per account, response bodies) come from the arenas and leave them fragmented instead of
///   going back to the system when freed. An mmap per such buffer costs nothing measurable.
///
/// An operator's `MALLOC_ARENA_MAX` / `MALLOC_MMAP_THRESHOLD_` environment variables win.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let settings = [
            ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, cores as libc::c_int),
            ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 128 * 1024),
        ];
        for (env, param, value) in settings {
            if std::env::var_os(env).is_none() {
                // SAFETY: mallopt only sets allocator parameters; it is called before any other
                // thread exists. A refusal (0) leaves glibc's default, which is only more memory.
                unsafe { libc::mallopt(param, value) };
            }
        }
    }
}

fn init_logging(format: LogFormat, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    let Some(path) = path else {
        bail!("no config file: pass --config FILE or set EXPOSURE_MONITOR_CONFIG (see config/example.toml)")
    };
    Ok(Config::load(path)?)
}

fn load_detector(dir: &Path, forces: &Forces) -> Result<Detector> {
    Detector::load(dir, forces).map_err(|errors| {
        let mut msg = format!("{} error(s) in pattern files:", errors.len());
        for e in &errors {
            msg.push_str(&format!("\n  {e}"));
        }
        anyhow::anyhow!(msg)
    })
}

async fn open_store(config: &Config) -> Result<Store> {
    Store::open(&config.database).await.with_context(|| format!("opening database {}", config.database.display()))
}

async fn dispatch(cli: Cli) -> Result<u8> {
    let config_path = cli.config.as_deref();
    match cli.command {
        Command::Scan => {
            let config = load_config(config_path)?;
            let _lock = RunLock::acquire(&config)?;
            scan(&config).await
        }
        Command::Digest(args) => {
            let config = load_config(config_path)?;
            let _lock = RunLock::acquire(&config)?;
            let store = open_store(&config).await?;
            digest(&config, &store, args.dry_run).await
        }
        Command::Run(args) => {
            let config = load_config(config_path)?;
            let _lock = RunLock::acquire(&config)?;
            let scan_code = scan(&config).await?;
            let store = open_store(&config).await?;
            let digest_code = digest(&config, &store, args.dry_run).await?;
            if !args.dry_run {
                purge(&config, &store).await?;
            }
            Ok(scan_code.max(digest_code))
        }
        Command::Watch => {
            let config = load_config(config_path)?;
            let _lock = RunLock::acquire_suffix(&config, WATCH_LOCK)?;
            watch(&config).await
        }
        Command::Purge => {
            let config = load_config(config_path)?;
            let _lock = RunLock::acquire(&config)?;
            let store = open_store(&config).await?;
            purge(&config, &store).await
        }
        Command::Hits(cmd) => {
            let config = load_config(config_path)?;
            let store = open_store(&config).await?;
            hits(&config, &store, cmd).await
        }
        Command::Patterns(cmd) => patterns(config_path, cmd),
        Command::Eval(args) => eval(config_path, args),
        Command::Status => {
            let config = load_config(config_path)?;
            let store = open_store(&config).await?;
            status(&store).await
        }
        Command::Audit { limit } => {
            let config = load_config(config_path)?;
            let store = open_store(&config).await?;
            for e in store.audit_log(limit).await? {
                println!("{}  {:<16} {:<14} {}", e.at.to_rfc3339(), one_line(&e.actor, 16), e.action, one_line(&e.detail, 200));
            }
            Ok(0)
        }
    }
}

/// Lock file suffix `watch` holds while it reads the Jetstream sources.
const WATCH_LOCK: &str = ".watch.lock";

fn is_jetstream(entry: &crate::config::SourceEntry) -> bool {
    matches!(entry.kind, crate::config::SourceConfig::Jetstream(_))
}

/// Rounds in a row in which every Jetstream source failed before `watch` exits with a failure
/// (so that systemd restarts it and the failure shows in the journal and `systemctl status`).
const WATCH_FAILED_ROUNDS: u32 = 3;

/// `watch`: rounds of `max_seconds` over every enabled Jetstream source at once, each round
/// recorded as a run, the connections kept open between rounds, until SIGTERM or Ctrl-C.
async fn watch(config: &Config) -> Result<u8> {
    use crate::config::SourceConfig;
    let detector = load_detector(&config.patterns, &config.forces)?;
    let store = open_store(config).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let entries: Vec<crate::config::SourceEntry> = config
        .enabled_sources()
        .filter(|e| is_jetstream(e))
        .map(|e| {
            let mut e = e.clone();
            if let SourceConfig::Jetstream(cfg) = &mut e.kind {
                cfg.continuous = true;
                cfg.stop = Some(stop_rx.clone());
            }
            e
        })
        .collect();
    if entries.is_empty() {
        bail!("no enabled source of kind \"jetstream\" in {}: nothing to watch", config.path.display());
    }
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        tracing::info!("stop signal: finishing the page being read");
        let _ = stop_tx.send(true);
    });
    let ctx = crate::sources::BuildContext::new(&config.operator_contact);
    let mut sources: Vec<Box<dyn crate::sources::Source>> = entries.iter().map(|e| crate::sources::build(e, &ctx)).collect();
    let quiet = |_: &crate::store::SourceSummary| {};
    let mut failed_rounds = 0u32;
    loop {
        let run_id = store.begin_run().await?;
        let rounds = entries
            .iter()
            .zip(sources.iter_mut())
            .map(|(e, s)| crate::scan::scan_source(e, s.as_mut(), &store, &detector, &quiet));
        let results = futures_util::future::join_all(rounds).await;
        let mut failed = 0;
        for summary in results {
            let summary = summary.context("watch stopped: database error")?;
            if summary.error.is_some() {
                failed += 1;
            }
            tracing::info!(
                source = %summary.source,
                posts = summary.posts_read,
                identified = summary.identified,
                hits = summary.hits,
                errors = summary.errors,
                error = summary.error.as_deref().unwrap_or("-"),
                "watch round"
            );
            store.record_source(run_id, &summary).await?;
        }
        store.finish_run(run_id).await?;
        if *stop_rx.borrow() {
            tracing::info!("watch stopped");
            return Ok(0);
        }
        failed_rounds = if failed == entries.len() { failed_rounds + 1 } else { 0 };
        if failed_rounds >= WATCH_FAILED_ROUNDS {
            eprintln!("error: every Jetstream source failed {failed_rounds} rounds in a row; exiting for a restart");
            return Ok(EXIT_FAILURE);
        }
    }
}

/// SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// While `watch` holds its lock it reads the Jetstream sources: a scan leaves them to it.
fn without_watched_sources(config: &Config) -> Result<std::borrow::Cow<'_, Config>> {
    if !config.enabled_sources().any(is_jetstream) {
        return Ok(std::borrow::Cow::Borrowed(config));
    }
    match RunLock::acquire_suffix(config, WATCH_LOCK) {
        Ok(_free) => Ok(std::borrow::Cow::Borrowed(config)),
        Err(e) if e.is::<Locked>() => {
            tracing::info!("`watch` is running: the Jetstream sources are left to it");
            let mut c = config.clone();
            c.sources.retain(|s| !is_jetstream(s));
            Ok(std::borrow::Cow::Owned(c))
        }
        Err(e) => Err(e),
    }
}

async fn scan(config: &Config) -> Result<u8> {
    let config = &*without_watched_sources(config)?;
    let detector = load_detector(&config.patterns, &config.forces)?;
    let store = open_store(config).await?;
    // A progress line on interactive terminals only; cron and systemd get the log lines.
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let on_page = |s: &crate::store::SourceSummary| {
        bar.set_message(format!(
            "{}: {} posts, {} accounts, {} identified, {} hits",
            s.source, s.posts_read, s.accounts_seen, s.identified, s.hits
        ));
    };
    let result = crate::scan::run(config, &store, &detector, &on_page).await;
    bar.finish_and_clear();
    let report = result.context("scan stopped: database error")?;
    println!(
        "{:<20} {:>8} {:>10} {:>8} {:>6} {:>10} {:>9} {:>8} {:>6}  error",
        "source", "accounts", "identified", "posts", "hits", "suppressed", "opted_out", "rl_waits", "errors"
    );
    for s in &report.summaries {
        println!(
            "{:<20} {:>8} {:>10} {:>8} {:>6} {:>10} {:>9} {:>8} {:>6}  {}",
            s.source,
            s.accounts_seen,
            s.identified,
            s.posts_read,
            s.hits,
            s.suppressed,
            s.opted_out,
            s.rate_limit_waits,
            s.errors,
            s.error.as_deref().map(|e| one_line(e, 200)).unwrap_or_else(|| "-".into())
        );
    }
    if report.summaries.is_empty() {
        println!("no enabled sources in {}", config.path.display());
    }
    let failed = report.failed();
    Ok(if failed == 0 {
        0
    } else if failed == report.summaries.len() {
        EXIT_FAILURE
    } else {
        EXIT_PARTIAL
    })
}

async fn digest(config: &Config, store: &Store, dry_run: bool) -> Result<u8> {
    let mut out = std::io::stdout();
    let outcome = crate::digest::run(config, store, dry_run, &mut out).await?;
    if !dry_run {
        println!("digest: {} message(s) sent with {} hit(s)", outcome.messages_sent, outcome.hits_sent);
    }
    for (route, err) in &outcome.failures {
        eprintln!("digest: route {route} failed, its hits stay unsent: {err}");
    }
    Ok(if outcome.failures.is_empty() { 0 } else { EXIT_PARTIAL })
}

async fn purge(config: &Config, store: &Store) -> Result<u8> {
    let r = store.purge(&config.retention, Utc::now()).await?;
    println!(
        "purge: {} hit(s) deleted (older than {} days), {} dismissed hit(s) blanked (after {} days), {} account(s) forgotten",
        r.hits_deleted, config.retention.days, r.hits_blanked, config.retention.dismissed_days, r.accounts_deleted
    );
    Ok(0)
}

/// Who is running this command, for the audit trail: the login name, else "unknown".
fn actor() -> String {
    std::env::var("USER").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| "unknown".into())
}

async fn hits(config: &Config, store: &Store, cmd: HitsCommand) -> Result<u8> {
    match cmd {
        HitsCommand::List(args) => {
            let scope = hit_scope(config, &args.filter)?;
            let filter = hit_filter(config, args.filter)?;
            // Recorded before anything is printed; rows are printed as SQLite yields them, so a
            // backlog of any size lists in bounded memory.
            store.audit(&actor(), "hits list", &describe_listing(&filter, &scope)).await?;
            let mut out = std::io::BufWriter::new(std::io::stdout());
            let listed = match args.format {
                OutputFormat::Json => {
                    store
                        .for_each_hit_scoped(&filter, &scope, |h| {
                            serde_json::to_writer(&mut out, &h)?;
                            Ok::<_, anyhow::Error>(writeln!(out)?)
                        })
                        .await?
                }
                OutputFormat::Table => {
                    write_hit_table_header(&mut out)?;
                    store.for_each_hit_scoped(&filter, &scope, |h| write_hit_table_row(&h, &mut out)).await?
                }
            };
            if listed == 0 && matches!(args.format, OutputFormat::Table) {
                writeln!(out, "(no hits)")?;
            }
            out.flush()?;
            Ok(0)
        }
        HitsCommand::Export(args) => {
            let scope = hit_scope(config, &args.filter)?;
            let filter = hit_filter(config, args.filter)?;
            let detail = format!("{} as {:?}", describe_listing(&filter, &scope), args.format);
            store.audit(&actor(), "hits export", &detail).await?;
            let out: Box<dyn std::io::Write + Send> = match &args.output {
                Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
                None => Box::new(std::io::stdout()),
            };
            let mut out = std::io::BufWriter::new(out);
            match args.format {
                ExportFormat::Json => {
                    store.for_each_hit_scoped(&filter, &scope, |h| export_json_line(&h, &mut out)).await?;
                }
                ExportFormat::Csv => {
                    let mut w = csv::Writer::from_writer(&mut out);
                    w.write_record(CSV_HEADER)?;
                    store.for_each_hit_scoped(&filter, &scope, |h| export_csv_row(&h, &mut w)).await?;
                    w.flush()?;
                }
            }
            out.flush()?;
            Ok(0)
        }
        HitsCommand::Show { id, reveal } => {
            let hit = store.get_hit(id).await?;
            // Recorded before anything is printed: a reveal is never unlogged.
            if reveal {
                store.audit(&actor(), "reveal", &format!("hit {id}: post text shown unmasked")).await?;
            } else {
                store.audit(&actor(), "hits show", &format!("hit {id}")).await?;
            }
            print!("{}", describe_hit_as(&hit, reveal));
            let log = store.review_log(id).await?;
            if !log.is_empty() {
                println!("review log:");
                for r in &log {
                    println!(
                        "  {} {} {}: {}",
                        r.at.to_rfc3339(),
                        one_line(&r.reviewer, 60),
                        status_name(r.status),
                        one_line(&r.note, 400)
                    );
                }
            }
            Ok(0)
        }
        HitsCommand::Review { id, status, note, reviewer } => {
            let reviewer = reviewer.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| "unknown".into());
            let outcome = store.review(id, status.into(), &note, &reviewer).await?;
            store.audit(&reviewer, "hits review", &format!("hit {id} -> {}", status_name(status.into()))).await?;
            println!("hit {id}: {} by {reviewer}", status_name(status.into()));
            if outcome.suppressions_added > 0 {
                let detail = format!(
                    "hit {id} dismissed: {} finding(s) of this account will be suppressed in later scans",
                    outcome.suppressions_added
                );
                store.audit(&reviewer, "suppression added", &detail).await?;
                println!("{detail}");
            }
            if outcome.suppressions_lifted > 0 {
                let detail = format!(
                    "hit {id} no longer dismissed: {} suppressed finding(s) will be reported again in later scans",
                    outcome.suppressions_lifted
                );
                store.audit(&reviewer, "suppression lifted", &detail).await?;
                println!("{detail}");
            }
            for (rule, by) in &outcome.suppressed_by_other {
                match by {
                    Some(other) => println!(
                        "note: finding {} stays suppressed in later scans by the dismissal of hit {other} \
                         (review hit {other} to lift it)",
                        one_line(rule, 80)
                    ),
                    None => println!(
                        "note: finding {} stays suppressed in later scans by the dismissal of a hit retention has deleted",
                        one_line(rule, 80)
                    ),
                }
            }
            Ok(0)
        }
    }
}

fn hit_filter(config: &Config, args: FilterArgs) -> Result<HitFilter> {
    let force = match args.force {
        Some(f) => Some(
            config
                .forces
                .canonical(&f)
                .map(str::to_string)
                .with_context(|| format!("`{f}` is not a known force name or alias"))?,
        ),
        None => None,
    };
    Ok(HitFilter { status: args.status, force, category: args.category, since: args.since, limit: Some(args.limit) })
}

/// `--unsent` and `--route`: a route is a force with a route of its own in the config (by name
/// or alias), or "default".
fn hit_scope(config: &Config, args: &FilterArgs) -> Result<HitScope> {
    let route = match args.route.as_deref() {
        None => None,
        Some(r) if r.eq_ignore_ascii_case(crate::digest::DEFAULT_ROUTE) => {
            Some(RouteFilter::Default { routed: config.routing.forces.keys().cloned().collect() })
        }
        Some(r) => {
            let name = config.forces.canonical(r).unwrap_or(r);
            match config.routing.route_for(Some(name)).0 {
                Some(route) => Some(RouteFilter::Force(route.to_string())),
                None => {
                    let routes: Vec<&str> = config.routing.forces.keys().map(String::as_str).collect();
                    anyhow::bail!(
                        "`{r}` is not a route in {}: use \"default\" or one of the forces under [routing.forces]: {}",
                        config.path.display(),
                        if routes.is_empty() { "(none configured)".to_string() } else { routes.join(", ") }
                    )
                }
            }
        }
    };
    Ok(HitScope { unsent: args.unsent, route })
}

/// What a listing asked for, for the audit trail.
fn describe_listing(filter: &HitFilter, scope: &HitScope) -> String {
    format!(
        "status={} force={} category={} since={} unsent={} route={} limit={}",
        filter.status.map(status_name).unwrap_or("any"),
        filter.force.as_deref().unwrap_or("any"),
        filter.category.map(|c| c.as_str()).unwrap_or("any"),
        filter.since.map(|t| t.to_rfc3339()).unwrap_or_else(|| "any".into()),
        scope.unsent,
        match &scope.route {
            None => "any",
            Some(RouteFilter::Force(f)) => f.as_str(),
            Some(RouteFilter::Default { .. }) => crate::digest::DEFAULT_ROUTE,
        },
        filter.limit.map(|l| l.to_string()).unwrap_or_else(|| "none".into()),
    )
}

/// One JSON object per line: the stored hit plus its evidence hash.
fn export_json_line(h: &HitRecord, out: &mut impl std::io::Write) -> Result<()> {
    let mut value = serde_json::to_value(h)?;
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("evidence_sha256".into(), h.evidence_sha256().into());
    }
    serde_json::to_writer(&mut *out, &value)?;
    writeln!(out)?;
    Ok(())
}

/// A flat table for spreadsheets; the csv crate quotes fields, so post text cannot break rows.
const CSV_HEADER: [&str; 17] = [
    "id",
    "status",
    "force",
    "platform",
    "account_handle",
    "account_display_name",
    "profile_url",
    "post_id",
    "post_url",
    "post_created_at",
    "retrieved_at",
    "categories",
    "severity",
    "rules",
    "matched",
    "text",
    "evidence_sha256",
];

fn export_csv_row(h: &HitRecord, w: &mut csv::Writer<impl std::io::Write>) -> Result<()> {
    let cats: Vec<&str> = h.categories.iter().map(|c| c.as_str()).collect();
    let rules: Vec<&str> = h.classification.findings.iter().map(|f| f.rule_id.as_str()).collect();
    let matched: Vec<&str> = h.classification.findings.iter().map(|f| f.matched.as_str()).collect();
    w.write_record(
        [
            h.id.to_string(),
            status_name(h.status).to_string(),
            h.force.clone().unwrap_or_default(),
            h.platform.clone(),
            h.account_handle.clone(),
            h.account_display_name.clone(),
            h.profile_url.clone().unwrap_or_default(),
            h.post_platform_id.clone(),
            h.post_url.clone().unwrap_or_default(),
            h.post_created_at.to_rfc3339(),
            h.retrieved_at.to_rfc3339(),
            cats.join(";"),
            h.severity.as_str().to_string(),
            rules.join(";"),
            matched.join(" | "),
            h.text.clone(),
            h.evidence_sha256(),
        ]
        .map(|cell| spreadsheet_safe(&cell)),
    )?;
    Ok(())
}

/// Post content is hostile: a cell starting with `=`, `+`, `-`, `@` (or a tab or CR) would be run
/// as a formula by a spreadsheet opening the export, so such cells get a leading apostrophe.
fn spreadsheet_safe(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

fn status_name(s: ReviewStatus) -> &'static str {
    match s {
        ReviewStatus::New => "new",
        ReviewStatus::Confirmed => "confirmed",
        ReviewStatus::Dismissed => "dismissed",
        ReviewStatus::Escalated => "escalated",
    }
}

/// One line, with control characters made visible, for a terminal table.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn write_hit_table_header(out: &mut impl std::io::Write) -> Result<()> {
    writeln!(
        out,
        "{:>6}  {:<10} {:<8} {:<16} {:<28} {:<24} {:<30} excerpt",
        "id", "status", "severity", "posted", "force", "account", "categories"
    )?;
    Ok(())
}

fn write_hit_table_row(h: &HitRecord, out: &mut impl std::io::Write) -> Result<()> {
    let cats: Vec<&str> = h.categories.iter().map(|c| c.as_str()).collect();
    writeln!(
        out,
        "{:>6}  {:<10} {:<8} {:<16} {:<28} {:<24} {:<30} {}",
        h.id,
        status_name(h.status),
        h.severity.as_str(),
        h.post_created_at.format("%Y-%m-%d %H:%M"),
        one_line(h.force.as_deref().unwrap_or("(unknown)"), 28),
        one_line(&h.account_handle, 24),
        cats.join(","),
        one_line(&crate::redact::redact(&h.text).text, 60)
    )?;
    Ok(())
}

/// The evidence of a hit, for `hits show`, with personal data in the post masked.
pub fn describe_hit(h: &HitRecord) -> String {
    describe_hit_as(h, false)
}

/// The evidence of a hit for `hits show`: with `reveal`, the post text and matched words as
/// stored; without, masked by [`crate::redact`] (matched words are the masked text under
/// each finding's spans).
pub fn describe_hit_as(h: &HitRecord, reveal: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "hit {}  [{}]  severity {}", h.id, status_name(h.status), h.severity);
    let cats: Vec<&str> = h.categories.iter().map(|c| c.as_str()).collect();
    let _ = writeln!(s, "categories: {}", cats.join(", "));
    let _ = writeln!(
        s,
        "account:    {} ({}) on {} [{}]",
        one_line(&h.account_handle, 200),
        one_line(&h.account_display_name, 200),
        h.platform,
        h.account_platform_id
    );
    if let Some(url) = &h.profile_url {
        let _ = writeln!(s, "profile:    {}", one_line(url, 500));
    }
    let _ = writeln!(
        s,
        "identity:   {} (score {:.2}), force {}, role {}",
        h.identity.identity,
        h.identity.score,
        h.force.as_deref().unwrap_or("unknown"),
        h.identity.role.as_deref().unwrap_or("unknown")
    );
    for e in &h.identity.evidence {
        let _ = writeln!(s, "  identity evidence: {:?} {} \"{}\"", e.source, e.signal, one_line(&e.text, 200));
    }
    let _ = writeln!(
        s,
        "post:       {} created {} retrieved {}",
        h.post_platform_id,
        h.post_created_at.to_rfc3339(),
        h.retrieved_at.to_rfc3339()
    );
    if let Some(url) = &h.post_url {
        let _ = writeln!(s, "url:        {}", one_line(url, 500));
    }
    let _ = writeln!(s, "source:     {}", h.source);
    let redacted = (!reveal).then(|| crate::redact::redact(&h.text));
    let _ = writeln!(s, "findings:");
    for f in &h.classification.findings {
        let matched = match &redacted {
            None => f.matched.clone(),
            Some(r) => masked_matched(r, f),
        };
        let _ = writeln!(s, "  {} [{} / {}] \"{}\"", f.rule_id, f.category, f.severity, one_line(&matched, 200));
    }
    match &redacted {
        Some(r) if r.masked() > 0 => {
            let _ = writeln!(s, "text (personal data masked; `hits show {} --reveal` shows it and is logged):", h.id);
        }
        _ => {
            let _ = writeln!(s, "text:");
        }
    }
    let text = redacted.as_ref().map(|r| r.text.as_str()).unwrap_or(&h.text);
    for line in text.lines() {
        let clean: String = line.chars().map(|c| if c.is_control() && c != '\t' { ' ' } else { c }).collect();
        let _ = writeln!(s, "  | {clean}");
    }
    s
}

/// A finding's matched words as they read in the masked text: the masked text under each of
/// its spans, joined like [`crate::classify::Finding::matched`]. A finding without usable spans
/// (blanked by retention) is masked on its own.
fn masked_matched(r: &crate::redact::Redacted, f: &crate::classify::Finding) -> String {
    let parts: Vec<&str> =
        f.spans.iter().filter_map(|sp| r.text.get(r.map_span(sp.clone()))).map(str::trim).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        crate::redact::redact(&f.matched).text
    } else {
        parts.join(" … ")
    }
}

fn patterns_dir(config_path: Option<&Path>, explicit: Option<PathBuf>) -> Result<(PathBuf, Forces)> {
    match (explicit, config_path) {
        (Some(dir), Some(cfg)) => Ok((dir, load_config(Some(cfg))?.forces)),
        (Some(dir), None) => Ok((dir, Forces::embedded())),
        (None, Some(cfg)) => {
            let c = load_config(Some(cfg))?;
            Ok((c.patterns, c.forces))
        }
        (None, None) => Ok((PathBuf::from("patterns"), Forces::embedded())),
    }
}

fn patterns(config_path: Option<&Path>, cmd: PatternsCommand) -> Result<u8> {
    match cmd {
        PatternsCommand::Check(args) => {
            let (dir, forces) = patterns_dir(config_path, args.patterns)?;
            match Detector::load(&dir, &forces) {
                Ok(_) => {
                    println!("{}: all pattern files load", dir.display());
                    Ok(0)
                }
                Err(errors) => {
                    for e in &errors {
                        println!("{e}");
                    }
                    println!("{} error(s)", errors.len());
                    Ok(EXIT_FAILURE)
                }
            }
        }
        PatternsCommand::Test { dir, rule } => {
            let (dir, forces) = patterns_dir(config_path, dir.patterns)?;
            match crate::patterns::test_examples(&dir, &forces, rule.as_deref()) {
                Ok(report) => {
                    for f in &report.failures {
                        println!("FAIL {f}");
                    }
                    println!(
                        "{} rules, {} examples: {} passed, {} failed",
                        report.rules_checked,
                        report.examples_run,
                        report.examples_run - report.failures.len(),
                        report.failures.len()
                    );
                    if rule.is_some() && report.rules_checked == 0 {
                        bail!("no rule with id `{}` in {}", rule.unwrap_or_default(), dir.display());
                    }
                    Ok(if report.failures.is_empty() { 0 } else { EXIT_FAILURE })
                }
                Err(errors) => {
                    for e in &errors {
                        println!("{e}");
                    }
                    Ok(EXIT_FAILURE)
                }
            }
        }
    }
}

fn eval(config_path: Option<&Path>, args: EvalArgs) -> Result<u8> {
    let (dir, forces) = patterns_dir(config_path, args.dir.patterns)?;
    if let Some(old) = &args.compare {
        let report = crate::eval::compare(old, &dir, &args.corpus, &forces)?;
        print!("{report}");
        return Ok(0);
    }
    let detector = load_detector(&dir, &forces)?;
    let report = crate::eval::run(&args.corpus, &detector)?;
    print!("{report}");
    if let Some(path) = &args.predictions {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        report.write_predictions(&mut w)?;
        std::io::Write::flush(&mut w)?;
    }
    Ok(0)
}

async fn status(store: &Store) -> Result<u8> {
    let st = store.status().await?;
    println!("database: {} bytes; hits not yet sent: {}", st.database_bytes, st.unsent_hits);
    println!("sources:");
    for s in &st.sources {
        let last_run = match (s.last_run_rate_limit_waits, s.last_run_opted_out) {
            (Some(waits), Some(opted_out)) => format!(
                "last run: {waits} rate-limit wait{}{}, {opted_out} opted out",
                if waits == 1 { "" } else { "s" },
                if waits > 0 { " (throttled)" } else { "" }
            ),
            _ => "last run: -".into(),
        };
        println!(
            "  {:<20} cursor {:<24} {} last success {:<25} last error {}",
            s.source,
            s.cursor.as_deref().map(|c| one_line(c, 24)).unwrap_or_else(|| "-".into()),
            last_run,
            s.last_success.map(|t| t.to_rfc3339()).unwrap_or_else(|| "never".into()),
            match (&s.last_error, s.last_error_at) {
                (Some(e), Some(at)) => format!("{} ({})", one_line(e, 120), at.to_rfc3339()),
                (Some(e), None) => one_line(e, 120),
                _ => "-".into(),
            }
        );
    }
    println!("recent runs:");
    for r in &st.runs {
        let total: u64 = r.summaries.iter().map(|s| s.hits).sum();
        let failed = r.summaries.iter().filter(|s| s.error.is_some()).count();
        let suppressed: u64 = r.summaries.iter().map(|s| s.suppressed).sum();
        let opted_out: u64 = r.summaries.iter().map(|s| s.opted_out).sum();
        let waits: u64 = r.summaries.iter().map(|s| s.rate_limit_waits).sum();
        println!(
            "  run {:<5} started {} {} hits {}, suppressed {}, opted out {}, rate-limit waits {}, failed sources {}",
            r.id,
            r.started_at.to_rfc3339(),
            r.finished_at.map(|t| format!("finished {}", t.to_rfc3339())).unwrap_or_else(|| "(did not finish)".into()),
            total,
            suppressed,
            opted_out,
            waits,
            failed
        );
    }
    Ok(0)
}
