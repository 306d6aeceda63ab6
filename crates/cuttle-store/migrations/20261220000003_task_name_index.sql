-- Task lists by name (`/api/tasks?name=Deploy`), newest first, in a space
-- or across spaces; their totals count from the index alone.
CREATE INDEX server_tasks_space_name ON server_tasks (space_id, name, seq);
CREATE INDEX server_tasks_name ON server_tasks (name, seq);
