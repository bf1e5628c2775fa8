//! Digest: turn unsent hits into one message per PSD route and hand it to a mail transport.
//!
//! # Architecture
//! [`plan`] is pure: it splits the unsent hits by route (each force's hits only to that force's
//! recipients, unknown or unrouted forces to the default route), renders each message with
//! [`render`] (plain text and HTML, minijinja with HTML auto-escaping: post content is hostile)
//! and gives it a Message-ID derived from the route and its hit ids, so a resend of the same
//! digest carries the same Message-ID and mail systems can collapse it. [`run`] does the I/O:
//! for each planned message, `begin_digest` (recorded as pending with its hits) → the
//! [`transport`] → `digest_sent`, or `digest_failed` and the hits stay unsent for the next run.
//! A message is built and checked before it is recorded, so a bad address never leaves a
//! pending digest behind. Nothing from a post or profile ever reaches a header: the subject is
//! made of counts, the date and the route name from the config.
//!
//! A route's message carries at most `digest.max_hits_per_route` hits, the most severe first,
//! then the longest waiting; the rest stay unsent and the message ends with a [`backlog`]
//! section. [`run`] never loads every unsent hit: it asks the store which forces have unsent
//! hits, and per route the ids of the next hits and SQL aggregates of the rest (all over covering
//! partial indexes), so its memory and time follow the cap, not the backlog. [`plan`] does the
//! same in memory over a slice of hits (for tests).

pub mod backlog;
pub mod chart;
pub mod render;
pub mod transport;

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use lettre::message::header::ContentType;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::Message;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::store::{HitRecord, PendingDigest, Store};

pub use render::{Coverage, DigestView, Rendered};
pub use transport::{RetryPolicy, SendError, Transport};

/// What a digest run did, per route.
#[derive(Debug, Clone, Default)]
pub struct DigestOutcome {
    pub messages_sent: usize,
    pub hits_sent: usize,
    /// Routes whose message failed, with the error.
    pub failures: Vec<(String, String)>,
}

/// Most hits in one message: a bigger day is split into parts, so no message grows past what
/// mail servers accept (each hit's excerpt is at most a few kB in each part).
pub const MAX_HITS_PER_MESSAGE: usize = 150;

/// Route key of hits whose force is unknown or has no route of its own.
pub const DEFAULT_ROUTE: &str = "default";

/// One message ready to go: who it is for, which hits it carries and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDigest {
    /// The force name of the route (a key of `routing.forces`) or [`DEFAULT_ROUTE`].
    pub route: String,
    pub recipients: Vec<String>,
    /// Ids of the hits this message carries, ascending (empty for a "nothing found" message).
    pub hit_ids: Vec<i64>,
    /// `<...>`, deterministic: the same route and hits give the same id.
    pub message_id: String,
    /// The pending digest this message resends (same recipients, hits and Message-ID), when
    /// an earlier run recorded it but never learnt whether the transport took it.
    pub resend_of: Option<i64>,
    pub rendered: Rendered,
}

/// Every message of one digest run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Resends of pending digests first (oldest first), then one message per route.
    pub messages: Vec<PlannedDigest>,
    /// Pending digests with nothing left to deliver (a "nothing found" message, or hits that
    /// are gone): recorded as failed instead of resent; this run's messages supersede them.
    pub stale_pending: Vec<i64>,
}

/// Plan every message of a digest run.
///
/// First, each digest an earlier run recorded as pending but never marked (a crash between
/// handing it to the transport and marking it) is resent as it was: same recipients, same
/// hits, same Message-ID, so a mail system that already has it can collapse the copy. Then one
/// message per route for the remaining unsent hits (each force's hits only to that force's
/// recipients; unknown or unrouted forces to the default route), at most
/// `digest.max_hits_per_route` of them (the most severe first, then the longest waiting; the
/// rest stay unsent and the message summarises them), plus, when `digest.send_empty` is set, a
/// "nothing found" message for every route without hits.
pub fn plan(
    config: &Config,
    hits: &[HitRecord],
    pending: &[PendingDigest],
    coverage: &Coverage,
    now: DateTime<Utc>,
) -> anyhow::Result<Plan> {
    plan_with_history(config, hits, pending, coverage, &chart::History::new(now), now)
}

/// [`plan`], with each message that carries hits showing its route's chart from `history`
/// (hits per category over the last [`chart::DAYS`] days). Every unsent hit is in `hits`: the
/// cap and the backlog are worked out in memory (`run` does the same in SQL).
pub fn plan_with_history(
    config: &Config,
    hits: &[HitRecord],
    pending: &[PendingDigest],
    coverage: &Coverage,
    history: &chart::History,
    now: DateTime<Utc>,
) -> anyhow::Result<Plan> {
    let reserved = reserved_by(pending, hits);
    let mut groups: BTreeMap<RouteKey, Vec<&HitRecord>> = BTreeMap::new();
    for h in hits.iter().filter(|h| !reserved.contains(&h.id)) {
        groups.entry(route_key(config, h.force.as_deref())).or_default().push(h);
    }
    let cap = config.digest.max_hits_per_route;
    let batches = groups
        .into_iter()
        .map(|(key, mut group)| {
            group.sort_by_key(|h| queue_order(h));
            let waiting = group.split_off(group.len().min(cap));
            let backlog = (!waiting.is_empty()).then(|| backlog::Backlog::from_hits(&waiting));
            RouteBatch { key, hits: group.into_iter().cloned().collect(), backlog }
        })
        .collect();
    let pending_hits: Vec<HitRecord> = hits.iter().filter(|h| reserved.contains(&h.id)).cloned().collect();
    plan_batches(config, &pending_hits, pending, batches, coverage, history, now)
}

