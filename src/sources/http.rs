//! The shared HTTP layer every network connector uses, so that none of them can get the
//! operator's client banned.
//!
//! One [`HttpClient`] per source, all clients of a scan sharing a [`HostRegistry`] so that the
//! per-host limits hold across sources that talk to the same host. What it does for every GET:
//!
//! - **User-Agent** naming the program, its version and the operator's contact.
//! - **Timeouts**: connect, read (between body chunks) and a total per attempt.
//! - **Body cap**: the body is streamed and the request fails with a clear error once it passes
//!   the cap (or at once when `Content-Length` says it will).
//! - **Bounded concurrency per host** (a semaphore) and a **floor pacing** per host
//!   (`governor`, at most N requests a second).
//! - **Header-driven pacing**: after every response the host's rate-limit headers are read
//!   (`X-RateLimit-*` with an ISO-8601, epoch or delta reset, IETF `RateLimit-*`, Reddit's
//!   `x-ratelimit-*` with float strings) and the next request to that host is spaced so that the
//!   remaining budget lasts until the reset, keeping a reserve: it slows down *before* the limit.
//! - **429**: waits for `Retry-After` (seconds or an HTTP date), else the reset header, else
//!   backs off; each such wait is counted in [`HttpStats`].
//! - **Retries** with exponential backoff and full jitter on 5xx, 408, timeouts and connection
//!   errors, bounded in number; any other 4xx is returned at once.
//!
//! Secrets (bearer tokens) go only in headers, never in URLs, so URLs in errors and logs are safe.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, warn};
use url::Url;

/// Tunable limits of the HTTP layer. Connectors fill these from their config keys.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
    /// Longest a single attempt may take in all.
    pub total_timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Retries after the first attempt (5xx, 408, 429, timeouts, connection errors).
    pub max_retries: u32,
    /// First backoff delay; doubles on every retry, with full jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Longest single wait for a rate limit (Retry-After or reset) before giving up on the
    /// request with [`HttpErrorKind::RateLimited`].
    pub max_wait: Duration,
    /// Requests in flight to one host at once.
    pub max_concurrent_per_host: usize,
    /// Floor pacing: at most this many requests a second to one host, whatever the headers say.
    pub max_requests_per_second: u32,
    /// Share of a window's limit kept unused (Mastodon counts every client of the same IP).
    pub reserve_fraction: f64,
}

/// Config check shared by every source: each named setting must be at least 1.
pub fn require_positive(settings: &[(&str, u64)]) -> Result<(), String> {
    match settings.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(format!("`{key}`: must be at least 1")),
        None => Ok(()),
    }
}

impl HttpSettings {
    /// The settings every source derives from its common config keys (`timeout_secs`,
    /// `max_body_bytes`, `max_retries`, `retry_backoff_ms`, `max_requests_per_second`): connect
    /// timeout a third of the read timeout (at least 1 s), an attempt at most twice it. Sources
    /// with more keys set the rest with `..HttpSettings::from_source_keys(..)`.
    pub fn from_source_keys(
        timeout_secs: u64,
        max_body_bytes: u64,
        max_retries: u32,
        retry_backoff_ms: u64,
        max_requests_per_second: u32,
    ) -> HttpSettings {
        let timeout = Duration::from_secs(timeout_secs);
        HttpSettings {
            connect_timeout: (timeout / 3).max(Duration::from_secs(1)).min(timeout),
            read_timeout: timeout,
            total_timeout: timeout * 2,
            max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
            max_retries,
            backoff_base: Duration::from_millis(retry_backoff_ms),
            max_requests_per_second,
            ..HttpSettings::default()
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(60),
            max_body_bytes: 8 * 1024 * 1024,
            max_retries: 4,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            max_wait: Duration::from_secs(15 * 60),
            max_concurrent_per_host: 2,
            max_requests_per_second: 5,
            reserve_fraction: 0.05,
        }
    }
}

/// A failed request: which URL, what went wrong, after how many attempts.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{method} {url}: {kind} (after {attempts} attempt{})", if *.attempts == 1 { "" } else { "s" })]
pub struct HttpError {
    /// `GET` or `POST`.
    pub method: &'static str,
    pub url: String,
    pub kind: HttpErrorKind,
    pub attempts: u32,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpErrorKind {
    /// A status that is not success; `body` is a short, printable excerpt.
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("reading the response failed: {0}")]
    Body(String),
    #[error("response body larger than the cap of {cap} bytes")]
    TooLarge { cap: usize },
    #[error("rate limited: the server asks to wait {wait_secs} s, longer than the {max_secs} s allowed")]
    RateLimited { wait_secs: u64, max_secs: u64 },
    #[error("{0}")]
    Other(String),
}

