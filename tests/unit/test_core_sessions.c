/* test_core_sessions.c: sessions through the core on the fake repository
 * and a fake clock: refresh rotation, the grace and a replay past it,
 * expiry and the session's longest life, what logout and logout-all make
 * the session cache forget, and concurrent logouts and password changes
 * leaving one consistent state. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "cfg.h"
#include "clock.h"
#include "core.h"
#include "fake_repo.h"
#include "scache.h"
#include "sec/sec_int.h"

#define PW "correct horse battery"
#define S INT64_C(1000)

struct fx {
    struct cfg cfg;
    struct core core;
    struct sec_keys keys;
    struct scache *sc;
    struct arena *a;
    int64_t t0;
    char uid[UUID_STR_LEN], other[UUID_STR_LEN];
};

static int setup(void **state)
{
    static struct fx f;

    f = (struct fx){ 0 };
    fake_repo_reset();
    f.t0 = clock_ms();                  /* scache asks at the real time */
    fake_now = f.t0;
    f.sc = scache_new(256, 3600 * 1000);
    fake_core(&f.core, &f.cfg, f.sc);
    memset(f.keys.refresh_key, 0x5a, sizeof f.keys.refresh_key);
    f.core.keys = &f.keys;
    fake_user(f.uid, "ada@example.com", ROLE_USER, true, PW, false);
    fake_user(f.other, "bob@example.com", ROLE_USER, true, PW, false);
    f.a = arena_new();
    *state = &f;
    return f.a && f.sc ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    scache_free(f->sc);
    arena_free(f->a);
    return 0;
}

static void start(struct fx *f, const char *uid, struct session *s,
                  char refresh[SEC_TOKEN_LEN + 1])
{
    assert_int_equal(core_session_start(&f->core, uid, -1, NULL, NULL,
                                        NULL, NULL, "192.0.2.1", "test", s,
                                        refresh), AS_OK);
}

static bool cached_live(struct fx *f, const char *sid)
{
    struct session_state st;

    return scache_peek(f->sc, sid, &st) && st.live;
}

static void warm(struct fx *f, const struct session *s)
{
    struct session_state st;

    assert_int_equal(scache_check(f->sc, f->core.repo, s->id, s->user_id,
                                  &st), AS_OK);
    assert_true(st.live);
}

static enum as_err refresh(struct fx *f, const char *tok,
                           char child[SEC_TOKEN_LEN + 1], bool *reused)
{
    struct session s;
    struct user u;

    return core_refresh(&f->core, tok, child, &s, &u, reused, f->a);
}

/* Rotation: a new token; the old one again within the grace gets the
 * same new one; past the grace it is a replay: the session is revoked
 * and the cache forgets it. */
static void rotation_grace_then_reuse(void **state)
{
    struct fx *f = *state;
    struct session s;
    char tok[SEC_TOKEN_LEN + 1], c1[SEC_TOKEN_LEN + 1];
    char c2[SEC_TOKEN_LEN + 1], c3[SEC_TOKEN_LEN + 1];
    bool reused = true;

    start(f, f->uid, &s, tok);
    fake_now = f->t0 + 1 * S;
    assert_int_equal(refresh(f, tok, c1, &reused), AS_OK);
    assert_false(reused);
    assert_string_not_equal(c1, tok);
    fake_now = f->t0 + 11 * S;          /* 10 s after: still the grace */
    assert_int_equal(refresh(f, tok, c2, &reused), AS_OK);
    assert_string_equal(c2, c1);
    warm(f, &s);
    fake_now = f->t0 + 11 * S + 1;      /* past it: a replay */
    assert_int_equal(refresh(f, tok, c3, &reused), AS_ERR_INVALID_TOKEN);
    assert_true(reused);
    assert_string_equal(c3, "");
    assert_false(cached_live(f, s.id));
    assert_false(fake_repo_session_unrevoked(s.id));
    /* The whole session is gone: its newest token too. */
    assert_int_equal(refresh(f, c1, c3, &reused), AS_ERR_INVALID_TOKEN);
    assert_false(reused);
}

/* A refresh token dies with its life (1000 s here); rotation never
 * carries a session past its longest life (5000 s here). */
