/* fake_repo.c: see fake_repo.h. Small fixed tables; a full table is
 * AS_ERR_INTERNAL, which no test expects. */
#include "fake_repo.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "core.h"
#include "password.h"
#include "rotation.h"

#define MAX_USERS 32
#define MAX_SESSIONS 256
#define MAX_TOKENS 1024
#define MAX_COUNTS 64

struct fuser {
    bool used;
    char id[UUID_STR_LEN];
    char email[REPO_EMAIL_MAX + 1];
    char full_name[256];
    bool has_name;
    char hash[PW_HASH_MAX];
    enum role role;
    bool is_active, is_verified, mfa_enabled;
    int64_t created_at, updated_at;
    int64_t password_gen, verified_at;
};

struct fsession {
    bool used;
    char id[UUID_STR_LEN];
    char user_id[UUID_STR_LEN];
    char amr[32];
    bool has_amr;
    int64_t created_at, last_used_at, expires_at, revoked_at;
};

struct ftoken {
    bool used;
    uint8_t hash[REPO_HASH_LEN];
    char sid[UUID_STR_LEN];
    int64_t used_at;             /* 0: unused */
    int64_t created_at;
};

struct fcount {
    bool used;
    char email[REPO_EMAIL_MAX + 1];
    char ip[64];
    struct login_count c;
};

struct repo {
    int unused;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct repo the_repo;
static struct fuser users[MAX_USERS];
static struct fsession sessions[MAX_SESSIONS];
static struct ftoken tokens[MAX_TOKENS];
static struct fcount counts[MAX_COUNTS];
static int64_t seen_at_lookup = -1;
static unsigned lookups;

_Atomic int64_t fake_now;

int64_t fake_clock(void)
{
    return fake_now;
}

struct repo *fake_repo(void)
{
    return &the_repo;
}

void fake_repo_reset(void)
{
    fake_repo_before_rehash = NULL;
    pthread_mutex_lock(&mu);
    memset(users, 0, sizeof users);
    memset(sessions, 0, sizeof sessions);
    memset(tokens, 0, sizeof tokens);
    memset(counts, 0, sizeof counts);
    seen_at_lookup = -1;
    lookups = 0;
    pthread_mutex_unlock(&mu);
}

/* ---- lookups (mu held) ---------------------------------------------- */

static struct fuser *user_id(const char *id)
{
    size_t i;

    for (i = 0; id && i < MAX_USERS; i++)
        if (users[i].used && strcmp(users[i].id, id) == 0)
            return &users[i];
    return NULL;
}

static struct fuser *user_email(const char *email)
{
    size_t i;

    for (i = 0; email && i < MAX_USERS; i++)
        if (users[i].used && strcmp(users[i].email, email) == 0)
            return &users[i];
    return NULL;
}

static struct fsession *session_id(const char *sid)
{
    size_t i;

    for (i = 0; sid && i < MAX_SESSIONS; i++)
        if (sessions[i].used && strcmp(sessions[i].id, sid) == 0)
            return &sessions[i];
    return NULL;
}

static struct ftoken *token_hash(const uint8_t h[REPO_HASH_LEN])
{
    size_t i;

    for (i = 0; i < MAX_TOKENS; i++)
        if (tokens[i].used && memcmp(tokens[i].hash, h, REPO_HASH_LEN) == 0)
            return &tokens[i];
    return NULL;
}

static struct fcount *count_of(const char *email, const char *ip, bool add)
{
    size_t i;

