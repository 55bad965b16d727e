/* http_fixture.h: a daemon's state without the daemon, for unit tests of
 * handlers and authentication. A real SQLite repository in a fresh
 * folder, HS256 keys, the session and token caches, cheap Argon2, an
 * injected wall clock; requests are fake (headers and query from tables,
 * no libmicrohttpd connection) and go through the route table, the
 * access rules (authn.c) and the handler, as server.c runs them, and
 * their answer is rendered as it would go on the wire (reply.c). */
#ifndef AUTH_TEST_HTTP_FIXTURE_H
#define AUTH_TEST_HTTP_FIXTURE_H
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "authn.h"
#include "cfg.h"
#include "clock.h"
#include "http.h"
#include "log.h"
#include "password.h"
#include "repo.h"
#include "scache.h"
#include "sec.h"
#include "vcache.h"

#define FX_UNUSED __attribute__((unused))
#define FX_MAX_HDR 8

struct fx {
    char dir[256];
    char url[300];
    struct cfg cfg;
    struct app app;
    struct sec_keys *keys;
};

/* The fake clock authentication reads (Unix ms); 0: the real one. */
static int64_t fx_now_ms;

static int64_t fx_clock(void)
{
    return fx_now_ms ? fx_now_ms : clock_ms();
}

/* What a fake request carries besides its body. */
struct fx_source {
    const char *hdr_name[FX_MAX_HDR], *hdr_value[FX_MAX_HDR];
    unsigned nhdr;
    const char *query_name[FX_MAX_HDR], *query_value[FX_MAX_HDR];
    unsigned nquery;
};

static const char *fx_lookup(const char *const *names,
                             const char *const *values, unsigned n,
                             const char *name, bool nocase)
{
    unsigned i;

    for (i = 0; i < n; i++)
        if (nocase ? strcasecmp(names[i], name) == 0
                   : strcmp(names[i], name) == 0)
            return values[i];
    return NULL;
}

static const char *fx_header(const struct req_ctx *rc, const char *name)
{
    const struct fx_source *s = rc->source_arg;

    return fx_lookup(s->hdr_name, s->hdr_value, s->nhdr, name, true);
}

static const char *fx_query(const struct req_ctx *rc, const char *name)
{
    const struct fx_source *s = rc->source_arg;

    return fx_lookup(s->query_name, s->query_value, s->nquery, name, false);
}

static unsigned fx_query_count(const struct req_ctx *rc, const char *name)
{
    const struct fx_source *s = rc->source_arg;
    unsigned i, n = 0;

    for (i = 0; i < s->nquery; i++)
        n += strcmp(s->query_name[i], name) == 0;
    return n;
}

static const struct req_source fx_source_ops = { fx_header, fx_query,
                                                 fx_query_count };