static void expiry_on_the_fake_clock(void **state)
{
    struct fx *f = *state;
    struct session s;
    char tok[SEC_TOKEN_LEN + 1], next[SEC_TOKEN_LEN + 1];
    bool reused;
    int i;

    start(f, f->uid, &s, tok);
    assert_int_equal(s.expires_at, f->t0 + 1000 * S);
    fake_now = f->t0 + 1000 * S;        /* the very end: dead */
    assert_int_equal(refresh(f, tok, next, &reused), AS_ERR_INVALID_TOKEN);
    assert_false(reused);

    start(f, f->uid, &s, tok);          /* at t0 + 1000 s */
    for (i = 1; i <= 5; i++) {
        fake_now = f->t0 + 1000 * S + i * 900 * S;
        assert_int_equal(refresh(f, tok, next, &reused), AS_OK);
        memcpy(tok, next, sizeof tok);
    }
    /* at t0 + 5500 s: the session ends at t0 + 1000 + 5000 s */
    fake_now = f->t0 + 6000 * S - 1;
    assert_int_equal(refresh(f, tok, next, &reused), AS_OK);
    memcpy(tok, next, sizeof tok);
    fake_now = f->t0 + 6000 * S;
    assert_int_equal(refresh(f, tok, next, &reused), AS_ERR_INVALID_TOKEN);
}

/* Logout ends one session and the cache forgets that one only; logout
 * everywhere forgets every session of the user and nobody else's. */
