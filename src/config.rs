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
}

impl SourceConfig {
    pub fn kind_name(&self) -> &'static str {
        match self {
            SourceConfig::Replay(_) => "replay",
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
    File { outbox: PathBuf },
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
}
