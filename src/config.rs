//! Config: the operator's TOML file, parsed and then validated into runtime types.
//!
//! Owns every key of `config/example.toml`: database path, pattern directory, forces list,
//! sources, mail transport, routing and retention. Loading collects *every* error (unknown keys,
//! wrong types, missing values, routes to unknown forces) with the key and line before failing.
//! Secrets are never read from the file: the file names the environment variable that holds
//! each one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::forces::Forces;

/// A fully validated configuration. Relative paths are already resolved against the directory
/// of the config file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from (for messages).
    pub path: PathBuf,
    pub database: PathBuf,
    pub patterns: PathBuf,
    pub forces: Forces,
    /// Contact shown in the User-Agent of HTTP requests.
    pub operator_contact: String,
    pub sources: Vec<SourceEntry>,
    pub mail: MailConfig,
    pub routing: Routing,
    pub retention: Retention,
    pub digest: DigestSettings,
}

/// One configured source: its name, whether it runs, and its kind's settings.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    pub name: String,
    pub enabled: bool,
    pub kind: SourceConfig,
}

/// The closed registry of source kinds: a new platform is one new variant and one new file in
/// `src/sources/`.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Replay(crate::sources::replay::ReplayConfig),
    /// One Mastodon instance.
    Mastodon(crate::sources::mastodon::MastodonConfig),
    /// RSS / Atom / JSON feeds, each feed one account.
    Rss(crate::sources::rss::RssConfig),
    /// Reddit through its OAuth API (app-only token).
    Reddit(crate::sources::reddit::RedditConfig),
    /// Bluesky accounts, read through an AppView.
    Bluesky(crate::sources::bluesky::BlueskyConfig),
    /// The Bluesky network as it happens, from a Jetstream server.
    Jetstream(crate::sources::jetstream::JetstreamConfig),
}

impl SourceConfig {
    pub fn kind_name(&self) -> &'static str {
        match self {
            SourceConfig::Replay(_) => "replay",
            SourceConfig::Mastodon(_) => "mastodon",
            SourceConfig::Rss(_) => "rss",
            SourceConfig::Reddit(_) => "reddit",
            SourceConfig::Bluesky(_) => "bluesky",
            SourceConfig::Jetstream(_) => "jetstream",
        }
    }
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    /// RFC 5322 mailbox, e.g. `Exposure Monitor <monitor@example.police.uk>`.
    pub from: String,
    pub transport: TransportConfig,
}

#[derive(Debug, Clone)]
pub enum TransportConfig {
    /// Write each message as an `.eml` file into this directory.
    File {
        outbox: PathBuf,
    },
    Smtp(SmtpConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: TlsMode,
    pub username: Option<String>,
    /// Name of the environment variable holding the password (never the password itself).
    pub password_env: Option<String>,
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
    /// Extra PEM CA certificate to trust (e.g. a force's internal CA).
    pub ca_file: Option<PathBuf>,
}

fn default_smtp_port() -> u16 {
    587
}
fn default_smtp_timeout() -> u64 {
    30
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// STARTTLS required (the default).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
    /// No encryption: only when the config says so explicitly.
    None,
}

/// Where each force's hits go.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    /// Canonical force name → PSD recipients.
    pub forces: BTreeMap<String, Vec<String>>,
    /// Recipients for hits whose force is unknown or has no route of its own.
    pub default: Vec<String>,
}

impl Routing {
    /// The route key and recipients for a hit's force.
    pub fn route_for(&self, force: Option<&str>) -> (Option<&str>, &[String]) {
        match force.and_then(|f| self.forces.get_key_value(f)) {
            Some((k, v)) => (Some(k.as_str()), v.as_slice()),
            None => (None, self.default.as_slice()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Delete post text and evidence of dismissed hits after this many days.
    pub dismissed_days: u32,
    /// Delete every hit after this many days.
    pub days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSettings {
    /// Send a short "nothing found" message when there are no new hits.
    pub send_empty: bool,
    pub subject_prefix: String,
    /// Most hits shown in detail per route and run (`digest.max_hits_per_route`): the most
    /// severe first, then the longest waiting. The rest stay unsent for later digests and the
    /// message summarises them.
    pub max_hits_per_route: usize,
}

/// Default of `digest.max_hits_per_route`: one message's worth.
pub const DEFAULT_MAX_HITS_PER_ROUTE: usize = 150;
/// Largest `digest.max_hits_per_route` accepted (a route's hits are split over messages of at
/// most 150 hits, so this bounds one run to 14 messages per route).
pub const MAX_HITS_PER_ROUTE_LIMIT: usize = 2000;

/// One problem in a config file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `sources[2].dir` or `mail.smtp.port`.
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: `{}`: {}", self.key, self.message),
            None => write!(f, "`{}`: {}", self.key, self.message),
        }
    }
}

/// Every problem found in a config file; loading fails with all of them at once.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub path: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.errors.len();
        write!(f, "{}: {n} error{} in config", self.path.display(), if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            write!(f, "\n  {}: {e}", self.path.display())?;
        }
        Ok(())
    }
}

