-- 0003_login_failures_pruning.sql: counts of failed logins idle for a day
-- are pruned a few at a time after each failure; this finds them without
-- a scan of the table.
CREATE INDEX login_failures_last_at ON login_failures (last_at);
