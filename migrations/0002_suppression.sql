-- exposure-monitor schema, version 2: remembered suppression.
--
-- A hit dismissed in review suppresses the same finding (same platform and account, same rule,
-- same normalised matched text) in later scans. The normalised text is kept only as its
-- SHA-256 (see `store::suppression_key`), so retention blanking a dismissed hit's text and
-- evidence leaves no post words behind here. `hit_id` names the dismissal that created the
-- key; a key outlives its hit (retention may delete the hit, the decision still stands).

CREATE TABLE suppressions (
    id                   INTEGER PRIMARY KEY,
    platform             TEXT NOT NULL,
    account_platform_id  TEXT NOT NULL,
    rule_id              TEXT NOT NULL,
    normalised_sha256    TEXT NOT NULL,     -- hex SHA-256 of the normalised matched text
    hit_id               INTEGER REFERENCES hits (id) ON DELETE SET NULL,
    post_platform_id     TEXT NOT NULL,     -- the dismissed hit's post (not counted again when re-read)
    created_at           TEXT NOT NULL,
    UNIQUE (platform, account_platform_id, rule_id, normalised_sha256)
);
CREATE INDEX suppressions_hit ON suppressions (hit_id);

-- Findings a scan did not store because a dismissal suppressed them, per source and run.
ALTER TABLE run_sources ADD COLUMN suppressed INTEGER NOT NULL DEFAULT 0;
