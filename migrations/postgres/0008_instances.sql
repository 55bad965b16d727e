-- 0008_instances.sql: what several instances on one database share besides
-- users and sessions (README.md, "Several instances").
--
-- Signing keys and the refresh-derivation key (kid 'refresh'). `sealed` is
-- a 24-byte nonce and the XChaCha20-Poly1305 ciphertext of the private
-- key under a key derived from AUTH_KEYS_SECRET; nothing here is usable
-- without that secret. A signing key signs from `signs_from` (Unix ms)
-- until a later key's `signs_from` has come, then verifies for the access
-- token lifetime + 60 s more and is deleted.
CREATE TABLE auth_keys (
    kid        TEXT COLLATE "C" PRIMARY KEY,
    sealed     BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    signs_from BIGINT NOT NULL
);

-- Revocations are announced on channel auth_revoke, at commit and only
-- then, whichever statement made them: payload 's:<session id>' or
-- 'u:<user id>' (ids only, nothing secret). Every instance LISTENs and
-- drops what it hears from its session cache.
CREATE FUNCTION auth_notify_session() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_revoke', 's:' || NEW.id);
    RETURN NULL;
END $$;

CREATE FUNCTION auth_notify_user() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('auth_revoke', 'u:' || OLD.id);
    ELSE
        PERFORM pg_notify('auth_revoke', 'u:' || NEW.id);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION auth_notify_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_keys', '');
    RETURN NULL;
END $$;

CREATE TRIGGER sessions_revoked AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION auth_notify_session();

CREATE TRIGGER users_access_changed AFTER UPDATE ON users
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role OR
                       OLD.is_active IS DISTINCT FROM NEW.is_active)
    EXECUTE FUNCTION auth_notify_user();

CREATE TRIGGER users_deleted AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION auth_notify_user();

-- Per row: a prune that deletes nothing announces nothing (notifications
-- of one transaction with the same payload are sent once).
CREATE TRIGGER auth_keys_changed AFTER INSERT OR DELETE ON auth_keys
    FOR EACH ROW EXECUTE FUNCTION auth_notify_keys();