    for (i = 0; i < MAX_COUNTS; i++)
        if (counts[i].used && strcmp(counts[i].email, email) == 0 &&
            strcmp(counts[i].ip, ip) == 0)
            return &counts[i];
    for (i = 0; add && i < MAX_COUNTS; i++)
        if (!counts[i].used) {
            counts[i].used = true;
            snprintf(counts[i].email, sizeof counts[i].email, "%s", email);
            snprintf(counts[i].ip, sizeof counts[i].ip, "%s", ip);
            counts[i].c = (struct login_count){ 0 };
            return &counts[i];
        }
    return NULL;
}

static void copy_user(const struct fuser *f, struct user *out,
                      struct arena *a)
{
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", f->id);
    out->email = arena_strdup(a, f->email);
    out->full_name = f->has_name ? arena_strdup(a, f->full_name) : NULL;
    out->password_hash = arena_strdup(a, f->hash);
    out->role = f->role;
    out->is_active = f->is_active;
    out->is_verified = f->is_verified;
    out->created_at = f->created_at;
    out->updated_at = f->updated_at;
    out->password_gen = f->password_gen;
    out->verified_at = f->verified_at;
    out->mfa_enabled = f->mfa_enabled;
}

static void copy_session(const struct fsession *f, struct session *out,
                         struct arena *a)
{
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", f->id);
    snprintf(out->user_id, sizeof out->user_id, "%s", f->user_id);
    out->created_at = f->created_at;
    out->last_used_at = f->last_used_at;
    out->expires_at = f->expires_at;
    out->revoked_at = f->revoked_at;
    out->amr = f->has_amr ? arena_strdup(a, f->amr) : NULL;
}

static bool session_live(const struct fsession *s, int64_t now)
{
    const struct fuser *u = user_id(s->user_id);

    return s->revoked_at == 0 && s->expires_at > now && u && u->is_active;
}

static void revoke_user(const char *uid, const char *keep, int64_t now)
{
    size_t i;

    for (i = 0; i < MAX_SESSIONS; i++)
        if (sessions[i].used && strcmp(sessions[i].user_id, uid) == 0 &&
            sessions[i].revoked_at == 0 &&
            (!keep || strcmp(sessions[i].id, keep) != 0))
            sessions[i].revoked_at = now;
}

static int active_admins_but(const char *id)
{
    int n = 0;
    size_t i;

    for (i = 0; i < MAX_USERS; i++)
        if (users[i].used && users[i].role == ROLE_ADMIN &&
            users[i].is_active && strcmp(users[i].id, id) != 0)
            n++;
    return n;
}

static enum as_err insert(const struct user *u, bool mfa_on)
{
    size_t i;

    if (user_email(u->email))
        return AS_ERR_EMAIL_TAKEN;
    for (i = 0; i < MAX_USERS; i++)
        if (!users[i].used) {
            struct fuser *f = &users[i];

            memset(f, 0, sizeof *f);
            f->used = true;
            snprintf(f->id, sizeof f->id, "%s", u->id);
            snprintf(f->email, sizeof f->email, "%s", u->email);
            f->has_name = u->full_name != NULL;
            snprintf(f->full_name, sizeof f->full_name, "%s",
                     u->full_name ? u->full_name : "");
            snprintf(f->hash, sizeof f->hash, "%s",
                     u->password_hash ? u->password_hash : "");
            f->role = u->role;
            f->is_active = u->is_active;
            f->is_verified = u->is_verified;
            f->verified_at = u->is_verified ? u->created_at : 0;
            f->mfa_enabled = mfa_on;
            f->created_at = u->created_at;
            f->updated_at = u->updated_at;
            return AS_OK;
        }
    return AS_ERR_INTERNAL;
}

/* ---- test controls -------------------------------------------------- */

enum as_err fake_repo_add_user(const struct user *u, bool mfa_on)
{
    enum as_err err;