static int fx_rm_one(const char *path, const struct stat *st, int flag,
                     struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Opens everything; `cache_seconds` is AUTH_SESSION_CACHE_SECONDS. 0 on
 * success. */
static FX_UNUSED int fx_open(struct fx *f, unsigned cache_seconds)
{
    const char *base = getenv("AUTH_TEST_TMP");
    char env_db[340], env_dir[300], env_cache[64], why[256];
    char *env[] = { env_db, env_dir, env_cache,
                    "AUTH_JWT_ALG=HS256",
                    "AUTH_JWT_SECRET=0123456789abcdef0123456789abcdef",
                    "AUTH_ARGON2_MEMORY_KIB=8", "AUTH_ARGON2_ITERATIONS=1",
                    "AUTH_LOG_LEVEL=error", NULL };

    memset(f, 0, sizeof *f);
    fx_now_ms = 0;
    if (!base || !*base)
        base = "/tmp";
    if ((mkdir(base, 0700) != 0 && errno != EEXIST) ||
        snprintf(f->dir, sizeof f->dir, "%s/http-XXXXXX", base) >=
            (int)sizeof f->dir ||
        !mkdtemp(f->dir))
        return -1;
    snprintf(f->url, sizeof f->url, "sqlite:%s/auth.db", f->dir);
    snprintf(env_db, sizeof env_db, "AUTH_DATABASE_URL=%s", f->url);
    snprintf(env_dir, sizeof env_dir, "AUTH_DATA_DIR=%s", f->dir);
    snprintf(env_cache, sizeof env_cache, "AUTH_SESSION_CACHE_SECONDS=%u",
             cache_seconds);
    log_init(LOG_ERROR, 1);
    if (!cfg_load_from(&f->cfg, NULL, env, why, sizeof why) ||
        repo_open(&f->cfg, &f->app.repo) != AS_OK ||
        repo_migrate(f->app.repo) != AS_OK ||
        sec_keys_load(&f->cfg, &f->keys, why, sizeof why) != AS_OK) {
        fprintf(stderr, "fixture: %s\n", why);
        return -1;
    }
    f->app.cfg = &f->cfg;
    f->app.keys = f->keys;
    f->app.pw.opslimit = f->cfg.argon2_iterations;
    f->app.pw.memlimit = (size_t)f->cfg.argon2_memory_kib * 1024u;
    f->app.scache = scache_new(1024, (uint64_t)cache_seconds * 1000u);
    f->app.vcache = vcache_new(1024);
    f->app.listen_fd = -1;
    f->app.now_ms = fx_clock;
    if (!f->app.scache || !f->app.vcache || pw_dummy_init(&f->app.pw))
        return -1;
    return 0;
}

static FX_UNUSED void fx_close(struct fx *f)
{
    scache_free(f->app.scache);
    vcache_free(f->app.vcache);
    repo_close(f->app.repo);
    sec_keys_free(f->keys);
    cfg_cleanup(&f->cfg);
    if (f->dir[0])
        nftw(f->dir, fx_rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
}

/* A request as server.c would have made it, before any check: method,
 * path (with ?query), an optional bearer token and JSON body. Free with
 * fx_req_free(). */
static FX_UNUSED struct req_ctx *fx_req(struct fx *f, const char *method,
                                        const char *path, const char *bearer,
                                        const char *body)
{
    struct arena *a = arena_new();
    struct req_ctx *rc = a ? arena_alloc(a, sizeof *rc) : NULL;
    struct fx_source *s = a ? arena_alloc(a, sizeof *s) : NULL;
    const char *q;

    assert_non_null(rc);
    assert_non_null(s);
    rc->app = &f->app;
    rc->arena = a;
    rc->source = &fx_source_ops;
    rc->source_arg = s;
    rc->method = method;
    q = strchr(path, '?');
    rc->path = q ? arena_strndup(a, path, (size_t)(q - path)) : path;
    strcpy(rc->request_id, "test-request");
    strcpy(rc->ip, "127.0.0.1");
    if (bearer) {
        s->hdr_name[s->nhdr] = "Authorization";
        s->hdr_value[s->nhdr++] = arena_printf(a, "Bearer %s", bearer);
    }
    s->hdr_name[s->nhdr] = "User-Agent";
    s->hdr_value[s->nhdr++] = "cmocka";
    while (q && *q && s->nquery < FX_MAX_HDR) {   /* ?a=b&c=d, no escapes */
        const char *k = q + 1, *eq = strchr(k, '='), *amp = strchr(k, '&');
        size_t end = amp ? (size_t)(amp - k) : strlen(k);

        if (!eq || (amp && eq > amp))
            break;
        s->query_name[s->nquery] = arena_strndup(a, k, (size_t)(eq - k));
        s->query_value[s->nquery++] =
            arena_strndup(a, eq + 1, end - (size_t)(eq - k) - 1);
        q = amp;
    }
    if (body) {
        rc->body = arena_strdup(a, body);
        rc->body_len = strlen(body);
    }
    return rc;
}

/* Adds header `name: value` (both borrowed) to a request of fx_req(). */
static FX_UNUSED void fx_add_header(struct req_ctx *rc, const char *name,
                                    const char *value)
{
    struct fx_source *s = rc->source_arg;

    assert_true(s->nhdr < FX_MAX_HDR);
    s->hdr_name[s->nhdr] = name;
    s->hdr_value[s->nhdr++] = value;
}

static FX_UNUSED void fx_req_free(struct req_ctx *rc)
{
    if (!rc)
        return;
    json_decref(rc->res.body);
    json_decref(rc->res.errors);
    json_decref(rc->res.extra);
    free(rc->res.raw);
    arena_free(rc->arena);
}

/* A rendered answer. */
struct fx_answer {
    struct req_ctx *rc;          /* its request, for headers and claims */
    unsigned status;
    const char *ctype;           /* NULL: no body */
    json_t *json;                /* the body parsed, or NULL */
};

/* Runs a request as server.c's dispatch does, on one thread: the route
 * table, the route's access rule (authn_route), the handler; then renders
 * the answer. Free with fx_done(). */
static FX_UNUSED struct fx_answer fx_call(struct fx *f, const char *method,
                                          const char *path,
                                          const char *bearer,
                                          const char *body)
{
    struct fx_answer ans = { .rc = fx_req(f, method, path, bearer, body) };
    struct req_ctx *rc = ans.rc;
    char allow[128];
    char *text = NULL;
    enum router_result m = router_match(rc->method, rc->path, rc->arena,
                                        &rc->route, &rc->param_id, allow,
                                        sizeof allow);

    if (m == ROUTE_NOT_FOUND)
        rc->err = AS_ERR_NOT_FOUND;
    else if (m == ROUTE_BAD_METHOD)
        rc->err = AS_ERR_METHOD;
    else
        rc->err = authn_route(rc);
    if (m == ROUTE_FOUND && rc->err == AS_OK)
        rc->err = rc->route->fn(rc, &rc->res);
    ans.status = res_render(rc, &text, &ans.ctype);
    if (text)
        ans.json = json_loads(text, 0, NULL);
    else
        ans.ctype = NULL;
    free(text);
    return ans;
}

static FX_UNUSED void fx_done(struct fx_answer *ans)
{
    json_decref(ans->json);
    fx_req_free(ans->rc);
    memset(ans, 0, sizeof *ans);
}

/* A string member of the answer's body, or NULL. */
static FX_UNUSED const char *fx_str(const struct fx_answer *ans,
                                    const char *key)
{
    return json_string_value(json_object_get(ans->json, key));
}

/* A header the handler set, or NULL. */
static FX_UNUSED const char *fx_res_header(const struct fx_answer *ans,
                                           const char *name)
{
    unsigned i;

    for (i = 0; i < ans->rc->res.nhdr; i++)
        if (strcasecmp(ans->rc->res.hdr[i].name, name) == 0)
            return ans->rc->res.hdr[i].value;
    return NULL;
}

/* Registers `email` with `password` through POST /register; asserts 201. */
static FX_UNUSED void fx_register(struct fx *f, const char *email,
                                  const char *password)
{
    char body[512];
    struct fx_answer a;

    snprintf(body, sizeof body, "{\"email\":\"%s\",\"password\":\"%s\"}",
             email, password);
    a = fx_call(f, "POST", "/api/v1/auth/register", NULL, body);
    assert_int_equal(a.status, 201);
    fx_done(&a);
}

/* Logs in through POST /login; asserts 200 and copies the token pair
 * (access into `access`, refresh into `refresh` when not NULL). */
static FX_UNUSED void fx_login(struct fx *f, const char *email,
                               const char *password, char *access,
                               size_t access_len, char *refresh,
                               size_t refresh_len)
{
    char body[512];
    struct fx_answer a;

    snprintf(body, sizeof body, "{\"email\":\"%s\",\"password\":\"%s\"}",
             email, password);
    a = fx_call(f, "POST", "/api/v1/auth/login", NULL, body);
    assert_int_equal(a.status, 200);
    assert_non_null(fx_str(&a, "access_token"));
    snprintf(access, access_len, "%s", fx_str(&a, "access_token"));
    if (refresh)
        snprintf(refresh, refresh_len, "%s", fx_str(&a, "refresh_token"));
    fx_done(&a);
}

/* Makes the user of `email` an admin in the repository (as the CLI's
 * `user create --admin` leaves one). */
static FX_UNUSED void fx_make_admin(struct fx *f, const char *email)
{
    struct arena *a = arena_new();
    struct user u;
    struct user_patch p = { .set = UF_ROLE, .role = ROLE_ADMIN };

    assert_int_equal(repo_user_by_email(f->app.repo, email, &u, a), AS_OK);
    assert_int_equal(repo_user_patch(f->app.repo, u.id, &p, clock_ms(), NULL,
                                     a),
                     AS_OK);
    scache_forget_user(f->app.scache, u.id);
    arena_free(a);
}

#endif
