-- One schema for SQLite and PostgreSQL: only portable types (TEXT, BIGINT),
-- timestamps as fixed-width ISO 8601 text, booleans as 0/1, JSON as text.

CREATE TABLE id_sequences (
    collection TEXT PRIMARY KEY,
    next_value BIGINT NOT NULL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Resources are stored as JSON documents, with the columns that queries and
-- uniqueness need pulled out beside them.
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    space_id TEXT,
    parent_id TEXT,
    environment_id TEXT,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL,
    unique_key TEXT,
    sort_key BIGINT NOT NULL,
    body TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX documents_unique ON documents (collection, unique_key);
CREATE INDEX documents_list ON documents (collection, space_id, parent_id, sort_key);

CREATE TABLE server_tasks (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    space_id TEXT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    arguments TEXT NOT NULL,
    state TEXT NOT NULL,
    error_message TEXT,
    queue_time TEXT NOT NULL,
    queue_time_expiry TEXT,
    start_time TEXT,
    completed_time TEXT,
    last_updated_time TEXT NOT NULL,
    server_node TEXT,
    lease_expires_at TEXT,
    has_warnings_or_errors BIGINT NOT NULL,
    project_id TEXT,
    environment_id TEXT,
    deployment_id TEXT
);
CREATE INDEX server_tasks_queue ON server_tasks (state, queue_time, seq);
CREATE INDEX server_tasks_seq ON server_tasks (seq);

CREATE TABLE task_activities (
    task_id TEXT NOT NULL,
    id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    started TEXT,
    ended TEXT,
    position BIGINT NOT NULL,
    show_at_summary BIGINT NOT NULL,
    PRIMARY KEY (task_id, id)
);

CREATE TABLE task_log_lines (
    task_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    activity_id TEXT NOT NULL,
    category TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    message TEXT NOT NULL,
    detail TEXT,
    PRIMARY KEY (task_id, seq)
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username_lower TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    password_hash TEXT
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    purpose TEXT NOT NULL,
    created TEXT NOT NULL,
    expires TEXT,
    revoked_at TEXT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    space_id TEXT,
    occurred_at TEXT NOT NULL,
    user_id TEXT,
    username TEXT,
    category TEXT NOT NULL,
    message TEXT NOT NULL,
    related_document_ids TEXT NOT NULL
);
CREATE INDEX events_seq ON events (seq);
