-- Deployments, per-node deployment state, and user-data for the metadata
-- service (issue 7). Portable SQL, as in 0001: TEXT and BIGINT columns only.

-- One mass deploy of an image to a set of nodes of one project. Deployments
-- are history: they keep naming projects and nodes that were deleted since
-- (no foreign keys to projects or nodes; a nested instance's sync deletes
-- nodes its parent took back).
CREATE TABLE deployments (
    id BIGINT PRIMARY KEY,
    project TEXT NOT NULL,
    image TEXT NOT NULL,
    -- The image's root hash when the deployment was created (the image may be replaced later).
    root_hash TEXT NOT NULL,
    -- running | done | failed (failed: at least one node failed)
    state TEXT NOT NULL,
    -- JSON: target, handover, cmdline_append, rate, mtu, timeouts (what `retry` reuses).
    params TEXT NOT NULL,
    -- Multicast group:port of the latest session; never the key (that lives in memory only).
    session_group TEXT,
    -- JSON sender summary of the latest session (wire bytes, repair symbols, ...).
    summary TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX deployments_project ON deployments(project);

-- Where each node of a deployment is.
CREATE TABLE deployment_nodes (
    deployment BIGINT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    -- waiting | receiving | verifying | handover | booted | verified | failed
    state TEXT NOT NULL,
    -- Why it failed (or the last detail reported).
    reason TEXT NOT NULL DEFAULT '',
    -- Blocks written of the image, as the sender last heard.
    blocks_done BIGINT NOT NULL DEFAULT 0,
    blocks_total BIGINT NOT NULL DEFAULT 0,
    -- Packets the node received / rejected (from its reports).
    received BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    -- Unix milliseconds when the current attempt started; its duration once terminal.
    started_at BIGINT NOT NULL,
    elapsed_ms BIGINT,
    -- Secret in the node's cloud-init seed URL; only this node's data is served for it.
    metadata_token TEXT NOT NULL,
    -- How many times the node was (re)tried in this deployment.
    attempts BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (deployment, node)
);
CREATE INDEX deployment_nodes_node ON deployment_nodes(node);
CREATE UNIQUE INDEX deployment_nodes_token ON deployment_nodes(metadata_token);

-- cloud-init user-data and the SSH keys a deployment gives its nodes.
CREATE TABLE deployment_userdata (
    deployment BIGINT PRIMARY KEY REFERENCES deployments(id) ON DELETE CASCADE,
    user_data TEXT NOT NULL,
    -- Newline-separated OpenSSH public keys.
    ssh_keys TEXT NOT NULL
);
