-- Faults (issue 22): runtime instruction ids unique across server
-- processes. Every `metalcast serve` takes the next block number at start
-- and gives out ids from that block only, so a node's report of an earlier
-- process's instruction can never name one of this process's.
CREATE TABLE runtime_id_blocks (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    last_block BIGINT NOT NULL
);
INSERT INTO runtime_id_blocks (id, last_block) VALUES (1, 0);