    pthread_mutex_lock(&mu);
    err = insert(u, mfa_on);
    pthread_mutex_unlock(&mu);
    return err;
}

int64_t fake_repo_failures(const char *email, const char *ip)
{
    struct fcount *c;
    int64_t n;

    pthread_mutex_lock(&mu);
    c = count_of(email, ip, false);
    n = c ? c->c.count : 0;
    pthread_mutex_unlock(&mu);
    return n;
}

int64_t fake_repo_failures_at_lookup(unsigned *n)
{
    int64_t v;

    pthread_mutex_lock(&mu);
    v = seen_at_lookup;
    *n = lookups;
    pthread_mutex_unlock(&mu);
    return v;
}

bool fake_repo_session_unrevoked(const char *sid)
{
    struct fsession *s;
    bool live;

    pthread_mutex_lock(&mu);
    s = session_id(sid);
    live = s && s->revoked_at == 0;
    pthread_mutex_unlock(&mu);
    return live;
}

const char *fake_repo_hash(const char *id)
{
    struct fuser *u;

    pthread_mutex_lock(&mu);
    u = user_id(id);
    pthread_mutex_unlock(&mu);
    return u ? u->hash : NULL;
}

static _Atomic unsigned next_id;
static const struct pw_params cheap = { 1, 8192 };

void fake_id(char out[UUID_STR_LEN])
{
    snprintf(out, UUID_STR_LEN, "00000000-0000-7000-8000-%012u",
             ++next_id);
}

void fake_core(struct core *c, struct cfg *cfg, struct scache *sc)
{
    cfg->refresh_ttl = 1000;
    cfg->session_max_seconds = 5000;
    cfg->refresh_reuse_grace_seconds = 10;
    cfg->lockout_threshold = 3;
    cfg->lockout_max_seconds = 60;
    cfg->password_min_length = 8;
    (void)pw_dummy_init(&cheap);         /* an unknown email's check */
    *c = (struct core){ .repo = fake_repo(), .scache = sc, .cfg = cfg,
                        .pw = &cheap, .now_ms = fake_clock,
                        .new_id = fake_id, .new_token = sec_token_new };
}

void fake_user(char id[UUID_STR_LEN], const char *email, enum role role,
               bool active, const char *pw, bool mfa_on)
{
    char hash[PW_HASH_MAX];
    struct user u = { .email = email, .role = role, .is_active = active,
                      .password_hash = hash };

    if (pw_hash(pw, &cheap, hash) != AS_OK)
        hash[0] = '\0';
    fake_id(u.id);
    u.created_at = u.updated_at = fake_now;
    (void)fake_repo_add_user(&u, mfa_on);
    snprintf(id, UUID_STR_LEN, "%s", u.id);
}

/* ---- users ---------------------------------------------------------- */

enum as_err repo_user_insert(struct repo *r, const struct user *u)
{
    (void)r;
    return fake_repo_add_user(u, false);
}

enum as_err repo_user_by_id(struct repo *r, const char *id,
                            struct user *out, struct arena *a)
{
    struct fuser *f;

    (void)r;
    pthread_mutex_lock(&mu);
    f = user_id(id);
    if (f)
        copy_user(f, out, a);
    pthread_mutex_unlock(&mu);
    return f ? AS_OK : AS_ERR_NOT_FOUND;
}

enum as_err repo_user_by_email(struct repo *r, const char *email,
                               struct user *out, struct arena *a)
{
    struct fuser *f;
    struct fcount *c;

    (void)r;
    pthread_mutex_lock(&mu);
    c = count_of(email, "*", false);
    seen_at_lookup = c ? c->c.count : 0;
    lookups++;
    f = user_email(email);
    if (f)
        copy_user(f, out, a);
    pthread_mutex_unlock(&mu);
    return f ? AS_OK : AS_ERR_NOT_FOUND;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* A count of `from` copied to `to`, each field the higher (mu held), as
 * the backends' email change does (src/repo/login_failures.c). */
static void carry_count(const char *from, const char *to, const char *ip)
{
    struct fcount *c = ip ? count_of(from, ip, false) : NULL, *n;

    if (!c || !(n = count_of(to, ip, true)))
        return;
    n->c.count = max64(n->c.count, c->c.count);
    n->c.last_at = max64(n->c.last_at, c->c.last_at);
    n->c.locked_until = max64(n->c.locked_until, c->c.locked_until);
}

/* The patch's refusal, if any (mu held). */
static enum as_err patch_check(const struct fuser *f,
                               const struct user_patch *p)
{
    struct fuser *other;
    bool admin_after = f->role == ROLE_ADMIN && f->is_active;

    if ((p->set & UF_ROLE) && p->role != ROLE_ADMIN)
        admin_after = false;
    if ((p->set & UF_ACTIVE) && !p->is_active)
        admin_after = false;
    if (f->role == ROLE_ADMIN && f->is_active && !admin_after &&
        active_admins_but(f->id) == 0)
        return AS_ERR_LAST_ADMIN;
    other = (p->set & UF_EMAIL) ? user_email(p->email) : NULL;
    if (other && other != f)
        return AS_ERR_EMAIL_TAKEN;
    return AS_OK;
}

enum as_err repo_user_patch(struct repo *r, const char *id,
                            const struct user_patch *p, int64_t now,
                            struct user *out, struct arena *a)
{
    struct fuser *f;
    enum as_err err = AS_ERR_NOT_FOUND;

