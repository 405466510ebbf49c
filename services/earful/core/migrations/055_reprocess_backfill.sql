-- Re-scoring and back-filling stored history (earful.storage.reprocess, earful.storage.backfill).
--
-- A job walks the mentions it covers in keyset order (created_at, mention_id) in batches; each
-- batch's changes to the mentions and their rollups, and the job's cursor and counters below, are
-- committed in one transaction. A job that stops (a crash, a kill, a lost connection) therefore
-- resumes after the last committed batch, and a batch is never counted twice. While it runs, its
-- process holds a session advisory lock on the job (pg_try_advisory_lock(class, job_id), see the
-- modules), so no second process runs it at the same time; the lock goes with the connection.

-- `earful reprocess`: stored mentions re-enriched with the models in force.
CREATE TABLE reprocess_jobs (
    job_id             bigserial   PRIMARY KEY,
    state              text        NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed')),
    period_from        timestamptz NOT NULL,  -- created_at >= period_from
    period_to          timestamptz NOT NULL,  -- created_at < period_to
    watchlist_id       text,                  -- only mentions stored with this watchlist (null: all)
    source             text,                  -- only mentions of this source (null: all)
    models             jsonb,                 -- the model versions written by the latest batch
    total              bigint      NOT NULL DEFAULT 0,  -- mentions selected when the job started (for progress)
    cursor_created_at  timestamptz,           -- the last mention done, in keyset order (null: none yet)
    cursor_mention_id  uuid,
    scanned            bigint      NOT NULL DEFAULT 0,  -- mentions read and re-enriched
    rescored           bigint      NOT NULL DEFAULT 0,  -- of which stored anew (something changed) and published
    unchanged          bigint      NOT NULL DEFAULT 0,  -- of which already as the models say
    erased             bigint      NOT NULL DEFAULT 0,  -- skipped: their author's data was erased
    requested_by       text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    error              text
);

-- `earful watchlists backfill` and POST /v1/watchlists/{id}/backfill: one watchlist, as defined
-- now, applied to the stored mentions created since `since`.
CREATE TABLE backfill_jobs (
    job_id             bigserial   PRIMARY KEY,
    watchlist_id       text        NOT NULL,
    since              timestamptz NOT NULL,
    state              text        NOT NULL DEFAULT 'pending'
                                   CHECK (state IN ('pending', 'running', 'done', 'failed')),
    revision           text,                  -- the watchlist's revision applied (a change restarts the walk)
    requested_via      text        NOT NULL CHECK (requested_via IN ('api', 'cli')),
    requested_by       text,
    rate               double precision,      -- mentions per second at most (null: the default)
    total              bigint      NOT NULL DEFAULT 0,
    cursor_created_at  timestamptz,
    cursor_mention_id  uuid,
    scanned            bigint      NOT NULL DEFAULT 0,  -- mentions matched against the watchlist
    added              bigint      NOT NULL DEFAULT 0,  -- that gained it
    removed            bigint      NOT NULL DEFAULT 0,  -- that lost it
    restarts           integer     NOT NULL DEFAULT 0,  -- walks begun again because the watchlist changed
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    error              text
);
CREATE INDEX backfill_jobs_watchlist_idx ON backfill_jobs (watchlist_id, job_id DESC);
CREATE INDEX backfill_jobs_active_idx ON backfill_jobs (job_id) WHERE state IN ('pending', 'running');