use toml::Spanned;

type SpannedTable = std::collections::BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    database: Option<PathBuf>,
    patterns: Option<PathBuf>,
    forces: Option<PathBuf>,
    operator_contact: Option<String>,
    #[serde(default)]
    sources: Vec<Spanned<SpannedTable>>,
    mail: Option<Spanned<RawMail>>,
    routing: Option<Spanned<RawRouting>>,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    digest: RawDigest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    from: Spanned<String>,
    #[serde(default = "default_transport")]
    transport: Spanned<String>,
    outbox: Option<PathBuf>,
    smtp: Option<SmtpConfig>,
}

fn default_transport() -> Spanned<String> {
    Spanned::new(0..0, "file".to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    #[serde(default)]
    default: Vec<Spanned<String>>,
    #[serde(default)]
    forces: std::collections::BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    #[serde(default = "default_retention_days")]
    days: u32,
    #[serde(default = "default_dismissed_days")]
    dismissed_days: u32,
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention { days: default_retention_days(), dismissed_days: default_dismissed_days() }
    }
}

fn default_retention_days() -> u32 {
    365
}
fn default_dismissed_days() -> u32 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDigest {
    #[serde(default = "yes")]
    send_empty: bool,
    #[serde(default = "default_subject_prefix")]
    subject_prefix: String,
    max_hits_per_route: Option<Spanned<i64>>,
}

impl Default for RawDigest {
    fn default() -> Self {
        RawDigest { send_empty: true, subject_prefix: default_subject_prefix(), max_hits_per_route: None }
    }
}

fn yes() -> bool {
    true
}
fn default_subject_prefix() -> String {
    "[exposure-monitor]".to_string()
}

/// Default database file name, relative to the config file's directory.
pub const DEFAULT_DATABASE: &str = "exposure-monitor.db";
/// Default outbox directory of the `file` transport, relative to the config file's directory.
pub const DEFAULT_OUTBOX: &str = "outbox";

impl Config {
    /// Read, parse and validate a config file. Relative paths in it are resolved against the
    /// file's directory, so the same file works from cron, systemd or a shell.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            path: path.to_path_buf(),
            errors: vec![ConfigError { key: "(file)".into(), line: None, message: e.to_string() }],
        })?;
        Config::from_toml(path, &text)
    }

    /// Parse and validate config text; `path` names the file and anchors relative paths.
    pub fn from_toml(path: &std::path::Path, text: &str) -> Result<Config, ConfigErrors> {
        let fail = |errors| ConfigErrors { path: path.to_path_buf(), errors };
        let raw: RawConfig = toml::from_str(text).map_err(|e| fail(vec![toml_error(text, &e)]))?;
        let base = path.parent().map(|p| if p.as_os_str().is_empty() { std::path::Path::new(".") } else { p });
        let base = base.unwrap_or(std::path::Path::new(".")).to_path_buf();
        let mut v = Validator { text, errors: vec![] };
        let cfg = v.validate(path, &base, raw);
        if v.errors.is_empty() {
            Ok(cfg.expect("a config without errors"))
        } else {
            v.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            Err(fail(v.errors))
        }
    }

    /// Enabled sources, in config order.
    pub fn enabled_sources(&self) -> impl Iterator<Item = &SourceEntry> {
        self.sources.iter().filter(|s| s.enabled)
    }
}

/// Turn a toml/serde error into a ConfigError with the line of its span and the key it names.
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().to_string();
    ConfigError {
        key: backticked(&message).unwrap_or("(document)").to_string(),
        line: e.span().map(|s| line_of(text, s.start)),
        message,
    }
}

/// The first `word` in backticks of a serde message (the key it complains about).
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

