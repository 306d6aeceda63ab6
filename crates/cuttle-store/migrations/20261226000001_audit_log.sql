-- The audit log's who, from where, and what changed, beside each event;
-- and the documents each event is about, one row each, so filtering by a
-- project, an environment or a document type is an index lookup rather
-- than a search through `related_document_ids` text (which stays, with its
-- meaning, for readers of the table).
ALTER TABLE events ADD COLUMN is_service BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN identity_established_with TEXT;
ALTER TABLE events ADD COLUMN user_agent TEXT;
ALTER TABLE events ADD COLUMN ip_address TEXT;
ALTER TABLE events ADD COLUMN details TEXT;
-- JSON: {DocumentContext, Differences} with sensitive values replaced.
ALTER TABLE events ADD COLUMN change_details TEXT;

-- `document_type` is the id's collection (`Projects` of `Projects-7`);
-- `space_id` is the event's, so a space's count by document needs no join.
CREATE TABLE event_documents (
    document_id TEXT NOT NULL,
    event_seq BIGINT NOT NULL,
    document_type TEXT NOT NULL,
    space_id TEXT,
    PRIMARY KEY (document_id, event_seq)
);
CREATE INDEX event_documents_type ON event_documents (document_type, event_seq);

-- Each filter's column leads an index that `seq` ends, so a newest-first
-- page of one category, one user or one space walks its index in order.
CREATE INDEX events_space ON events (space_id, seq);
CREATE INDEX events_category ON events (category, seq);
CREATE INDEX events_user ON events (user_id, seq);
CREATE INDEX events_occurred ON events (occurred_at);

-- When an API key's use was last written to the log: at most once an hour
-- per key, so automation polling every second does not flood it.
ALTER TABLE api_keys ADD COLUMN use_recorded_at TEXT;

-- Events written before this table existed get their rows on the next
-- start (see `Store::backfill_event_documents`).
INSERT INTO settings (key, value) VALUES ('pending/event-documents', 'backfill');
