-- How far an activity says it is (`##octopus[progress …]` from a script).
ALTER TABLE task_activities ADD COLUMN progress_percentage BIGINT;
ALTER TABLE task_activities ADD COLUMN progress_message TEXT;
