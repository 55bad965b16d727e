-- 0010_passkey_challenges_by_user.sql: a user's registration challenges
-- found by user, so that a new one can forget all but the newest few
-- (README "Passkeys": unfinished registrations per user are bounded).

CREATE INDEX passkey_challenges_user
    ON passkey_challenges (user_id, ceremony, created_at);
