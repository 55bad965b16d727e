-- 0002_mail.sql: single-use tokens of mailed links, and the outbox that
-- delivers those mails (retried until sent, also across restarts; several
-- instances claim rows with FOR UPDATE SKIP LOCKED and a lease).
-- Times are Unix milliseconds. Runs inside one transaction.

CREATE TABLE one_time_tokens (
    hash       BYTEA PRIMARY KEY CHECK (octet_length(hash) = 32),
    user_id    TEXT COLLATE "C" NOT NULL
               REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('reset', 'verify')),
    email      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

CREATE INDEX one_time_tokens_user_id ON one_time_tokens (user_id);
CREATE INDEX one_time_tokens_expires_at ON one_time_tokens (expires_at);

CREATE TABLE outbox (
    id              TEXT COLLATE "C" PRIMARY KEY,
    user_id         TEXT COLLATE "C" NOT NULL
                    REFERENCES users (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL
                    CHECK (kind IN ('password_reset', 'email_verification')),
    recipient       TEXT NOT NULL,
    link            TEXT,
    created_at      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until    BIGINT NOT NULL DEFAULT 0,
    sent_at         BIGINT,
    last_error      TEXT
);

CREATE INDEX outbox_user_id ON outbox (user_id);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