/// A route: (is it the default route, route name). Forces in config order, default last.
type RouteKey = (bool, String);

fn route_key(config: &Config, force: Option<&str>) -> RouteKey {
    match config.routing.route_for(force).0 {
        Some(r) => (false, r.to_string()),
        None => (true, DEFAULT_ROUTE.to_string()),
    }
}

/// The order hits are chosen in when a route has more than the cap: most severe first, then
/// the longest waiting (earliest found), then by id.
fn queue_order(h: &HitRecord) -> (std::cmp::Reverse<crate::model::Severity>, DateTime<Utc>, i64) {
    (std::cmp::Reverse(h.severity), h.retrieved_at, h.id)
}

/// The hits pending digests will resend (those still unsent, i.e. in `unsent`).
fn reserved_by(pending: &[PendingDigest], unsent: &[HitRecord]) -> std::collections::HashSet<i64> {
    let unsent: std::collections::HashSet<i64> = unsent.iter().map(|h| h.id).collect();
    pending.iter().flat_map(|p| p.hit_ids.iter().copied()).filter(|id| unsent.contains(id)).collect()
}

/// One route's share of this run: the hits its message carries and what stays waiting.
#[derive(Debug, Clone)]
pub struct RouteBatch {
    key: RouteKey,
    hits: Vec<HitRecord>,
    backlog: Option<backlog::Backlog>,
}

/// Render the resends of `pending` (their still-unsent hits are `pending_hits`) and one
/// message per route batch (split into parts of [`MAX_HITS_PER_MESSAGE`]).
fn plan_batches(
    config: &Config,
    pending_hits: &[HitRecord],
    pending: &[PendingDigest],
    batches: Vec<RouteBatch>,
    coverage: &Coverage,
    history: &chart::History,
    now: DateTime<Utc>,
) -> anyhow::Result<Plan> {
    let env = render::environment();
    let domain = message_id_domain(&config.mail.from);
    let by_id: BTreeMap<i64, &HitRecord> = pending_hits.iter().map(|h| (h.id, h)).collect();
    let mut reserved: std::collections::HashSet<i64> = std::collections::HashSet::new();
    let mut out = Plan::default();

    let mut pending: Vec<&PendingDigest> = pending.iter().collect();
    pending.sort_by_key(|p| p.id);
    for p in pending {
        let mut group: Vec<&HitRecord> =
            p.hit_ids.iter().filter(|id| !reserved.contains(id)).filter_map(|id| by_id.get(id).copied()).collect();
        if group.is_empty() {
            out.stale_pending.push(p.id);
            continue;
        }
        group.sort_by_key(|h| h.id);
        reserved.extend(group.iter().map(|h| h.id));
        let label = if p.route == DEFAULT_ROUTE { "Default route" } else { p.route.as_str() };
        let mut view = DigestView::new(label, &group, coverage, now);
        view.chart = history.view(&p.route);
        let rendered = render::render(&env, &view, &config.digest.subject_prefix)
            .with_context(|| format!("rendering the resend of digest {} for route {}", p.id, p.route))?;
        out.messages.push(PlannedDigest {
            route: p.route.clone(),
            recipients: p.recipients.clone(),
            hit_ids: group.iter().map(|h| h.id).collect(),
            message_id: p.message_id.clone(),
            resend_of: Some(p.id),
            rendered,
        });
    }

    let mut groups: BTreeMap<RouteKey, (Vec<&HitRecord>, Option<&backlog::Backlog>)> = BTreeMap::new();
    for b in &batches {
        let e = groups.entry(b.key.clone()).or_default();
        e.0.extend(b.hits.iter().filter(|h| !reserved.contains(&h.id)));
        if b.backlog.is_some() {
            e.1 = b.backlog.as_ref();
        }
    }
    groups.retain(|_, (hits, _)| !hits.is_empty());
    if config.digest.send_empty {
        for route in config.routing.forces.keys() {
            groups.entry((false, route.clone())).or_default();
        }
        groups.entry((true, DEFAULT_ROUTE.to_string())).or_default();
    }
    for ((is_default, route), (mut group, backlog)) in groups {
        let recipients = if is_default {
            config.routing.default.clone()
        } else {
            config.routing.forces.get(&route).cloned().unwrap_or_default()
        };
        let label = if is_default { "Default route" } else { route.as_str() };
        let backlog = backlog.filter(|b| b.counts.total > 0).map(|b| b.view(&route, config.digest.max_hits_per_route, now));
        // In reading order, so that a split keeps each account's hits together where it can.
        group.sort_by(|a, b| {
            (&a.force, a.account_handle.to_lowercase(), &a.account_platform_id, a.post_created_at, a.id).cmp(&(
                &b.force,
                b.account_handle.to_lowercase(),
                &b.account_platform_id,
                b.post_created_at,
                b.id,
            ))
        });
        let parts: Vec<&[&HitRecord]> =
            if group.is_empty() { vec![&group[..]] } else { group.chunks(MAX_HITS_PER_MESSAGE).collect() };
        let n = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let mut view = DigestView::new(label, part, coverage, now);
            if n > 1 {
                view.part = Some(format!("part {} of {n}", i + 1));
            }
            if !part.is_empty() {
                view.chart = history.view(&route);
            }
            view.backlog = backlog.clone();
            let rendered = render::render(&env, &view, &config.digest.subject_prefix)
                .with_context(|| format!("rendering the digest for route {route}"))?;
            let mut hit_ids: Vec<i64> = part.iter().map(|h| h.id).collect();
            hit_ids.sort_unstable();
            let message_id = message_id(&route, &hit_ids, coverage, now, &domain);
            out.messages.push(PlannedDigest {
                route: route.clone(),
                recipients: recipients.clone(),
                hit_ids,
                message_id,
                resend_of: None,
                rendered,
            });
        }
    }
    Ok(out)
}

