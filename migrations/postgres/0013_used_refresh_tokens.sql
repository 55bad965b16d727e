-- 0013_used_refresh_tokens.sql: a session's rotated refresh tokens found
-- by age, so that each rotation deletes a few of that session's tokens
-- that were rotated out and are past a refresh token's lifetime (README
-- "Tokens": a session that refreshes for months keeps a bounded number of
-- rows). It serves the lookups by session that the index it replaces did.

CREATE INDEX refresh_tokens_session_created
    ON refresh_tokens (session_id, created_at);
DROP INDEX refresh_tokens_session_id;
