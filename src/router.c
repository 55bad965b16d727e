/* router.c: the route table (which is also the authorization table) and
 * path matching. */
#include "http.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "uuid.h"

#define P ACCESS_PUBLIC
#define U ACCESS_USER
#define NS RF_NO_STORE
#define A ACCESS_ADMIN
#define SA ACCESS_SELF_OR_ADMIN
#define AN ACCESS_ADMIN_NOT_SELF
#define OFF RF_OFFLOAD
#define AUTH "/api/v1/auth"
#define USERS "/api/v1/users"
#define CR RF_CREDENTIAL
#define DB RF_DB
static const struct route routes[] = {
    { "POST", AUTH "/register", h_register, P, OFF | NS | CR },
    { "POST", AUTH "/login", h_login, P, OFF | NS | RF_FORM | CR },
    { "POST", AUTH "/refresh", h_refresh, P, DB | NS | CR },
    { "POST", AUTH "/logout", h_logout, P, DB | CR },  /* a refresh token */
    { "POST", AUTH "/logout-all", h_logout_all, U, DB },
    { "GET", AUTH "/verify", h_verify, U, 0 },
    { "POST", AUTH "/password/change", h_password_change, U, OFF | CR },
    { "GET", AUTH "/sessions", h_sessions_list, U, DB | NS },
    { "DELETE", AUTH "/sessions/{id}", h_session_delete, U, DB },
    { "POST", AUTH "/introspect", h_introspect, P, DB | NS | RF_FORM },
    { "POST", AUTH "/revoke", h_revoke, P, DB | RF_FORM },
    { "POST", AUTH "/password/forgot", h_password_forgot, P, DB | CR },
    { "POST", AUTH "/password/reset", h_password_reset, P, OFF | CR },
    { "POST", AUTH "/email/verify-request", h_email_verify_request, U,
      DB | CR },
    { "POST", AUTH "/email/verify", h_email_verify, P, DB | CR },
    { "POST", AUTH "/mfa/totp/setup", h_mfa_setup, U, OFF | NS | CR },
    { "POST", AUTH "/mfa/totp/confirm", h_mfa_confirm, U, DB | NS | CR },
    { "DELETE", AUTH "/mfa/totp", h_mfa_disable, U, OFF | CR },
    { "POST", AUTH "/mfa/recovery-codes", h_mfa_recovery_codes, U,
      OFF | NS | CR },
    { "POST", AUTH "/login/mfa", h_login_mfa, P, DB | NS | CR },
    { "POST", AUTH "/passkeys/register/options", h_passkey_register_options,
      U, DB | NS },
    { "POST", AUTH "/passkeys/register", h_passkey_register, U,
      DB | NS | CR },
    { "GET", AUTH "/passkeys", h_passkeys_list, U, DB | NS },
    { "DELETE", AUTH "/passkeys/{id}", h_passkey_delete, U, DB },
    { "POST", AUTH "/passkeys/login/options", h_passkey_login_options, P,
      DB | NS | CR },
    { "POST", AUTH "/passkeys/login", h_passkey_login, P, DB | NS | CR },
    { "GET", USERS "/me", h_me_get, U, DB | NS | RF_CACHED },
    { "PATCH", USERS "/me", h_me_patch, U, OFF | NS | CR }, /* Argon2: email */
    { "DELETE", USERS "/me", h_me_delete, U, OFF | CR },
    { "GET", USERS, h_users_list, A, DB | NS },
    { "POST", USERS, h_users_create, A, OFF | NS },
    { "GET", USERS "/{id}", h_user_get, SA, DB | NS },
    { "PATCH", USERS "/{id}", h_user_patch, AN, DB | NS },
    { "DELETE", USERS "/{id}", h_user_delete, A, DB },
    { "DELETE", USERS "/{id}/lockout", h_user_unlock, A, DB },
    { "GET", "/healthz", h_healthz, P, 0 },
    { "GET", "/readyz", h_readyz, P, 0 },
    { "GET", "/metrics", h_metrics, P, RF_RESTRICTED },
    { "GET", "/.well-known/jwks.json", h_jwks, P, 0 },
    { "GET", "/openapi.json", h_openapi, P, 0 },
    { "GET", "/docs", h_docs, P, 0 },
    { "GET", "/docs/{file}", h_docs_file, P, 0 },
};
#undef A
#undef SA
#undef AN
#undef OFF
#undef CR
#undef DB
#undef AUTH
#undef USERS
#undef P
#undef U
#undef NS
#define NROUTES (sizeof routes / sizeof routes[0])
#define MAX_ID 64                 /* longest {id} segment accepted */

/* Each pattern's length and whether it has a {...} segment, taken once:
 * a literal pattern is then one length test for most paths, not a
 * character walk over the "/api/v1/" every pattern shares. */
