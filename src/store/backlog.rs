//! The digest's reads over the unsent hits, whatever their number: which forces have unsent
//! hits, the next hits a route's digest carries, what is left waiting (counts by severity and
//! category, the longest-waiting hit, the accounts with most waiting hits) and the chart's
//! per-day counts. Every query walks an index of migration 0004 and aggregates in SQL; at most
//! `limit` rows (or a few per force, severity and category) ever reach this process, so memory
//! does not grow with the backlog.
//!
//! A route is a set of force values (`None`: hits whose force is unknown). The digest decides
//! which forces go to which route (see [`crate::config::Routing::route_for`]); the store only
//! answers per force value.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{parse_json, parse_ts, ucount, HitRecord, Result, Store, StoreError, HIT_COLUMNS};
use crate::model::{Category, Severity};

/// Which route's hits `hits list` shows (`--route`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteFilter {
    /// The hits of one force that has a route of its own.
    Force(String),
    /// The default route: hits of an unknown force or of a force without a route (`routed`
    /// lists the forces that have one).
    Default { routed: Vec<String> },
}

/// What `hits list` shows beyond [`super::HitFilter`]: only unsent hits, only one route's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HitScope {
    pub unsent: bool,
    pub route: Option<RouteFilter>,
}

/// Counts of the unsent hits of some forces, by severity and category.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsentCounts {
    pub total: u64,
    pub by_severity: BTreeMap<Severity, u64>,
    /// A hit in several categories counts in each.
    pub by_category: BTreeMap<Category, u64>,
}

impl UnsentCounts {
    /// Add `n` hits of this severity and these categories (negative: take them away).
    pub fn add(&mut self, severity: Severity, categories: &[Category], n: i64) {
        let apply = |v: &mut u64| *v = v.saturating_add_signed(n);
        apply(&mut self.total);
        apply(self.by_severity.entry(severity).or_default());
        let mut cats = categories.to_vec();
        cats.sort_unstable();
        cats.dedup();
        for c in cats {
            apply(self.by_category.entry(c).or_default());
        }
        self.by_severity.retain(|_, v| *v > 0);
        self.by_category.retain(|_, v| *v > 0);
    }
}

/// An account with unsent hits, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingAccount {
    pub platform: String,
    pub platform_id: String,
    /// Handle and display name from the account's newest hit.
    pub handle: String,
    pub display_name: String,
    pub hits: u64,
}

/// Severities from most to least severe: the order hits are chosen in.
const SEVERITY_ORDER: [Severity; 3] = [Severity::High, Severity::Medium, Severity::Low];

fn push_not_in<'a>(q: &mut QueryBuilder<'a, Sqlite>, ids: &'a [i64]) {
    if ids.is_empty() {
        return;
    }
    q.push(" AND id NOT IN (");
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    q.push(")");
}

fn parse_categories(json: &str, what: impl Fn() -> String) -> Result<Vec<Category>> {
    let names: Vec<String> = parse_json(json, &what)?;
    names.iter().map(|c| Category::from_str(c).map_err(|e| StoreError::Corrupt { what: what(), detail: e.to_string() })).collect()
}

