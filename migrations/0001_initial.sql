-- exposure-monitor schema, version 1.
--
-- Every time is RFC 3339 UTC TEXT with nanoseconds and a `Z` suffix
-- (e.g. 2026-01-02T03:04:05.000000000Z): fixed width, so text order is time order.
-- JSON columns hold the serde forms of the Rust types named beside them.

-- Accounts worth remembering (identity other than `none`, or with identity signals from posts).
-- No bio and no post text: only the verdict and the evidence words.
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    platform      TEXT NOT NULL,
    platform_id   TEXT NOT NULL,
    handle        TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    profile_url   TEXT,
    identity      TEXT NOT NULL,            -- Identity label of the verdict
    force         TEXT,                     -- canonical force name, when known
    verdict       TEXT NOT NULL,            -- IdentityVerdict JSON
    post_signals  TEXT NOT NULL,            -- PostSignals JSON
    first_seen    TEXT NOT NULL,
    last_seen     TEXT NOT NULL,
    UNIQUE (platform, platform_id)
);
CREATE INDEX accounts_last_seen ON accounts (last_seen);

-- Digests: one message per route. A hit is sent once it is in a digest whose state is `sent`.
CREATE TABLE digests (
    id          INTEGER PRIMARY KEY,
    route       TEXT NOT NULL,
    recipients  TEXT NOT NULL,              -- JSON array of addresses
    message_id  TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    error       TEXT,
    created_at  TEXT NOT NULL,
    sent_at     TEXT,
    failed_at   TEXT
);
CREATE INDEX digests_state ON digests (state);

-- Hits: one per (platform, post, author account); re-running a scan inserts nothing new.
CREATE TABLE hits (
    id                    INTEGER PRIMARY KEY,
    source                TEXT NOT NULL,
    platform              TEXT NOT NULL,
    post_platform_id      TEXT NOT NULL,
    account_platform_id   TEXT NOT NULL,
    account_handle        TEXT NOT NULL,
    account_display_name  TEXT NOT NULL,
    profile_url           TEXT,
    force                 TEXT,
    post_url              TEXT,
    post_created_at       TEXT NOT NULL,
    retrieved_at          TEXT NOT NULL,
    text                  TEXT NOT NULL,    -- Post::full_text(); spans index into it
    categories            TEXT NOT NULL,    -- JSON array of category names
    severity              TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
    classification        TEXT NOT NULL,    -- Classification JSON (findings with spans)
    identity              TEXT NOT NULL,    -- IdentityVerdict JSON at the time of the hit
    status                TEXT NOT NULL DEFAULT 'new'
                          CHECK (status IN ('new', 'confirmed', 'dismissed', 'escalated')),
    status_at             TEXT,             -- when the status last changed by review
    digest_id             INTEGER REFERENCES digests (id),  -- the digest that delivered it
    evidence_purged_at    TEXT,             -- text and evidence blanked by retention
    UNIQUE (platform, post_platform_id, account_platform_id)
);
CREATE INDEX hits_digest ON hits (digest_id);
CREATE INDEX hits_status ON hits (status, status_at);
CREATE INDEX hits_post_created ON hits (post_created_at);
CREATE INDEX hits_retrieved ON hits (retrieved_at);
CREATE INDEX hits_force ON hits (force, account_handle, post_created_at);
CREATE INDEX hits_account ON hits (platform, account_platform_id);

CREATE TABLE digest_hits (
    digest_id  INTEGER NOT NULL REFERENCES digests (id) ON DELETE CASCADE,
    hit_id     INTEGER NOT NULL REFERENCES hits (id) ON DELETE CASCADE,
    PRIMARY KEY (digest_id, hit_id)
);
CREATE INDEX digest_hits_hit ON digest_hits (hit_id);

-- Review decisions: append-only (rows go only when retention deletes their hit).
CREATE TABLE review_log (
    id        INTEGER PRIMARY KEY,
    hit_id    INTEGER NOT NULL REFERENCES hits (id) ON DELETE CASCADE,
    reviewer  TEXT NOT NULL,
    status    TEXT NOT NULL CHECK (status IN ('new', 'confirmed', 'dismissed', 'escalated')),
    note      TEXT NOT NULL,
    at        TEXT NOT NULL
);
CREATE INDEX review_log_hit ON review_log (hit_id);
CREATE TRIGGER review_log_append_only BEFORE UPDATE ON review_log
BEGIN
    SELECT RAISE(ABORT, 'review_log is append-only');
END;

CREATE TABLE scan_runs (
    id           INTEGER PRIMARY KEY,
    started_at   TEXT NOT NULL,
    finished_at  TEXT
);

CREATE TABLE run_sources (
    id             INTEGER PRIMARY KEY,
    run_id         INTEGER NOT NULL REFERENCES scan_runs (id) ON DELETE CASCADE,
    source         TEXT NOT NULL,
    accounts_seen  INTEGER NOT NULL,
    identified     INTEGER NOT NULL,
    posts_read     INTEGER NOT NULL,
    hits           INTEGER NOT NULL,
    errors         INTEGER NOT NULL,
    error          TEXT,
    recorded_at    TEXT NOT NULL,
    UNIQUE (run_id, source)
);

CREATE TABLE source_state (
    source         TEXT PRIMARY KEY,
    cursor         TEXT,
    cursor_at      TEXT,
    last_success   TEXT,
    last_error     TEXT,
    last_error_at  TEXT
);

-- Who did what, when: append-only, never updated or deleted.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
