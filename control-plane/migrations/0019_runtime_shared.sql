-- The node runtimes' side, shared by every replica on one database (issue
-- 26): a node may check in with one replica, be given an instruction that
-- another one queued, and report to a third (behind a load balancer, or
-- after the replica it talked to died). Before, all of this lived in the
-- memory of the process the node talked to.

-- Every node that checked in: how often, and the latest check-in.
CREATE TABLE runtime_nodes (
    mac TEXT PRIMARY KEY,
    checkins BIGINT NOT NULL,
    -- JSON CheckIn (the runtime API's wire type).
    last_checkin TEXT NOT NULL,
    -- Database clock, s.
    checkin_at BIGINT NOT NULL
);

-- Instructions, queued and delivered. Ids come from each process's block
-- (runtime_id_blocks), so they are unique across replicas and restarts.
CREATE TABLE runtime_instructions (
    id BIGINT PRIMARY KEY,
    mac TEXT NOT NULL,
    -- JSON Action.
    action TEXT NOT NULL,
    -- The multicast session of a deploy or seed instruction: a report must name it.
    session BIGINT,
    -- The replica whose work it is. A queued instruction is delivered only
    -- while that replica lives (or after another one took the work over):
    -- the work of a dead replica is failed, and its instructions with it.
    queued_by TEXT NOT NULL,
    queued_at BIGINT NOT NULL,
    -- Set once, by the replica that handed it to the node (compare-and-set).
    delivered_at BIGINT,
    delivered_by TEXT
);
CREATE INDEX runtime_instructions_queue ON runtime_instructions (mac, delivered_at, id);
CREATE INDEX runtime_instructions_age ON runtime_instructions (queued_at);

-- Phase reports, in the order each instruction's node sent them (n = 1, 2, ...).
CREATE TABLE runtime_reports (
    instruction BIGINT NOT NULL,
    n BIGINT NOT NULL,
    mac TEXT NOT NULL,
    -- JSON Report.
    body TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (instruction, n)
);
CREATE INDEX runtime_reports_age ON runtime_reports (at);

-- The provisioning address a replica sends multicast from, NULL when it
-- has none: only such a replica can take a dead one's session over, and
-- while one lives, a resumable session is left for it rather than failed.
ALTER TABLE replicas ADD COLUMN sender TEXT;

-- When a deployed node first fetched its metadata (a sign its new system
-- is up), so that the replica following the deployment learns of it
-- whichever replica served the fetch. Database clock, s.
ALTER TABLE deployment_nodes ADD COLUMN metadata_fetched_at BIGINT;
