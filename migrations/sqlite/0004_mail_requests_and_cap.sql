-- 0004_mail_requests_and_cap.sql: the outbox no longer holds links.
-- A queued mail keeps a random seed; the link's token is derived from it
-- at delivery with a key kept with the signing keys, so the database alone
-- holds nothing usable. A mail is queued as a request (the same row for a
-- known or an unknown email) and resolved by the mailer: the user is found,
-- the mail counted against the cap per recipient, the token stored.
-- Unsent rows of the old shape held their link in clear and are dropped
-- (their tokens stay unused until they expire). Any kind is accepted; the
-- code knows which it can send.

CREATE TABLE outbox_v4 (
    id              TEXT    PRIMARY KEY,   -- UUIDv7
    user_id         TEXT    REFERENCES users (id) ON DELETE CASCADE,
                                           -- NULL until resolved (forgot)
    kind            TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    seed            BLOB    CHECK (seed IS NULL OR length(seed) = 32),
    resolved        INTEGER NOT NULL DEFAULT 0,
    expires_at      INTEGER NOT NULL DEFAULT 0,   -- of its link; 0: none
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,   -- failed tries
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER NOT NULL DEFAULT 0,   -- lease of a sender
    sent_at         INTEGER,
    last_error      TEXT                   -- never a secret
);

INSERT INTO outbox_v4 (id, user_id, kind, recipient, resolved, created_at,
                       attempts, next_attempt_at, locked_until, sent_at,
                       last_error)
    SELECT id, user_id, kind, recipient, 1, created_at, attempts,
           next_attempt_at, locked_until, sent_at, last_error
    FROM outbox WHERE sent_at IS NOT NULL;

DROP TABLE outbox;
ALTER TABLE outbox_v4 RENAME TO outbox;

CREATE INDEX outbox_user_id ON outbox (user_id);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- Mails counted per recipient and hour (window_start: Unix ms, a multiple
-- of one hour), one row each, raised with one atomic upsert.
CREATE TABLE mail_counts (
    recipient    TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    n            INTEGER NOT NULL,
    PRIMARY KEY (recipient, window_start)
) WITHOUT ROWID;

CREATE INDEX mail_counts_window ON mail_counts (window_start);