impl HttpError {
    /// The HTTP status, when the server answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            HttpErrorKind::Status { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// A successful (2xx, or 304 to a conditional GET) response with its whole body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// Decode the body as JSON; the error names the URL and what is wrong.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, super::SourceError> {
        serde_json::from_slice(&self.body).map_err(|e| super::SourceError::Malformed {
            location: format!("GET {}", self.url),
            message: format!("response is not the expected JSON: {e}"),
        })
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Counters for `status` and the scan summary.
#[derive(Debug, Default)]
pub struct HttpStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    /// Waits forced by a rate limit: a 429, or a budget exhausted before its reset.
    pub rate_limit_waits: AtomicU64,
    pub rate_limit_wait_ms: AtomicU64,
}

/// Per-host state shared by every client of a scan.
#[derive(Default)]
pub struct HostRegistry {
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

impl std::fmt::Debug for HostRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRegistry").finish_non_exhaustive()
    }
}

struct Host {
    permits: Semaphore,
    rate: Mutex<RateState>,
}

/// What the host's last rate-limit headers said.
#[derive(Debug, Clone, Default)]
struct RateState {
    limit: Option<f64>,
    remaining: Option<f64>,
    reset_at: Option<Instant>,
    /// No request before this (after a 429).
    not_before: Option<Instant>,
    last_request: Option<Instant>,
}

impl HostRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(HostRegistry::default())
    }

    fn host(&self, key: &str, concurrency: usize) -> Arc<Host> {
        let mut hosts = self.hosts.lock().expect("host registry lock");
        hosts
            .entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Host { permits: Semaphore::new(concurrency.max(1)), rate: Mutex::new(RateState::default()) })
            })
            .clone()
    }
}

/// The HTTP client of one source.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    settings: HttpSettings,
    hosts: Arc<HostRegistry>,
    pacer: Arc<DefaultKeyedRateLimiter<String>>,
    stats: Arc<HttpStats>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Credentials of one request (sent only in headers, never in the URL).
#[derive(Clone, Copy)]
enum Auth<'a> {
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

/// One request as [`HttpClient::send`] repeats it.
struct Request<'a> {
    method: &'static str,
    url: &'a Url,
    auth: Option<Auth<'a>>,
    extra: &'a [(reqwest::header::HeaderName, String)],
    form: Option<&'a [(&'a str, &'a str)]>,
}

/// `exposure-monitor/VERSION (+contact)`: names the program and whom the platform can contact.
pub fn user_agent(operator_contact: &str) -> String {
    let base = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));
    let contact: String = operator_contact.chars().filter(|c| !c.is_control()).collect();
    let contact = contact.trim();
    if contact.is_empty() {
        base.to_string()
    } else {
        format!("{base} (+{contact})")
    }
}

