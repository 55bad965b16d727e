/* test_mfa.c: the second factor's rules (src/core/mfa.c) over a real
 * repository, with the clock injected: login-token lifetime, single use,
 * five wrong codes, TOTP steps once each (also under concurrent use),
 * recovery codes once each, renewal and reset. Runs on SQLite, and on
 * PostgreSQL too when AUTH_TEST_PG_URL is set (in a database of its own,
 * made and dropped here). */
#include "mfa.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "uuid.h"

#define T0 INT64_C(1700000010000)    /* a step boundary (Unix ms) */
#define STEP_MS (TOTP_STEP_S * 1000)
#define ROUNDS 20
#define RACERS 8

static char pg_url[1024];            /* the test's own database, or "" */
static char pg_admin[1024];
static char pg_db[32];
static bool on_pg;
static char hs_secret[] = "0123456789abcdef0123456789abcdef-mfa";

struct fx {
    struct cfg cfg;
    struct repo *r;
    struct sec_keys *keys;
    struct arena *a;
    char path[PATH_MAX];
    char url[PATH_MAX + 16];
    struct user u;
};

static struct mfa_env env_at(struct fx *f, int64_t now_ms)
{
    struct mfa_env e = { .repo = f->r, .keys = f->keys,
                         .issuer = "auth-serve", .now_ms = now_ms };

    return e;
}

static int wipe_pg(void)
{
    PGconn *pc = PQconnectdb(pg_url);
    PGresult *r = PQexec(pc, "SET client_min_messages = warning; "
                             "TRUNCATE users CASCADE");
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;

    PQclear(r);
    PQfinish(pc);
    return rc;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("AUTH_TEST_TMP");
    char why[256];

    *state = f;
    if (!f)
        return -1;
    if (!tmp || !*tmp)
        tmp = "/tmp";
    mkdir(tmp, 0700);
    if (on_pg) {
        snprintf(f->url, sizeof f->url, "%s", pg_url);
    } else {
        snprintf(f->path, sizeof f->path, "%s/mfa-XXXXXX", tmp);
        if (!mkdtemp(f->path))
            return -1;
        snprintf(f->url, sizeof f->url, "sqlite:%s/auth.db", f->path);
    }
    f->cfg.database_url = f->url;
    f->cfg.cb_failure_threshold = 3;
    f->cfg.cb_open_seconds = 60;
    f->cfg.db_pool_size = RACERS + 2;
    f->cfg.db_timeout_ms = 5000;
    f->cfg.jwt_alg = CFG_ALG_HS256;
    f->cfg.jwt_secret = hs_secret;
    f->a = arena_new();
    if (!f->a || repo_open(&f->cfg, &f->r) != AS_OK ||
        repo_migrate(f->r) != AS_OK ||
        sec_keys_load(&f->cfg, &f->keys, why, sizeof why) != AS_OK ||
        (on_pg && wipe_pg() != 0))
        return -1;
    uuid_v7_new(f->u.id);
    f->u.email = "ada@example.com";
    f->u.password_hash = "$argon2id$v=19$m=8192,t=1,p=1$x$y";
    f->u.is_active = true;
    f->u.created_at = f->u.updated_at = T0;
    return repo_user_insert(f->r, &f->u) == AS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char db[PATH_MAX + 16];

    if (!f)
        return 0;
    repo_close(f->r);
    sec_keys_free(f->keys);
    arena_free(f->a);
    if (f->path[0]) {
        snprintf(db, sizeof db, "%s/auth.db", f->path);
        unlink(db);
        snprintf(db, sizeof db, "%s/auth.db-wal", f->path);
        unlink(db);
        snprintf(db, sizeof db, "%s/auth.db-shm", f->path);
        unlink(db);
        rmdir(f->path);
    }
    free(f);
    return 0;
}

