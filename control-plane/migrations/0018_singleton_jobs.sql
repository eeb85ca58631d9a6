-- Periodic jobs that one replica at a time runs (issue 26). A replica runs
-- the job while it holds the row: it takes it when the row has no owner,
-- is its own, or belongs to a replica that is no longer registered (dead
-- and reaped). The market's driver is the first such job.
CREATE TABLE singleton_jobs (
    name TEXT PRIMARY KEY,
    owner TEXT,
    -- When the owner last took or renewed it (database clock, s).
    held_at BIGINT NOT NULL DEFAULT 0
);
INSERT INTO singleton_jobs (name, owner, held_at) VALUES ('market-driver', NULL, 0);
