-- exposure-monitor schema, version 3: a source's forced rate-limit waits and opt-out skips.
--
-- Per source and run: how many times the source had to wait for a platform rate limit (a 429,
-- or a budget used up before its reset), so an operator sees a throttled source in `status`;
-- and how many accounts were skipped because their owner opted out (Mastodon noindex /
-- indexable: false, Reddit hide_from_robots, Bluesky no-unauthenticated). Opt-outs are
-- respected, not errors, so they are counted apart from `errors`.

ALTER TABLE run_sources ADD COLUMN rate_limit_waits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE run_sources ADD COLUMN opted_out INTEGER NOT NULL DEFAULT 0;
CREATE INDEX run_sources_source ON run_sources (source, id);
