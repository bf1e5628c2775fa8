//! Command line: parses arguments (clap), sets up logging, and calls the stages.
//!
//! Owns exit codes and everything printed for people. Exit codes: 0 success; 1 nothing could
//! run (bad config, pattern files or database); 2 some sources failed but the others' results
//! were stored, or some digest routes could not be sent; 3 another run holds the lock.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::forces::Forces;
use crate::model::Category;
use crate::patterns::Detector;
use crate::store::{HitFilter, HitRecord, ReviewStatus, Store};

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
        let mut path = config.database.clone().into_os_string();
        path.push(".lock");
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
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
    /// `scan` then `digest`: the one command a daily timer calls.
    Run(DigestArgs),
    /// List, show and review stored hits.
    #[command(subcommand)]
    Hits(HitsCommand),
    /// Check and test the pattern files operators edit.
    #[command(subcommand)]
    Patterns(PatternsCommand),
    /// Measure detection on a labelled corpus (SPEC.md format) without touching any database.
    Eval(EvalArgs),
    /// Last scan runs, each source's cursor and last error, hits not yet sent, database size.
    Status,
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
    /// Show one hit with all its evidence.
    Show {
        /// Hit id (from `hits list`).
        id: i64,
    },
    /// Record a review decision for a hit.
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
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
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
            Ok(scan_code.max(digest_code))
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
    }
}

async fn scan(config: &Config) -> Result<u8> {
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
    println!("{:<20} {:>8} {:>10} {:>8} {:>6} {:>6}  error", "source", "accounts", "identified", "posts", "hits", "errors");
    for s in &report.summaries {
        println!(
            "{:<20} {:>8} {:>10} {:>8} {:>6} {:>6}  {}",
            s.source,
            s.accounts_seen,
            s.identified,
            s.posts_read,
            s.hits,
            s.errors,
            s.error.as_deref().unwrap_or("-")
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

async fn hits(config: &Config, store: &Store, cmd: HitsCommand) -> Result<u8> {
    match cmd {
        HitsCommand::List(args) => {
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
            let filter =
                HitFilter { status: args.status, force, category: args.category, since: args.since, limit: Some(args.limit) };
            let hits = store.list_hits(&filter).await?;
            match args.format {
                OutputFormat::Json => {
                    for h in &hits {
                        println!("{}", serde_json::to_string(h)?);
                    }
                }
                OutputFormat::Table => print_hit_table(&hits),
            }
            Ok(0)
        }
        HitsCommand::Show { id } => {
            let hit = store.get_hit(id).await?;
            print!("{}", describe_hit(&hit));
            Ok(0)
        }
        HitsCommand::Review { id, status, note, reviewer } => {
            let reviewer = reviewer.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| "unknown".into());
            store.review_hit(id, status.into(), &note, &reviewer).await?;
            println!("hit {id}: {} by {reviewer}", status_name(status.into()));
            Ok(0)
        }
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

fn print_hit_table(hits: &[HitRecord]) {
    println!(
        "{:>6}  {:<10} {:<8} {:<16} {:<28} {:<24} {:<30} excerpt",
        "id", "status", "severity", "posted", "force", "account", "categories"
    );
    for h in hits {
        let cats: Vec<&str> = h.categories.iter().map(|c| c.as_str()).collect();
        println!(
            "{:>6}  {:<10} {:<8} {:<16} {:<28} {:<24} {:<30} {}",
            h.id,
            status_name(h.status),
            h.severity.as_str(),
            h.post_created_at.format("%Y-%m-%d %H:%M"),
            one_line(h.force.as_deref().unwrap_or("(unknown)"), 28),
            one_line(&h.account_handle, 24),
            cats.join(","),
            one_line(&h.text, 60)
        );
    }
    if hits.is_empty() {
        println!("(no hits)");
    }
}

/// The full evidence of a hit, for `hits show`.
pub fn describe_hit(h: &HitRecord) -> String {
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
    let _ = writeln!(s, "findings:");
    for f in &h.classification.findings {
        let _ = writeln!(s, "  {} [{} / {}] \"{}\"", f.rule_id, f.category, f.severity, one_line(&f.matched, 200));
    }
    let _ = writeln!(s, "text:");
    for line in h.text.lines() {
        let clean: String = line.chars().map(|c| if c.is_control() && c != '\t' { ' ' } else { c }).collect();
        let _ = writeln!(s, "  | {clean}");
    }
    s
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
        println!(
            "  {:<20} cursor {:<24} last success {:<25} last error {}",
            s.source,
            s.cursor.as_deref().map(|c| one_line(c, 24)).unwrap_or_else(|| "-".into()),
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
        println!(
            "  run {:<5} started {} {} hits {}, failed sources {}",
            r.id,
            r.started_at.to_rfc3339(),
            r.finished_at.map(|t| format!("finished {}", t.to_rfc3339())).unwrap_or_else(|| "(did not finish)".into()),
            total,
            failed
        );
    }
    Ok(0)
}
