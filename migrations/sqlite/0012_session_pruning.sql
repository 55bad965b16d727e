-- 0012_session_pruning.sql: sessions that ended (expired or revoked) a
-- while ago are deleted a few at a time as new ones start (README
-- "Tokens"); these find them without reading the table.

CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_revoked_at ON sessions (revoked_at)
    WHERE revoked_at IS NOT NULL;