/// Read what this run sends from the store, route by route, without ever loading every unsent
/// hit: the hits of pending digests, then per route the next `digest.max_hits_per_route` hits
/// and the SQL aggregates of the rest (see [`crate::store::Store::unsent_queue`] and its
/// neighbours).
async fn batches_from_store(
    config: &Config,
    store: &Store,
    pending: &[PendingDigest],
) -> anyhow::Result<(Vec<HitRecord>, Vec<RouteBatch>)> {
    let pending_ids: Vec<i64> = pending.iter().flat_map(|p| p.hit_ids.iter().copied()).collect();
    let pending_hits = store.unsent_hits_by_ids(&pending_ids).await.context("reading the hits of pending digests")?;
    let reserved: std::collections::HashSet<i64> = pending_hits.iter().map(|h| h.id).collect();
    let mut routes: BTreeMap<RouteKey, Vec<Option<String>>> = BTreeMap::new();
    for force in store.unsent_forces().await.context("reading the forces of unsent hits")? {
        routes.entry(route_key(config, force.as_deref())).or_default().push(force);
    }
    // Routes are independent: their queries run side by side on the pool's connections.
    let batches = futures_util::future::try_join_all(
        routes.into_iter().map(|(key, forces)| route_batch(config, store, key, forces, &reserved, &pending_hits)),
    )
    .await?;
    Ok((pending_hits, batches))
}

/// One route's batch: its next hits (skipping those `reserved` by resends) and its backlog.
async fn route_batch(
    config: &Config,
    store: &Store,
    key: RouteKey,
    forces: Vec<Option<String>>,
    reserved: &std::collections::HashSet<i64>,
    pending_hits: &[HitRecord],
) -> anyhow::Result<RouteBatch> {
    let cap = config.digest.max_hits_per_route;
    let ids = store.unsent_queue(&forces, cap, reserved).await.with_context(|| format!("choosing hits for route {}", key.1))?;
    let hits = store.unsent_hits_by_ids(&ids).await.with_context(|| format!("reading hits for route {}", key.1))?;
    // What stays waiting: every unsent hit of the route but those carried by this run.
    let carried: Vec<&HitRecord> =
        hits.iter().chain(pending_hits.iter().filter(|h| route_key(config, h.force.as_deref()) == key)).collect();
    let mut counts = store.unsent_counts(&forces).await.with_context(|| format!("counting hits for route {}", key.1))?;
    for h in &carried {
        counts.add(h.severity, &h.categories, -1);
    }
    let backlog = if counts.total == 0 {
        None
    } else {
        let except: Vec<i64> = carried.iter().map(|h| h.id).collect();
        let accounts_of: Vec<(String, String)> =
            carried.iter().map(|h| (h.platform.clone(), h.account_platform_id.clone())).collect();
        let (oldest, accounts) = tokio::join!(
            store.oldest_unsent(&forces, &except),
            store.top_waiting_accounts(&forces, &accounts_of, backlog::TOP_ACCOUNTS)
        );
        Some(backlog::Backlog {
            counts,
            oldest: oldest.context("reading the longest-waiting hit")?,
            accounts: accounts.context("reading the accounts with most waiting hits")?,
        })
    };
    Ok(RouteBatch { key, hits, backlog })
}

/// The Message-ID of a digest: a SHA-256 of the route and its hit ids, so every resend of the
/// same digest carries the same one. A "nothing found" message has no hits: it is keyed by the
/// scan runs it covers (or the day, when none ran).
pub fn message_id(route: &str, hit_ids: &[i64], coverage: &Coverage, now: DateTime<Utc>, domain: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"exposure-monitor digest v1\0");
    h.update(route.as_bytes());
    h.update(b"\0");
    if hit_ids.is_empty() {
        h.update(b"empty\0");
        match (&coverage.first_run, &coverage.last_run) {
            (Some(first), Some(last)) if coverage.runs > 0 => {
                h.update(format!("{}\0{first}\0{last}", coverage.runs).as_bytes());
            }
            _ => h.update(now.format("%Y-%m-%d").to_string().as_bytes()),
        }
    } else {
        let mut ids = hit_ids.to_vec();
        ids.sort_unstable();
        for id in ids {
            h.update(id.to_be_bytes());
        }
    }
    let hex: String = h.finalize().iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("<digest.{hex}@{domain}>")
}

