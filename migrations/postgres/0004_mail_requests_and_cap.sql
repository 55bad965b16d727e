-- 0004_mail_requests_and_cap.sql: the outbox no longer holds links.
-- A queued mail keeps a random seed; the link's token is derived from it
-- at delivery with a key kept with the signing keys, so the database alone
-- holds nothing usable. A mail is queued as a request (the same row for a
-- known or an unknown email) and resolved by the mailer: the user is found,
-- the mail counted against the cap per recipient, the token stored.
-- Unsent rows of the old shape held their link in clear and are dropped
-- (their tokens stay unused until they expire). Any kind is accepted; the
-- code knows which it can send. Runs inside one transaction.

DELETE FROM outbox WHERE sent_at IS NULL;
ALTER TABLE outbox
    DROP COLUMN link,
    DROP CONSTRAINT IF EXISTS outbox_kind_check,
    ALTER COLUMN user_id DROP NOT NULL,
    ADD COLUMN seed BYTEA CHECK (seed IS NULL OR octet_length(seed) = 32),
    ADD COLUMN resolved BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
UPDATE outbox SET resolved = true;

CREATE TABLE mail_counts (
    recipient    TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    n            INTEGER NOT NULL,
    PRIMARY KEY (recipient, window_start)
);

CREATE INDEX mail_counts_window ON mail_counts (window_start);