impl HttpClient {
    pub fn new(settings: HttpSettings, operator_contact: &str, hosts: Arc<HostRegistry>) -> Result<Self, HttpError> {
        let ua = user_agent(operator_contact);
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_str(&ua).map_err(|e| HttpError {
                method: "GET",
                url: String::new(),
                kind: HttpErrorKind::Other(format!("operator contact cannot go in a User-Agent header: {e}")),
                attempts: 0,
            })?,
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .timeout(settings.total_timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| HttpError {
                method: "GET",
                url: String::new(),
                kind: HttpErrorKind::Other(e.to_string()),
                attempts: 0,
            })?;
        let rps = NonZeroU32::new(settings.max_requests_per_second.max(1)).expect("at least 1");
        let pacer = Arc::new(RateLimiter::keyed(Quota::per_second(rps)));
        Ok(HttpClient { client, settings, hosts, pacer, stats: Arc::new(HttpStats::default()) })
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    pub fn stats(&self) -> &HttpStats {
        &self.stats
    }

    /// GET `url` (with a bearer token when given), with every rule of this module applied.
    pub async fn get(&self, url: &Url, bearer: Option<&str>) -> Result<HttpResponse, HttpError> {
        self.get_with(url, bearer, &[]).await
    }

    /// [`get`](Self::get) with extra request headers (e.g. `If-None-Match` for a conditional
    /// GET). A `304 Not Modified` answer is returned as a response, not an error.
    pub async fn get_with(
        &self,
        url: &Url,
        bearer: Option<&str>,
        extra: &[(reqwest::header::HeaderName, String)],
    ) -> Result<HttpResponse, HttpError> {
        let auth = bearer.map(Auth::Bearer);
        self.send(&Request { method: "GET", url, auth, extra, form: None }).await
    }

    /// POST a form (`application/x-www-form-urlencoded`) with HTTP Basic client authentication,
    /// e.g. an OAuth token request, under the same rules as [`get`](Self::get): pacing, 429
    /// waits, bounded retries, timeouts and the body cap. Only use it for requests that are
    /// safe to repeat (a token grant is).
    pub async fn post_form(&self, url: &Url, basic: (&str, &str), form: &[(&str, &str)]) -> Result<HttpResponse, HttpError> {
        let auth = Some(Auth::Basic(basic.0, basic.1));
        self.send(&Request { method: "POST", url, auth, extra: &[], form: Some(form) }).await
    }

    async fn send(&self, req: &Request<'_>) -> Result<HttpResponse, HttpError> {
        let url = req.url;
        let key = host_key(url);
        let host = self.hosts.host(&key, self.settings.max_concurrent_per_host);
        let fail = |kind, attempts| HttpError { method: req.method, url: url.to_string(), kind, attempts };
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            // 1. Pace: rate-limit headers, then the floor, then a concurrency slot.
            if let Some((wait, forced)) = host_delay(&host, &self.settings) {
                if wait > self.settings.max_wait {
                    return Err(fail(
                        HttpErrorKind::RateLimited { wait_secs: wait.as_secs(), max_secs: self.settings.max_wait.as_secs() },
                        attempt - 1,
                    ));
                }
                if forced {
                    self.count_wait(wait);
                    warn!(host = %key, wait_ms = wait.as_millis() as u64, "rate limit reached: waiting for the reset");
                }
                tokio::time::sleep(wait).await;
            }
            self.pacer.until_key_ready(&key).await;
            let permit = host.permits.acquire().await.expect("semaphore never closed");
            host.rate.lock().expect("rate lock").last_request = Some(Instant::now());
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = self.attempt(req).await;
            drop(permit);

            let retry_in = match outcome {
                Ok((status, headers, body)) => {
                    let retry_after = if status == StatusCode::TOO_MANY_REQUESTS {
                        Some(headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after))
                    } else {
                        None
                    };
                    update_rate(&host, &headers, retry_after.flatten().is_some());
                    if status.is_success() || status == StatusCode::NOT_MODIFIED {
                        return Ok(HttpResponse { url: url.clone(), status, headers, body });
                    }
                    let err = HttpErrorKind::Status { status: status.as_u16(), body: excerpt(&body) };
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        // Retry-After, else the reset header, else backoff.
                        let wait = retry_after.flatten().or_else(|| reset_wait(&host)).unwrap_or_else(|| self.backoff(attempt));
                        if wait > self.settings.max_wait {
                            return Err(fail(
                                HttpErrorKind::RateLimited {
                                    wait_secs: wait.as_secs(),
                                    max_secs: self.settings.max_wait.as_secs(),
                                },
                                attempt,
                            ));
                        }
                        host.rate.lock().expect("rate lock").not_before = Some(Instant::now() + wait);
                        if attempt > self.settings.max_retries {
                            return Err(fail(err, attempt));
                        }
                        // The wait itself happens (and is counted) at the top of the loop.
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
                        (self.backoff(attempt), err)
                    } else {
                        return Err(fail(err, attempt));
                    }
                }
                Err(kind @ (HttpErrorKind::Timeout | HttpErrorKind::Connect(_) | HttpErrorKind::Body(_))) => {
                    (self.backoff(attempt), kind)
                }
                Err(kind) => return Err(fail(kind, attempt)),
            };
            let (wait, err) = retry_in;
            if attempt > self.settings.max_retries {
                return Err(fail(err, attempt));
            }
            debug!(url = %url, attempt, error = %err, wait_ms = wait.as_millis() as u64, "retrying");
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    fn count_wait(&self, wait: Duration) {
        self.stats.rate_limit_waits.fetch_add(1, Ordering::Relaxed);
        self.stats.rate_limit_wait_ms.fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
    }

    /// Exponential backoff with full jitter: uniform in [base/2, base * 2^(attempt-1)], capped.
    fn backoff(&self, attempt: u32) -> Duration {
        use rand::Rng;
        let base = self.settings.backoff_base.as_secs_f64();
        let top = (base * 2f64.powi(attempt.saturating_sub(1).min(20) as i32)).min(self.settings.backoff_max.as_secs_f64());
        let low = (base / 2.0).min(top);
        Duration::from_secs_f64(rand::thread_rng().gen_range(low..=top))
    }

