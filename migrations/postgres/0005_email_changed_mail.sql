-- 0005_email_changed_mail.sql: the outbox also carries the notice mailed
-- to the previous address when an account's email changes (kind
-- 'email_changed', no link). Runs inside one transaction.

ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('password_reset', 'email_verification', 'email_changed'));
