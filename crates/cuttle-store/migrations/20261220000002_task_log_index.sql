-- Reading one activity's lines without scanning the whole task's log: the
-- tail of an activity (task details, the portal's task page) and the raw
-- log streamed activity by activity.
CREATE INDEX task_log_lines_activity ON task_log_lines (task_id, activity_id, seq);