struct Validator<'a> {
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn err(&mut self, key: impl Into<String>, span: Option<std::ops::Range<usize>>, message: impl Into<String>) {
        let line = span.filter(|s| s.end > 0).map(|s| line_of(self.text, s.start));
        self.errors.push(ConfigError { key: key.into(), line, message: message.into() });
    }

    fn validate(&mut self, path: &std::path::Path, base: &std::path::Path, raw: RawConfig) -> Option<Config> {
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let forces = match raw.forces {
            None => Forces::embedded(),
            Some(p) => match Forces::load(&resolve(p.clone())) {
                Ok(f) => f,
                Err(e) => {
                    self.err("forces", None, format!("cannot load forces file {}: {e:#}", p.display()));
                    Forces::embedded()
                }
            },
        };
        let sources = self.sources(raw.sources, &resolve);
        let mail = match raw.mail {
            Some(m) => self.mail(m, &resolve),
            None => {
                self.err("mail", None, "missing required table [mail] (at least `from`)");
                None
            }
        };
        let routing = match raw.routing {
            Some(r) => self.routing(r, &forces),
            None => {
                self.err("routing", None, "missing required table [routing] (at least `default`)");
                Routing::default()
            }
        };
        if raw.retention.dismissed_days > raw.retention.days {
            self.err(
                "retention.dismissed_days",
                None,
                format!(
                    "dismissed hits ({} days) cannot be kept longer than every hit ({} days)",
                    raw.retention.dismissed_days, raw.retention.days
                ),
            );
        }
        let max_hits_per_route = match &raw.digest.max_hits_per_route {
            None => DEFAULT_MAX_HITS_PER_ROUTE,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(v) if (1..=MAX_HITS_PER_ROUTE_LIMIT).contains(&v) => v,
                _ => {
                    self.err(
                        "digest.max_hits_per_route",
                        Some(n.span()),
                        format!(
                            "must be a whole number from 1 to {MAX_HITS_PER_ROUTE_LIMIT} (hits shown per route and run), not {}",
                            n.get_ref()
                        ),
                    );
                    DEFAULT_MAX_HITS_PER_ROUTE
                }
            },
        };
        let cfg = Config {
            path: path.to_path_buf(),
            database: resolve(raw.database.unwrap_or_else(|| DEFAULT_DATABASE.into())),
            patterns: resolve(raw.patterns.unwrap_or_else(|| "patterns".into())),
            forces,
            operator_contact: raw.operator_contact.unwrap_or_default(),
            sources,
            mail: mail?,
            routing,
            retention: Retention { days: raw.retention.days, dismissed_days: raw.retention.dismissed_days },
            digest: DigestSettings {
                send_empty: raw.digest.send_empty,
                subject_prefix: raw.digest.subject_prefix,
                max_hits_per_route,
            },
        };
        Some(cfg)
    }

    fn sources(&mut self, raw: Vec<Spanned<SpannedTable>>, resolve: &dyn Fn(PathBuf) -> PathBuf) -> Vec<SourceEntry> {
        let mut out: Vec<SourceEntry> = vec![];
        for (i, entry) in raw.into_iter().enumerate() {
            let entry_span = entry.span();
            let mut table = entry.into_inner();
            let mut take = |k: &str| {
                let key = table.keys().find(|key| key.get_ref() == k).cloned();
                key.and_then(|key| table.remove(&key))
            };
            let name = take("name");
            let kind = take("kind");
            let enabled = take("enabled");
            let at = |k: &str| format!("sources[{i}].{k}");
            let name = match name.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
                Some((Some(n), _)) if !n.trim().is_empty() => n.to_string(),
                Some((_, span)) => {
                    self.err(at("name"), Some(span), "must be a non-empty string");
                    continue;
                }
                None => {
                    self.err(at("name"), Some(entry_span.clone()), "missing required key `name`");
                    continue;
                }
            };
            if out.iter().any(|s| s.name == name) {
                self.err(at("name"), Some(entry_span.clone()), format!("duplicate source name `{name}`"));
            }
            let enabled = match enabled {
                None => true,
                Some(v) => match v.get_ref().as_bool() {
                    Some(b) => b,
                    None => {
                        self.err(at("enabled"), Some(v.span()), "must be true or false");
                        true
                    }
                },
            };
            let Some(kind) = kind else {
                self.err(at("kind"), Some(entry_span.clone()), format!("source `{name}`: missing required key `kind`"));
                continue;
            };
            let Some(kind_name) = kind.get_ref().as_str().map(str::to_string) else {
                self.err(at("kind"), Some(kind.span()), "must be a string");
                continue;
            };
            let spans: Vec<(String, std::ops::Range<usize>)> = table.keys().map(|k| (k.get_ref().clone(), k.span())).collect();
            let settings: toml::Table = table.into_iter().map(|(k, v)| (k.into_inner(), v.into_inner())).collect();
            let parsed = parse_source_kind(&kind_name, settings, resolve);
            match parsed {
                Ok(kind) => out.push(SourceEntry { name, enabled, kind }),
                Err(KindError::Unknown) => self.err(
                    at("kind"),
                    Some(kind.span()),
                    format!("source `{name}`: unknown kind `{kind_name}` (known: {})", KNOWN_KINDS.join(", ")),
                ),
                Err(KindError::Settings(e)) => {
                    let message = e.message().to_string();
                    let key = backticked(&message).map(str::to_string);
                    let span = key
                        .as_ref()
                        .and_then(|k| spans.iter().find(|(name, _)| name == k).map(|(_, s)| s.clone()))
                        .unwrap_or(entry_span.clone());
                    self.err(
                        at(key.as_deref().unwrap_or("")).trim_end_matches('.').to_string(),
                        Some(span),
                        format!("source `{name}` ({kind_name}): {message}"),
                    );
                }
            }
        }
        out
    }

    fn mail(&mut self, raw: Spanned<RawMail>, resolve: &dyn Fn(PathBuf) -> PathBuf) -> Option<MailConfig> {
        let span = raw.span();
        let raw = raw.into_inner();
        if let Err(e) = raw.from.get_ref().parse::<lettre::message::Mailbox>() {
            self.err("mail.from", Some(raw.from.span()), format!("`{}` is not a mail address: {e}", raw.from.get_ref()));
        }
        let transport = match raw.transport.get_ref().as_str() {
            "file" => {
                if raw.smtp.is_some() {
                    self.err("mail.smtp", Some(span), "[mail.smtp] is set but `transport` is \"file\"");
                }
                TransportConfig::File { outbox: resolve(raw.outbox.unwrap_or_else(|| DEFAULT_OUTBOX.into())) }
            }
            "smtp" => match raw.smtp {
                Some(mut smtp) => {
                    smtp.ca_file = smtp.ca_file.map(resolve);
                    if smtp.username.is_some() != smtp.password_env.is_some() {
                        self.err("mail.smtp", Some(span.clone()), "`username` and `password_env` go together");
                    }
                    if let Some(var) = &smtp.password_env {
                        if var.is_empty() || var.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                            self.err(
                                "mail.smtp.password_env",
                                Some(span.clone()),
                                "must be the NAME of an environment variable (letters, digits, _), not a password",
                            );
                        }
                    }
                    TransportConfig::Smtp(smtp)
                }
                None => {
                    self.err("mail.smtp", Some(raw.transport.span()), "`transport = \"smtp\"` needs a [mail.smtp] table");
                    return None;
                }
            },
            other => {
                self.err(
                    "mail.transport",
                    Some(raw.transport.span()),
                    format!("unknown transport `{other}` (known: file, smtp)"),
                );
                return None;
            }
        };
        Some(MailConfig { from: raw.from.into_inner(), transport })
    }

    fn routing(&mut self, raw: Spanned<RawRouting>, forces: &Forces) -> Routing {
        let span = raw.span();
        let raw = raw.into_inner();
        let mut routing = Routing::default();
        let check_addresses = |v: &mut Self, key: &str, list: Vec<Spanned<String>>| -> Vec<String> {
            let mut out = vec![];
            for addr in list {
                match addr.get_ref().parse::<lettre::message::Mailbox>() {
                    Ok(_) => out.push(addr.into_inner()),
                    Err(e) => v.err(key, Some(addr.span()), format!("`{}` is not a mail address: {e}", addr.get_ref())),
                }
            }
            out
        };
        routing.default = check_addresses(self, "routing.default", raw.default);
        if routing.default.is_empty() {
            self.err("routing.default", Some(span), "needs at least one recipient: hits whose force is unknown go there");
        }
        for (force, list) in raw.forces {
            let key = format!("routing.forces.\"{}\"", force.get_ref());
            let canonical = forces.canonical(force.get_ref()).map(str::to_string);
            let addrs = check_addresses(self, &key, list);
            match canonical {
                None => self.err(
                    &key,
                    Some(force.span()),
                    format!("`{}` is not a known force name or alias (see the forces list)", force.get_ref()),
                ),
                Some(_) if addrs.is_empty() => self.err(&key, Some(force.span()), "needs at least one recipient"),
                Some(name) => {
                    if routing.forces.insert(name.clone(), addrs).is_some() {
                        self.err(&key, Some(force.span()), format!("a second route for `{name}`"));
                    }
                }
            }
        }
        routing
    }
}

