-- Task leases on the database's clock, with a fencing token. A running
-- task is held until lease_expires_ms (milliseconds since the Unix epoch on
-- the database's clock) by the node that claimed it; lease_generation grows
-- each time the task changes hands, and every write a node makes for the
-- task checks the generation it holds, so a node that lost the task (paused
-- past its lease) writes nothing more for it.
-- Not safe with older nodes running tasks: they renew the old column only,
-- so their tasks would look lapsed. Drain the older nodes first.
ALTER TABLE server_tasks ADD COLUMN lease_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE server_tasks ADD COLUMN lease_expires_ms BIGINT;
-- The generation of the lease a log line was written under (0: written
-- outside any lease), so a line shows which holder of the task wrote it.
ALTER TABLE task_log_lines ADD COLUMN lease_generation BIGINT NOT NULL DEFAULT 0;

-- How each finished step of a running deployment ended, so that a node
-- taking the task over runs none of them again. state is sealed with the
-- master key: it holds the output variables (some sensitive) so far.
CREATE TABLE task_step_results (
    task_id TEXT NOT NULL,
    step_number BIGINT NOT NULL,
    status TEXT NOT NULL,
    failures TEXT NOT NULL,
    canceled BIGINT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (task_id, step_number)
);