/// The domain of the From address, for Message-IDs.
fn message_id_domain(from: &str) -> String {
    from.parse::<Mailbox>()
        .map(|m| m.email.domain().to_string())
        .ok()
        .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        .unwrap_or_else(|| "exposure-monitor.invalid".to_string())
}

/// Build the RFC 5322 message of a planned digest: From, To (the route's recipients only),
/// Subject, a deterministic Message-ID, and multipart/alternative text + HTML; when the digest
/// has a chart, the HTML and the chart's PNG are a multipart/related (the HTML shows it by
/// `cid:`, which mail clients display where they block external and `data:` images).
pub fn build_message(from: &str, digest: &PlannedDigest) -> anyhow::Result<Message> {
    let from: Mailbox = from.parse().with_context(|| format!("mail.from `{from}` is not a valid address"))?;
    if digest.recipients.is_empty() {
        anyhow::bail!("route {} has no recipients", digest.route);
    }
    let mut to = Mailboxes::new();
    for r in &digest.recipients {
        let mb: Mailbox =
            r.parse().with_context(|| format!("recipient `{r}` of route {} is not a valid address", digest.route))?;
        to.push(mb);
    }
    let mut builder = Message::builder()
        .from(from)
        .mailbox(lettre::message::header::To::from(to))
        .subject(digest.rendered.subject.clone())
        .message_id(Some(digest.message_id.clone()))
        .date_now()
        .user_agent(format!("exposure-monitor/{}", env!("CARGO_PKG_VERSION")));
    builder =
        builder.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-generated".to_string()));
    let body = match &digest.rendered.chart {
        None => MultiPart::alternative_plain_html(digest.rendered.text.clone(), digest.rendered.html.clone()),
        Some(image) => MultiPart::alternative().singlepart(SinglePart::plain(digest.rendered.text.clone())).multipart(
            MultiPart::related().singlepart(SinglePart::html(digest.rendered.html.clone())).singlepart(
                Attachment::new_inline(image.content_id.clone())
                    .body(image.png.clone(), ContentType::parse("image/png").expect("a valid content type")),
            ),
        ),
    };
    builder.multipart(body).with_context(|| format!("building the message for route {}", digest.route))
}