/* RFC 4648 base32 decoding of a secret the setup handed out. */
static void b32_decode(const char *s, uint8_t out[TOTP_SECRET_LEN])
{
    uint32_t acc = 0;
    size_t bits = 0, o = 0;

    for (; *s && o < TOTP_SECRET_LEN; s++) {
        const char *p = strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", *s);

        assert_non_null(p);
        acc = (acc << 5) | (uint32_t)(p - "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
        bits += 5;
        if (bits >= 8) {
            out[o++] = (uint8_t)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    assert_int_equal(o, TOTP_SECRET_LEN);
}

static void code_of(const uint8_t *secret, int64_t step, char out[7])
{
    snprintf(out, 7, "%06u", (unsigned)totp_hotp(secret, TOTP_SECRET_LEN,
                                                 (uint64_t)step, 6));
}

/* Sets the factor up and confirms it at T0; the clear secret and the
 * recovery codes come back. */
static void turn_on(struct fx *f, uint8_t secret[TOTP_SECRET_LEN],
                    struct mfa_codes *rc)
{
    struct mfa_env e = env_at(f, T0);
    struct mfa_setup s;
    char code[7];
    bool ok = false;

    assert_int_equal(mfa_setup_begin(&e, &f->u, &s, f->a), AS_OK);
    b32_decode(s.secret, secret);
    code_of(secret, T0 / STEP_MS, code);
    assert_int_equal(mfa_confirm(&e, f->u.id, code, NULL, rc, &ok), AS_OK);
    assert_true(ok);
}

static void token_lives_five_minutes(void **state)
{
    struct fx *f = *state;
    struct mfa_env e = env_at(f, T0);
    char tok[SEC_TOKEN_LEN + 1], uid[UUID_STR_LEN];

    assert_int_equal(mfa_token_issue(&e, f->u.id, -1, tok), AS_OK);
    e.now_ms = T0 + MFA_TOKEN_TTL_MS - 1;
    assert_int_equal(mfa_token_user(&e, tok, uid), AS_OK);
    assert_string_equal(uid, f->u.id);
    e.now_ms = T0 + MFA_TOKEN_TTL_MS;
    assert_int_equal(mfa_token_user(&e, tok, uid), AS_ERR_INVALID_TOKEN);
    assert_int_equal(mfa_token_use(&e, tok), AS_ERR_INVALID_TOKEN);
    e.now_ms = T0 + MFA_TOKEN_TTL_MS - 1;   /* still live before that */
    assert_int_equal(mfa_token_use(&e, tok), AS_OK);
}

static void token_is_single_use(void **state)
{
    struct fx *f = *state;
    struct mfa_env e = env_at(f, T0);
    char tok[SEC_TOKEN_LEN + 1], other[SEC_TOKEN_LEN + 1];
    char uid[UUID_STR_LEN];

    assert_int_equal(mfa_token_issue(&e, f->u.id, -1, tok), AS_OK);
    assert_int_equal(mfa_token_issue(&e, f->u.id, -1, other), AS_OK);
    assert_int_equal(mfa_token_use(&e, tok), AS_OK);
    assert_int_equal(mfa_token_use(&e, tok), AS_ERR_INVALID_TOKEN);
    assert_int_equal(mfa_token_user(&e, tok, uid), AS_ERR_INVALID_TOKEN);
    assert_int_equal(mfa_token_user(&e, other, uid), AS_OK);
    /* unknown and malformed tokens */
    other[0] = other[0] == 'A' ? 'B' : 'A';
    assert_int_equal(mfa_token_user(&e, other, uid), AS_ERR_INVALID_TOKEN);
    assert_int_equal(mfa_token_user(&e, "short", uid), AS_ERR_INVALID_TOKEN);
}

static void token_dies_after_five_wrong_codes(void **state)
{
    struct fx *f = *state;
    struct mfa_env e = env_at(f, T0);
    char tok[SEC_TOKEN_LEN + 1], uid[UUID_STR_LEN];
    unsigned i;

    assert_int_equal(mfa_token_issue(&e, f->u.id, -1, tok), AS_OK);
    for (i = 0; i < MFA_TOKEN_MAX_FAILURES - 1; i++)
        assert_int_equal(mfa_token_attempt(&e, tok), AS_OK);
    assert_int_equal(mfa_token_user(&e, tok, uid), AS_OK);
    assert_int_equal(mfa_token_attempt(&e, tok), AS_OK);
    assert_int_equal(mfa_token_user(&e, tok, uid), AS_ERR_INVALID_TOKEN);
    /* no attempt is left to claim */
    assert_int_equal(mfa_token_attempt(&e, tok), AS_ERR_INVALID_TOKEN);
    assert_int_equal(mfa_token_attempt(&e, "short"), AS_ERR_INVALID_TOKEN);
    /* one given back (its caller was locked out): claimable once more */
    mfa_token_refund(&e, tok);
    assert_int_equal(mfa_token_user(&e, tok, uid), AS_OK);
    assert_int_equal(mfa_token_attempt(&e, tok), AS_OK);
    assert_int_equal(mfa_token_attempt(&e, tok), AS_ERR_INVALID_TOKEN);
    /* a used token gets none back */
    mfa_token_refund(&e, tok);
    assert_int_equal(mfa_token_use(&e, tok), AS_OK);
    mfa_token_refund(&e, tok);
    assert_int_equal(mfa_token_attempt(&e, tok), AS_ERR_INVALID_TOKEN);
    mfa_token_refund(&e, "short");
}

/* A right code on the last attempt still uses the token, once. */
static void last_attempt_can_use_the_token(void **state)
{
    struct fx *f = *state;
    struct mfa_env e = env_at(f, T0);
    char tok[SEC_TOKEN_LEN + 1];
    unsigned i;

    assert_int_equal(mfa_token_issue(&e, f->u.id, -1, tok), AS_OK);
    for (i = 0; i < MFA_TOKEN_MAX_FAILURES; i++)
        assert_int_equal(mfa_token_attempt(&e, tok), AS_OK);
    assert_int_equal(mfa_token_use(&e, tok), AS_OK);
    assert_int_equal(mfa_token_use(&e, tok), AS_ERR_INVALID_TOKEN);
    assert_int_equal(mfa_token_attempt(&e, tok), AS_ERR_INVALID_TOKEN);
    /* an expired token has no attempt either */
    assert_int_equal(mfa_token_issue(&e, f->u.id, -1, tok), AS_OK);
    e.now_ms += MFA_TOKEN_TTL_MS;
    assert_int_equal(mfa_token_attempt(&e, tok), AS_ERR_INVALID_TOKEN);
}

static void steps_once_each_with_the_clock(void **state)
{
    struct fx *f = *state;
    uint8_t secret[TOTP_SECRET_LEN];
    struct mfa_codes rc;
    struct mfa_env e;
    int64_t s0 = T0 / STEP_MS;
    char code[7];
    bool ok = true;

    turn_on(f, secret, &rc);              /* used step s0 */
    e = env_at(f, T0 + 1000);
    code_of(secret, s0, code);
    assert_int_equal(mfa_check_code(&e, f->u.id, code, &ok), AS_OK);
    assert_false(ok);                     /* replay within the window */
    code_of(secret, s0 - 1, code);
    assert_int_equal(mfa_check_code(&e, f->u.id, code, &ok), AS_OK);
    assert_false(ok);                     /* older than one used */
    code_of(secret, s0 + 1, code);
    assert_int_equal(mfa_check_code(&e, f->u.id, code, &ok), AS_OK);
    assert_true(ok);                      /* the next step, early */
    /* s0 + 2 at the last ms of step s0: outside the window */
    e.now_ms = T0 + STEP_MS - 1;
    code_of(secret, s0 + 2, code);
    assert_int_equal(mfa_check_code(&e, f->u.id, code, &ok), AS_OK);
    assert_false(ok);
    /* the first ms of step s0 + 1: now inside */
    e.now_ms = T0 + STEP_MS;
    assert_int_equal(mfa_check_code(&e, f->u.id, code, &ok), AS_OK);
    assert_true(ok);
    /* s0 + 3 one step late, at the last ms of step s0 + 4 */
    code_of(secret, s0 + 3, code);
    e.now_ms = T0 + 4 * STEP_MS + STEP_MS - 1;
    assert_int_equal(mfa_check_code(&e, f->u.id, code, &ok), AS_OK);
    assert_true(ok);
    e.now_ms = T0 + 6 * STEP_MS;
    code_of(secret, s0 + 4, code);
    assert_int_equal(mfa_check_code(&e, f->u.id, code, &ok), AS_OK);
    assert_false(ok);                     /* two steps late */
    assert_int_equal(mfa_check_code(&e, f->u.id, "12345", &ok), AS_OK);
    assert_false(ok);
    sodium_memzero(&rc, sizeof rc);
}

static void recovery_codes_once_each(void **state)
{
    struct fx *f = *state;
    uint8_t secret[TOTP_SECRET_LEN];
    struct mfa_codes rc, fresh;
    struct mfa_env e = env_at(f, T0 + 1000);
    bool ok = false;
    size_t i;

    turn_on(f, secret, &rc);
    for (i = 0; i < TOTP_RECOVERY_COUNT; i++) {
        assert_int_equal(mfa_check_code(&e, f->u.id, rc.code[i], &ok),
                         AS_OK);
        assert_true(ok);
        assert_int_equal(mfa_check_code(&e, f->u.id, rc.code[i], &ok),
                         AS_OK);
        assert_false(ok);
    }
    assert_int_equal(mfa_recovery_renew(&e, f->u.id, NULL, 0, e.now_ms * 1000,
                                        &fresh), AS_OK);
    assert_int_equal(mfa_check_code(&e, f->u.id, fresh.code[3], &ok),
                     AS_OK);
    assert_true(ok);
    assert_int_equal(mfa_check_code(&e, f->u.id, fresh.code[3], &ok),
                     AS_OK);
    assert_false(ok);
}

/* A login's code and its mfa_token are used together: a right code sent
 * with a token used meanwhile (another code won the login) stays unused,
 * a TOTP step and a recovery code alike; a right code with a live token
 * uses both. */
static void login_code_and_token_used_together(void **state)
{
    struct fx *f = *state;
    uint8_t secret[TOTP_SECRET_LEN];
    struct mfa_codes rc;
    struct mfa_env e = env_at(f, T0 + 1000);
    char tok[SEC_TOKEN_LEN + 1], code[7];
    bool ok = true;

    turn_on(f, secret, &rc);              /* used step T0 / STEP_MS */
    assert_int_equal(mfa_token_issue(&e, f->u.id, -1, tok), AS_OK);
    assert_int_equal(mfa_token_use(&e, tok), AS_OK);     /* the winner */
    assert_int_equal(mfa_check_login_code(&e, f->u.id, rc.code[0], tok,
                                          &ok), AS_ERR_INVALID_TOKEN);
    assert_false(ok);
    code_of(secret, T0 / STEP_MS + 1, code);
    assert_int_equal(mfa_check_login_code(&e, f->u.id, code, tok, &ok),
                     AS_ERR_INVALID_TOKEN);
    assert_false(ok);
    /* both still unused: a live token takes them, and itself */
    assert_int_equal(mfa_token_issue(&e, f->u.id, -1, tok), AS_OK);
    assert_int_equal(mfa_check_login_code(&e, f->u.id, rc.code[0], tok,
                                          &ok), AS_OK);
    assert_true(ok);
    assert_int_equal(mfa_token_use(&e, tok), AS_ERR_INVALID_TOKEN);
    assert_int_equal(mfa_token_issue(&e, f->u.id, -1, tok), AS_OK);
    assert_int_equal(mfa_check_login_code(&e, f->u.id, code, tok, &ok),
                     AS_OK);
    assert_true(ok);
    assert_int_equal(mfa_token_user(&e, tok, (char[UUID_STR_LEN]){ 0 }),
                     AS_ERR_INVALID_TOKEN);
    /* a wrong code with a live token uses neither */
    assert_int_equal(mfa_token_issue(&e, f->u.id, -1, tok), AS_OK);
    assert_int_equal(mfa_check_login_code(&e, f->u.id, rc.code[0], tok,
                                          &ok), AS_OK);
    assert_false(ok);                     /* used above */
    assert_int_equal(mfa_token_use(&e, tok), AS_OK);
    assert_int_equal(mfa_check_login_code(&e, f->u.id, rc.code[1], "x",
                                          &ok), AS_ERR_INVALID_TOKEN);
    sodium_memzero(&rc, sizeof rc);
}

/* A code of a login whose factor was turned off meanwhile (by the user,
 * an admin or the CLI) is AS_ERR_INVALID_TOKEN, as for the login token
 * the turning off ended: the login's attempt is then taken back. It was
 * AS_ERR_NOT_FOUND (409, "not on") or, off between the read and the use,
 * a wrong code (400, counted), for a right code. */
static void login_code_after_the_factor_went_off(void **state)
{
    struct fx *f = *state;
    uint8_t secret[TOTP_SECRET_LEN];
    struct mfa_codes rc;
    struct mfa_env e = env_at(f, T0 + 1000);
    char tok[SEC_TOKEN_LEN + 1], code[7];
    bool ok = true, was_on = false;

    turn_on(f, secret, &rc);
    assert_int_equal(mfa_token_issue(&e, f->u.id, -1, tok), AS_OK);
    assert_int_equal(mfa_disable(&e, f->u.id, NULL, &was_on), AS_OK);
    assert_true(was_on);
    assert_int_equal(mfa_check_login_code(&e, f->u.id, rc.code[0], tok,
                                          &ok), AS_ERR_INVALID_TOKEN);
    assert_false(ok);
    code_of(secret, T0 / STEP_MS + 1, code);
    assert_int_equal(mfa_check_login_code(&e, f->u.id, code, tok, &ok),
                     AS_ERR_INVALID_TOKEN);
    assert_false(ok);
    /* a signed-in caller's check (no login token) still says "not on" */
    assert_int_equal(mfa_check_code(&e, f->u.id, code, &ok),
                     AS_ERR_NOT_FOUND);
    sodium_memzero(&rc, sizeof rc);
}

/* Of two renewals at once only the first happens, whatever each proved
 * with: one that began (`since_us`) before the other's codes were set is
 * refused and changes nothing; one that began after them goes on, also
 * within their millisecond. Times in microseconds. */
static void renewal_begun_before_another_comes_second(void **state)
{
    struct fx *f = *state;
    uint8_t secret[TOTP_SECRET_LEN];
    struct mfa_codes rc, first, second;
    struct mfa_env e = env_at(f, T0 + 3000);
    const int64_t us = 1000 * T0;
    bool ok = false;

    turn_on(f, secret, &rc);              /* codes set at T0 */
    assert_int_equal(mfa_recovery_renew(&e, f->u.id, NULL, us + 1000000,
                                        us + 2000500, &first), AS_OK);
    /* began at T0 + 1.5 s, before the first set: second */
    assert_int_equal(mfa_recovery_renew(&e, f->u.id, NULL, us + 1500000,
                                        us + 2500000, &second),
                     AS_ERR_INVALID_CODE);
    assert_int_equal(mfa_check_code(&e, f->u.id, first.code[0], &ok),
                     AS_OK);
    assert_true(ok);                      /* the first set stands */
    /* begun in the first set's millisecond, 1 us before it: second;
     * 1 us after it (a client sending as soon as its answer came): no
     * concurrent one. By the millisecond, both were refused. */
    assert_int_equal(mfa_recovery_renew(&e, f->u.id, NULL, us + 2000499,
                                        us + 2000800, &second),
                     AS_ERR_INVALID_CODE);
    assert_int_equal(mfa_recovery_renew(&e, f->u.id, NULL, us + 2000501,
                                        us + 2000800, &second), AS_OK);
    assert_int_equal(mfa_check_code(&e, f->u.id, second.code[0], &ok),
                     AS_OK);
    assert_true(ok);
    assert_int_equal(mfa_check_code(&e, f->u.id, first.code[1], &ok),
                     AS_OK);
    assert_false(ok);
    sodium_memzero(&rc, sizeof rc);
    sodium_memzero(&first, sizeof first);
    sodium_memzero(&second, sizeof second);
}

/* The codes a confirm stores are timed when stored, not when the
 * confirm began: a renewal that arrived in between (while the confirm's
 * lockout step ran) is refused as concurrent, and the confirm's codes
 * stand. Before, they were timed at the request's start, the renewal
 * went through, and both answered 200 (a review: 15 of 100). */
static int64_t stored_at_us(void)
{
    return 1000 * T0 + 1500;              /* 1.5 ms after the request began */
}

static void confirm_codes_are_timed_when_stored(void **state)
{
    struct fx *f = *state;
    uint8_t secret[TOTP_SECRET_LEN];
    struct mfa_env e = env_at(f, T0);
    struct mfa_setup s;
    struct mfa_codes rc, fresh;
    char code[7];
    bool ok = false;

    e.clock_us = stored_at_us;
    assert_int_equal(mfa_setup_begin(&e, &f->u, &s, f->a), AS_OK);
    b32_decode(s.secret, secret);
    code_of(secret, T0 / STEP_MS, code);
    assert_int_equal(mfa_confirm(&e, f->u.id, code, NULL, &rc, &ok), AS_OK);
    assert_true(ok);
    /* arrived 1 ms into the confirm: before its codes were stored */
    assert_int_equal(mfa_recovery_renew(&e, f->u.id, NULL, 1000 * T0 + 1000,
                                        1000 * T0 + 9000, &fresh),
                     AS_ERR_INVALID_CODE);
    assert_int_equal(mfa_check_code(&e, f->u.id, rc.code[0], &ok), AS_OK);
    assert_true(ok);                      /* the confirm's codes stand */
    sodium_memzero(&rc, sizeof rc);
    sodium_memzero(&fresh, sizeof fresh);
    sodium_memzero(secret, sizeof secret);
}

static void renewal_kills_unused_codes(void **state)
{
    struct fx *f = *state;
    uint8_t secret[TOTP_SECRET_LEN];
    struct mfa_codes rc, fresh;
    struct mfa_env e = env_at(f, T0 + 1000);
    bool ok = true;

    turn_on(f, secret, &rc);
    assert_int_equal(mfa_recovery_renew(&e, f->u.id, NULL, 0, e.now_ms * 1000,
                                        &fresh), AS_OK);
    assert_int_equal(mfa_check_code(&e, f->u.id, rc.code[0], &ok), AS_OK);
    assert_false(ok);
    assert_int_equal(mfa_check_code(&e, f->u.id, fresh.code[0], &ok),
                     AS_OK);
    assert_true(ok);
}

static void setup_refused_while_on_and_reset(void **state)
{
    struct fx *f = *state;
    uint8_t secret[TOTP_SECRET_LEN];
    struct mfa_codes rc;
    struct mfa_env e = env_at(f, T0 + 1000);
    struct mfa_setup s;
    struct user u;
    bool ok = true, was_on = false;
    char code[7];

    turn_on(f, secret, &rc);
    assert_int_equal(repo_user_by_id(f->r, f->u.id, &u, f->a), AS_OK);
    assert_true(u.mfa_enabled);
    assert_int_equal(mfa_setup_begin(&e, &u, &s, f->a), AS_ERR_CONFLICT);
    u.mfa_enabled = false;                /* a stale read: the store says */
    assert_int_equal(mfa_setup_begin(&e, &u, &s, f->a), AS_ERR_CONFLICT);
    assert_int_equal(mfa_disable(&e, f->u.id, NULL, &was_on), AS_OK);
    assert_true(was_on);
    assert_int_equal(repo_user_by_id(f->r, f->u.id, &u, f->a), AS_OK);
    assert_false(u.mfa_enabled);
    code_of(secret, T0 / STEP_MS + 1, code);
    assert_int_equal(mfa_check_code(&e, f->u.id, code, &ok),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(mfa_check_code(&e, f->u.id, rc.code[0], &ok),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(mfa_disable(&e, f->u.id, NULL, &was_on), AS_OK);
    assert_false(was_on);
}

static void pending_secret_is_sealed(void **state)
{
    struct fx *f = *state;
    struct mfa_env e = env_at(f, T0);
    struct mfa_setup s;
    struct mfa_state st;
    uint8_t secret[TOTP_SECRET_LEN], back[TOTP_SECRET_LEN];
    uint8_t key[TOTP_KEY_LEN];
    char code[7];
    bool ok = true;
    struct mfa_codes rc;

    assert_int_equal(mfa_setup_begin(&e, &f->u, &s, f->a), AS_OK);
    assert_non_null(strstr(s.uri, s.secret));
    assert_non_null(strstr(s.qr_svg, "<svg"));
    assert_int_equal(repo_mfa_get(f->r, f->u.id, &st, f->a), AS_OK);
    assert_false(st.enabled);
    assert_null(strstr(st.secret, s.secret));
    b32_decode(s.secret, secret);
    totp_key(f->keys, key);
    assert_int_equal(totp_open(key, f->u.id, st.secret, back), AS_OK);
    assert_memory_equal(back, secret, sizeof back);
    /* a wrong first code leaves it pending */
    code_of(secret, T0 / STEP_MS + 3, code);
    assert_int_equal(mfa_confirm(&e, f->u.id, code, NULL, &rc, &ok), AS_OK);
    assert_false(ok);
    assert_int_equal(repo_mfa_get(f->r, f->u.id, &st, f->a), AS_OK);
    assert_false(st.enabled);
}

struct race {
    struct fx *f;
    int64_t step;
    pthread_barrier_t *go;
    enum as_err got;
};

static void *racer(void *arg)
{
    struct race *r = arg;

    pthread_barrier_wait(r->go);
    r->got = repo_mfa_use_step(r->f->r, r->f->u.id, r->step,
                               NULL);
    return NULL;
}

/* Many rounds: RACERS threads use one step at once; one wins each. */
static void concurrent_step_use_has_one_winner(void **state)
{
    struct fx *f = *state;
    uint8_t secret[TOTP_SECRET_LEN];
    struct mfa_codes rc;
    pthread_barrier_t go;
    pthread_t th[RACERS];
    struct race r[RACERS];
    int round, i, wins;

    turn_on(f, secret, &rc);
    for (round = 1; round <= ROUNDS; round++) {
        pthread_barrier_init(&go, NULL, RACERS);
        for (i = 0; i < RACERS; i++) {
            r[i] = (struct race){ f, T0 / STEP_MS + round, &go, AS_OK };
            pthread_create(&th[i], NULL, racer, &r[i]);
        }
        for (wins = 0, i = 0; i < RACERS; i++) {
            pthread_join(th[i], NULL);
            assert_true(r[i].got == AS_OK || r[i].got == AS_ERR_NOT_FOUND);
            wins += r[i].got == AS_OK;
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(wins, 1);
    }
}

struct claim {
    struct fx *f;
    const char *tok;
    pthread_barrier_t *go;
    enum as_err got;
};

static void *claimer(void *arg)
{
    struct claim *c = arg;
    struct mfa_env e = env_at(c->f, T0);

    pthread_barrier_wait(c->go);
    c->got = mfa_token_attempt(&e, c->tok);
    return NULL;
}

/* Many rounds: CLAIMERS threads claim an attempt on one token at once;
 * exactly MFA_TOKEN_MAX_FAILURES of them get one. */
#define CLAIMERS RACERS
static void concurrent_attempts_are_bounded(void **state)
{
    struct fx *f = *state;
    struct mfa_env e = env_at(f, T0);
    char tok[SEC_TOKEN_LEN + 1];
    pthread_barrier_t go;
    pthread_t th[CLAIMERS];
    struct claim c[CLAIMERS];
    int round, i, got;

    for (round = 1; round <= ROUNDS; round++) {
        assert_int_equal(mfa_token_issue(&e, f->u.id, -1, tok), AS_OK);
        pthread_barrier_init(&go, NULL, CLAIMERS);
        for (i = 0; i < CLAIMERS; i++) {
            c[i] = (struct claim){ f, tok, &go, AS_OK };
            pthread_create(&th[i], NULL, claimer, &c[i]);
        }
        for (got = 0, i = 0; i < CLAIMERS; i++) {
            pthread_join(th[i], NULL);
            assert_true(c[i].got == AS_OK ||
                        c[i].got == AS_ERR_INVALID_TOKEN);
            got += c[i].got == AS_OK;
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(got, MFA_TOKEN_MAX_FAILURES);
    }
}

/* Makes a database of the test's own on the PostgreSQL of
 * AUTH_TEST_PG_URL; false (PostgreSQL cases skipped) without one. */
static bool pg_make(void)
{
    const char *base = getenv("AUTH_TEST_PG_URL");
    const char *slash;
    char sql[96];
    PGconn *pc;
    PGresult *r;
    bool ok;

    if (!base || !*base || strchr(base, '?') ||
        !(slash = strrchr(base, '/')) || slash - base < 12)
        return false;
    snprintf(pg_admin, sizeof pg_admin, "%s", base);
    snprintf(pg_db, sizeof pg_db, "t_mfa_%08x", randombytes_random());
    snprintf(pg_url, sizeof pg_url, "%.*s/%s", (int)(slash - base), base,
             pg_db);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", pg_db);
    pc = PQconnectdb(pg_admin);
    r = PQexec(pc, sql);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    PQfinish(pc);
    return ok;
}

static void pg_drop(void)
{
    char sql[96];
    PGconn *pc = PQconnectdb(pg_admin);

    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)",
             pg_db);
    PQclear(PQexec(pc, sql));
    PQfinish(pc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define CASE(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        CASE(token_lives_five_minutes),
        CASE(token_is_single_use),
        CASE(token_dies_after_five_wrong_codes),
        CASE(steps_once_each_with_the_clock),
        CASE(recovery_codes_once_each),
        CASE(login_code_and_token_used_together),
        CASE(login_code_after_the_factor_went_off),
        CASE(renewal_begun_before_another_comes_second),
        CASE(confirm_codes_are_timed_when_stored),
        CASE(renewal_kills_unused_codes),
        CASE(setup_refused_while_on_and_reset),
        CASE(pending_secret_is_sealed),
        CASE(concurrent_step_use_has_one_winner),
        CASE(last_attempt_can_use_the_token),
        CASE(concurrent_attempts_are_bounded),
#undef CASE
    };
    int failed;

    if (sodium_init() < 0)
        return 1;
    failed = cmocka_run_group_tests_name("sqlite", tests, NULL, NULL);
    if (pg_make()) {
        on_pg = true;
        failed += cmocka_run_group_tests_name("postgres", tests, NULL, NULL);
        pg_drop();
    }
    return failed;
}
