-- 0001_init.sql: users, sessions, refresh tokens and login failures.
-- Times are Unix milliseconds. Ids are the canonical lower-case text of
-- UUIDv7s; the "C" collation orders them byte-wise, like SQLite, so keyset
-- pagination (id > cursor ORDER BY id) matches creation order on both.
-- Runs inside one transaction opened by the migrator.

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,
    email         TEXT NOT NULL,
    full_name     TEXT,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    is_active     BOOLEAN NOT NULL,
    is_verified   BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

-- The last-admin rule locks and counts these rows.
CREATE INDEX users_active_admins ON users (id)
    WHERE role = 'admin' AND is_active;

CREATE TABLE sessions (
    id           TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL
                 REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    ip           TEXT,
    user_agent   TEXT
);

CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE refresh_tokens (
    hash       BYTEA PRIMARY KEY CHECK (octet_length(hash) = 32),
    session_id TEXT COLLATE "C" NOT NULL
               REFERENCES sessions (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    used_at    BIGINT
);

-- For the cascade from sessions.
CREATE INDEX refresh_tokens_session_id ON refresh_tokens (session_id);

CREATE TABLE login_failures (
    email        TEXT NOT NULL,
    ip           TEXT NOT NULL,
    count        INTEGER NOT NULL,
    last_at      BIGINT NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (email, ip)
);
