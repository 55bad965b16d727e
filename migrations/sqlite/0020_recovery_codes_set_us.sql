-- 0020_recovery_codes_set_us.sql: the microsecond a set of recovery
-- codes was made (Unix time). Of two renewals at once only the first
-- happens: one that arrived before another's codes were set is refused.
-- Compared by the millisecond (created_at), a renewal that came in the
-- millisecond the codes before it were set could not be told from one
-- racing them, on a fast client either way: refused though it came
-- after their answer, or let through though it came before they were
-- set (a review: 10 of 107 and 15 of 80 on SQLite). Sets made before
-- have none and count as made at the start of their millisecond.
ALTER TABLE mfa_recovery_codes ADD COLUMN set_us INTEGER;