static void logout_forgets_what_it_ends(void **state)
{
    struct fx *f = *state;
    struct session a1, a2, a3, b1, out;
    char t1[SEC_TOKEN_LEN + 1], t2[SEC_TOKEN_LEN + 1];
    char t3[SEC_TOKEN_LEN + 1], tb[SEC_TOKEN_LEN + 1];
    size_t n = 9;
    struct session *list;

    start(f, f->uid, &a1, t1);
    start(f, f->uid, &a2, t2);
    start(f, f->uid, &a3, t3);
    start(f, f->other, &b1, tb);
    warm(f, &a1);
    warm(f, &a2);
    warm(f, &a3);
    warm(f, &b1);
    assert_int_equal(core_logout(&f->core, t1, &out, f->a), AS_OK);
    assert_string_equal(out.id, a1.id);
    assert_false(cached_live(f, a1.id));
    assert_true(cached_live(f, a2.id));
    assert_true(cached_live(f, b1.id));
    assert_int_equal(core_logout(&f->core, t1, &out, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(core_session_revoke(&f->core, a2.id, f->other),
                     AS_ERR_NOT_FOUND);          /* not bob's to end */
    assert_true(cached_live(f, a2.id));
    assert_int_equal(core_session_revoke(&f->core, a2.id, f->uid), AS_OK);
    assert_false(cached_live(f, a2.id));
    assert_true(cached_live(f, a3.id));
    assert_int_equal(core_logout_all(&f->core, f->uid), AS_OK);
    assert_false(cached_live(f, a3.id));
    assert_true(cached_live(f, b1.id));
    assert_int_equal(core_sessions_list(&f->core, f->uid, &list, &n, f->a),
                     AS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(core_sessions_list(&f->core, f->other, &list, &n,
                                        f->a), AS_OK);
    assert_int_equal(n, 1);
}

/* A refresh token that was rotated still names its session for a
 * logout: a tab that lost the refresh race to another tab logs out with
 * the token it holds, and neither that token (within the grace) nor the
 * child works afterwards. */
static void logout_with_a_rotated_token_ends_the_session(void **state)
{
    struct fx *f = *state;
    struct session s, out;
    char tok[SEC_TOKEN_LEN + 1], child[SEC_TOKEN_LEN + 1];
    char again[SEC_TOKEN_LEN + 1];
    bool reused = false;

    start(f, f->uid, &s, tok);
    warm(f, &s);
    fake_now = f->t0 + 1 * S;
    assert_int_equal(refresh(f, tok, child, &reused), AS_OK);
    fake_now = f->t0 + 2 * S;               /* within the grace */
    assert_int_equal(core_logout(&f->core, tok, &out, f->a), AS_OK);
    assert_string_equal(out.id, s.id);
    assert_false(cached_live(f, s.id));
    assert_false(fake_repo_session_unrevoked(s.id));
    assert_int_equal(refresh(f, tok, again, &reused), AS_ERR_INVALID_TOKEN);
    assert_int_equal(refresh(f, child, again, &reused),
                     AS_ERR_INVALID_TOKEN);
    assert_int_equal(core_logout(&f->core, child, &out, f->a),
                     AS_ERR_NOT_FOUND);                 /* ended already */
}

#define RACERS 6
#define READERS 2
#define ROUNDS 40

struct racer {
    struct fx *f;
    pthread_barrier_t *go;
    char tok[SEC_TOKEN_LEN + 1];
    const char *pw, *keep;
    const char *sids[RACERS];    /* what a reader reads */
    int nsids;
    int kind;                    /* 0 logout, 1 logout-all, 2 reader,
                                    3 password */
    enum as_err err;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct arena *a = arena_new();
    struct session s;
    struct session_state st;
    int i;

    pthread_barrier_wait(r->go);
    if (r->kind == 0)
        r->err = core_logout(&r->f->core, r->tok, &s, a);
    else if (r->kind == 1)
        r->err = core_logout_all(&r->f->core, r->f->uid);
    else if (r->kind == 3)
        r->err = core_user_set_password(&r->f->core, r->f->uid, r->pw,
                                        r->keep);
    else                        /* reads race the forgets into the cache */
        for (i = 0; i < 400; i++)
            (void)scache_check(r->f->sc, r->f->core.repo,
                               r->sids[i % r->nsids], r->f->uid, &st);
    arena_free(a);
    return NULL;
}

static void run(struct racer *rs, size_t n)
{
    pthread_t t[RACERS + 1 + READERS];
    size_t i;

    for (i = 0; i < n; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race, &rs[i]), 0);
    for (i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

/* Logouts of each session and a logout-all at once, with readers filling
 * the cache meanwhile: afterwards every session is revoked and no cache
 * answer calls one live. */
static void concurrent_logouts_consistent(void **state)
{
    struct fx *f = *state;
    struct racer rs[RACERS + 1 + READERS];
    struct session s[RACERS];
    pthread_barrier_t go;
    struct session_state st;
    int round, i, j;

    for (round = 0; round < ROUNDS; round++) {
        assert_int_equal(pthread_barrier_init(&go, NULL,
                                              RACERS + 1 + READERS), 0);
        for (i = 0; i < RACERS; i++) {
            rs[i] = (struct racer){ .f = f, .go = &go, .kind = 0 };
            start(f, f->uid, &s[i], rs[i].tok);
            warm(f, &s[i]);
        }
        rs[RACERS] = (struct racer){ .f = f, .go = &go, .kind = 1 };
        for (j = 0; j < READERS; j++) {
            struct racer *r = &rs[RACERS + 1 + j];

            *r = (struct racer){ .f = f, .go = &go, .kind = 2,
                                 .nsids = RACERS };
            for (i = 0; i < RACERS; i++)
                r->sids[i] = s[(i + j) % RACERS].id;
        }
        run(rs, RACERS + 1 + READERS);
        pthread_barrier_destroy(&go);
        assert_int_equal(rs[RACERS].err, AS_OK);
        for (i = 0; i < RACERS; i++) {
            assert_true(rs[i].err == AS_OK || rs[i].err == AS_ERR_NOT_FOUND);
            assert_false(fake_repo_session_unrevoked(s[i].id));
            assert_int_equal(scache_check(f->sc, f->core.repo, s[i].id,
                                          f->uid, &st), AS_OK);
            assert_false(st.live);
        }
        fake_repo_reset();
        fake_user(f->uid, "ada@example.com", ROLE_USER, true, PW, false);
    }
}

/* Two password changes at once, each from its own session: the password
 * stored is exactly one of them, each change ended the other's session
 * (so none is left), and the cache agrees with the repository. */
static void concurrent_password_changes_consistent(void **state)
{
    struct fx *f = *state;
    static const char *pws[2] = { "first new password",
                                  "second new password" };
    struct racer rs[3];
    struct session s[2];
    char tok[SEC_TOKEN_LEN + 1];
    pthread_barrier_t go;
    struct session_state st;
    struct user u;
    int round, i, winner;

    for (round = 0; round < ROUNDS / 2; round++) {
        assert_int_equal(pthread_barrier_init(&go, NULL, 3), 0);
        for (i = 0; i < 2; i++) {
            start(f, f->uid, &s[i], tok);
            warm(f, &s[i]);
            rs[i] = (struct racer){ .f = f, .go = &go, .kind = 3,
                                    .pw = pws[i], .keep = s[i].id };
        }
        rs[2] = (struct racer){ .f = f, .go = &go, .kind = 2,
                                .sids = { s[0].id, s[1].id }, .nsids = 2 };
        run(rs, 3);
        pthread_barrier_destroy(&go);
        assert_int_equal(rs[0].err, AS_OK);
        assert_int_equal(rs[1].err, AS_OK);
        assert_int_equal(core_user_get(&f->core, f->uid, &u, f->a), AS_OK);
        winner = pw_verify(u.password_hash, pws[0]) == AS_OK ? 0 : 1;
        assert_int_equal(pw_verify(u.password_hash, pws[winner]), AS_OK);
        assert_int_not_equal(pw_verify(u.password_hash, pws[1 - winner]),
                             AS_OK);
        /* Each change ended the other's session, whatever the order. */
        for (i = 0; i < 2; i++) {
            assert_false(fake_repo_session_unrevoked(s[i].id));
            assert_int_equal(scache_check(f->sc, f->core.repo, s[i].id,
                                          f->uid, &st), AS_OK);
            assert_false(st.live);
        }
        assert_int_equal(core_logout_all(&f->core, f->uid), AS_OK);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(rotation_grace_then_reuse, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(expiry_on_the_fake_clock, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(logout_forgets_what_it_ends, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            logout_with_a_rotated_token_ends_the_session, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_logouts_consistent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            concurrent_password_changes_consistent, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
