/* accounts.c: the rules of account changes, above both backends: who may
 * change which field, when a password must be proven, and that a change
 * reaches this instance's session cache as part of the operation. */
#include "accounts.h"

#include <string.h>

#include "mail.h"
#include "netaddr.h"
#include "scache.h"
#include "uuid.h"

/* The fields each actor may name (README.md, "Users"). */
#define SELF_FIELDS (UF_EMAIL | UF_FULL_NAME)
#define ADMIN_FIELDS (UF_EMAIL | UF_FULL_NAME | UF_ROLE | UF_ACTIVE | \
                      UF_MFA_OFF)

enum as_err account_may_change(enum account_actor who, unsigned fields)
{
    unsigned allowed = who == ACCOUNT_ADMIN ? ADMIN_FIELDS : SELF_FIELDS;

    return (fields & ~allowed) ? AS_ERR_FORBIDDEN : AS_OK;
}

bool account_needs_password(enum account_actor who, const char *current,
                            const struct user_patch *p)
{
    return who == ACCOUNT_SELF && (p->set & UF_EMAIL) && p->email &&
           (!current || strcmp(current, p->email) != 0);
}

void account_skip_same_email(const char *current, struct user_patch *p)
{
    if ((p->set & UF_EMAIL) && p->email && current &&
        strcmp(current, p->email) == 0)
        p->set &= ~(unsigned)UF_EMAIL;
}

enum as_err account_patch(struct repo *r, struct scache *c,
                          enum account_actor who, const char *id,
                          const struct user_patch *p, const char *ip,
                          int64_t now, struct user *out, struct arena *a)
{
    enum as_err err = account_may_change(who, p->set);
    struct outbox_row notice = { .kind = MAIL_KIND_EMAIL_CHANGED,
                                 .created_at = now };
    struct user_patch q = *p;
    char key[NETADDR_KEY_LEN];

    /* Whoever changes the email, the owner hears of it at the address it
     * leaves (queued in the change's transaction): an admin token, or a
     * stolen one, that moves an account is not silent either. */
    if (q.set & UF_EMAIL) {
        uuid_v7_new(notice.id);
        q.email_notice = &notice;
        /* The run of failures (wrong codes among them) goes with the
         * account: a change of email must not start it afresh (README
         * "Lockout"), keyed as the lockout keys it (lockout.c). */
        q.carry_ip = NULL;
        if (ip) {
            netaddr_client_key(ip, key);
            q.carry_ip = key;
        }
    }
    if (err == AS_OK)
        err = repo_user_patch(r, id, &q, now, out, a);
    /* Forgotten after the commit, so no read of the old row can be
     * cached after this returns (scache's generation covers reads that
     * were under way): the session states a bearer check answers and
     * the cached user row (every field, for /api/v1/users/me). */
    if (err == AS_OK)
        scache_forget_user(c, id);
    return err;
}

enum as_err account_delete(struct repo *r, struct scache *c, const char *id,
                           int64_t now)
{
    enum as_err err = repo_user_delete(r, id, now);

    /* Also after a failure on the way, which may come after the account
     * was ended (repo_user_delete()); a refusal changed nothing. */
    if (err != AS_ERR_NOT_FOUND && err != AS_ERR_LAST_ADMIN &&
        err != AS_ERR_FORBIDDEN && err != AS_ERR_INVALID_TOKEN)
        scache_forget_user(c, id);
    return err;
}