    (void)r;
    pthread_mutex_lock(&mu);
    f = user_id(id);
    if (f)
        err = patch_check(f, p);
    if (err == AS_OK) {
        if ((p->set & UF_EMAIL) && strcmp(f->email, p->email) != 0) {
            carry_count(f->email, p->email, "*");
            carry_count(f->email, p->email, p->carry_ip);
            snprintf(f->email, sizeof f->email, "%s", p->email);
            f->is_verified = false;
        }
        if (p->set & UF_FULL_NAME) {
            f->has_name = p->full_name != NULL;
            snprintf(f->full_name, sizeof f->full_name, "%s",
                     p->full_name ? p->full_name : "");
        }
        if (p->set & UF_ROLE)
            f->role = p->role;
        if (p->set & UF_VERIFIED)
            f->is_verified = p->is_verified;
        if ((p->set & UF_VERIFIED) && p->is_verified && !f->verified_at)
            f->verified_at = now;
        if (p->set & UF_ACTIVE) {
            f->is_active = p->is_active;
            if (!p->is_active)
                revoke_user(f->id, NULL, now);
        }
        f->updated_at = now;
        if (out)
            copy_user(f, out, a);
    }
    pthread_mutex_unlock(&mu);
    return err;
}

enum as_err repo_user_set_password(struct repo *r, const char *id,
                                   const char *hash, const char *keep_sid,
                                   int64_t now)
{
    struct fuser *f;

    (void)r;
    pthread_mutex_lock(&mu);
    f = user_id(id);
    if (f) {
        snprintf(f->hash, sizeof f->hash, "%s", hash);
        f->password_gen++;
        f->updated_at = now;
        revoke_user(id, keep_sid, now);
    }
    pthread_mutex_unlock(&mu);
    return f ? AS_OK : AS_ERR_NOT_FOUND;
}

void (*fake_repo_before_rehash)(const char *id);

enum as_err repo_user_rehash(struct repo *r, const char *id, const char *old,
                             const char *hash)
{
    struct fuser *f;
    enum as_err err = AS_ERR_CONFLICT;

    (void)r;
    if (fake_repo_before_rehash)
        fake_repo_before_rehash(id);
    pthread_mutex_lock(&mu);
    f = user_id(id);
    if (f && strcmp(f->hash, old) == 0) {
        snprintf(f->hash, sizeof f->hash, "%s", hash);
        err = AS_OK;
    }
    pthread_mutex_unlock(&mu);
    return err;
}

enum as_err repo_user_delete(struct repo *r, const char *id, int64_t now)
{
    struct fuser *f;
    enum as_err err = AS_ERR_NOT_FOUND;
    size_t i;

    (void)r;
    (void)now;
    pthread_mutex_lock(&mu);
    f = user_id(id);
    if (f)
        err = f->role == ROLE_ADMIN && f->is_active &&
                      active_admins_but(id) == 0
                  ? AS_ERR_LAST_ADMIN
                  : AS_OK;
    if (err == AS_OK) {
        for (i = 0; i < MAX_SESSIONS; i++)
            if (sessions[i].used && strcmp(sessions[i].user_id, id) == 0)
                sessions[i].used = false;
        f->used = false;
    }
    pthread_mutex_unlock(&mu);
    return err;
}

enum as_err repo_user_list(struct repo *r, const char *q, const char *after,
                           unsigned limit, struct user *out, size_t *n,
                           struct arena *a)
{
    const struct fuser *sorted[MAX_USERS];
    size_t i, j, m = 0;