impl Store {
    /// Every force value that has unsent hits (`None`: hits whose force is unknown), in order.
    /// One index seek per distinct force, however many hits each has.
    pub async fn unsent_forces(&self) -> Result<Vec<Option<String>>> {
        let mut out: Vec<Option<String>> = sqlx::query_as::<_, (String,)>(
            "WITH RECURSIVE f(force) AS ( \
                 SELECT min(force) FROM hits INDEXED BY hits_unsent_queue WHERE digest_id IS NULL AND force IS NOT NULL \
                 UNION ALL \
                 SELECT (SELECT min(force) FROM hits INDEXED BY hits_unsent_queue \
                         WHERE digest_id IS NULL AND force > f.force) FROM f \
                 WHERE f.force IS NOT NULL) \
             SELECT force FROM f WHERE force IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|(f,)| Some(f))
        .collect();
        let unknown: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM hits INDEXED BY hits_unsent_queue WHERE digest_id IS NULL AND force IS NULL LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        if unknown.is_some() {
            out.push(None);
        }
        Ok(out)
    }

    /// Counts of the unsent hits of these forces by severity and category.
    pub async fn unsent_counts(&self, forces: &[Option<String>]) -> Result<UnsentCounts> {
        let mut counts = UnsentCounts::default();
        for force in forces {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT severity, categories, count(*) FROM hits INDEXED BY hits_unsent_summary \
                 WHERE digest_id IS NULL AND force IS ? GROUP BY severity, categories",
            )
            .bind(force.as_deref())
            .fetch_all(&self.pool)
            .await?;
            for (severity, cats, n) in rows {
                let what = || format!("unsent hits of force {force:?}, column categories");
                let severity = Severity::from_str(&severity).map_err(|e| StoreError::Corrupt {
                    what: format!("unsent hits of force {force:?}, column severity"),
                    detail: e.to_string(),
                })?;
                counts.add(severity, &parse_categories(&cats, what)?, n);
            }
        }
        Ok(counts)
    }

