-- List totals kept as data: how many tasks, and how many deployments, each
-- combination of the lists' filters matches, so that a list's total is a
-- sum over a few thousand small rows rather than a count of the history.
-- Written in the transaction of every write that creates a task or a
-- deployment, changes a task's state or deletes either (see
-- `crate::counts`). A row whose count fell to 0 stays: it comes back.
-- Not safe with older nodes running: they would write tasks without
-- keeping these counts. Drain the older nodes first.
--
-- Keys cannot hold NULL: '' stands for "none" (a task outside any space,
-- project or environment).
CREATE TABLE task_counts (
    space_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (space_id, project_id, environment_id, name, state)
);

-- A deployment is counted under its task's state, '' while it has none.
-- `tenant_id` is '' for an untenanted deployment, as in `deployments`.
CREATE TABLE deployment_counts (
    space_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    state TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (space_id, project_id, environment_id, tenant_id, state)
);

-- The history so far. Deployments still to be indexed (a database older
-- than `deployments`) are counted when that index is filled.
INSERT INTO task_counts (space_id, project_id, environment_id, name, state, n)
SELECT COALESCE(space_id, ''), COALESCE(project_id, ''), COALESCE(environment_id, ''), name, state, COUNT(*)
FROM server_tasks
GROUP BY COALESCE(space_id, ''), COALESCE(project_id, ''), COALESCE(environment_id, ''), name, state;

INSERT INTO deployment_counts (space_id, project_id, environment_id, tenant_id, state, n)
SELECT d.space_id, d.project_id, d.environment_id, d.tenant_id, COALESCE(t.state, ''), COUNT(*)
FROM deployments d LEFT JOIN server_tasks t ON t.id = d.task_id AND t.deployment_id = d.id
GROUP BY d.space_id, d.project_id, d.environment_id, d.tenant_id, COALESCE(t.state, '');
