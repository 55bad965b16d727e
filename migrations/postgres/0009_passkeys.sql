-- 0009_passkeys.sql: passkeys (WebAuthn credentials) and the challenges of
-- their ceremonies. A challenge is stored only as SHA-256, single use and
-- short lived, so any instance can finish a ceremony another one began.
-- Times are Unix milliseconds. Runs inside one transaction.

CREATE TABLE passkeys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL
                 REFERENCES users (id) ON DELETE CASCADE,
    cred_id      TEXT COLLATE "C" NOT NULL UNIQUE,
    public_key   TEXT NOT NULL,
    sign_count   BIGINT NOT NULL DEFAULT 0,
    transports   TEXT NOT NULL DEFAULT '[]',
    name         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);

CREATE INDEX passkeys_user_id ON passkeys (user_id);

CREATE TABLE passkey_challenges (
    hash       BYTEA PRIMARY KEY CHECK (octet_length(hash) = 32),
    ceremony   INTEGER NOT NULL,
    user_id    TEXT COLLATE "C" REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX passkey_challenges_expires_at
    ON passkey_challenges (expires_at);
