-- Every change of a deployment's state, in order (issue 26): written in the
-- same transaction as the change itself, by whichever replica makes it, and
-- read by event streams on any replica (`GET /v1/deployments/{id}/changes`,
-- resumed after a reconnect with `Last-Event-ID`: the seq).
CREATE TABLE deployment_events (
    deployment BIGINT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    -- 1, 2, 3 ... per deployment, without gaps (appended under the
    -- deployment's row lock).
    seq BIGINT NOT NULL,
    -- created, session, node, takeover, retry, end.
    kind TEXT NOT NULL,
    -- JSON object.
    data TEXT NOT NULL,
    -- Database clock, s.
    at BIGINT NOT NULL,
    PRIMARY KEY (deployment, seq)
);
