-- Reclaims in progress (issue 28): one row per node while a reclaim runs, so
-- that the node list shows it as reclaiming on every replica and a second
-- reclaim of the same node is refused. A row whose replica is no longer
-- registered (it died mid-reclaim) is ignored and replaced.
CREATE TABLE node_reclaims (
    node TEXT PRIMARY KEY REFERENCES nodes(name) ON DELETE CASCADE,
    project TEXT NOT NULL,
    -- The replica running it (replicas.id).
    replica TEXT NOT NULL,
    -- Database clock, s.
    started_at BIGINT NOT NULL
);
