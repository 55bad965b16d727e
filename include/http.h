#ifndef AUTH_HTTP_H              /* http.h: request context for handlers */
#define AUTH_HTTP_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "arena.h"
#include "err.h"
#include "password.h"
#include "sec.h"

struct cfg;
struct repo;
struct workpool;
struct metrics;
struct scache;
struct netlist;
struct ready;
struct ratelimit;
struct MHD_Connection;

struct fleet;

/* Long-lived state shared by every request; made once at start. */
struct app {
    const struct cfg *cfg;
    struct repo *repo;
    struct pw_params pw;
    struct workpool *pool;            /* Argon2 and the requests using it */
    struct workpool *db_pool;         /* requests that wait on the database */
    struct metrics *metrics;
    struct scache *scache;            /* session-revocation cache */
    struct netlist *trusted;          /* proxies whose XFF is believed */
    struct netlist *metrics_allow;    /* clients that may read /metrics */
    struct vcache *vcache;            /* verified access tokens */
    const struct sec_keys *_Atomic keys;  /* swapped on SIGHUP */
    /* What keeps `keys` in step with other instances on one PostgreSQL
     * database (fleet.h); NULL: nothing does (they are the start's). */
    struct fleet *_Atomic fleet;
    struct mailer *_Atomic mailer;    /* outbox delivery; NULL: none yet */
    struct ready *ready;              /* database prober behind /readyz */
    struct ratelimit *limiter;        /* per-address credential buckets
                                         (the server's); NULL: none */
    int listen_fd;                    /* passed by socket activation, or
                                         -1: bind AUTH_HOST:AUTH_PORT */
    int64_t (*now_ms)(void);          /* the wall clock authentication
                                         reads; NULL: clock_ms() */
};

/* The keys in force (borrowed; kept alive until the daemon exits). */
const struct sec_keys *app_keys(struct app *a);
/* The wall clock in Unix ms: the app's now_ms, or clock_ms() without one
 * (tests inject a clock there). */
int64_t app_now_ms(const struct app *a);

/* Who may call a route: the one authorization table is the route table. */
enum access {
    ACCESS_PUBLIC,          /* anyone */
    ACCESS_USER,            /* any valid bearer token of a live session */
    ACCESS_ADMIN,           /* admins only */
    ACCESS_SELF_OR_ADMIN,   /* admins, or the user named by {id} */
    ACCESS_ADMIN_NOT_SELF,  /* admins, on users other than themselves */
};

enum route_flag {
    RF_OFFLOAD = 1u,        /* runs on the work pool (Argon2 inside) */
    RF_NO_STORE = 2u,       /* Cache-Control: no-store */
    RF_FORM = 4u,           /* accepts application/x-www-form-urlencoded */
    RF_CREDENTIAL = 8u,     /* per-IP rate limit: AUTH_RATE_LIMIT_PER_MINUTE */
    RF_DB = 16u,            /* runs on the database pool: it waits on the
                               database, never on an HTTP thread */
    RF_RESTRICTED = 32u,    /* the path exists only for AUTH_METRICS_ALLOW's
                               clients: for others every method on it is
                               404, checked before anything else answers */
    RF_CACHED = 256u,       /* an RF_DB route whose handler first runs on
                               the HTTP thread with `nowait` set, and may
                               answer there from the caches; it sets
                               `need_db` to be run again on the pool */
};

#define RES_MAX_HEADERS 8

/* What a handler answers. A handler returning AS_OK sets `status` and
 * `body`; returning an error, it may set `detail` and field `errors`,
 * and the router renders the problem document. */
struct response {
    unsigned status;
    json_t *body;                       /* owned; NULL: no body */
    char *raw;                          /* owned non-JSON body, or NULL */
    const char *raw_type;               /* its Content-Type (or fixed's) */
    const char *fixed;                  /* a body that lives as long as the
                                           process (embedded files), sent
                                           without a copy, or NULL */
    size_t fixed_len;
    const char *detail;                 /* problem "detail" (static/arena) */
    json_t *errors;                     /* owned array of {field,message} */
    json_t *extra;                      /* owned object of members the
                                           problem adds, or NULL */
    struct { const char *name, *value; } hdr[RES_MAX_HEADERS];
    unsigned nhdr;
};

struct route;
struct req_ctx;

/* Where the headers and query arguments of a request come from: the
 * libmicrohttpd connection in the daemon (server.c), a table in a unit
 * test. Each returns the value of `name` (a header's name matched without
 * regard to case), borrowed until the request ends, or NULL. */
struct req_source {
    const char *(*header)(const struct req_ctx *rc, const char *name);
    const char *(*query)(const struct req_ctx *rc, const char *name);
    /* How many times query argument `name` is given. */
    unsigned (*query_count)(const struct req_ctx *rc, const char *name);
};

