//! Transports: hand a finished message to the `file` outbox or to an SMTP server.
//!
//! `file` writes each message as an RFC 5322 `.eml` file, atomically (a temporary file, synced,
//! then renamed), so a reader of the outbox never sees half a message. `smtp` uses lettre's async
//! transport with STARTTLS required or implicit TLS (plain only when the config says `none`),
//! AUTH with the password read from the environment variable the config names (never logged),
//! a timeout, and an optional extra CA. Transient failures (4xx replies, timeouts, dropped
//! connections) are retried with exponential backoff; permanent ones (5xx, TLS, auth) are not.
//! This module never decides what is sent or marks anything sent; the caller does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailConfig, SmtpConfig, TlsMode, TransportConfig};

/// Why a transport could not be set up from the config.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("mail.smtp.password_env names `{var}`, but that environment variable is not set")]
    PasswordMissing { var: String },
    #[error("mail.smtp.{set} is set but mail.smtp.{missing} is not: AUTH needs both a username and password_env")]
    HalfCredentials { set: &'static str, missing: &'static str },
    #[error("mail.smtp.ca_file {path}: {detail}")]
    CaFile { path: PathBuf, detail: String },
    #[error("mail.smtp: TLS setup for {host}: {detail}")]
    Tls { host: String, detail: String },
}

/// Why a message was not delivered. Its hits stay unsent either way.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server refused for good (5xx), or TLS / authentication failed: retrying will not help.
    #[error("permanent failure{}: {message}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Permanent { code: Option<String>, message: String },
    /// Still failing after `attempts` tries (4xx replies, timeouts, connection errors).
    #[error("temporary failure, gave up after {attempts} attempt{}: {message}", if *attempts == 1 { "" } else { "s" })]
    Transient { attempts: u32, code: Option<String>, message: String },
    #[error("outbox {path}: {source}")]
    Outbox { path: PathBuf, source: std::io::Error },
}

impl SendError {
    /// The SMTP reply code, when the server gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            SendError::Permanent { code, .. } | SendError::Transient { code, .. } => code.as_deref(),
            SendError::Outbox { .. } => None,
        }
    }
}

/// How transient failures are retried: `attempts` tries in all, waiting `base_delay`, then
/// twice that, and so on between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 4, base_delay: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// The wait before attempt `n + 1` (after the `n`-th failure, `n` from 1).
    pub fn delay_after(&self, n: u32) -> Duration {
        self.base_delay.saturating_mul(1u32 << (n - 1).min(16))
    }
}

/// A ready transport.
pub enum Transport {
    File { outbox: PathBuf },
    Smtp { smtp: AsyncSmtpTransport<Tokio1Executor>, retry: RetryPolicy, server: String },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        match self {
            Transport::File { outbox } => write!(f, "file outbox {}", outbox.display()),
            Transport::Smtp { server, .. } => write!(f, "smtp {server}"),
        }
    }
}

impl Transport {
    /// Build the configured transport. SMTP credentials are read from the environment here.
    pub fn from_config(mail: &MailConfig) -> Result<Transport, SetupError> {
        match &mail.transport {
            TransportConfig::File { outbox } => Ok(Transport::File { outbox: outbox.clone() }),
            TransportConfig::Smtp(smtp) => Transport::smtp(smtp, RetryPolicy::default()),
        }
    }

