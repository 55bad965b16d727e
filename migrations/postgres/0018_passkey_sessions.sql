-- 0018_passkey_sessions.sql: the passkey a session's login used (NULL:
-- a login by password or code). Deleting a passkey ends the sessions it
-- started: a passkey added with a stolen access token, and then deleted
-- by the owner, kept its sessions (and their refresh tokens, for up to
-- AUTH_SESSION_MAX_SECONDS) alive. Sessions stored before this
-- migration name no passkey.
ALTER TABLE sessions ADD COLUMN passkey_id TEXT COLLATE "C";
CREATE INDEX sessions_passkey_id ON sessions (passkey_id)
    WHERE passkey_id IS NOT NULL;