struct req_ctx {
    struct app *app;
    struct arena *arena;                /* everything below lives in it */
    struct MHD_Connection *conn;
    const struct req_source *source;    /* its headers and query; NULL:
                                           none */
    void *source_arg;                   /* the source's own state */
    const struct route *route;
    /* A route of the path when none has the method (a 405, or OPTIONS):
     * the pattern the answer is counted and logged under. */
    const struct route *other_route;
    const char *method, *path, *route_pattern;
    const char *param_id;               /* the {id} segment, if any */
    char request_id[129];
    char ip[64];                        /* client address */
    bool authed;
    bool as_admin;                      /* authed through the admin role */
    struct sec_claims claims;           /* valid when authed */
    const char *bearer;                 /* the raw token when authed */
    char *body;                         /* NUL-terminated, in the arena */
    size_t body_len;
    bool body_form;                     /* form-encoded rather than JSON */
    bool answered_raw;                  /* written to the socket by the
                                           server itself, then closed */
    size_t discarded;                   /* body bytes dropped after an error */
    struct response res;
    enum as_err err;
    uint64_t t0_us;
    int state;                          /* server.c's state machine */
    bool nowait;                        /* RF_CACHED: on an HTTP thread */
    bool need_db;                       /* RF_CACHED: the cache missed */
};

typedef enum as_err (*handler_fn)(struct req_ctx *rc, struct response *res);

struct route {
    const char *method;
    const char *pattern;                /* "/api/v1/users/{id}" */
    handler_fn fn;
    enum access access;
    unsigned flags;                     /* enum route_flag */
};

/* The body as a JSON object (duplicate keys refused). AS_ERR_MALFORMED
 * for anything else; `*out` is a new reference the caller decrefs. Form
 * bodies (RF_FORM routes) come back as an object of strings. A string
 * holding U+0000 (form: %00) is refused (422 naming its member). */
enum as_err req_json(struct req_ctx *rc, json_t **out);
/* req_json() that lets strings hold U+0000: for a caller that refuses
 * such a value itself (json_string_length() says it is there). */
enum as_err req_json_nul_ok(struct req_ctx *rc, json_t **out);
/* A request header (borrowed until the request ends) or NULL. */
const char *req_header(struct req_ctx *rc, const char *name);
/* A query argument (borrowed until the request ends; its first value
 * when given more than once) or NULL. */
const char *req_query(struct req_ctx *rc, const char *name);
/* How many times query argument `name` is given: a handler refuses one
 * given twice rather than read one of the values, which a proxy or a
 * filter in front of the daemon may have read the other way. */
unsigned req_query_count(struct req_ctx *rc, const char *name);

/* Sets a success answer; steals `body` (NULL for none). Returns AS_OK. */
enum as_err res_json(struct response *res, unsigned status, json_t *body);
/* Adds a header; `value` is copied into the request arena. */
void res_header(struct req_ctx *rc, const char *name, const char *value);
/* WWW-Authenticate of a 401 (RFC 6750 3.1): no credential sent, or one
 * that was sent and is wrong. */
#define WWW_AUTH_NONE "Bearer realm=\"auth-serve\""
#define WWW_AUTH_INVALID WWW_AUTH_NONE ", error=\"invalid_token\""
#define WWW_AUTH_REQUEST WWW_AUTH_NONE ", error=\"invalid_request\""
/* Adds a header whose `value` lives until the answer is sent (a literal,
 * the request's claims, the arena): not copied. */
void res_header_ref(struct req_ctx *rc, const char *name, const char *value);
/* Records a problem detail and returns `err`, for `return res_fail(...)`. */
enum as_err res_fail(struct response *res, enum as_err err,
                     const char *detail);
/* Adds a field error for a 422 and returns AS_ERR_VALIDATION. */
enum as_err res_field(struct response *res, const char *field,
                      const char *message);
/* The problem+json body for `err` (RFC 9457): its status, title and
 * code from the error table (err.h), `detail` (NULL: the title) and the
 * field `errors` (borrowed; NULL or empty: none). New reference, NULL
 * when out of memory. */
json_t *res_problem(enum as_err err, const char *detail,
                    const char *request_id, json_t *errors);
/* Renders the answer decided for `rc` (rc->err and rc->res): the status,
 * and the body text with its Content-Type: the problem document (RFC
 * 9457) for an error, else the JSON body or the raw one (taken from
 * rc->res.raw). Sets *text (NULL: no body, or out of memory; the caller
 * frees it with free()) and *ctype (static, or the handler's). */
unsigned res_render(struct req_ctx *rc, char **text, const char **ctype);

/* Routing: one table (router.c). */
enum router_result { ROUTE_FOUND, ROUTE_NOT_FOUND, ROUTE_BAD_METHOD };
/* Matches `method` and `path`. On ROUTE_FOUND sets *route and *param
 * (arena copy of the {id} segment, or NULL). On ROUTE_BAD_METHOD writes
 * the Allow list into `allow`. */
enum router_result router_match(const char *method, const char *path,
                                struct arena *a, const struct route **route,
                                const char **param, char *allow,
                                size_t allow_len);
/* The flags of the routes at `path`, whatever their method (0 for none):
 * what a ROUTE_BAD_METHOD answer may show of it. */
unsigned router_path_flags(const char *path);
/* The first route at `path`, whatever its method (NULL for none): where
 * a ROUTE_BAD_METHOD answer is counted and logged. */
const struct route *router_path_route(const char *path);
/* The table itself, for metrics and the OpenAPI document. */
const struct route *router_routes(size_t *n);

#endif