    /// An SMTP transport with an explicit retry policy.
    pub fn smtp(cfg: &SmtpConfig, retry: RetryPolicy) -> Result<Transport, SetupError> {
        let credentials = match (&cfg.username, &cfg.password_env) {
            (Some(user), Some(var)) => match std::env::var(var) {
                Ok(pw) if !pw.is_empty() => Some(Credentials::new(user.clone(), pw)),
                _ => return Err(SetupError::PasswordMissing { var: var.clone() }),
            },
            (Some(_), None) => return Err(SetupError::HalfCredentials { set: "username", missing: "password_env" }),
            (None, Some(_)) => return Err(SetupError::HalfCredentials { set: "password_env", missing: "username" }),
            (None, None) => None,
        };
        let tls = match cfg.tls {
            TlsMode::None => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(cfg.host.clone());
                if let Some(ca) = &cfg.ca_file {
                    let pem = std::fs::read(ca).map_err(|e| SetupError::CaFile { path: ca.clone(), detail: e.to_string() })?;
                    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                        return Err(SetupError::CaFile {
                            path: ca.clone(),
                            detail: "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
                        });
                    }
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|e| SetupError::CaFile { path: ca.clone(), detail: format!("not a PEM certificate: {e}") })?;
                    params = params.add_root_certificate(cert);
                }
                let params = params.build().map_err(|e| SetupError::Tls { host: cfg.host.clone(), detail: e.to_string() })?;
                if mode == TlsMode::Implicit {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(cfg.timeout_secs.max(1))));
        if let Some(c) = credentials {
            builder = builder.credentials(c);
        }
        let mode = match cfg.tls {
            TlsMode::Starttls => "STARTTLS",
            TlsMode::Implicit => "implicit TLS",
            TlsMode::None => "no TLS",
        };
        Ok(Transport::Smtp { smtp: builder.build(), retry, server: format!("{}:{} ({mode})", cfg.host, cfg.port) })
    }

    /// Deliver one message. `name` (e.g. the route) goes into the `.eml` file name.
    pub async fn send(&self, msg: &Message, name: &str) -> Result<Delivered, SendError> {
        match self {
            Transport::File { outbox } => write_eml(outbox, name, &msg.formatted()).map(Delivered::File),
            Transport::Smtp { smtp, retry, .. } => {
                send_smtp(smtp, msg, *retry).await.map(|attempts| Delivered::Smtp { attempts })
            }
        }
    }
}

/// Where a message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    File(PathBuf),
    Smtp { attempts: u32 },
}

async fn send_smtp(smtp: &AsyncSmtpTransport<Tokio1Executor>, msg: &Message, retry: RetryPolicy) -> Result<u32, SendError> {
    let attempts = retry.attempts.max(1);
    let mut n = 0;
    loop {
        n += 1;
        match smtp.send(msg.clone()).await {
            Ok(_) => return Ok(n),
            Err(e) => {
                let code = e.status().map(|c| c.to_string());
                let message = error_chain(&e);
                let transient = e.is_transient() || e.is_timeout() || is_connection_error(&e);
                if !transient {
                    return Err(SendError::Permanent { code, message });
                }
                if n >= attempts {
                    return Err(SendError::Transient { attempts: n, code, message });
                }
                let wait = retry.delay_after(n);
                tracing::warn!(attempt = n, wait_ms = wait.as_millis() as u64, error = %message, "temporary SMTP failure, retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Network-level failures that may well pass (refused, reset, closed, unreachable): not a
/// reply, not TLS. A certificate the TLS layer refuses arrives as an I/O error of kind
/// `InvalidData`, which is not retried: it will fail the same way every time.
fn is_connection_error(e: &lettre::transport::smtp::Error) -> bool {
    use std::io::ErrorKind::*;
    if e.is_response() || e.is_permanent() || e.is_tls() || e.is_client() {
        return false;
    }
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
                    | UnexpectedEof
                    | Interrupted
                    | AddrNotAvailable
                    | HostUnreachable
                    | NetworkUnreachable
                    | WouldBlock
            );
        }
        source = err.source();
    }
    false
}

/// An error and its causes on one line (lettre's Display alone hides the server's text).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        let t = err.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        source = err.source();
    }
    super::render::one_line(&s, 500)
}

/// File name of a route: lowercase ASCII letters, digits and dashes only.
pub fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-');
    let s = if s.len() > 60 { &s[..60] } else { s };
    if s.is_empty() {
        "digest".to_string()
    } else {
        s.to_string()
    }
}

