-- 0007_totp.sql: a second factor (TOTP, RFC 6238) with recovery codes.
-- The secret is stored sealed (XChaCha20-Poly1305 under a key kept with
-- the signing keys, never in this database); recovery codes and the
-- tokens of a login waiting for its code only as SHA-256. Times are Unix
-- milliseconds. Runs inside one transaction.

CREATE TABLE user_mfa (
    user_id    TEXT COLLATE "C" PRIMARY KEY
               REFERENCES users (id) ON DELETE CASCADE,
    secret     TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT false,
    last_step  BIGINT NOT NULL DEFAULT -1,
    created_at BIGINT NOT NULL,
    enabled_at BIGINT
);

CREATE TABLE mfa_recovery_codes (
    user_id    TEXT COLLATE "C" NOT NULL
               REFERENCES users (id) ON DELETE CASCADE,
    hash       BYTEA NOT NULL CHECK (octet_length(hash) = 32),
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, hash)
);

CREATE TABLE mfa_tokens (
    hash       BYTEA PRIMARY KEY CHECK (octet_length(hash) = 32),
    user_id    TEXT COLLATE "C" NOT NULL
               REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    failures   INTEGER NOT NULL DEFAULT 0,
    used_at    BIGINT
);

CREATE INDEX mfa_tokens_user_id ON mfa_tokens (user_id);

-- RFC 8176 methods the session's login used, space-separated.
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