enum KindError {
    Unknown,
    Settings(toml::de::Error),
}

/// Every source kind this build knows, for messages.
pub const KNOWN_KINDS: &[&str] = &["replay", "mastodon", "rss", "reddit", "bluesky", "jetstream"];

fn parse_source_kind(kind: &str, settings: toml::Table, resolve: &dyn Fn(PathBuf) -> PathBuf) -> Result<SourceConfig, KindError> {
    use serde::de::Deserialize as _;
    let value = toml::Value::Table(settings);
    match kind {
        "replay" => {
            let mut cfg = crate::sources::replay::ReplayConfig::deserialize(value).map_err(KindError::Settings)?;
            cfg.dir = resolve(cfg.dir);
            Ok(SourceConfig::Replay(cfg))
        }
        "mastodon" => {
            let mut cfg = crate::sources::mastodon::MastodonConfig::deserialize(value).map_err(KindError::Settings)?;
            // Semantic checks name their key in backticks, so the error gets its key and line.
            cfg.validate().map_err(|m| KindError::Settings(<toml::de::Error as serde::de::Error>::custom(m)))?;
            Ok(SourceConfig::Mastodon(cfg))
        }
        "rss" => {
            let mut cfg = crate::sources::rss::RssConfig::deserialize(value).map_err(KindError::Settings)?;
            cfg.validate().map_err(|m| KindError::Settings(<toml::de::Error as serde::de::Error>::custom(m)))?;
            Ok(SourceConfig::Rss(cfg))
        }
        "reddit" => {
            let mut cfg = crate::sources::reddit::RedditConfig::deserialize(value).map_err(KindError::Settings)?;
            cfg.validate().map_err(|m| KindError::Settings(<toml::de::Error as serde::de::Error>::custom(m)))?;
            Ok(SourceConfig::Reddit(cfg))
        }
        "bluesky" => {
            let mut cfg = crate::sources::bluesky::BlueskyConfig::deserialize(value).map_err(KindError::Settings)?;
            cfg.validate().map_err(|m| KindError::Settings(<toml::de::Error as serde::de::Error>::custom(m)))?;
            Ok(SourceConfig::Bluesky(cfg))
        }
        "jetstream" => {
            let cfg = crate::sources::jetstream::JetstreamConfig::deserialize(value).map_err(KindError::Settings)?;
            cfg.validate().map_err(|m| KindError::Settings(<toml::de::Error as serde::de::Error>::custom(m)))?;
            Ok(SourceConfig::Jetstream(cfg))
        }
        _ => Err(KindError::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const GOOD: &str = r#"
database = "state/monitor.db"
operator_contact = "psd-monitoring@example.police.uk"

[[sources]]
name = "demo"
kind = "replay"
dir = "../demo"

[mail]
from = "Exposure Monitor <monitor@example.police.uk>"

[routing]
default = ["psd-triage@example.police.uk"]
"#;

    fn load(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_toml(Path::new("/etc/em/config.toml"), text)
    }

    #[test]
    fn good_config_resolves_paths_and_applies_defaults() {
        let cfg = load(GOOD).unwrap();
        assert_eq!(cfg.database, Path::new("/etc/em/state/monitor.db"));
        assert_eq!(cfg.patterns, Path::new("/etc/em/patterns"));
        let SourceConfig::Replay(r) = &cfg.sources[0].kind else { panic!("replay expected") };
        assert_eq!(r.dir, Path::new("/etc/em/../demo"));
        assert!(cfg.sources[0].enabled);
        match &cfg.mail.transport {
            TransportConfig::File { outbox } => assert_eq!(outbox, Path::new("/etc/em/outbox")),
            other => panic!("{other:?}"),
        }
        assert_eq!(cfg.retention, Retention { days: 365, dismissed_days: 30 });
        assert!(cfg.digest.send_empty);
    }

    #[test]
    fn digest_cap_defaults_and_is_validated() {
        assert_eq!(load(GOOD).unwrap().digest.max_hits_per_route, DEFAULT_MAX_HITS_PER_ROUTE);
        let with = |v: &str| format!("{GOOD}\n[digest]\nmax_hits_per_route = {v}\n");
        assert_eq!(load(&with("40")).unwrap().digest.max_hits_per_route, 40);
        for bad in ["0", "-5", "2001"] {
            let err = load(&with(bad)).unwrap_err();
            assert_eq!(err.errors.len(), 1, "{err}");
            let e = &err.errors[0];
            assert_eq!(e.key, "digest.max_hits_per_route", "{e}");
            assert_eq!(e.line, Some(GOOD.lines().count() + 3), "{e}");
            assert!(e.message.contains("from 1 to 2000") && e.message.contains(bad), "{e}");
        }
        let err = load(&with("\"lots\"")).unwrap_err();
        assert_eq!(err.errors[0].line, Some(GOOD.lines().count() + 3), "{err}");
        assert!(err.to_string().contains("\"lots\""), "{err}");
    }

    #[test]
    fn unknown_top_level_key_names_key_and_line() {
        let text = GOOD.replace("operator_contact", "operator_contakt");
        let err = load(&text).unwrap_err();
        assert_eq!(err.errors.len(), 1);
        let e = &err.errors[0];
        assert_eq!(e.key, "operator_contakt");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(err.to_string().contains("/etc/em/config.toml"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let text = GOOD.replace("[mail]", "[retention]\ndays = \"forever\"\n\n[mail]");
        let err = load(&text).unwrap_err();
        let e = &err.errors[0];
        assert_eq!(e.line, Some(11), "{e}");
        assert!(e.message.contains("invalid type"), "{e}");
    }

    #[test]
    fn every_source_and_semantic_error_is_reported_at_once() {
        let text = r#"
[[sources]]
name = "a"
kind = "replay"
dirr = "x"

[[sources]]
name = "b"
kind = "myspace"

[[sources]]
kind = "replay"
dir = "y"

[mail]
from = "not an address"
transport = "smtp"

[routing]
default = []
"#;
        let err = load(text).unwrap_err();
        let got: Vec<(String, Option<usize>)> = err.errors.iter().map(|e| (e.key.clone(), e.line)).collect();
        assert_eq!(
            got,
            vec![
                ("sources[0].dirr".to_string(), Some(5)),
                ("sources[1].kind".to_string(), Some(9)),
                ("sources[2].name".to_string(), Some(11)),
                ("mail.from".to_string(), Some(16)),
                ("mail.smtp".to_string(), Some(17)),
                ("routing.default".to_string(), Some(19)),
            ],
            "{err}"
        );
        assert!(err.errors[1].message.contains("unknown kind `myspace`"));
    }

    #[test]
    fn smtp_password_comes_from_an_environment_variable_name() {
        let text = GOOD.replace(
            "[routing]",
            "transport = \"smtp\"\n[mail.smtp]\nhost = \"mail.example\"\nusername = \"u\"\npassword_env = \"hunter2!\"\n\n[routing]",
        );
        let err = load(&text).unwrap_err();
        assert_eq!(err.errors[0].key, "mail.smtp.password_env", "{err}");
        let ok = GOOD.replace(
            "[routing]",
            "transport = \"smtp\"\n[mail.smtp]\nhost = \"mail.example\"\nusername = \"u\"\npassword_env = \"EM_SMTP_PASSWORD\"\n\n[routing]",
        );
        let cfg = load(&ok).unwrap();
        let TransportConfig::Smtp(smtp) = &cfg.mail.transport else { panic!() };
        assert_eq!((smtp.port, smtp.tls, smtp.timeout_secs), (587, TlsMode::Starttls, 30));
    }

    #[test]
    fn routes_use_canonical_force_names_and_reject_unknown_forces() {
        let text = GOOD.replace(
            "[routing]\ndefault = [\"psd-triage@example.police.uk\"]",
            "[routing]\ndefault = [\"psd-triage@example.police.uk\"]\n[routing.forces]\n\"GMP\" = [\"psd@gmp.example\"]\n\"Gotham PD\" = [\"bat@example\"]",
        );
        let err = load(&text).unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        assert!(err.errors[0].key.contains("Gotham PD"));
        let ok = text.replace("\"Gotham PD\" = [\"bat@example\"]", "");
        let cfg = load(&ok).unwrap();
        let (route, to) = cfg.routing.route_for(Some("Greater Manchester Police"));
        assert_eq!((route, to), (Some("Greater Manchester Police"), &["psd@gmp.example".to_string()][..]));
        let (route, to) = cfg.routing.route_for(Some("Kent Police"));
        assert_eq!((route, to), (None, &["psd-triage@example.police.uk".to_string()][..]));
    }
}