/// Write `bytes` to `<outbox>/<UTC timestamp with ms>-<slug>.eml` atomically: a hidden
/// temporary file in the same directory, synced, then renamed into place. Never overwrites.
pub fn write_eml(outbox: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, SendError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SendError::Outbox { path, source }
    };
    std::fs::create_dir_all(outbox).map_err(io(outbox))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let base = format!("{stamp}-{}", slug(name));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").suffix(".eml").tempfile_in(outbox).map_err(io(outbox))?;
    tmp.write_all(bytes).map_err(io(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io(tmp.path()))?;
    for n in 0u32.. {
        let target = if n == 0 { outbox.join(format!("{base}.eml")) } else { outbox.join(format!("{base}-{n}.eml")) };
        match tmp.persist_noclobber(&target) {
            Ok(_) => {
                // Make the rename itself durable (best effort: not every filesystem allows it).
                if let Ok(dir) = std::fs::File::open(outbox) {
                    let _ = dir.sync_all();
                }
                return Ok(target);
            }
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => tmp = e.file,
            Err(e) => return Err(SendError::Outbox { path: target, source: e.error }),
        }
    }
    unreachable!("the loop returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eml_files_are_written_whole_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("out/box");
        let a = write_eml(&outbox, "Kent Police", b"Subject: a\r\n\r\nA").unwrap();
        let b = write_eml(&outbox, "Kent Police", b"Subject: b\r\n\r\nB").unwrap();
        assert_ne!(a, b);
        assert!(a.file_name().unwrap().to_str().unwrap().ends_with("-kent-police.eml"), "{a:?}");
        assert_eq!(std::fs::read(&a).unwrap(), b"Subject: a\r\n\r\nA");
        assert_eq!(std::fs::read(&b).unwrap(), b"Subject: b\r\n\r\nB");
        let names: Vec<String> =
            std::fs::read_dir(&outbox).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names.len(), 2, "no temporary file left behind: {names:?}");
    }

    #[test]
    fn unwritable_outbox_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let err = write_eml(&file, "r", b"x").unwrap_err();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    #[test]
    fn slugs_are_safe_file_names() {
        assert_eq!(slug("Kent Police"), "kent-police");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(slug("Heddlu Dyfed-Powys"), "heddlu-dyfed-powys");
        assert_eq!(slug("///"), "digest");
    }

    #[test]
    fn backoff_doubles() {
        let r = RetryPolicy { attempts: 4, base_delay: Duration::from_millis(100) };
        assert_eq!(r.delay_after(1), Duration::from_millis(100));
        assert_eq!(r.delay_after(2), Duration::from_millis(200));
        assert_eq!(r.delay_after(3), Duration::from_millis(400));
    }

    fn smtp_cfg() -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: 1,
            tls: TlsMode::Starttls,
            username: Some("monitor".into()),
            password_env: Some("EM_DIGEST_TEST_PASSWORD_SURELY_UNSET".into()),
            timeout_secs: 1,
            ca_file: None,
        }
    }

    #[test]
    fn missing_password_variable_is_named_and_half_credentials_refused() {
        let err = Transport::smtp(&smtp_cfg(), RetryPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("EM_DIGEST_TEST_PASSWORD_SURELY_UNSET"), "{err}");
        let mut c = smtp_cfg();
        c.password_env = None;
        assert!(matches!(Transport::smtp(&c, RetryPolicy::default()), Err(SetupError::HalfCredentials { .. })));
    }

    #[test]
    fn bad_ca_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let mut c = smtp_cfg();
        c.username = None;
        c.password_env = None;
        c.ca_file = Some(ca);
        let err = Transport::smtp(&c, RetryPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    #[tokio::test]
    async fn refused_connection_is_retried_then_reported_as_temporary() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let mut c = smtp_cfg();
        c.username = None;
        c.password_env = None;
        c.tls = TlsMode::None;
        let t = Transport::smtp(&c, RetryPolicy { attempts: 3, base_delay: Duration::from_millis(10) }).unwrap();
        let msg = Message::builder()
            .from("a@example.invalid".parse().unwrap())
            .to("b@example.invalid".parse().unwrap())
            .subject("x")
            .body("x".to_string())
            .unwrap();
        let err = t.send(&msg, "r").await.unwrap_err();
        assert!(matches!(err, SendError::Transient { attempts: 3, .. }), "{err:?}");
    }
}
