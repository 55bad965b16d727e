-- 0009_passkeys.sql: passkeys (WebAuthn credentials) and the challenges of
-- their ceremonies. A challenge is stored only as SHA-256, single use and
-- short lived, so any instance can finish a ceremony another one began.
-- Times are Unix milliseconds.

CREATE TABLE passkeys (
    id           TEXT    PRIMARY KEY,                -- UUID v7
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    cred_id      TEXT    NOT NULL UNIQUE,            -- base64url
    public_key   TEXT    NOT NULL,                   -- COSE_Key, base64url
    sign_count   INTEGER NOT NULL DEFAULT 0,
    transports   TEXT    NOT NULL DEFAULT '[]',      -- JSON array
    name         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);

CREATE INDEX passkeys_user_id ON passkeys (user_id);

CREATE TABLE passkey_challenges (
    hash       BLOB    PRIMARY KEY CHECK (length(hash) = 32),
    ceremony   INTEGER NOT NULL,                     -- 0 register, 1 login
    user_id    TEXT    REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE INDEX passkey_challenges_expires_at
    ON passkey_challenges (expires_at);
