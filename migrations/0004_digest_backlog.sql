-- exposure-monitor schema, version 4: a digest over any backlog, read through indexes.
--
-- A digest carries at most `digest.max_hits_per_route` hits per route (most severe first, then
-- the longest waiting) and summarises the rest, so it must never read every unsent hit. These
-- indexes make each of its queries a walk over a small, ordered part of one index:
--
-- * the unsent hits only (partial: `digest_id IS NULL`), so they cost nothing once sent; each
--   also holds the (always NULL) `digest_id`, after the columns searched by equality, so that
--   SQLite reads it as covering and still walks it in order;
-- * `hits_unsent_queue`: per force and severity, the longest waiting first (the hits it carries);
-- * `hits_unsent_summary`: per force, counts by severity and category (GROUP BY in index order,
--   covering: the table itself is never read);
-- * `hits_unsent_accounts`: per force, the accounts with the most waiting hits;
-- * `hits_found_day`: hits found per day (UTC), force and category, for the chart's window
--   (`retrieved_at` itself too, so that SQLite reads it as covering).

CREATE INDEX hits_unsent_queue ON hits (force, severity, digest_id, retrieved_at) WHERE digest_id IS NULL;
CREATE INDEX hits_unsent_summary ON hits (force, digest_id, severity, categories) WHERE digest_id IS NULL;
CREATE INDEX hits_unsent_accounts ON hits (force, digest_id, platform, account_platform_id) WHERE digest_id IS NULL;
CREATE INDEX hits_found_day ON hits (substr(retrieved_at, 1, 10), force, categories, retrieved_at);
