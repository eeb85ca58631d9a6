-- metalcast control plane: initial schema (HIL resource model).
-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Booleans are BIGINT 0/1 and times are unix seconds so that every column
-- decodes through sqlx::Any as TEXT or i64 on both backends.

CREATE TABLE projects (
    name TEXT PRIMARY KEY
);

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    is_admin BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE user_projects (
    user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    project TEXT NOT NULL REFERENCES projects(name),
    PRIMARY KEY (user_name, project)
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    project TEXT REFERENCES projects(name),
    obm TEXT NOT NULL
);
CREATE INDEX nodes_project ON nodes(project);

CREATE TABLE node_metadata (
    node TEXT NOT NULL REFERENCES nodes(name) ON DELETE CASCADE,
    label TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (node, label)
);

CREATE TABLE switches (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL
);

CREATE TABLE ports (
    switch TEXT NOT NULL REFERENCES switches(name),
    name TEXT NOT NULL,
    PRIMARY KEY (switch, name)
);

CREATE TABLE nics (
    node TEXT NOT NULL REFERENCES nodes(name),
    name TEXT NOT NULL,
    macaddr TEXT NOT NULL,
    port_switch TEXT,
    port_name TEXT,
    PRIMARY KEY (node, name),
    UNIQUE (port_switch, port_name),
    FOREIGN KEY (port_switch, port_name) REFERENCES ports(switch, name)
);

CREATE TABLE networks (
    name TEXT PRIMARY KEY,
    owner TEXT REFERENCES projects(name),
    vlan BIGINT NOT NULL UNIQUE,
    allocated BIGINT NOT NULL
);

CREATE TABLE network_access (
    network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
    project TEXT NOT NULL REFERENCES projects(name),
    PRIMARY KEY (network, project)
);

CREATE TABLE attachments (
    node TEXT NOT NULL,
    nic TEXT NOT NULL,
    network TEXT NOT NULL REFERENCES networks(name),
    channel TEXT NOT NULL,
    PRIMARY KEY (node, nic, channel),
    UNIQUE (node, nic, network),
    FOREIGN KEY (node, nic) REFERENCES nics(node, name)
);

CREATE TABLE network_actions (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    nic TEXT NOT NULL,
    kind TEXT NOT NULL,
    network TEXT,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    FOREIGN KEY (node, nic) REFERENCES nics(node, name) ON DELETE CASCADE
);
-- HIL rule: at most one pending networking action per NIC, enforced by the
-- database so that concurrent requests cannot both queue one.
CREATE UNIQUE INDEX network_actions_one_pending
    ON network_actions(node, nic) WHERE status = 'PENDING';