static struct { size_t len; bool param; } shape[NROUTES];
static pthread_once_t shape_once = PTHREAD_ONCE_INIT;

static void shape_init(void)
{
    for (size_t i = 0; i < NROUTES; i++) {
        shape[i].len = strlen(routes[i].pattern);
        shape[i].param = strchr(routes[i].pattern, '{') != NULL;
    }
}

const struct route *router_routes(size_t *n)
{
    *n = NROUTES;
    return routes;
}

/* Matches `path` against `pattern`; a "{...}" segment takes one
 * non-empty path segment, reported through *param. */
static bool path_match(const char *pattern, const char *path,
                       const char **pstart, size_t *plen)
{
    while (*pattern && *path) {
        if (*pattern == '{') {
            const char *end = strchr(path, '/');
            size_t n = end ? (size_t)(end - path) : strlen(path);

            if (n == 0 || n > MAX_ID)
                return false;
            *pstart = path;
            *plen = n;
            path += n;
            pattern = strchr(pattern, '}') + 1;
            continue;
        }
        if (*pattern++ != *path++)
            return false;
    }
    return *pattern == '\0' && *path == '\0';
}

/* The {...} segment as a string. A UUID is read case-insensitively (RFC
 * 9562 s4) and ids are made and stored in lower case (uuid_v7_format), so
 * one in upper case names the same account, session or passkey. */
static const char *id_param(struct arena *a, const char *s, size_t n)
{
    char *p = arena_strndup(a, s, n);

    if (p && uuid_valid(p))
        for (char *c = p; *c; c++)
            if (*c >= 'A' && *c <= 'F')
                *c = (char)(*c - 'A' + 'a');
    return p;
}

/* Whether route `i` is at `path` (length `plen`), taken in `pass` 0 for
 * the literal patterns and 1 for those with a {...} segment (*ps, *pl:
 * that segment): literal patterns go first, so "/users/me" never falls
 * to "{id}". */
static bool route_at(size_t i, int pass, const char *path, size_t plen,
                     const char **ps, size_t *pl)
{
    if (shape[i].param != (pass == 1))
        return false;
    return pass == 0 ? shape[i].len == plen &&
                           memcmp(routes[i].pattern, path, plen) == 0
                     : path_match(routes[i].pattern, path, ps, pl);
}

/* Appends `method` to the Allow list unless it is there already. */
static void allow_add(char *allow, size_t allow_len, const char *method)
{
    size_t used = strlen(allow);

    if (strstr(allow, method))
        return;
    snprintf(allow + used, allow_len - used, "%s%s", used ? ", " : "",
             method);
}

enum router_result router_match(const char *method, const char *path,
                                struct arena *a, const struct route **route,
                                const char **param, char *allow,
                                size_t allow_len)
{
    bool path_known = false;
    size_t plen = strlen(path);
    int pass;
    size_t i;

    pthread_once(&shape_once, shape_init);
    *route = NULL;
    *param = NULL;
    allow[0] = '\0';
    for (pass = 0; pass < 2 && !path_known; pass++) {
        for (i = 0; i < NROUTES; i++) {
            const char *ps = NULL;
            size_t pl = 0;

            if (!route_at(i, pass, path, plen, &ps, &pl))
                continue;
            path_known = true;
            if (strcmp(routes[i].method, method) == 0 ||
                (strcmp(method, "HEAD") == 0 &&
                 strcmp(routes[i].method, "GET") == 0)) {
                *route = &routes[i];
                *param = ps ? id_param(a, ps, pl) : NULL;
                return ROUTE_FOUND;
            }
            allow_add(allow, allow_len, routes[i].method);
            if (strcmp(routes[i].method, "GET") == 0)   /* served too */
                allow_add(allow, allow_len, "HEAD");
        }
    }
    return path_known ? ROUTE_BAD_METHOD : ROUTE_NOT_FOUND;
}

const struct route *router_path_route(const char *path)
{
    size_t plen = strlen(path), i;
    int pass;

    pthread_once(&shape_once, shape_init);
    for (pass = 0; pass < 2; pass++)
        for (i = 0; i < NROUTES; i++) {
            const char *ps = NULL;
            size_t pl = 0;

            if (route_at(i, pass, path, plen, &ps, &pl))
                return &routes[i];
        }
    return NULL;
}

unsigned router_path_flags(const char *path)
{
    size_t plen = strlen(path), i;
    unsigned flags = 0;
    bool known = false;
    int pass;

    pthread_once(&shape_once, shape_init);
    for (pass = 0; pass < 2 && !known; pass++) {
        for (i = 0; i < NROUTES; i++) {
            const char *ps = NULL;
            size_t pl = 0;

            if (route_at(i, pass, path, plen, &ps, &pl)) {
                known = true;
                flags |= routes[i].flags;
            }
        }
    }
    return flags;
}
