-- 0014_live_sessions_by_user.sql: a user's live (not revoked) sessions,
-- most recently used last, without reading the ones that ended and
-- without sorting. A login caps the account's live sessions
-- (AUTH_MAX_SESSIONS_PER_USER: those beyond the most recently used end),
-- and a sign-out everywhere and the sessions list read them too; through
-- the index on user_id alone each of those read every session the
-- account had in the last seven days (ended ones are kept that long,
-- README "Tokens") and sorted the live ones, so an account that logged
-- in often made each of its logins slower, holding SQLite's write lock
-- longer. The columns the cap reads are all here.

CREATE INDEX sessions_live_by_user
    ON sessions (user_id, last_used_at, id, expires_at)
    WHERE revoked_at IS NULL;