    /// One attempt: send, then stream the body up to the cap.
    async fn attempt(&self, r: &Request<'_>) -> Result<(StatusCode, HeaderMap, Vec<u8>), HttpErrorKind> {
        let mut req = match r.form {
            Some(form) => self.client.post(r.url.clone()).form(form),
            None => self.client.get(r.url.clone()),
        };
        if !r.extra.iter().any(|(k, _)| k == reqwest::header::ACCEPT) {
            req = req.header(reqwest::header::ACCEPT, "application/json");
        }
        for (k, v) in r.extra {
            req = req.header(k.clone(), v.as_str());
        }
        match r.auth {
            Some(Auth::Bearer(token)) => req = req.bearer_auth(token),
            Some(Auth::Basic(user, password)) => req = req.basic_auth(user, Some(password)),
            None => {}
        }
        let mut resp = req.send().await.map_err(classify_error)?;
        let cap = self.settings.max_body_bytes;
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(HttpErrorKind::TooLarge { cap });
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify_error)? {
            if body.len() + chunk.len() > cap {
                return Err(HttpErrorKind::TooLarge { cap });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }
}

fn classify_error(e: reqwest::Error) -> HttpErrorKind {
    let text = {
        // The full chain says e.g. "connection refused"; reqwest's top line alone does not.
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        s
    };
    if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() || e.is_request() {
        HttpErrorKind::Connect(text)
    } else if e.is_body() || e.is_decode() {
        HttpErrorKind::Body(text)
    } else {
        HttpErrorKind::Other(text)
    }
}

/// `host:port` (scheme default port when absent).
fn host_key(url: &Url) -> String {
    format!("{}:{}", url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0))
}

/// A short, printable excerpt of an error body for messages (control characters dropped).
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let clean = clean.trim();
    if clean.chars().count() > 200 {
        format!("{}…", clean.chars().take(200).collect::<String>())
    } else if clean.is_empty() {
        "(empty body)".to_string()
    } else {
        clean.to_string()
    }
}

/// How long to wait before the next request to `host`, and whether it is a forced wait (limit
/// reached) rather than ordinary spacing.
fn host_delay(host: &Host, settings: &HttpSettings) -> Option<(Duration, bool)> {
    let rate = host.rate.lock().expect("rate lock").clone();
    plan_delay(&rate, settings.reserve_fraction, Instant::now())
}

fn plan_delay(rate: &RateState, reserve_fraction: f64, now: Instant) -> Option<(Duration, bool)> {
    if let Some(t) = rate.not_before.filter(|t| *t > now) {
        return Some((t - now, true));
    }
    let (remaining, reset_at) = match (rate.remaining, rate.reset_at) {
        (Some(r), Some(t)) if t > now => (r, t),
        _ => return None,
    };
    let reserve = rate.limit.map(|l| (l * reserve_fraction).ceil()).unwrap_or(0.0).max(1.0);
    let window = reset_at - now;
    if remaining <= reserve {
        // Out of budget (bar the reserve): wait for the reset, plus a little for clock skew.
        return Some((window + Duration::from_millis(250), true));
    }
    // Spread what is left evenly over what is left of the window.
    let spacing = window.div_f64(remaining - reserve);
    let next = rate.last_request.map(|t| t + spacing).unwrap_or(now);
    (next > now).then(|| (next - now, false))
}

/// Time until the host's stored reset, if there is one in the future.
fn reset_wait(host: &Host) -> Option<Duration> {
    let rate = host.rate.lock().expect("rate lock");
    let now = Instant::now();
    rate.reset_at.filter(|t| *t > now).map(|t| t - now + Duration::from_millis(250))
}

/// Rate-limit headers of one response, in any of the flavours platforms send.
#[derive(Debug, Clone, PartialEq)]
pub struct RateHeaders {
    pub limit: Option<f64>,
    pub remaining: Option<f64>,
    /// Time from now until the window resets.
    pub reset_in: Option<Duration>,
}

