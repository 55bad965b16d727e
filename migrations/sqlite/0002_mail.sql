-- 0002_mail.sql: single-use tokens of mailed links, and the outbox that
-- delivers those mails (retried until sent, also across restarts).
-- Times are Unix milliseconds.

CREATE TABLE one_time_tokens (
    hash       BLOB    PRIMARY KEY CHECK (length(hash) = 32),  -- SHA-256
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT    NOT NULL CHECK (purpose IN ('reset', 'verify')),
    email      TEXT    NOT NULL,           -- the user's email at issue
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER                     -- NULL until consumed
);

CREATE INDEX one_time_tokens_user_id ON one_time_tokens (user_id);
CREATE INDEX one_time_tokens_expires_at ON one_time_tokens (expires_at);

CREATE TABLE outbox (
    id              TEXT    PRIMARY KEY,   -- UUIDv7
    user_id         TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL
                    CHECK (kind IN ('password_reset', 'email_verification')),
    recipient       TEXT    NOT NULL,
    link            TEXT,                  -- holds the token; NULL once sent
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,   -- failed tries
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER NOT NULL DEFAULT 0,   -- lease of a sender
    sent_at         INTEGER,
    last_error      TEXT                   -- never a secret
);

CREATE INDEX outbox_user_id ON outbox (user_id);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
