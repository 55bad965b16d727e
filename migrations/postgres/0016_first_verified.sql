-- 0016_first_verified.sql: when an email of the account was first
-- verified (NULL: never). A password reset removes the passkeys and the
-- second factor of an account whose email was never verified: whoever
-- set them up had not shown the address was theirs. It asked whether
-- the email is verified now, and a new email is not, so a password and
-- one access token (a change of email needs nothing more) moved the
-- email to an address of their own, reset there and took the factors
-- off without a code. The accounts verified before this migration count
-- as verified when they were created.
ALTER TABLE users ADD COLUMN verified_at bigint;
UPDATE users SET verified_at = created_at WHERE is_verified;
