-- 0005_email_changed_mail.sql: the outbox also carries the notice mailed
-- to the previous address when an account's email changes (kind
-- 'email_changed', no link). SQLite cannot alter a CHECK constraint, so
-- the table is rebuilt with the same columns, rows and indexes.

CREATE TABLE outbox_new (
    id              TEXT    PRIMARY KEY,   -- UUIDv7
    user_id         TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL
                    CHECK (kind IN ('password_reset', 'email_verification',
                                    'email_changed')),
    recipient       TEXT    NOT NULL,
    link            TEXT,                  -- holds the token; NULL once sent
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,   -- failed tries
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER NOT NULL DEFAULT 0,   -- lease of a sender
    sent_at         INTEGER,
    last_error      TEXT                   -- never a secret
);

INSERT INTO outbox_new (id, user_id, kind, recipient, link, created_at,
                        attempts, next_attempt_at, locked_until, sent_at,
                        last_error)
SELECT id, user_id, kind, recipient, link, created_at, attempts,
       next_attempt_at, locked_until, sent_at, last_error
FROM outbox;

DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;

CREATE INDEX outbox_user_id ON outbox (user_id);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
