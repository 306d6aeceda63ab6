-- Polling agents with several nodes: which node holds each polling agent's
-- connection, and the requests other nodes relay to the agent through it.
-- Safe with older nodes still running: they neither read nor write these
-- tables (they reach only the polling agents connected to themselves).
CREATE TABLE polling_agent_holders (
    thumbprint TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    -- Milliseconds since the Unix epoch on the database's clock.
    connected_at BIGINT NOT NULL
);

-- One request for a polling agent, from the node running a step (requester)
-- to the node holding the agent's connection (holder). state goes queued →
-- sent (committed before the request goes on the wire, so it is never sent
-- twice) → answered or failed; or abandoned, by the requester, once the
-- holder stopped heartbeating. Bodies are base64.
CREATE TABLE agent_relay_requests (
    id TEXT PRIMARY KEY,
    thumbprint TEXT NOT NULL,
    holder TEXT NOT NULL,
    requester TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    content_type TEXT,
    body TEXT NOT NULL,
    wait_ms BIGINT NOT NULL,
    max_bytes BIGINT NOT NULL,
    state TEXT NOT NULL,
    answer_status BIGINT,
    answer_body TEXT,
    error TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX agent_relay_requests_by_holder ON agent_relay_requests (holder, state);

-- The scripts of a running task's steps on agents, by command id: the run's
-- activity and how many of the agent's output lines its log holds, written
-- with those lines, so a node taking the task over re-attaches to the
-- script and goes on with the next line.
CREATE TABLE task_agent_commands (
    task_id TEXT NOT NULL,
    command_id TEXT NOT NULL,
    activity_id TEXT NOT NULL,
    next_line BIGINT NOT NULL,
    PRIMARY KEY (task_id, command_id)
);