    (void)r;
    *n = 0;
    pthread_mutex_lock(&mu);
    for (i = 0; i < MAX_USERS; i++) {
        const struct fuser *f = &users[i];

        if (!f->used || (after && strcmp(f->id, after) <= 0) ||
            (q && !strcasestr(f->email, q) &&
             !(f->has_name && strcasestr(f->full_name, q))))
            continue;
        for (j = m; j > 0 && strcmp(sorted[j - 1]->id, f->id) > 0; j--)
            sorted[j] = sorted[j - 1];
        sorted[j] = f;
        m++;
    }
    for (i = 0; i < m && i < limit; i++)
        copy_user(sorted[i], &out[(*n)++], a);
    pthread_mutex_unlock(&mu);
    return AS_OK;
}

/* ---- lockout counts ------------------------------------------------- */

enum as_err repo_login_failures_update(struct repo *r, const char *email,
                                       const char *ip,
                                       repo_login_update_fn fn, void *ctx)
{
    struct fcount *addr, *all;
    enum as_err err = AS_ERR_INTERNAL;
    int64_t before = 0;
    size_t i, pruned = 0;

    (void)r;
    if (!email || !ip || strcmp(ip, "*") == 0)
        return AS_ERR_BAD_REQUEST;
    pthread_mutex_lock(&mu);
    addr = count_of(email, ip, true);
    all = count_of(email, "*", true);
    if (addr && all) {
        before = fn(ctx, &addr->c, &all->c);
        addr->used = addr->c.count != 0;
        all->used = all->c.count != 0;
        err = AS_OK;
    }
    for (i = 0; before > 0 && i < MAX_COUNTS && pruned < 16; i++)
        if (counts[i].used && counts[i].c.last_at < before) {
            counts[i].used = false;
            pruned++;
        }
    pthread_mutex_unlock(&mu);
    return err;
}

enum as_err repo_login_failures_read(struct repo *r, const char *email,
                                     const char *ip, repo_login_update_fn fn,
                                     void *ctx, struct repo_user_read *read)
{
    enum as_err err;

    if (!read || !read->out || !read->a)
        return AS_ERR_BAD_REQUEST;
    read->found = false;
    err = repo_login_failures_update(r, email, ip, fn, ctx);
    if (err == AS_OK && read->wanted) {
        err = repo_user_by_email(r, email, read->out, read->a);
        read->found = err == AS_OK;
        if (err == AS_ERR_NOT_FOUND)
            err = AS_OK;
    }
    return err;
}

/* Ends the counts of `email` from `ip` (NULL: every address; mu held). */
static void clear_locked(const char *email, const char *ip)
{
    size_t i;

    for (i = 0; i < MAX_COUNTS; i++)
        if (counts[i].used && strcmp(counts[i].email, email) == 0 &&
            (!ip || strcmp(counts[i].ip, ip) == 0 ||
             strcmp(counts[i].ip, "*") == 0))
            counts[i].used = false;
}

enum as_err repo_login_failures_clear(struct repo *r, const char *email,
                                      const char *ip)
{
    (void)r;
    pthread_mutex_lock(&mu);
    clear_locked(email, ip);
    pthread_mutex_unlock(&mu);
    return AS_OK;
}

/* ---- sessions and refresh tokens ------------------------------------ */

/* Stores refresh token hash `h` of session `sid` (mu held). */
static enum as_err add_token(const uint8_t h[REPO_HASH_LEN],
                             const char *sid, int64_t now)
{
    size_t i;

    for (i = 0; i < MAX_TOKENS; i++)
        if (!tokens[i].used) {
            tokens[i].used = true;
            memcpy(tokens[i].hash, h, REPO_HASH_LEN);
            snprintf(tokens[i].sid, sizeof tokens[i].sid, "%s", sid);
            tokens[i].used_at = 0;
            tokens[i].created_at = now;
            return AS_OK;
        }
    return AS_ERR_INTERNAL;
}

/* True when session `a` is live at `now` for `uid`. */
static bool live_of(const struct fsession *a, const char *uid, int64_t now)
{
    return a->used && strcmp(a->user_id, uid) == 0 && a->revoked_at == 0 &&
           a->expires_at > now;
}

/* The live sessions of `user_id` beyond the `keep` most recently used
 * end (under mu). */
static unsigned cap_locked(const char *user_id, unsigned keep, int64_t now)
{
    bool end[MAX_SESSIONS] = { false };
    unsigned ended = 0;
    size_t i, j;

    for (i = 0; i < MAX_SESSIONS; i++) {
        unsigned newer = 0;

        if (!live_of(&sessions[i], user_id, now))
            continue;
        for (j = 0; j < MAX_SESSIONS; j++)
            if (j != i && live_of(&sessions[j], user_id, now) &&
                (sessions[j].last_used_at > sessions[i].last_used_at ||
                 (sessions[j].last_used_at == sessions[i].last_used_at &&
                  strcmp(sessions[j].id, sessions[i].id) > 0)))
                newer++;
        end[i] = newer >= keep;
    }
    for (i = 0; i < MAX_SESSIONS; i++)
        if (end[i]) {
            sessions[i].revoked_at = now;
            ended++;
        }
    return ended;
}

enum as_err repo_session_create(struct repo *r, const struct session *s,
                                const uint8_t refresh_hash[REPO_HASH_LEN],
                                struct session_upkeep *up)
{
    enum as_err err = AS_ERR_NOT_FOUND;
    size_t i;

