/* links.c: password reset and email verification by mailed single-use
 * links: what a request queues, what redeeming a link changes and
 * revokes. The outbox that delivers them is src/mail.c. No HTTP, no
 * SQL. */
#include "core.h"

#include "crypto.h"
#include "mail.h"
#include "scache.h"

enum as_err core_link_request_reset(const struct core *c, const char *email)
{
    /* Known or not, the same work: one insert of the same shape whatever
     * the email; the mailer resolves it off the request path (README.md,
     * "Mail"). */
    return mail_queue(c->repo, MAIL_KIND_RESET, NULL, email, true,
                      c->now_ms());
}

enum as_err core_link_request_verify(const struct core *c,
                                     const struct user *u)
{
    /* Already verified: nothing to send. The mailer checks again, counts
     * the mail against the cap of the address and stores the token. */
    if (u->is_verified)
        return AS_ERR_NOT_FOUND;
    return mail_queue(c->repo, MAIL_KIND_VERIFY, u->id, u->email, true,
                      c->now_ms());
}

enum as_err core_link_reset_user(const struct core *c,
                                 const uint8_t hash[REPO_HASH_LEN],
                                 struct user *out, struct arena *a)
{
    return repo_ott_reset_user(c->repo, hash, c->now_ms(), out, a);
}

enum as_err core_link_reset(const struct core *c,
                            const uint8_t hash[REPO_HASH_LEN],
                            const struct user *u, const char *pw)
{
    char pwhash[PW_HASH_MAX] = "";
    enum as_err err = pw_hash(pw, c->pw, pwhash);
    /* The sessions end, and on an account whose email was never
     * verified (not: is not verified now, which a change of email to an
     * address of one's own makes it) its passkeys and second factor, in
     * one transaction. A verification by a build before migration 0016
     * set no verified_at: verified now counts too. */
    bool strip = u->verified_at == 0 && !u->is_verified;

    if (err == AS_OK)
        err = repo_ott_reset(c->repo, hash, u->id, pwhash, strip,
                             c->now_ms());
    if (err == AS_OK && c->scache)       /* every session ended */
        scache_forget_user(c->scache, u->id);
    /* Someone else's guesses must not keep the owner out after this
     * (a failure is harmless: the counts age out). Not while a second
     * factor stays on: the run then holds wrong codes too, and a link
     * proves the address, not the factor. Whoever holds the password
     * and a token moves the email to an address of theirs, and each
     * reset there gave another threshold of guesses at the code
     * (README "Lockout"). */
    if (err == AS_OK && (strip || !u->mfa_enabled))
        (void)repo_login_failures_clear(c->repo, u->email, NULL);
    crypt_wipe(pwhash, sizeof pwhash);
    return err;
}

enum as_err core_link_verify(const struct core *c,
                             const uint8_t hash[REPO_HASH_LEN],
                             char user_id[UUID_STR_LEN])
{
    enum as_err err = repo_ott_verify(c->repo, hash, c->now_ms(), user_id);

    if (err == AS_OK && c->scache)       /* is_verified changed */
        scache_forget_user(c->scache, user_id);
    return err;
}