    /// The ids of the next `limit` unsent hits of these forces, most severe first, then the
    /// longest waiting (earliest found) first, then by id; `skip` ids are passed over.
    pub async fn unsent_queue(&self, forces: &[Option<String>], limit: usize, skip: &HashSet<i64>) -> Result<Vec<i64>> {
        let mut out: Vec<i64> = Vec::with_capacity(limit);
        let want = i64::try_from(limit.saturating_add(skip.len())).unwrap_or(i64::MAX);
        for severity in SEVERITY_ORDER {
            if out.len() >= limit {
                break;
            }
            // Each force's queue is in index order; merge them by (found, id).
            let mut candidates: Vec<(String, i64)> = vec![];
            for force in forces {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT retrieved_at, id FROM hits INDEXED BY hits_unsent_queue \
                     WHERE digest_id IS NULL AND force IS ? AND severity = ? ORDER BY retrieved_at, id LIMIT ?",
                )
                .bind(force.as_deref())
                .bind(severity.as_str())
                .bind(want)
                .fetch_all(&self.pool)
                .await?;
                candidates.extend(rows.into_iter().filter(|(_, id)| !skip.contains(id)));
            }
            candidates.sort_unstable();
            out.extend(candidates.into_iter().map(|(_, id)| id).take(limit - out.len()));
        }
        Ok(out)
    }

    /// The unsent hits among `ids`, in ascending id order (ids sent since, or deleted by
    /// retention, are left out).
    pub async fn unsent_hits_by_ids(&self, ids: &[i64]) -> Result<Vec<HitRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        // Well under SQLite's limit of bound parameters per statement.
        for chunk in ids.chunks(5000) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("SELECT {HIT_COLUMNS} FROM hits WHERE digest_id IS NULL AND id IN ("));
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(")");
            for row in q.build().fetch_all(&self.pool).await? {
                out.push(super::hit_from_row(&row)?);
            }
        }
        out.sort_by_key(|h| h.id);
        out.dedup_by_key(|h| h.id);
        Ok(out)
    }

    /// When the longest-waiting unsent hit of these forces was found, leaving out `except`.
    pub async fn oldest_unsent(&self, forces: &[Option<String>], except: &[i64]) -> Result<Option<DateTime<Utc>>> {
        let mut oldest: Option<String> = None;
        for force in forces {
            for severity in SEVERITY_ORDER {
                let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "SELECT retrieved_at FROM hits INDEXED BY hits_unsent_queue WHERE digest_id IS NULL AND force IS ",
                );
                q.push_bind(force.as_deref()).push(" AND severity = ").push_bind(severity.as_str());
                push_not_in(&mut q, except);
                q.push(" ORDER BY retrieved_at LIMIT 1");
                if let Some(row) = q.build().fetch_optional(&self.pool).await? {
                    let at: String = row.try_get(0)?;
                    if oldest.as_ref().map_or(true, |o| at < *o) {
                        oldest = Some(at);
                    }
                }
            }
        }
        oldest.map(|s| parse_ts(&s, || "unsent hits, column retrieved_at".into())).transpose()
    }

    /// The `limit` accounts with the most unsent hits among these forces, most first (ties by
    /// platform and id), not counting `except`: (platform, platform id) of each hit to leave
    /// out (the hits this run carries).
    ///
    /// SQL counts every unsent hit (no per-row exclusion, which would cost a lookup per row)
    /// and returns the top `limit` + (accounts in `except`); the excluded hits are then taken
    /// away here. That is exact: at least `limit` of those accounts lose nothing, and every
    /// account left out of them has no more hits than they do.
    pub async fn top_waiting_accounts(
        &self,
        forces: &[Option<String>],
        except: &[(String, String)],
        limit: u32,
    ) -> Result<Vec<WaitingAccount>> {
        if forces.is_empty() || limit == 0 {
            return Ok(vec![]);
        }
        let mut excluded: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (p, a) in except {
            *excluded.entry((p.as_str(), a.as_str())).or_default() += 1;
        }
        let want = i64::from(limit) + i64::try_from(excluded.len()).unwrap_or(i64::MAX / 2);
        // Per force value, the accounts' counts come grouped in index order (no sort). One
        // force: SQL keeps the top ones. Several (the default route): every account's counts
        // are added up here first, since an account can have hits under more than one force
        // value; that map holds one entry per account with waiting hits, not per hit.
        let mut totals: BTreeMap<(String, String), u64> = BTreeMap::new();
        let one = forces.len() == 1;
        for force in forces {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT platform, account_platform_id, count(*) AS n FROM hits INDEXED BY hits_unsent_accounts \
                 WHERE digest_id IS NULL AND force IS ",
            );
            q.push_bind(force.as_deref()).push(" GROUP BY platform, account_platform_id");
            if one {
                q.push(" ORDER BY n DESC, platform, account_platform_id LIMIT ").push_bind(want);
            }
            for row in q.build().fetch_all(&self.pool).await? {
                let n = ucount(row.try_get(2)?);
                *totals.entry((row.try_get(0)?, row.try_get(1)?)).or_default() += n;
            }
        }
        let mut counted: Vec<(u64, String, String)> = vec![];
        for ((platform, platform_id), n) in totals {
            let left = n.saturating_sub(excluded.get(&(platform.as_str(), platform_id.as_str())).copied().unwrap_or(0));
            if left > 0 {
                counted.push((left, platform, platform_id));
            }
        }
        counted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| (&a.1, &a.2).cmp(&(&b.1, &b.2))));
        counted.truncate(limit as usize);
        let mut out = Vec::with_capacity(counted.len());
        for (hits, platform, platform_id) in counted {
            let (handle, display_name): (String, String) = sqlx::query_as(
                "SELECT account_handle, account_display_name FROM hits WHERE platform = ? AND account_platform_id = ? \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(&platform)
            .bind(&platform_id)
            .fetch_one(&self.pool)
            .await?;
            out.push(WaitingAccount { platform, platform_id, handle, display_name, hits });
        }
        Ok(out)
    }

    /// Hits found per UTC day since `since`, per force and set of categories (sent or not):
    /// the digest's charts. Counted in SQL over an index, so only a few rows per day come back.
    pub async fn found_per_day(&self, since: DateTime<Utc>) -> Result<Vec<(Option<String>, NaiveDate, Vec<Category>, u64)>> {
        let rows: Vec<(String, Option<String>, String, i64)> = sqlx::query_as(
            "SELECT substr(retrieved_at, 1, 10), force, categories, count(*) FROM hits INDEXED BY hits_found_day \
             WHERE substr(retrieved_at, 1, 10) >= ? GROUP BY substr(retrieved_at, 1, 10), force, categories",
        )
        .bind(since.format("%Y-%m-%d").to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(day, force, cats, n)| {
                let what = || format!("hits found on {day}, column categories");
                let date = NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                    .map_err(|e| StoreError::Corrupt { what: what(), detail: format!("`{day}`: {e}") })?;
                Ok((force, date, parse_categories(&cats, what)?, ucount(n)))
            })
            .collect()
    }

    /// [`Store::list_hits`] narrowed by `scope` (unsent only, one route only).
    pub async fn list_hits_scoped(&self, filter: &super::HitFilter, scope: &HitScope) -> Result<Vec<HitRecord>> {
        let mut hits = Vec::new();
        self.for_each_hit_scoped(filter, scope, |h| {
            hits.push(h);
            Ok::<_, StoreError>(())
        })
        .await?;
        Ok(hits)
    }

    /// The hits of [`Store::list_hits_scoped`] handed to `each` one at a time as SQLite yields
    /// them, never all in memory: `hits list` and `hits export` print a backlog of any size this
    /// way. Returns how many were handed over; an error from `each` stops the listing.
    pub async fn for_each_hit_scoped<E: From<StoreError>>(
        &self,
        filter: &super::HitFilter,
        scope: &HitScope,
        mut each: impl FnMut(HitRecord) -> std::result::Result<(), E>,
    ) -> std::result::Result<u64, E> {
        use futures_util::TryStreamExt;
        let mut q = scoped_query(filter, scope);
        let mut rows = q.build().fetch(&self.pool);
        let mut n = 0;
        while let Some(row) = rows.try_next().await.map_err(|e| E::from(e.into()))? {
            each(super::hit_from_row(&row)?)?;
            n += 1;
        }
        Ok(n)
    }

    /// Rows of the hits table read by a digest query plan, for tests: `EXPLAIN QUERY PLAN` of
    /// `sql` as one string.
    #[doc(hidden)]
    pub async fn explain(&self, sql: &str) -> Result<String> {
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(&self.pool).await?;
        Ok(rows.iter().filter_map(|r| r.try_get::<String, _>("detail").ok()).collect::<Vec<_>>().join("\n"))
    }
}

