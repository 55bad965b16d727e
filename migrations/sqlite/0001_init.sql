-- 0001_init.sql: users, sessions, refresh tokens, login failures.
-- Times are Unix milliseconds. Applied in one transaction by the runner,
-- which keeps schema_migrations itself.

CREATE TABLE users (
    id            TEXT    PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,       -- trimmed, lower-cased
    full_name     TEXT,
    password_hash TEXT    NOT NULL,              -- Argon2id PHC string
    role          TEXT    NOT NULL CHECK (role IN ('user', 'admin')),
    is_active     INTEGER NOT NULL CHECK (is_active IN (0, 1)),
    is_verified   INTEGER NOT NULL CHECK (is_verified IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- The last-admin rule counts these.
CREATE INDEX users_active_admins ON users (role, is_active);

CREATE TABLE sessions (
    id           TEXT    PRIMARY KEY,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,                        -- NULL while not revoked
    ip           TEXT,
    user_agent   TEXT
);

CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE refresh_tokens (
    hash       BLOB    PRIMARY KEY CHECK (length(hash) = 32),  -- SHA-256
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    used_at    INTEGER                           -- NULL until rotated
);

CREATE INDEX refresh_tokens_session_id ON refresh_tokens (session_id);

-- Failed logins per (email, client address), for lockout.
CREATE TABLE login_failures (
    email        TEXT    NOT NULL,
    ip           TEXT    NOT NULL,
    count        INTEGER NOT NULL DEFAULT 0,
    last_at      INTEGER NOT NULL,
    locked_until INTEGER,
    PRIMARY KEY (email, ip)
);
