/* The verified-token cache: hits, expiry, key sets, tampering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cmocka.h>
#include <sodium.h>

#include "cfg.h"
#include "vcache.h"

static struct cfg cfg;
static struct sec_keys *keys, *keys2;

static int setup(void **state)
{
    char *env[] = { "AUTH_JWT_ALG=HS256",
                    "AUTH_JWT_SECRET=0123456789abcdef0123456789abcdef",
                    NULL };
    char why[256];

    (void)state;
    if (sodium_init() < 0 || !cfg_load_from(&cfg, NULL, env, why,
                                            sizeof why))
        return -1;
    if (sec_keys_load(&cfg, &keys, why, sizeof why) != AS_OK ||
        sec_keys_load(&cfg, &keys2, why, sizeof why) != AS_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sec_keys_free(keys);
    sec_keys_free(keys2);
    cfg_cleanup(&cfg);
    return 0;
}

static char *token(int64_t iat, int64_t ttl)
{
    struct sec_claims c = { .sub = "0190c1d2-0000-7000-8000-000000000001",
                            .sid = "0190c1d2-0000-7000-8000-000000000002",
                            .jti = "0190c1d2-0000-7000-8000-000000000003",
                            .email = "a@example.com", .role = "user" };
    char *out = NULL;

    c.iat = c.nbf = iat;
    c.exp = iat + ttl;
    assert_int_equal(sec_jwt_sign(keys, &cfg, &c, &out), AS_OK);
    return out;
}

static void test_hit_gives_same_claims(void **state)
{
    struct vcache *c = vcache_new(64);
    struct arena *a = arena_new();
    struct sec_claims x, y;
    char *t = token(1000000, 900);

    (void)state;
    assert_int_equal(vcache_verify(c, keys, &cfg, t, 1000010, &x, a), AS_OK);
    assert_int_equal(vcache_verify(c, keys, &cfg, t, 1000020, &y, a), AS_OK);
    assert_string_equal(x.sub, y.sub);
    assert_string_equal(x.sid, y.sid);
    assert_string_equal(y.email, "a@example.com");
    assert_string_equal(y.role, "user");
    assert_int_equal(x.exp, y.exp);
    free(t);
    arena_free(a);
    vcache_free(c);
}

static void test_expiry_and_tampering(void **state)
{
    struct vcache *c = vcache_new(64);
    struct arena *a = arena_new();
    struct sec_claims x;
    char *t = token(1000000, 900);

    (void)state;
    assert_int_equal(vcache_verify(c, keys, &cfg, t, 1000010, &x, a), AS_OK);
    /* cached, but past exp (and leeway) it is refused */
    assert_int_equal(vcache_verify(c, keys, &cfg, t, 1000000 + 900 + 31, &x,
                                   a), AS_ERR_INVALID_TOKEN);
    /* a different token text is a different key */
    t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(vcache_verify(c, keys, &cfg, t, 1000010, &x, a),
                     AS_ERR_INVALID_TOKEN);
    free(t);
    arena_free(a);
    vcache_free(c);
}

static void test_other_key_set_misses(void **state)
{
    struct vcache *c = vcache_new(1);
    struct arena *a = arena_new();
    struct sec_claims x;
    char *t = token(1000000, 900), *u = token(1000001, 900);

    (void)state;
    assert_int_equal(vcache_verify(c, keys, &cfg, t, 1000010, &x, a), AS_OK);
    /* same secret, other set: verified afresh, still fine */
    assert_int_equal(vcache_verify(c, keys2, &cfg, t, 1000010, &x, a), AS_OK);
    /* one slot: a second token replaces the first, both still verify */
    assert_int_equal(vcache_verify(c, keys, &cfg, u, 1000010, &x, a), AS_OK);
    assert_int_equal(vcache_verify(c, keys, &cfg, t, 1000010, &x, a), AS_OK);
    assert_int_equal(vcache_verify(c, keys, &cfg, "garbage", 1000010, &x, a),
                     AS_ERR_INVALID_TOKEN);
    free(t);
    free(u);
    arena_free(a);
    vcache_free(c);
}

/* Hits and misses since the last call. */
static void delta(struct vcache *c, uint64_t *hits, uint64_t *misses)
{
    static uint64_t h0, m0;
    uint64_t h, m;

    vcache_stats(c, &h, &m);
    *hits = h - h0;
    *misses = m - m0;
    h0 = h;
    m0 = m;
}

/* 256 sessions' tokens cycled through a cache of 2,048 slots: after the
 * first pass every check is a hit, whatever the tokens' hashes (a
 * direct-mapped table of that size loses about 16 of them to
 * collisions on every pass). */
static void test_cycled_tokens_all_hit(void **state)
{
    enum { N = 256 };
    struct vcache *c = vcache_new(2048);
    struct arena *a = arena_new();
    struct sec_claims x;
    char *t[N];
    uint64_t hits, misses;
    int i, pass;

    (void)state;
    delta(c, &hits, &misses);
    for (i = 0; i < N; i++)
        t[i] = token(1000000 + i, 900);
    for (pass = 0; pass < 3; pass++) {
        for (i = 0; i < N; i++)
            assert_int_equal(vcache_verify(c, keys, &cfg, t[i], 1000300, &x,
                                           a), AS_OK);
        delta(c, &hits, &misses);
        assert_int_equal(hits, pass ? N : 0);
        assert_int_equal(misses, pass ? 0 : N);
    }
    for (i = 0; i < N; i++)
        free(t[i]);
    arena_free(a);
    vcache_free(c);
}

