/* authn.c with a fake request on a real SQLite repository: the bearer
 * header's parsing, tokens that must not verify (malformed, another
 * algorithm, tampered, expired or not yet valid by the injected clock),
 * sessions that ended, the route table's access rules, the role read
 * now rather than at issue, and the HTTP threads' cache-only path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "http_fixture.h"

static const char *PW = "correct horse battery";

/* The session cache off (AUTH_SESSION_CACHE_SECONDS=0): every check asks
 * the repository. */
static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    *state = f;
    return f && fx_open(f, 0) == 0 ? 0 : -1;
}

/* The session cache on (5 s), for the cache-only path. */
static int setup_cached(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    *state = f;
    return f && fx_open(f, 5) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    fx_close(*state);
    return 0;
}

/* A request for `method path` matched against the route table, with the
 * Authorization header `authz` (NULL: none). Free with fx_req_free(). */
static struct req_ctx *request(struct fx *f, const char *method,
                               const char *path, const char *authz)
{
    struct req_ctx *rc = fx_req(f, method, path, NULL, NULL);
    char allow[128];

    if (authz)
        fx_add_header(rc, "Authorization", authz);
    assert_int_equal(router_match(rc->method, rc->path, rc->arena,
                                  &rc->route, &rc->param_id, allow,
                                  sizeof allow),
                     ROUTE_FOUND);
    return rc;
}

/* authn_route() for `method path` with `authz`; *sub (when not NULL) gets
 * the caller's id on success. */
static enum as_err route_as(struct fx *f, const char *method,
                            const char *path, const char *authz)
{
    struct req_ctx *rc = request(f, method, path, authz);
    enum as_err err = authn_route(rc);

    /* a token that did not verify authenticates nobody; one that did,
     * on a route that needs it, does (its role may still be refused) */
    if (err == AS_ERR_UNAUTHORIZED || err == AS_ERR_INVALID_TOKEN)
        assert_false(rc->authed);
    if (err == AS_OK && rc->route->access != ACCESS_PUBLIC)
        assert_true(rc->authed);
    if (err != AS_OK)
        assert_non_null(rc->res.detail);      /* a problem with a detail */
    fx_req_free(rc);
    return err;
}

static enum as_err bearer_as(struct fx *f, const char *token)
{
    char authz[4096];

    snprintf(authz, sizeof authz, "Bearer %s", token);
    return route_as(f, "GET", "/api/v1/auth/verify", authz);
}

static char *b64url(struct arena *a, const char *s)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                             "tuvwxyz0123456789-_";
    size_t n = strlen(s), i, o = 0;
    char *out = arena_alloc(a, n * 4 / 3 + 4);
    const unsigned char *u = (const unsigned char *)s;

    for (i = 0; i + 2 < n; i += 3) {
        out[o++] = al[u[i] >> 2];
        out[o++] = al[((u[i] & 3) << 4) | (u[i + 1] >> 4)];
        out[o++] = al[((u[i + 1] & 15) << 2) | (u[i + 2] >> 6)];
        out[o++] = al[u[i + 2] & 63];
    }
    if (n - i == 1) {
        out[o++] = al[u[i] >> 2];
        out[o++] = al[(u[i] & 3) << 4];
    } else if (n - i == 2) {
        out[o++] = al[u[i] >> 2];
        out[o++] = al[((u[i] & 3) << 4) | (u[i + 1] >> 4)];
        out[o++] = al[(u[i + 1] & 15) << 2];
    }
    out[o] = '\0';
    return out;
}

/* The token `tok` with its header replaced by `header` (JSON), keeping
 * its payload and signature (`keep_sig`) or dropping the signature. */
static char *reheader(struct arena *a, const char *tok, const char *header,
                      bool keep_sig)
{
    const char *dot = strchr(tok, '.'), *dot2 = strrchr(tok, '.');

    assert_non_null(dot);
    return arena_printf(a, "%s.%.*s.%s", b64url(a, header),
                        (int)(dot2 - dot - 1), dot + 1,
                        keep_sig ? dot2 + 1 : "");
}

/* The user id of the user of `email`. */
static void user_id(struct fx *f, const char *email, char out[64])
{
    struct arena *a = arena_new();
    struct user u;

    assert_int_equal(repo_user_by_email(f->app.repo, email, &u, a), AS_OK);
    snprintf(out, 64, "%s", u.id);
    arena_free(a);
}

