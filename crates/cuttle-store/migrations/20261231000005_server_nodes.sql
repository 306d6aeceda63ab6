-- Server nodes: each `cuttle server` on this database registers itself here
-- and heartbeats. Times are milliseconds since the Unix epoch on the
-- database's clock, never a node's, so nodes whose clocks differ agree.
-- Safe with older nodes still running: they neither read nor write it.
CREATE TABLE server_nodes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    max_concurrent_tasks BIGINT NOT NULL,
    is_in_maintenance_mode BIGINT NOT NULL DEFAULT 0,
    started_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    -- 1 once the node stopped cleanly; 0 again when it starts.
    stopped BIGINT NOT NULL DEFAULT 0,
    -- The node's clock minus the database's at its last heartbeat.
    clock_skew_ms BIGINT NOT NULL DEFAULT 0,
    version TEXT NOT NULL
);

-- Cluster-wide leases, one row per job that one node at a time runs
-- ('leader'). A node holds it until expires_at (database clock) and renews
-- it; each change of holder bumps generation, a token that tells an old
-- holder's writes from the new one's.
CREATE TABLE cluster_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    generation BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