/* Where a token's signature segment starts, less one (its last dot). */
static size_t last_dot(const char *s)
{
    size_t i, at = 0;

    for (i = 0; s[i]; i++)
        if (s[i] == '.')
            at = i;
    return at;
}

/* The cache finds an entry by the signature and confirms it with the
 * whole token: a cached token changed at any one place before its
 * signature, or another token's header and payload carrying its
 * signature, must miss and be refused, never answered from the entry. */
static void test_same_signature_other_token_misses(void **state)
{
    struct vcache *c = vcache_new(64);
    struct arena *a = arena_new();
    struct sec_claims x;
    char *t = token(1000000, 900), *u = token(1000001, 900), *v;
    size_t n = strlen(t), sig = last_dot(t), i;
    uint64_t hits, misses;

    (void)state;
    assert_int_equal(vcache_verify(c, keys, &cfg, t, 1000010, &x, a), AS_OK);
    delta(c, &hits, &misses);
    for (i = 0; i < sig; i++) {
        char was = t[i];

        t[i] = was == 'A' ? 'B' : 'A';
        assert_int_equal(vcache_verify(c, keys, &cfg, t, 1000010, &x, a),
                         AS_ERR_INVALID_TOKEN);
        t[i] = was;
    }
    delta(c, &hits, &misses);
    assert_int_equal(hits, 0);
    assert_int_equal(misses, sig);
    /* u's header and payload with t's signature; t with a longer payload */
    v = malloc(n + strlen(u) + 2);
    assert_non_null(v);
    memcpy(v, u, last_dot(u));
    strcpy(v + last_dot(u), t + sig);
    assert_int_equal(vcache_verify(c, keys, &cfg, v, 1000010, &x, a),
                     AS_ERR_INVALID_TOKEN);
    memcpy(v, t, sig);
    v[sig] = 'A';
    strcpy(v + sig + 1, t + sig);
    assert_int_equal(vcache_verify(c, keys, &cfg, v, 1000010, &x, a),
                     AS_ERR_INVALID_TOKEN);
    delta(c, &hits, &misses);
    assert_int_equal(hits, 0);
    assert_int_equal(misses, 2);
    /* and the cached token itself still hits */
    assert_int_equal(vcache_verify(c, keys, &cfg, t, 1000010, &x, a), AS_OK);
    delta(c, &hits, &misses);
    assert_int_equal(hits, 1);
    free(v);
    free(t);
    free(u);
    arena_free(a);
    vcache_free(c);
}

/* One set of 8 ways: a ninth token replaces the least recently used
 * entry, not the one just used. */
static long minor_faults(void)
{
    struct rusage ru;

    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_minflt;
}

/* Freeing a daemon-sized cache that held a few tokens touches about the
 * pages those tokens were stored in, not the whole table (7 MiB the
 * kernel would map and zero only to have them wiped: 1,700 faults);
 * the tokens it held are freed all the same (LeakSanitizer, valgrind). */
static void test_free_touches_only_what_was_used(void **state)
{
    struct vcache *c = vcache_new(16384);
    struct arena *a = arena_new();
    struct sec_claims x;
    long before;
    int i;

    (void)state;
#ifdef __SANITIZE_ADDRESS__
    /* AddressSanitizer's free() poisons the shadow of the whole block. */
    vcache_free(c);
    arena_free(a);
    skip();
#endif
    for (i = 0; i < 4; i++) {
        char *t = token(1000000 + i, 900);

        assert_int_equal(vcache_verify(c, keys, &cfg, t, 1000010, &x, a),
                         AS_OK);
        free(t);
    }
    before = minor_faults();
    vcache_free(c);
    assert_true(minor_faults() - before < 200);
    arena_free(a);
}

static void test_full_set_drops_least_recent(void **state)
{
    struct vcache *c = vcache_new(8);
    struct arena *a = arena_new();
    struct sec_claims x;
    char *t[9];
    uint64_t hits, misses;
    int i;

    (void)state;
    for (i = 0; i < 9; i++)
        t[i] = token(2000000 + i, 900);
    for (i = 0; i < 8; i++)
        assert_int_equal(vcache_verify(c, keys, &cfg, t[i], 2000100, &x, a),
                         AS_OK);
    assert_int_equal(vcache_verify(c, keys, &cfg, t[0], 2000100, &x, a),
                     AS_OK);                     /* t[1] is now the LRU */
    assert_int_equal(vcache_verify(c, keys, &cfg, t[8], 2000100, &x, a),
                     AS_OK);
    delta(c, &hits, &misses);
    assert_int_equal(vcache_verify(c, keys, &cfg, t[0], 2000100, &x, a),
                     AS_OK);
    assert_int_equal(vcache_verify(c, keys, &cfg, t[8], 2000100, &x, a),
                     AS_OK);
    delta(c, &hits, &misses);
    assert_int_equal(hits, 2);
    assert_int_equal(misses, 0);
    assert_int_equal(vcache_verify(c, keys, &cfg, t[1], 2000100, &x, a),
                     AS_OK);
    delta(c, &hits, &misses);
    assert_int_equal(misses, 1);
    for (i = 0; i < 9; i++)
        free(t[i]);
    arena_free(a);
    vcache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_gives_same_claims),
        cmocka_unit_test(test_expiry_and_tampering),
        cmocka_unit_test(test_other_key_set_misses),
        cmocka_unit_test(test_cycled_tokens_all_hit),
        cmocka_unit_test(test_full_set_drops_least_recent),
        cmocka_unit_test(test_free_touches_only_what_was_used),
        cmocka_unit_test(test_same_signature_other_token_misses),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
