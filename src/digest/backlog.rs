//! The backlog section of a digest: what a route still has waiting after this message.
//!
//! A digest carries at most `digest.max_hits_per_route` hits per route (most severe first,
//! then the longest waiting). When a route has more, the rest stay unsent (later digests carry
//! them) and the message says so: how many are waiting, by severity and by category, how long
//! the longest-waiting one has waited, the accounts with the most waiting hits, and the command
//! that lists them now. Figures come from the store's SQL aggregates ([`Backlog`] is built by
//! `digest::run`) or, for the pure planner, from hits in memory ([`Backlog::from_hits`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::render::{fmt_time, one_line};
use crate::model::Severity;
use crate::store::{HitRecord, UnsentCounts, WaitingAccount};

/// Accounts named in the backlog section.
pub const TOP_ACCOUNTS: u32 = 10;

/// What a route has waiting after this run's message (the figures, before rendering).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    pub counts: UnsentCounts,
    /// When the longest-waiting hit was found.
    pub oldest: Option<DateTime<Utc>>,
    /// The accounts with most waiting hits, most first (at most [`TOP_ACCOUNTS`]).
    pub accounts: Vec<WaitingAccount>,
}

impl Backlog {
    /// The backlog of `waiting` hits, counted in memory (the pure planner and tests).
    pub fn from_hits(waiting: &[&HitRecord]) -> Backlog {
        let mut b = Backlog::default();
        let mut per_account: BTreeMap<(String, String), (u64, i64, &HitRecord)> = BTreeMap::new();
        for h in waiting {
            b.counts.add(h.severity, &h.categories, 1);
            b.oldest = Some(b.oldest.map_or(h.retrieved_at, |o| o.min(h.retrieved_at)));
            let e = per_account.entry((h.platform.clone(), h.account_platform_id.clone())).or_insert((0, h.id, h));
            e.0 += 1;
            if h.id > e.1 {
                (e.1, e.2) = (h.id, h);
            }
        }
        let mut accounts: Vec<WaitingAccount> = per_account
            .into_iter()
            .map(|((platform, platform_id), (n, _, h))| WaitingAccount {
                platform,
                platform_id,
                handle: h.account_handle.clone(),
                display_name: h.account_display_name.clone(),
                hits: n,
            })
            .collect();
        accounts
            .sort_by(|a, b| b.hits.cmp(&a.hits).then_with(|| (&a.platform, &a.platform_id).cmp(&(&b.platform, &b.platform_id))));
        accounts.truncate(TOP_ACCOUNTS as usize);
        b.accounts = accounts;
        b
    }

    /// What the templates show; `route_arg` is the route as `hits list --route` takes it.
    pub fn view(&self, route_arg: &str, cap: usize, now: DateTime<Utc>) -> BacklogView {
        let sev = |s: Severity| self.counts.by_severity.get(&s).copied().unwrap_or(0);
        BacklogView {
            waiting: self.counts.total,
            cap,
            high: sev(Severity::High),
            medium: sev(Severity::Medium),
            low: sev(Severity::Low),
            categories: self
                .counts
                .by_category
                .iter()
                .map(|(c, n)| CategoryCount { category: c.as_str().replace('_', " "), hits: *n })
                .collect(),
            oldest: self.oldest.map(fmt_time),
            oldest_age: self.oldest.map(|o| age(now - o)),
            accounts: self
                .accounts
                .iter()
                .map(|a| AccountCount {
                    display_name: one_line(&a.display_name, 80),
                    handle: one_line(&a.handle, 80),
                    platform: one_line(&a.platform, 40),
                    hits: a.hits,
                })
                .collect(),
            list_command: format!(
                "exposure-monitor hits list --unsent --route {} --limit {}",
                shell_quote(route_arg),
                self.counts.total.max(1)
            ),
        }
    }
}

/// The backlog section as the templates see it (every name made single-line; the HTML
/// template escapes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BacklogView {
    /// Unsent hits of the route not in this message.
    pub waiting: u64,
    /// `digest.max_hits_per_route`.
    pub cap: usize,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    /// Categories in taxonomy order (a hit counts in each of its categories).
    pub categories: Vec<CategoryCount>,
    pub oldest: Option<String>,
    pub oldest_age: Option<String>,
    pub accounts: Vec<AccountCount>,
    /// The command that lists the waiting hits now.
    pub list_command: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryCount {
    pub category: String,
    pub hits: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountCount {
    pub display_name: String,
    pub handle: String,
    pub platform: String,
    pub hits: u64,
}

/// "3 days 4 hours", "5 hours 2 minutes", "under a minute".
pub fn age(d: chrono::Duration) -> String {
    let mins = d.num_minutes().max(0);
    let (days, hours, minutes) = (mins / 1440, mins / 60 % 24, mins % 60);
    let unit = |n: i64, u: &str| format!("{n} {u}{}", if n == 1 { "" } else { "s" });
    if days > 0 {
        format!("{} {}", unit(days, "day"), unit(hours, "hour"))
    } else if hours > 0 {
        format!("{} {}", unit(hours, "hour"), unit(minutes, "minute"))
    } else if minutes > 0 {
        unit(minutes, "minute")
    } else {
        "under a minute".to_string()
    }
}

/// `s` as one POSIX shell word: bare when it is made of safe characters, else single-quoted.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(chrono::Duration::minutes(3 * 1440 + 4 * 60 + 5)), "3 days 4 hours");
        assert_eq!(age(chrono::Duration::minutes(61)), "1 hour 1 minute");
        assert_eq!(age(chrono::Duration::minutes(5)), "5 minutes");
        assert_eq!(age(chrono::Duration::seconds(20)), "under a minute");
    }

    #[test]
    fn routes_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("default"), "default");
        assert_eq!(shell_quote("Kent Police"), "'Kent Police'");
        assert_eq!(shell_quote("Devon & Cornwall's"), r"'Devon & Cornwall'\''s'");
    }
}
