-- 0007_totp.sql: a second factor (TOTP, RFC 6238) with recovery codes.
-- The secret is stored sealed (XChaCha20-Poly1305 under a key kept with
-- the signing keys, never in this database); recovery codes and the
-- tokens of a login waiting for its code only as SHA-256. Times are Unix
-- milliseconds.

CREATE TABLE user_mfa (
    user_id    TEXT    PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret     TEXT    NOT NULL,                 -- sealed, base64url
    enabled    INTEGER NOT NULL DEFAULT 0,       -- 0 while pending
    last_step  INTEGER NOT NULL DEFAULT -1,      -- last TOTP step accepted
    created_at INTEGER NOT NULL,
    enabled_at INTEGER
);

CREATE TABLE mfa_recovery_codes (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash       BLOB    NOT NULL CHECK (length(hash) = 32),
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, hash)
);

CREATE TABLE mfa_tokens (
    hash       BLOB    PRIMARY KEY CHECK (length(hash) = 32),
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    failures   INTEGER NOT NULL DEFAULT 0,
    used_at    INTEGER
);

CREATE INDEX mfa_tokens_user_id ON mfa_tokens (user_id);

-- RFC 8176 methods the session's login used, space-separated.
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
