-- Resumable deployments (issue 26): what another sender needs to take a
-- running deployment's multicast session over when its replica dies, so the
-- nodes finish without starting over. One row per running session, deleted
-- when the deployment ends (the session key lives no longer than that).
CREATE TABLE deployment_sessions (
    deployment BIGINT PRIMARY KEY REFERENCES deployments(id) ON DELETE CASCADE,
    -- JSON SessionSpec: group, port, session id, key, symbol size, root hash.
    spec TEXT NOT NULL,
    -- JSON: per node, the runtime's MAC, address, boot id and the instruction it runs.
    members TEXT NOT NULL,
    -- Takeovers so far; raised by every claim (transport Resume::epoch).
    epoch BIGINT NOT NULL DEFAULT 0,
    -- The running sender's next sequence number, and when it was written (database clock, s).
    seq BIGINT NOT NULL DEFAULT 0,
    seq_at BIGINT NOT NULL,
    -- Where the nodes' runtimes report (public URL and provisioning address):
    -- only a replica the nodes talk to can follow them to the end.
    runtime_at TEXT NOT NULL
);