static void test_bearer_header_parsing(void **state)
{
    struct arena *a = arena_new();
    const char *h = "Bearer a.b.c \t ";

    (void)state;
    assert_non_null(a);
    assert_null(authn_bearer_token(NULL, a));
    assert_null(authn_bearer_token("", a));
    assert_null(authn_bearer_token("Bearer", a));
    assert_null(authn_bearer_token("Bearer ", a));
    assert_null(authn_bearer_token("Bearer     ", a));
    assert_null(authn_bearer_token("Bearer  \t ", a));
    assert_null(authn_bearer_token("Bearerabc", a));
    assert_null(authn_bearer_token("Basic YWRhOnB3", a));
    assert_null(authn_bearer_token(" Bearer abc", a));
    assert_string_equal(authn_bearer_token("Bearer abc", a), "abc");
    assert_string_equal(authn_bearer_token("bearer abc", a), "abc");
    assert_string_equal(authn_bearer_token("BEARER    a.b.c", a), "a.b.c");
    /* trailing blanks are not the token's (RFC 9110 s5.5); the header
     * itself is left as it was */
    assert_string_equal(authn_bearer_token(h, a), "a.b.c");
    assert_string_equal(h, "Bearer a.b.c \t ");
    h = "Bearer abc";                           /* none: borrowed */
    assert_ptr_equal(authn_bearer_token(h, a), h + 7);
    arena_free(a);
}

static void test_missing_and_malformed(void **state)
{
    struct fx *f = *state;
    struct req_ctx *rc;

    rc = request(f, "GET", "/api/v1/users/me", NULL);
    assert_int_equal(authn_route(rc), AS_ERR_UNAUTHORIZED);
    assert_false(rc->authed);
    assert_null(rc->bearer);
    fx_req_free(rc);
    assert_int_equal(route_as(f, "GET", "/api/v1/users/me", "Basic YTpi"),
                     AS_ERR_UNAUTHORIZED);
    assert_int_equal(route_as(f, "GET", "/api/v1/users/me", "Bearer "),
                     AS_ERR_UNAUTHORIZED);
    assert_int_equal(bearer_as(f, "abc"), AS_ERR_INVALID_TOKEN);
    assert_int_equal(bearer_as(f, "a.b.c"), AS_ERR_INVALID_TOKEN);
    assert_int_equal(bearer_as(f, "...."), AS_ERR_INVALID_TOKEN);
    assert_int_equal(bearer_as(f, "eyJhbGciOiJIUzI1NiJ9.e30."),
                     AS_ERR_INVALID_TOKEN);
    /* a public route needs nothing and checks nothing */
    assert_int_equal(route_as(f, "GET", "/healthz", "Bearer abc"), AS_OK);
}

static void test_wrong_alg_and_tampering(void **state)
{
    struct fx *f = *state;
    struct arena *a = arena_new();
    const char *kid = sec_keys_kid(f->keys);
    char tok[2048], *bad, *p;

    fx_register(f, "ada@example.com", PW);
    fx_login(f, "ada@example.com", PW, tok, sizeof tok, NULL, 0);
    assert_int_equal(bearer_as(f, tok), AS_OK);             /* control */
    bad = reheader(a, tok, arena_printf(a, "{\"alg\":\"none\",\"typ\":"
                                           "\"JWT\",\"kid\":\"%s\"}", kid),
                   false);
    assert_int_equal(bearer_as(f, bad), AS_ERR_INVALID_TOKEN);
    bad = reheader(a, tok, arena_printf(a, "{\"alg\":\"none\",\"typ\":"
                                           "\"JWT\",\"kid\":\"%s\"}", kid),
                   true);
    assert_int_equal(bearer_as(f, bad), AS_ERR_INVALID_TOKEN);
    bad = reheader(a, tok, arena_printf(a, "{\"alg\":\"RS256\",\"typ\":"
                                           "\"JWT\",\"kid\":\"%s\"}", kid),
                   true);
    assert_int_equal(bearer_as(f, bad), AS_ERR_INVALID_TOKEN);
    bad = reheader(a, tok, arena_printf(a, "{\"alg\":\"HS512\",\"typ\":"
                                           "\"JWT\",\"kid\":\"%s\"}", kid),
                   true);
    assert_int_equal(bearer_as(f, bad), AS_ERR_INVALID_TOKEN);
    /* one payload character changed, signature kept */
    bad = arena_strdup(a, tok);
    p = strchr(bad, '.') + 5;
    *p = *p == 'A' ? 'B' : 'A';
    assert_int_equal(bearer_as(f, bad), AS_ERR_INVALID_TOKEN);
    /* the signature cut off */
    bad = arena_strdup(a, tok);
    *(strrchr(bad, '.') + 1) = '\0';
    assert_int_equal(bearer_as(f, bad), AS_ERR_INVALID_TOKEN);
    assert_int_equal(bearer_as(f, tok), AS_OK);      /* still the original */
    arena_free(a);
}

