-- Recursive HaaS (issue 8): node events a project can read, e.g. why the
-- parent control plane took a node back (GET /v1/events).
CREATE TABLE node_events (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    project TEXT,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX node_events_project ON node_events(project);