    (void)r;
    pthread_mutex_lock(&mu);
    if (user_id(s->user_id))
        err = s->one_factor && user_id(s->user_id)->mfa_enabled
                  ? AS_ERR_MFA_REQUIRED
              : s->pw_gen >= 0 &&
                        user_id(s->user_id)->password_gen != s->pw_gen
                  ? AS_ERR_BAD_CREDENTIALS
                  : AS_ERR_INTERNAL;
    for (i = 0; err == AS_ERR_INTERNAL && i < MAX_SESSIONS; i++)
        if (!sessions[i].used) {
            struct fsession *f = &sessions[i];

            memset(f, 0, sizeof *f);
            f->used = true;
            snprintf(f->id, sizeof f->id, "%s", s->id);
            snprintf(f->user_id, sizeof f->user_id, "%s", s->user_id);
            f->has_amr = s->amr != NULL;
            snprintf(f->amr, sizeof f->amr, "%s", s->amr ? s->amr : "");
            f->created_at = s->created_at;
            f->last_used_at = s->last_used_at;
            f->expires_at = s->expires_at;
            err = add_token(refresh_hash, s->id, s->created_at);
        }
    if (up)
        up->ended = 0;
    if (err == AS_OK && up && up->keep > 0)
        up->ended = cap_locked(s->user_id, up->keep, s->created_at);
    if (err == AS_OK && up && up->passed_email)
        clear_locked(up->passed_email, up->passed_ip);
    pthread_mutex_unlock(&mu);
    return err;
}

enum as_err repo_session_state(struct repo *r, const char *sid, int64_t now,
                               struct session_state *out)
{
    struct fsession *s;
    struct fuser *u;

    (void)r;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&mu);
    s = session_id(sid);
    u = s ? user_id(s->user_id) : NULL;
    if (s && u) {
        out->live = session_live(s, now);
        out->role = u->role;
        snprintf(out->email, sizeof out->email, "%s", u->email);
        snprintf(out->user_id, sizeof out->user_id, "%s", s->user_id);
        if (s->has_amr && strlen(s->amr) <= REPO_AMR_MAX)
            snprintf(out->amr, sizeof out->amr, "%s", s->amr);
    }
    pthread_mutex_unlock(&mu);
    return AS_OK;
}

enum as_err repo_session_list(struct repo *r, const char *user_id,
                              int64_t now, struct session **out, size_t *n,
                              struct arena *a)
{
    struct session *arr = arena_alloc(a, MAX_SESSIONS * sizeof *arr);
    size_t i;