/// Read `X-RateLimit-*` (Mastodon: ISO-8601 reset; others: epoch), `RateLimit-*` (IETF draft
/// and Bluesky: delta or epoch reset) and Reddit's `x-ratelimit-used/remaining/reset` (float
/// strings, reset in seconds). `now` anchors absolute resets.
pub fn parse_rate_headers(headers: &HeaderMap, now: SystemTime) -> RateHeaders {
    let get = |names: &[&str]| {
        names.iter().find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()))
    };
    let remaining = get(&["x-ratelimit-remaining", "ratelimit-remaining"]).and_then(leading_number);
    let used = get(&["x-ratelimit-used"]).and_then(leading_number);
    let limit = get(&["x-ratelimit-limit", "ratelimit-limit"]).and_then(leading_number).or_else(|| Some(used? + remaining?));
    let reset_in = get(&["x-ratelimit-reset", "ratelimit-reset"]).and_then(|v| parse_reset(v, now));
    RateHeaders { limit, remaining, reset_in }
}

/// The first number of a header value: `"996.0"`, `"300"`, `"3000, 3000;w=300"`.
fn leading_number(v: &str) -> Option<f64> {
    let end = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    v[..end].parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0)
}

/// The longest wait a rate-limit header can ask for; anything further off is read as this. It is
/// longer than any `max_wait`, so the request fails as rate-limited, as it would have; and a
/// hostile or broken header (`x-ratelimit-reset: 1e300`, `Retry-After: 99999999999999`) cannot
/// overflow the time arithmetic that follows and panic the scan.
pub const MAX_RATE_WAIT: Duration = Duration::from_secs(366 * 24 * 3600);

/// A reset value: seconds from now (small numbers), epoch seconds (large numbers), ISO-8601 /
/// RFC 3339, or an HTTP date. A reset in the past is `Some(0)`; at most [`MAX_RATE_WAIT`].
pub fn parse_reset(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    let until = |t: SystemTime| Some(t.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_RATE_WAIT));
    if let Ok(n) = v.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        // A delta is never a billion seconds (31 years); an epoch always is, since 2001.
        return if n >= 1e9 {
            match Duration::try_from_secs_f64(n).ok().and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d)) {
                Some(t) => until(t),
                None => Some(MAX_RATE_WAIT),
            }
        } else {
            Some(Duration::from_secs_f64(n).min(MAX_RATE_WAIT))
        };
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        let t: SystemTime = t.with_timezone(&chrono::Utc).into();
        return until(t);
    }
    httpdate::parse_http_date(v).ok().and_then(until)
}

/// `Retry-After`: delta seconds or an HTTP date; at most [`MAX_RATE_WAIT`].
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(n) = v.parse::<u64>() {
        return Some(Duration::from_secs(n).min(MAX_RATE_WAIT));
    }
    httpdate::parse_http_date(v).ok().map(|t| t.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO).min(MAX_RATE_WAIT))
}