static void test_expired_by_the_clock(void **state)
{
    struct fx *f = *state;
    int64_t issued = clock_ms();
    int64_t ttl_ms = (int64_t)f->cfg.access_ttl * 1000;
    char tok[2048];

    fx_register(f, "ada@example.com", PW);
    fx_login(f, "ada@example.com", PW, tok, sizeof tok, NULL, 0);
    fx_now_ms = issued - (SEC_LEEWAY_S + 60) * 1000;     /* before nbf */
    assert_int_equal(bearer_as(f, tok), AS_ERR_INVALID_TOKEN);
    fx_now_ms = issued + 60 * 1000;
    assert_int_equal(bearer_as(f, tok), AS_OK);      /* and now cached */
    fx_now_ms = issued + ttl_ms - 60 * 1000;       /* within its life */
    assert_int_equal(bearer_as(f, tok), AS_OK);
    fx_now_ms = issued + ttl_ms + (SEC_LEEWAY_S + 5) * 1000;
    assert_int_equal(bearer_as(f, tok), AS_ERR_INVALID_TOKEN);
    fx_now_ms = 0;
}

static void test_session_ended(void **state)
{
    struct fx *f = *state;
    char tok[2048], tok2[2048], id[64];
    struct req_ctx *rc = NULL;
    struct user_patch off = { .set = UF_ACTIVE, .is_active = false };

    fx_register(f, "ada@example.com", PW);
    fx_login(f, "ada@example.com", PW, tok, sizeof tok, NULL, 0);
    fx_login(f, "ada@example.com", PW, tok2, sizeof tok2, NULL, 0);
    assert_int_equal(bearer_as(f, tok), AS_OK);
    rc = request(f, "GET", "/api/v1/auth/verify", NULL);
    fx_add_header(rc, "Authorization", arena_printf(rc->arena, "Bearer %s",
                                                    tok));
    assert_int_equal(authn_bearer(rc), AS_OK);
    assert_int_equal(repo_session_revoke(f->app.repo, rc->claims.sid, NULL,
                                         clock_ms()),
                     AS_OK);
    fx_req_free(rc);
    /* its token verifies, its session does not */
    assert_int_equal(bearer_as(f, tok), AS_ERR_INVALID_TOKEN);
    assert_int_equal(bearer_as(f, tok2), AS_OK);   /* the other session */
    /* a deactivated account ends every session */
    user_id(f, "ada@example.com", id);
    rc = fx_req(f, "GET", "/", NULL, NULL);
    assert_int_equal(repo_user_patch(f->app.repo, id, &off, clock_ms(), NULL,
                                     rc->arena),
                     AS_OK);
    fx_req_free(rc);
    assert_int_equal(bearer_as(f, tok2), AS_ERR_INVALID_TOKEN);
}

