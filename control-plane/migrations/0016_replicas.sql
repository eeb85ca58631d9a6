-- Scale-out (issue 26), first step: which control-plane processes
-- (replicas) are alive, and which of them runs each piece of long work.
-- Every `metalcast serve` registers a row at start, renews heartbeat_at
-- from the database clock, and removes it on a clean stop. A replica whose
-- heartbeat is older than the dead timeout, or whose process is gone from
-- this host (same boot_id, pid and start time no longer running), is dead:
-- the work it owned is failed with a reason, and its row removed.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    pid BIGINT NOT NULL,
    pid_start BIGINT NOT NULL,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
-- The replica running the deployment or the networking action; NULL for
-- rows written before replicas existed (taken as orphaned).
ALTER TABLE deployments ADD COLUMN owner TEXT;
ALTER TABLE network_actions ADD COLUMN owner TEXT;