fn update_rate(host: &Host, headers: &HeaderMap, have_retry_after: bool) {
    let parsed = parse_rate_headers(headers, SystemTime::now());
    let mut rate = host.rate.lock().expect("rate lock");
    if have_retry_after {
        // Retry-After is the server's own instruction and wins over a (possibly stale) reset.
        rate.remaining = None;
        rate.reset_at = None;
        return;
    }
    if parsed.remaining.is_none() && parsed.reset_in.is_none() {
        return;
    }
    let now = Instant::now();
    rate.limit = parsed.limit.or(rate.limit);
    rate.remaining = parsed.remaining;
    rate.reset_at = parsed.reset_in.map(|d| now + d);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn at(rfc3339: &str) -> SystemTime {
        chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&chrono::Utc).into()
    }

    #[test]
    fn mastodon_iso_reset() {
        let now = at("2026-08-01T13:50:00Z");
        let h = headers(&[
            ("x-ratelimit-limit", "300"),
            ("x-ratelimit-remaining", "299"),
            ("x-ratelimit-reset", "2026-08-01T13:55:00.212100Z"),
        ]);
        let r = parse_rate_headers(&h, now);
        assert_eq!((r.limit, r.remaining), (Some(300.0), Some(299.0)));
        assert_eq!(r.reset_in.unwrap().as_millis(), 300_212);
    }

    #[test]
    fn epoch_reset_and_ietf_names() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_347_000);
        let h = headers(&[("x-ratelimit-limit", "1000"), ("x-ratelimit-remaining", "997"), ("x-ratelimit-reset", "1795347002")]);
        assert_eq!(parse_rate_headers(&h, now).reset_in, Some(Duration::from_secs(2)));
        let h = headers(&[("ratelimit-limit", "3000"), ("ratelimit-remaining", "2999"), ("ratelimit-reset", "1795347300")]);
        let r = parse_rate_headers(&h, now);
        assert_eq!((r.limit, r.remaining, r.reset_in), (Some(3000.0), Some(2999.0), Some(Duration::from_secs(300))));
        // IETF draft: delta seconds, and a structured limit.
        let h = headers(&[("ratelimit-limit", "100, 100;w=60"), ("ratelimit-remaining", "5"), ("ratelimit-reset", "42")]);
        let r = parse_rate_headers(&h, now);
        assert_eq!((r.limit, r.remaining, r.reset_in), (Some(100.0), Some(5.0), Some(Duration::from_secs(42))));
    }

    #[test]
    fn reddit_float_strings() {
        let h = headers(&[("x-ratelimit-used", "4"), ("x-ratelimit-remaining", "996.0"), ("x-ratelimit-reset", "371")]);
        let r = parse_rate_headers(&h, SystemTime::now());
        assert_eq!((r.limit, r.remaining, r.reset_in), (Some(1000.0), Some(996.0), Some(Duration::from_secs(371))));
    }

    #[test]
    fn past_reset_is_zero_and_garbage_is_none() {
        let now = at("2026-12-01T00:00:00Z");
        assert_eq!(parse_reset("2026-11-22T12:00:00.000Z", now), Some(Duration::ZERO));
        assert_eq!(parse_reset("soon", now), None);
        assert_eq!(parse_reset("-5", now), None);
        assert_eq!(parse_reset("Tue, 01 Dec 2026 00:00:10 GMT", now), Some(Duration::from_secs(10)));
    }

    #[test]
    fn absurd_resets_and_retry_afters_are_clamped_not_a_panic() {
        let now = at("2026-12-01T00:00:00Z");
        for v in ["1e300", "1.7976931348623157e308", "18446744073709551616", "99999999999999999999.5", "999999999.9"] {
            let d = parse_reset(v, now).unwrap();
            assert!(d <= MAX_RATE_WAIT, "{v}: {d:?}");
        }
        assert_eq!(parse_reset("1e300", now), Some(MAX_RATE_WAIT));
        assert_eq!(parse_reset("9999-12-31T23:59:59Z", now), Some(MAX_RATE_WAIT));
        assert_eq!(parse_retry_after("18446744073709551615"), Some(MAX_RATE_WAIT));
        // And what the client does with them: a reset stored as an Instant.
        let h = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1e300")]);
        assert_eq!(parse_rate_headers(&h, now).reset_in, Some(MAX_RATE_WAIT));
        let _ = Instant::now() + MAX_RATE_WAIT;
    }

    #[test]
    fn retry_after_seconds_and_date() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = parse_retry_after(&future).unwrap();
        assert!(d > Duration::from_secs(27) && d <= Duration::from_secs(30), "{d:?}");
        assert_eq!(parse_retry_after("later"), None);
    }

    #[test]
    fn pacing_spreads_the_budget_and_stops_before_the_limit() {
        let now = Instant::now();
        let mut rate = RateState {
            limit: Some(300.0),
            remaining: Some(101.0),
            reset_at: Some(now + Duration::from_secs(100)),
            not_before: None,
            last_request: Some(now),
        };
        // 100 s left, 101 remaining, reserve 15 (5% of 300): one request every 100/86 s.
        let (d, forced) = plan_delay(&rate, 0.05, now).unwrap();
        assert!(!forced);
        assert!((d.as_secs_f64() - 100.0 / 86.0).abs() < 0.01, "{d:?}");
        // At the reserve: wait for the reset, counted as a forced wait.
        rate.remaining = Some(15.0);
        let (d, forced) = plan_delay(&rate, 0.05, now).unwrap();
        assert!(forced && d >= Duration::from_secs(100), "{d:?}");
        // A stale window (reset passed) imposes nothing.
        rate.reset_at = Some(now);
        assert_eq!(plan_delay(&rate, 0.05, now + Duration::from_millis(1)), None);
        // A 429's Retry-After wins.
        rate.not_before = Some(now + Duration::from_secs(2));
        assert_eq!(plan_delay(&rate, 0.05, now), Some((Duration::from_secs(2), true)));
    }

    #[test]
    fn user_agent_names_program_version_and_contact() {
        let ua = user_agent("psd-monitoring@example.police.uk");
        assert_eq!(ua, format!("exposure-monitor/{} (+psd-monitoring@example.police.uk)", env!("CARGO_PKG_VERSION")));
        assert_eq!(user_agent("  "), format!("exposure-monitor/{}", env!("CARGO_PKG_VERSION")));
        assert!(!user_agent("a\r\nX-Injected: 1").contains('\n'));
    }
}
