-- Built-in netboot (docs/netboot.md). Portable SQL, as in 0001.

-- What a node boots when it netboots: runtime (the metalcast runtime, the
-- default), local (its tenant OS is on its disk: the iPXE script exits to
-- the next boot device), none (no boot file; an address only in full mode).
ALTER TABLE nodes ADD COLUMN boot TEXT NOT NULL DEFAULT 'runtime';

-- Full mode's address leases on the provisioning network, one per MAC and
-- per address. Times are unix seconds from the database clock.
CREATE TABLE dhcp_leases (
    ip TEXT PRIMARY KEY,
    mac TEXT NOT NULL UNIQUE,
    -- offered | bound
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Machines of unknown MAC that booted the runtime in enrollment mode and
-- checked in with their inventory, for an admin to accept (a node is
-- registered) or reject (it is never netbooted again).
CREATE TABLE enrollments (
    mac TEXT PRIMARY KEY,
    -- pending | accepted | rejected
    state TEXT NOT NULL,
    address TEXT NOT NULL,
    -- JSON: the runtime's inventory from its latest check-in.
    inventory TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    -- The node it became (accepted).
    node TEXT
);

-- Server-wide secrets shared by every replica (the netboot token key).
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