static void test_access_rules(void **state)
{
    struct fx *f = *state;
    char user[2048], admin[2048], authz_u[2100], authz_a[2100];
    char uid[64], aid[64], path_u[128], path_a[128];

    fx_register(f, "ada@example.com", PW);
    fx_register(f, "root@example.com", PW);
    fx_make_admin(f, "root@example.com");
    fx_login(f, "ada@example.com", PW, user, sizeof user, NULL, 0);
    fx_login(f, "root@example.com", PW, admin, sizeof admin, NULL, 0);
    snprintf(authz_u, sizeof authz_u, "Bearer %s", user);
    snprintf(authz_a, sizeof authz_a, "Bearer %s", admin);
    user_id(f, "ada@example.com", uid);
    user_id(f, "root@example.com", aid);
    snprintf(path_u, sizeof path_u, "/api/v1/users/%s", uid);
    snprintf(path_a, sizeof path_a, "/api/v1/users/%s", aid);
    /* ACCESS_USER */
    assert_int_equal(route_as(f, "GET", "/api/v1/users/me", authz_u), AS_OK);
    /* ACCESS_ADMIN */
    assert_int_equal(route_as(f, "GET", "/api/v1/users", authz_u),
                     AS_ERR_FORBIDDEN);
    assert_int_equal(route_as(f, "GET", "/api/v1/users", authz_a), AS_OK);
    assert_int_equal(route_as(f, "DELETE", path_u, authz_u),
                     AS_ERR_FORBIDDEN);
    /* ACCESS_SELF_OR_ADMIN: the {id} compared without regard to case */
    assert_int_equal(route_as(f, "GET", path_u, authz_u), AS_OK);
    for (char *c = path_u + strlen("/api/v1/users/"); *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    assert_int_equal(route_as(f, "GET", path_u, authz_u), AS_OK);
    assert_int_equal(route_as(f, "GET", path_a, authz_u), AS_ERR_FORBIDDEN);
    assert_int_equal(route_as(f, "GET", path_u, authz_a), AS_OK);
    /* ACCESS_ADMIN_NOT_SELF */
    assert_int_equal(route_as(f, "PATCH", path_a, authz_a),
                     AS_ERR_FORBIDDEN);
    assert_int_equal(route_as(f, "PATCH", path_u, authz_a), AS_OK);
    assert_int_equal(route_as(f, "PATCH", path_u, authz_u),
                     AS_ERR_FORBIDDEN);
}

static void test_role_is_the_current_one(void **state)
{
    struct fx *f = *state;
    char tok[2048], authz[2100];
    struct req_ctx *rc;

    fx_register(f, "ada@example.com", PW);
    fx_login(f, "ada@example.com", PW, tok, sizeof tok, NULL, 0);
    snprintf(authz, sizeof authz, "Bearer %s", tok);
    assert_int_equal(route_as(f, "GET", "/api/v1/users", authz),
                     AS_ERR_FORBIDDEN);
    fx_make_admin(f, "ada@example.com");         /* the token says "user" */
    rc = request(f, "GET", "/api/v1/users", authz);
    assert_int_equal(authn_route(rc), AS_OK);
    assert_string_equal(rc->claims.role, "admin");
    assert_string_equal(rc->claims.email, "ada@example.com");
    assert_string_equal(rc->bearer, tok);
    fx_req_free(rc);
}

static void test_nowait_only_from_the_cache(void **state)
{
    struct fx *f = *state;
    char tok[2048], authz[2100];
    struct req_ctx *rc;
    bool pending = true;

    fx_register(f, "ada@example.com", PW);
    fx_login(f, "ada@example.com", PW, tok, sizeof tok, NULL, 0);
    snprintf(authz, sizeof authz, "Bearer %s", tok);
    rc = request(f, "GET", "/api/v1/users/me", authz);
    assert_int_equal(authn_bearer(rc), AS_OK);       /* learn the sid */
    scache_forget(f->app.scache, rc->claims.sid);
    fx_req_free(rc);
    /* not in the cache: nothing decided, the database must answer */
    rc = request(f, "GET", "/api/v1/users/me", authz);
    assert_int_equal(authn_route_nowait(rc, &pending), AS_OK);
    assert_true(pending);
    assert_false(rc->authed);
    assert_int_equal(authn_route(rc), AS_OK);       /* as a worker does */
    assert_true(rc->authed);
    fx_req_free(rc);
    /* now cached: decided on the spot */
    rc = request(f, "GET", "/api/v1/users/me", authz);
    assert_int_equal(authn_route_nowait(rc, &pending), AS_OK);
    assert_false(pending);
    assert_true(rc->authed);
    fx_req_free(rc);
    /* a bad token needs no database either */
    rc = request(f, "GET", "/api/v1/users/me", "Bearer a.b.c");
    assert_int_equal(authn_route_nowait(rc, &pending), AS_ERR_INVALID_TOKEN);
    assert_false(pending);
    fx_req_free(rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bearer_header_parsing),
        cmocka_unit_test_setup_teardown(test_missing_and_malformed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wrong_alg_and_tampering, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expired_by_the_clock, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_session_ended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_role_is_the_current_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nowait_only_from_the_cache,
                                        setup_cached, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