/// Build and send (or, with `dry_run`, print to `out`) the digest of every unsent hit.
pub async fn run(
    config: &Config,
    store: &Store,
    dry_run: bool,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<DigestOutcome> {
    let pending = store.pending_digests().await.context("reading pending digests")?;
    let now = Utc::now();
    // The chart's counts read another index: on another connection, while the routes are read.
    let (batches, history) = tokio::join!(batches_from_store(config, store, &pending), history(config, store, now));
    let (pending_hits, batches) = batches?;
    let runs = store.runs_since_last_digest().await.context("reading scan runs for the coverage section")?;
    let coverage = Coverage::from_runs(&runs);
    let plan = plan_batches(config, &pending_hits, &pending, batches, &coverage, &history, now)?;
    let mut outcome = DigestOutcome::default();

    if dry_run {
        for d in &plan.messages {
            print_dry_run(out, &config.mail.from, d)?;
        }
        return Ok(outcome);
    }
    for id in &plan.stale_pending {
        store
            .digest_failed(*id, "not resent: none of its hits is still unsent; superseded by a later digest")
            .await
            .with_context(|| format!("closing stale pending digest {id}"))?;
    }
    if plan.messages.is_empty() {
        return Ok(outcome);
    }
    let transport = match Transport::from_config(&config.mail) {
        Ok(t) => t,
        Err(e) => {
            // Nothing can be sent: every route fails, every hit stays unsent.
            for d in &plan.messages {
                outcome.failures.push((d.route.clone(), e.to_string()));
            }
            return Ok(outcome);
        }
    };
    for d in &plan.messages {
        let mut msg = match build_message(&config.mail.from, d) {
            Ok(m) => m,
            Err(e) => {
                outcome.failures.push((d.route.clone(), format!("{e:#}")));
                continue;
            }
        };
        let id = match d.resend_of {
            Some(id) => {
                tracing::info!(route = %d.route, digest = id, "resending a digest left pending by an earlier run");
                id
            }
            None => match begin(store, d).await {
                Ok((id, message_id)) if message_id == d.message_id => id,
                Ok((id, message_id)) => {
                    // An earlier, failed attempt at the same hits used this Message-ID: this is
                    // a new message and gets its own (still derived from the same digest).
                    match build_message(&config.mail.from, &PlannedDigest { message_id, ..d.clone() }) {
                        Ok(m) => msg = m,
                        Err(e) => {
                            let err = format!("{e:#}");
                            store.digest_failed(id, &err).await.context("recording a failed digest")?;
                            outcome.failures.push((d.route.clone(), err));
                            continue;
                        }
                    }
                    id
                }
                Err(e) => {
                    // Nothing recorded and nothing sent: the hits stay for the next run.
                    outcome.failures.push((d.route.clone(), format!("not sent, could not record the digest: {e}")));
                    continue;
                }
            },
        };
        match transport.send(&msg, &d.route).await {
            Ok(delivered) => {
                tracing::info!(route = %d.route, hits = d.hit_ids.len(), ?delivered, "digest delivered");
                if let Err(e) = store.digest_sent(id).await {
                    // Delivered but not marked: the digest stays pending and the next run
                    // resends it with the same Message-ID.
                    outcome.failures.push((
                        d.route.clone(),
                        format!("delivered, but could not be marked sent ({e}); it will be resent with the same Message-ID"),
                    ));
                    continue;
                }
                outcome.messages_sent += 1;
                outcome.hits_sent += d.hit_ids.len();
            }
            Err(e) => {
                let err = e.to_string();
                tracing::warn!(route = %d.route, error = %err, "digest not delivered; its hits stay unsent");
                store
                    .digest_failed(id, &err)
                    .await
                    .with_context(|| format!("recording the failed digest for route {}", d.route))?;
                outcome.failures.push((d.route.clone(), err));
            }
        }
    }
    Ok(outcome)
}

/// Every route's hits per category over the last [`chart::DAYS`] days, for the charts. The
/// chart is an extra: when the hits cannot be read, the digest goes without it (and says why in
/// the log) rather than not at all.
async fn history(config: &Config, store: &Store, now: DateTime<Utc>) -> chart::History {
    // A route must see only its own forces' figures, so count per force; only the chart's
    // window is read, counted in SQL (a few rows per day), and no post text.
    let since = chart::History::new(now).since();
    match store.found_per_day(since).await {
        Ok(rows) => {
            chart::History::from_counts(config, rows.iter().map(|(f, day, c, n)| (f.as_deref(), *day, c.as_slice(), *n)), now)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the hits of the last days; digests go without their chart");
            chart::History::new(now)
        }
    }
}

/// Record `d` as pending. A Message-ID already taken by an earlier digest that failed (the same
/// hits, refused last time) gets a deterministic variant. Returns the digest id and the
/// Message-ID recorded.
async fn begin(store: &Store, d: &PlannedDigest) -> Result<(i64, String), crate::store::StoreError> {
    let mut message_id = d.message_id.clone();
    for attempt in 1u32.. {
        match store.begin_digest(&d.route, &d.recipients, &message_id, &d.hit_ids).await {
            Err(crate::store::StoreError::Sql(sqlx::Error::Database(e))) if e.is_unique_violation() && attempt < 100 => {
                message_id = salted_message_id(&d.message_id, attempt);
            }
            other => return other.map(|id| (id, message_id)),
        }
    }
    unreachable!("the loop returns")
}

/// The `n`-th variant of a Message-ID: same domain, a hash of the original and `n`.
pub fn salted_message_id(message_id: &str, n: u32) -> String {
    let domain = message_id.trim_end_matches('>').rsplit_once('@').map(|(_, d)| d).unwrap_or("exposure-monitor.invalid");
    let mut h = Sha256::new();
    h.update(message_id.as_bytes());
    h.update(n.to_be_bytes());
    let hex: String = h.finalize().iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("<digest.{hex}@{domain}>")
}

fn print_dry_run(out: &mut (dyn std::io::Write + Send), from: &str, d: &PlannedDigest) -> anyhow::Result<()> {
    match d.resend_of {
        Some(id) => writeln!(out, "===== resend of pending digest {id} for route {} (dry run: not sent) =====", d.route)?,
        None => writeln!(out, "===== digest for route {} (dry run: not sent) =====", d.route)?,
    }
    writeln!(out, "From: {from}")?;
    writeln!(out, "To: {}", d.recipients.join(", "))?;
    writeln!(out, "Subject: {}", d.rendered.subject)?;
    writeln!(out, "Message-ID: {}", d.message_id)?;
    writeln!(out)?;
    out.write_all(d.rendered.text.as_bytes())?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A config built directly (not parsed), so these tests do not depend on the forces list.
    pub(crate) fn config(send_empty: bool) -> Config {
        let mut forces = BTreeMap::new();
        forces.insert("Kent Police".to_string(), vec!["psd-kent@example.invalid".into(), "duty-kent@example.invalid".into()]);
        forces.insert("Thames Valley Police".to_string(), vec!["psd-tvp@example.invalid".into()]);
        Config {
            path: "/tmp/x/config.toml".into(),
            database: "/tmp/x/db".into(),
            patterns: "/tmp/x/patterns".into(),
            forces: crate::forces::Forces::embedded(),
            operator_contact: String::new(),
            sources: vec![],
            mail: crate::config::MailConfig {
                from: "Exposure Monitor <monitor@psd.example.police.uk>".into(),
                transport: crate::config::TransportConfig::File { outbox: "/tmp/x/outbox".into() },
            },
            routing: crate::config::Routing { forces, default: vec!["triage@example.invalid".into()] },
            retention: crate::config::Retention { dismissed_days: 30, days: 365 },
            digest: crate::config::DigestSettings {
                send_empty,
                subject_prefix: "[exposure-monitor]".into(),
                max_hits_per_route: crate::config::DEFAULT_MAX_HITS_PER_ROUTE,
            },
        }
    }

    fn hit(id: i64, force: Option<&str>, text: &str) -> HitRecord {
        render::tests::hit(id, force, &format!("user{id}"), text, &["raid"])
    }

    fn now() -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 11, 22, 7, 0, 0).unwrap()
    }

    #[test]
    fn each_route_gets_only_its_own_hits() {
        let cfg = config(true);
        let hits = vec![
            hit(1, Some("Kent Police"), "raid at Elmtree Close"),
            hit(2, Some("Thames Valley Police"), "raid at Cowley Road"),
            hit(3, None, "raid at Nowhere Lane"),
            hit(4, Some("Essex Police"), "raid at Essex Street"),
            hit(5, Some("Kent Police"), "raid at Kent Street"),
        ];
        let plans = plan(&cfg, &hits, &[], &Coverage::default(), now()).unwrap().messages;
        let by_route: BTreeMap<&str, &PlannedDigest> = plans.iter().map(|p| (p.route.as_str(), p)).collect();
        assert_eq!(by_route.len(), 3, "{plans:#?}");
        let kent = by_route["Kent Police"];
        assert_eq!(kent.hit_ids, vec![1, 5]);
        assert_eq!(kent.recipients, vec!["psd-kent@example.invalid", "duty-kent@example.invalid"]);
        let tvp = by_route["Thames Valley Police"];
        assert_eq!(tvp.hit_ids, vec![2]);
        let default = by_route[DEFAULT_ROUTE];
        assert_eq!(default.hit_ids, vec![3, 4], "unknown and unrouted forces go to the default route");
        assert_eq!(default.recipients, vec!["triage@example.invalid"]);
        // No message carries another route's text.
        for p in &plans {
            for h in &hits {
                let street = h.text.trim_start_matches("raid at ");
                let mine = p.hit_ids.contains(&h.id);
                assert_eq!(p.rendered.text.contains(street), mine, "{street} in {}", p.route);
                assert_eq!(p.rendered.html.contains(street), mine, "{street} in {} (html)", p.route);
            }
        }
        assert!(kent.rendered.subject.starts_with("[exposure-monitor] Kent Police: 2 hits"), "{}", kent.rendered.subject);
    }

    #[test]
    fn empty_routes_get_nothing_found_only_when_configured() {
        let hits = vec![hit(1, Some("Kent Police"), "raid at Elmtree Close")];
        let plans = plan(&config(true), &hits, &[], &Coverage::default(), now()).unwrap().messages;
        let routes: Vec<&str> = plans.iter().map(|p| p.route.as_str()).collect();
        assert_eq!(routes, vec!["Kent Police", "Thames Valley Police", DEFAULT_ROUTE]);
        let tvp = &plans[1];
        assert!(tvp.hit_ids.is_empty());
        assert!(tvp.rendered.subject.contains("nothing found"), "{}", tvp.rendered.subject);
        assert!(tvp.rendered.text.contains("Nothing found"));

        let quiet = config(false);
        let plans = plan(&quiet, &hits, &[], &Coverage::default(), now()).unwrap().messages;
        assert_eq!(plans.len(), 1);
        assert!(plan(&quiet, &[], &[], &Coverage::default(), now()).unwrap().messages.is_empty());
    }

    #[test]
    fn message_id_is_deterministic_per_route_and_hits() {
        let cfg = config(true);
        let hits = vec![hit(1, Some("Kent Police"), "raid a"), hit(2, Some("Kent Police"), "raid b")];
        let a = plan(&cfg, &hits, &[], &Coverage::default(), now()).unwrap().messages;
        let later = now() + chrono::Duration::hours(30);
        let mut reversed = hits.clone();
        reversed.reverse();
        let b = plan(&cfg, &reversed, &[], &Coverage::default(), later).unwrap().messages;
        assert_eq!(a[0].message_id, b[0].message_id, "a resend carries the same Message-ID");
        assert!(a[0].message_id.starts_with("<digest.") && a[0].message_id.ends_with("@psd.example.police.uk>"));
        let c = plan(&cfg, &hits[..1], &[], &Coverage::default(), now()).unwrap().messages;
        assert_ne!(a[0].message_id, c[0].message_id);
        let ids: std::collections::HashSet<&str> = a.iter().map(|p| p.message_id.as_str()).collect();
        assert_eq!(ids.len(), a.len(), "distinct per route");
    }

    fn pending(id: i64, route: &str, hit_ids: &[i64]) -> PendingDigest {
        PendingDigest {
            id,
            route: route.into(),
            recipients: vec!["old-kent@example.invalid".into()],
            message_id: format!("<digest.pending{id}@psd.example.police.uk>"),
            created_at: now(),
            hit_ids: hit_ids.to_vec(),
        }
    }

    #[test]
    fn a_pending_digest_is_resent_as_it_was_and_its_hits_not_twice() {
        let cfg = config(true);
        let hits = vec![hit(1, Some("Kent Police"), "raid a"), hit(2, Some("Kent Police"), "raid b")];
        // Digest 9 reserved hit 1 (and hit 7, since delivered elsewhere); digest 8 has nothing left.
        let plan =
            plan(&cfg, &hits, &[pending(9, "Kent Police", &[1, 7]), pending(8, "Kent Police", &[])], &Coverage::default(), now())
                .unwrap();
        assert_eq!(plan.stale_pending, vec![8]);
        let resend = &plan.messages[0];
        assert_eq!(resend.resend_of, Some(9));
        assert_eq!(resend.hit_ids, vec![1]);
        assert_eq!(resend.message_id, "<digest.pending9@psd.example.police.uk>", "same Message-ID as first sent");
        assert_eq!(resend.recipients, vec!["old-kent@example.invalid"], "same recipients as first sent");
        assert!(resend.rendered.text.contains("[[raid]] a"));
        let kent: Vec<&PlannedDigest> = plan.messages[1..].iter().filter(|p| p.route == "Kent Police").collect();
        assert_eq!(kent.len(), 1);
        assert_eq!(kent[0].hit_ids, vec![2], "a reserved hit is not planned a second time");
        assert_eq!(kent[0].resend_of, None);
        let all: Vec<i64> = plan.messages.iter().flat_map(|p| p.hit_ids.iter().copied()).collect();
        assert_eq!(all.len(), 2, "{all:?}");
    }

    #[test]
    fn a_big_day_is_split_into_parts_that_carry_every_hit_once() {
        let mut cfg = config(true);
        cfg.digest.max_hits_per_route = 400;
        let n = MAX_HITS_PER_MESSAGE as i64 * 2 + 5;
        let hits: Vec<HitRecord> = (1..=n).map(|i| hit(i, Some("Kent Police"), "raid here")).collect();
        let plans = plan(&cfg, &hits, &[], &Coverage::default(), now()).unwrap().messages;
        let kent: Vec<&PlannedDigest> = plans.iter().filter(|p| p.route == "Kent Police").collect();
        assert_eq!(kent.len(), 3);
        let mut all: Vec<i64> = kent.iter().flat_map(|p| p.hit_ids.iter().copied()).collect();
        all.sort_unstable();
        assert_eq!(all, (1..=n).collect::<Vec<_>>());
        assert!(kent[0].rendered.subject.contains("(part 1 of 3)"), "{}", kent[0].rendered.subject);
        assert!(kent[2].rendered.text.contains("(part 3 of 3)"));
        let ids: std::collections::HashSet<&str> = kent.iter().map(|p| p.message_id.as_str()).collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn a_backlog_over_the_cap_sends_the_most_severe_and_longest_waiting_and_summarises_the_rest() {
        use crate::model::{Category, Severity};
        let mut cfg = config(false);
        cfg.digest.max_hits_per_route = 3;
        let base = now() - chrono::Duration::days(5);
        let mut hits = vec![];
        for i in 1..=8i64 {
            let mut h = hit(i, Some("Kent Police"), "raid here");
            h.severity = if i % 3 == 0 { Severity::High } else { Severity::Low };
            h.categories =
                if i % 2 == 0 { vec![Category::Operational, Category::Political] } else { vec![Category::Operational] };
            // Found newest first: hit 8 has waited longest.
            h.retrieved_at = base + chrono::Duration::hours(10 - i);
            h.account_platform_id = format!("acct{}", i % 2);
            h.account_handle = format!("<b>user{}</b>", i % 2);
            hits.push(h);
        }
        hits.push(hit(9, Some("Thames Valley Police"), "raid there"));
        let plans = plan(&cfg, &hits, &[], &Coverage::default(), now()).unwrap().messages;
        assert_eq!(plans.len(), 2, "one message per route");
        let kent = plans.iter().find(|p| p.route == "Kent Police").unwrap();
        // High: 3 and 6 (6 waited longer), then the longest-waiting low one: 8.
        assert_eq!(kent.hit_ids, vec![3, 6, 8]);
        let text = &kent.rendered.text;
        assert!(
            kent.rendered.subject.contains("3 hits (2 high)") && kent.rendered.subject.contains("5 more waiting"),
            "{}",
            kent.rendered.subject
        );
        assert!(text.contains("Backlog: 5 more hits waiting for this route"), "{text}");
        assert!(text.contains("By severity: 0 high, 0 medium, 5 low."), "{text}");
        assert!(text.contains("By category: operational 5, political 2 "), "{text}");
        // Waiting: 1, 2, 4, 5, 7; hit 7 was found first of them (base + 3h).
        assert!(
            text.contains(&format!("Longest waiting: found {}", render::fmt_time(base + chrono::Duration::hours(3)))),
            "{text}"
        );
        assert!(text.contains("  3 - Name of user7 (<b>user1</b> on mastodon)\n  2 - Name of user4 (<b>user0</b>"), "{text}");
        assert!(text.contains("List them now: exposure-monitor hits list --unsent --route 'Kent Police' --limit 5"), "{text}");
        let html = &kent.rendered.html;
        assert!(html.contains("&lt;b&gt;user1&lt;&#x2f;b&gt;") && !html.contains("<b>user1</b>"), "account names are escaped");
        assert!(html.contains("Backlog: 5 more hits waiting"));
        let tvp = plans.iter().find(|p| p.route == "Thames Valley Police").unwrap();
        assert_eq!(tvp.hit_ids, vec![9]);
        assert!(!tvp.rendered.text.contains("Backlog") && !tvp.rendered.html.contains("Backlog"), "no backlog, no section");
    }

    #[test]
    fn built_message_has_headers_and_both_parts() {
        let cfg = config(true);
        let mut h = hit(1, Some("Kent Police"), "raid <b>x</b>");
        h.account_display_name = "Evil\r\nBcc: someone@example.com".into();
        let plans = plan(&cfg, &[h], &[], &Coverage::default(), now()).unwrap().messages;
        let msg = build_message(&cfg.mail.from, &plans[0]).unwrap();
        let raw = String::from_utf8(msg.formatted()).unwrap();
        let parsed = mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap();
        let header_end = raw.find("\r\n\r\n").unwrap();
        let headers = raw[..header_end].to_ascii_lowercase();
        assert!(!headers.contains("\nbcc:") && !headers.contains("evil"), "{headers}");
        assert!(headers.contains("auto-submitted: auto-generated"));
        assert_eq!(parsed.message_id(), Some(plans[0].message_id.trim_matches(['<', '>'])));
        let to: Vec<&str> = parsed.to().unwrap().iter().filter_map(|a| a.address()).collect();
        assert_eq!(to, vec!["psd-kent@example.invalid", "duty-kent@example.invalid"]);
        assert_eq!(parsed.from().unwrap().first().unwrap().address(), Some("monitor@psd.example.police.uk"));
        assert_eq!(parsed.subject(), Some(plans[0].rendered.subject.as_str()));
        assert!(parsed.body_text(0).unwrap().contains("[[raid]] <b>x</b>"));
        assert!(parsed.body_html(0).unwrap().contains("&lt;b&gt;x&lt;&#x2f;b&gt;"));
    }

    #[test]
    fn each_message_with_hits_carries_its_own_routes_chart_inline() {
        let cfg = config(true);
        let kent = hit(1, Some("Kent Police"), "raid at Elmtree Close");
        let tvp = hit(2, Some("Thames Valley Police"), "raid at Cowley Road");
        let mut history = chart::History::new(now());
        let today = now().date_naive();
        for _ in 0..3 {
            history.add("Kent Police", today, &[crate::model::Category::Operational]);
        }
        history.add("Thames Valley Police", today, &[crate::model::Category::Political]);
        let plans = plan_with_history(&cfg, &[kent, tvp], &[], &Coverage::default(), &history, now()).unwrap().messages;
        let by_route: BTreeMap<&str, &PlannedDigest> = plans.iter().map(|p| (p.route.as_str(), p)).collect();
        let k = by_route["Kent Police"];
        let image = k.rendered.chart.clone().expect("Kent's message has a chart");
        assert!(k.rendered.html.contains(&format!("src=\"cid:{}\"", image.content_id)), "{}", k.rendered.html);
        assert!(k.rendered.text.contains("Hits per category,"), "{}", k.rendered.text);
        // Kent's chart has Kent's figures only.
        assert!(k.rendered.text.contains("operational") && !k.rendered.text.contains("political"), "{}", k.rendered.text);
        assert!(by_route["Thames Valley Police"].rendered.text.contains("political"));
        // A "nothing found" message stays short: no chart.
        let empty = by_route[DEFAULT_ROUTE];
        assert!(empty.hit_ids.is_empty() && empty.rendered.chart.is_none());
        assert!(!empty.rendered.html.contains("cid:") && !empty.rendered.text.contains("Hits per category"));

        use mail_parser::MimeHeaders;
        let raw = build_message(&cfg.mail.from, k).unwrap().formatted();
        let parsed = mail_parser::MessageParser::default().parse(&raw[..]).unwrap();
        assert!(parsed.body_html(0).unwrap().contains(&format!("cid:{}", image.content_id)));
        assert!(parsed.body_text(0).unwrap().contains("Hits per category,"));
        let part = parsed
            .parts
            .iter()
            .find(|p| p.content_id() == Some(image.content_id.as_str()))
            .expect("an image part with the chart's Content-ID");
        assert_eq!(part.content_type().map(|c| (c.ctype(), c.subtype())), Some(("image", Some("png"))));
        assert_eq!(part.contents(), &image.png[..]);
        let lower = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(lower.contains("multipart/related"), "the image is related to the HTML part");
        // Without a chart the message stays a plain alternative.
        let raw = String::from_utf8(build_message(&cfg.mail.from, empty).unwrap().formatted()).unwrap();
        assert!(!raw.to_ascii_lowercase().contains("multipart/related"));
    }

    #[test]
    fn bad_recipient_is_an_error_naming_it() {
        let cfg = config(true);
        let mut plans = plan(&cfg, &[], &[], &Coverage::default(), now()).unwrap().messages;
        plans[0].recipients = vec!["not an address".into()];
        let err = build_message(&cfg.mail.from, &plans[0]).unwrap_err();
        assert!(format!("{err:#}").contains("not an address"), "{err:#}");
    }
}