/// The SELECT of hits matching `filter` within `scope`.
fn scoped_query<'a>(filter: &'a super::HitFilter, scope: &'a HitScope) -> QueryBuilder<'a, Sqlite> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("SELECT {HIT_COLUMNS} FROM hits h WHERE 1 = 1"));
    if scope.unsent {
        q.push(" AND h.digest_id IS NULL");
    }
    match &scope.route {
        None => {}
        Some(RouteFilter::Force(f)) => {
            q.push(" AND h.force = ").push_bind(f.clone());
        }
        Some(RouteFilter::Default { routed }) => {
            q.push(" AND (h.force IS NULL");
            if !routed.is_empty() {
                q.push(" OR h.force NOT IN (");
                let mut sep = q.separated(", ");
                for f in routed {
                    sep.push_bind(f.clone());
                }
                q.push(")");
            }
            q.push(")");
        }
    }
    super::push_hit_filter(&mut q, filter);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each digest query searches one of migration 0004's indexes, covering (the table is never
    /// read), and never scans: its cost follows the rows it returns, not the backlog.
    #[tokio::test]
    async fn digest_queries_search_their_covering_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).await.unwrap();
        let plans = [
            "SELECT severity, categories, count(*) FROM hits INDEXED BY hits_unsent_summary \
             WHERE digest_id IS NULL AND force IS 'Kent Police' GROUP BY severity, categories",
            "SELECT retrieved_at, id FROM hits INDEXED BY hits_unsent_queue \
             WHERE digest_id IS NULL AND force IS NULL AND severity = 'high' ORDER BY retrieved_at, id LIMIT 5",
            "SELECT platform, account_platform_id, count(*) AS n FROM hits INDEXED BY hits_unsent_accounts \
             WHERE digest_id IS NULL AND force IS 'Kent Police' GROUP BY platform, account_platform_id",
            "SELECT substr(retrieved_at, 1, 10), force, categories, count(*) FROM hits INDEXED BY hits_found_day \
             WHERE substr(retrieved_at, 1, 10) >= '2026-01-01' GROUP BY substr(retrieved_at, 1, 10), force, categories",
        ];
        for sql in plans {
            let plan = store.explain(sql).await.unwrap();
            println!("{sql}\n{plan}\n");
            assert!(plan.contains("COVERING INDEX") && !plan.contains("SCAN hits"), "{sql}\n{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "grouped and ordered by the index: {sql}\n{plan}");
        }
    }
}
