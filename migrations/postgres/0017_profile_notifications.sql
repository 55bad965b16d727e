-- 0017_profile_notifications.sql: every change of what another instance
-- caches of a user is announced, not only what revokes. An instance's
-- cached user row answers GET /api/v1/users/me and the X-Auth-Email of
-- /verify; a change of email, name, verification or password (its
-- updated_at), or the second factor turned on or off, made on one
-- instance was seen on the others only when their entry aged out
-- (AUTH_SESSION_CACHE_SECONDS). The same payload as before
-- ('u:<user id>'): instances of the last version drop the user's entries
-- on it as they do for a role change. A login's rehash of an old-cost
-- password hash changes nothing shown, and is not announced.
DROP TRIGGER users_access_changed ON users;
CREATE TRIGGER users_changed AFTER UPDATE ON users
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role OR
                       OLD.is_active IS DISTINCT FROM NEW.is_active OR
                       OLD.email IS DISTINCT FROM NEW.email OR
                       OLD.full_name IS DISTINCT FROM NEW.full_name OR
                       OLD.is_verified IS DISTINCT FROM NEW.is_verified OR
                       OLD.password_gen IS DISTINCT FROM NEW.password_gen OR
                       OLD.updated_at IS DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION auth_notify_user();

-- The second factor's state is a user row's mfa_enabled (its last used
-- step changes at every code login and is not announced).
CREATE FUNCTION auth_notify_user_mfa() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('auth_revoke', 'u:' || OLD.user_id);
    ELSE
        PERFORM pg_notify('auth_revoke', 'u:' || NEW.user_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER user_mfa_turned_on AFTER INSERT ON user_mfa
    FOR EACH ROW WHEN (NEW.enabled)
    EXECUTE FUNCTION auth_notify_user_mfa();
CREATE TRIGGER user_mfa_changed AFTER UPDATE ON user_mfa
    FOR EACH ROW WHEN (OLD.enabled IS DISTINCT FROM NEW.enabled)
    EXECUTE FUNCTION auth_notify_user_mfa();
CREATE TRIGGER user_mfa_turned_off AFTER DELETE ON user_mfa
    FOR EACH ROW WHEN (OLD.enabled)
    EXECUTE FUNCTION auth_notify_user_mfa();
