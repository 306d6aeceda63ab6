-- Reads that would otherwise grow with history get indexes of their own.
--
-- A deployment's queried fields, kept beside its document and written in
-- the same transaction (see `crate::deployments`), so lists, lifecycle
-- progression and the dashboard read an index instead of every document.
-- `seq` is the number of the deployment's id: newest has the greatest.
-- `tenant_id` is '' for an untenanted deployment: a key cannot hold NULL.
CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    space_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    release_id TEXT NOT NULL,
    task_id TEXT NOT NULL
);
-- Each list's equality filters lead its index and `seq` ends it, so a
-- newest-first page is an ordered walk that stops at its LIMIT, and a
-- planner without statistics has no cheaper-looking plan that sorts.
CREATE INDEX deployments_space ON deployments (space_id, seq);
CREATE INDEX deployments_project ON deployments (space_id, project_id, seq);
CREATE INDEX deployments_environment ON deployments (space_id, environment_id, seq);
CREATE INDEX deployments_target ON deployments (space_id, project_id, environment_id, seq);
CREATE INDEX deployments_release ON deployments (space_id, release_id, seq);

-- The newest deployment of each project to each environment (and tenant):
-- what the dashboard shows. Moved on by each new deployment, moved back
-- when the newest one is deleted.
CREATE TABLE latest_deployments (
    project_id TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    space_id TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (project_id, environment_id, tenant_id)
);
CREATE INDEX latest_deployments_space ON latest_deployments (space_id, seq);

-- Deployments written before this migration are indexed when the store
-- opens (their fields are inside JSON, which the two databases read
-- differently); this row says that is still to do.
INSERT INTO settings (key, value) VALUES ('pending/deployment-index', 'backfill');

-- Newest-first lists of a space's documents (releases, say), ordered by the
-- index to the last column of their ORDER BY.
CREATE INDEX documents_space_order ON documents (collection, space_id, sort_key, id);
DROP INDEX documents_list;
CREATE INDEX documents_list ON documents (collection, space_id, parent_id, sort_key, id);

-- Task lists by state, project or environment, newest first, in a space
-- or across spaces (and the queue: queued tasks by state).
DROP INDEX server_tasks_queue;
CREATE INDEX server_tasks_state ON server_tasks (state, seq);
CREATE INDEX server_tasks_space ON server_tasks (space_id, seq);
CREATE INDEX server_tasks_space_state ON server_tasks (space_id, state, seq);
CREATE INDEX server_tasks_space_project ON server_tasks (space_id, project_id, seq);
CREATE INDEX server_tasks_space_environment ON server_tasks (space_id, environment_id, seq);
-- The running tasks, which a claim checks for each queued deployment: a
-- handful of rows however long the history.
CREATE INDEX server_tasks_running ON server_tasks (project_id, environment_id)
    WHERE state IN ('Executing', 'Cancelling');