    (void)r;
    *n = 0;
    *out = arr;
    if (!arr)
        return AS_ERR_NOMEM;
    pthread_mutex_lock(&mu);
    for (i = MAX_SESSIONS; i-- > 0;)        /* newest (last made) first */
        if (sessions[i].used &&
            strcmp(sessions[i].user_id, user_id) == 0 &&
            session_live(&sessions[i], now) && *n < REPO_SESSION_LIST_MAX)
            copy_session(&sessions[i], &arr[(*n)++], a);
    pthread_mutex_unlock(&mu);
    return AS_OK;
}

enum as_err repo_session_revoke(struct repo *r, const char *sid,
                                const char *user_id, int64_t now)
{
    struct fsession *s;
    enum as_err err = AS_ERR_NOT_FOUND;

    (void)r;
    pthread_mutex_lock(&mu);
    s = session_id(sid);
    if (s && session_live(s, now) &&
        (!user_id || strcmp(s->user_id, user_id) == 0)) {
        s->revoked_at = now;
        err = AS_OK;
    }
    pthread_mutex_unlock(&mu);
    return err;
}

enum as_err repo_session_revoke_all(struct repo *r, const char *user_id,
                                    const char *keep_sid, int64_t now)
{
    (void)r;
    pthread_mutex_lock(&mu);
    revoke_user(user_id, keep_sid, now);
    pthread_mutex_unlock(&mu);
    return AS_OK;
}

enum as_err repo_refresh_rotate(struct repo *r,
                                const uint8_t parent[REPO_HASH_LEN],
                                const uint8_t child[REPO_HASH_LEN],
                                int64_t now, int64_t grace_ms,
                                int64_t new_expires, int64_t max_life_ms,
                                enum rotate_result *res,
                                struct session *out, struct arena *a)
{
    struct ftoken *t;
    struct fsession *s;
    enum as_err err = AS_OK;

    (void)r;
    *res = ROTATE_INVALID;
    pthread_mutex_lock(&mu);
    t = token_hash(parent);
    s = t ? session_id(t->sid) : NULL;
    if (s) {
        /* The facts a backend reads; the decision is the real rule's
         * (src/core/rotation.c), as in src/repo/sessions.c. */
        const struct fuser *u = user_id(s->user_id);
        struct rotation_facts f = {
            .found = true, .used = t->used_at != 0, .used_at = t->used_at,
            .created_at = t->created_at,
            .revoked = s->revoked_at != 0, .expires_at = s->expires_at,
            .user_active = u && u->is_active,
        };

        *res = rotation_judge(&f, now, grace_ms, new_expires - now);
    }
    if (*res == ROTATE_OK) {
        t->used_at = now;
        err = add_token(child, s->id, now);
        s->last_used_at = now;
        s->expires_at = rotation_expiry(s->created_at, new_expires,
                                        max_life_ms);
    } else if (*res == ROTATE_REUSED) {
        s->revoked_at = now;
    }
    if (*res != ROTATE_INVALID)
        copy_session(s, out, a);
    pthread_mutex_unlock(&mu);
    return err;
}

enum as_err repo_refresh_session(struct repo *r,
                                 const uint8_t hash[REPO_HASH_LEN],
                                 int64_t now, const struct repo_kept *rotated,
                                 struct session *out, struct arena *a)
{
    struct ftoken *t;
    struct fsession *s;
    enum as_err err = AS_ERR_NOT_FOUND;
    bool named;

    (void)r;
    pthread_mutex_lock(&mu);
    t = token_hash(hash);
    named = t && (t->used_at == 0 ||
                  (rotated && (t->created_at >= rotated->created_from ||
                               t->used_at >= rotated->used_from)));
    s = named ? session_id(t->sid) : NULL;
    if (s && session_live(s, now)) {
        copy_session(s, out, a);
        err = AS_OK;
    }
    pthread_mutex_unlock(&mu);
    return err;
}

/* ---- what the fake is not: a backend with a keys table -------------- */

const char *repo_backend(const struct repo *r)
{
    (void)r;
    return "fake";
}

enum as_err repo_keys_list(struct repo *r, struct key_row *out, size_t cap,
                           size_t *n, struct arena *a)
{
    (void)r, (void)out, (void)cap, (void)a;
    *n = 0;
    return AS_ERR_INTERNAL;              /* no keys table, as SQLite */
}

enum as_err repo_keys_add(struct repo *r, const struct key_row *rows,
                          size_t n, bool only_if_empty, bool *added)
{
    (void)r, (void)rows, (void)n, (void)only_if_empty;
    *added = false;
    return AS_ERR_INTERNAL;
}

enum as_err repo_keys_prune(struct repo *r, int64_t now, int64_t before)
{
    (void)r, (void)now, (void)before;
    return AS_ERR_INTERNAL;
}
