-- The web portal's signed-in sessions. The browser holds a random 256-bit
-- token; only its SHA-256 is kept here (`id`), so a copy of the database
-- cannot be replayed as a cookie. `csrf_token` is the per-session secret
-- every portal form must send back.
CREATE TABLE portal_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created TEXT NOT NULL,
    expires TEXT NOT NULL
);
CREATE INDEX portal_sessions_expires ON portal_sessions (expires);
CREATE INDEX portal_sessions_user ON portal_sessions (user_id);
