-- Whether a task waits for a person (an interruption is pending). Kept on the
-- task row, updated in the transaction that raises or answers the
-- interruption, so the task lists clients poll need no extra query.
ALTER TABLE server_tasks ADD COLUMN has_pending_interruptions BIGINT NOT NULL DEFAULT 0;
