/* server.c: libmicrohttpd glue. Per-request context, body limits, the
 * hand-over of slow routes to the work pool, responses and access logs. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"

#include "authn.h"
#include "breaker.h"
#include "cfg.h"
#include "clock.h"
#include "connguard.h"
#include "log.h"
#include "metrics.h"
#include "mhdepoll.h"
#include "netaddr.h"
#include "ratelimit.h"
#include "repo.h"
#include "role.h"
#include "uuid.h"
#include "workpool.h"

enum req_state {
    ST_BODY,        /* reading the body (or waiting for it to end) */
    ST_DISCARD,     /* an early error: swallow the rest, then answer */
    ST_WORKING,     /* on the work pool, connection suspended */
    ST_DONE,        /* the handler finished: answer */
    ST_ANSWERED,
    ST_DRAIN,       /* 413 written at once: swallow the rest, then close */
};

/* Client addresses the credential-route rate limiter keeps track of
 * (16 bytes each, so 1 MiB). */
#define RATELIMIT_ENTRIES 65536u

struct server {
    struct MHD_Daemon *d;
    struct app *app;
    struct ratelimit *limiter;    /* credential routes, per client IP */
    struct connguard *guard;      /* deadlines, limits, parked connections */
    unsigned timeout_s;           /* AUTH_CONNECTION_TIMEOUT */
    bool parking;                 /* idle connections leave libmicrohttpd */
    unsigned port;
    atomic_uint inflight;
};

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Each connection's memory pool: its request line and headers must fit
 * with room for the answer (431 beyond; README.md "Security" and
 * "Framing": 16 KiB, Node.js's default, less REPLY_ROOM).
 * libmicrohttpd (0.9.75) zeroes the whole pool after every request, so
 * the pool is resident for as long as the connection stays open, and the
 * zeroing was the largest single cost of a request: going from 32 to 16
 * KiB took /healthz from 77k to 52k instructions and an idle keep-alive
 * connection from 32 to 16 KiB of memory (README.md, "Performance"). */
#define HEADER_POOL_BYTES 16384

/* The reply's status line and headers are built in the same pool, in
 * what the request left free; libmicrohttpd closes a connection whose
 * reply does not fit, without a word. So a request must leave this much
 * (our largest header block, /verify's with a 254-byte email, a 128-byte
 * request id and the CORS headers, is under 1 KiB; an echoed Origin is
 * added per request), or it is answered 431 before anything else. What
 * the request holds there is estimated from above: its raw request line
 * and headers, a record per header, cookie and query argument (56 bytes,
 * aligned to 16), a copy of the Cookie header, and some slack. */
#define REPLY_ROOM 1024u

#define POOL_RECORD_BYTES 64u
#define POOL_SLACK_BYTES 64u

/* A keep-alive connection idle this long between requests (or since it
 * opened) leaves libmicrohttpd for the connection guard, which holds it
 * on a few dozen bytes instead of the pool until its next request comes
 * (README.md, "Connections"). It is libmicrohttpd's own timeout for a
 * connection outside a request; a request's, from its request line to
 * its answer, is AUTH_CONNECTION_TIMEOUT. */
#define PARK_AFTER_S 2u

/* ---- the request's headers, for request.c ---- */

static const char *conn_header(const struct req_ctx *rc, const char *name)
{
    return MHD_lookup_connection_value(rc->conn, MHD_HEADER_KIND, name);
}

static const char *conn_query(const struct req_ctx *rc, const char *name)
{
    return MHD_lookup_connection_value(rc->conn, MHD_GET_ARGUMENT_KIND,
                                       name);
}

struct arg_count {
    const char *name;
    unsigned n;
};

static enum MHD_Result count_arg(void *cls, enum MHD_ValueKind kind,
                                 const char *key, const char *value)
{
    struct arg_count *c = cls;

    (void)kind;
    (void)value;
    if (key && strcmp(key, c->name) == 0)
        c->n++;
    return MHD_YES;
}

static unsigned conn_query_count(const struct req_ctx *rc, const char *name)
{
    struct arg_count c = { name, 0 };

    MHD_get_connection_values(rc->conn, MHD_GET_ARGUMENT_KIND, count_arg,
                              &c);
    return c.n;
}

static const struct req_source conn_source = { conn_header, conn_query,
                                               conn_query_count };

/* ---- per-request context ---- */

static bool valid_request_id(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++) {
        char c = s[n];

        if (n >= 128 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                          c == '-'))
            return false;
    }
    return n > 0;
}

static void peer_ip(struct MHD_Connection *c, char out[64])
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    strcpy(out, "unknown");
    if (!sa)
        return;
    if (sa->sa_family == AF_UNIX)   /* README "Behind a reverse proxy" */
        strcpy(out, NETADDR_UNIX_PEER);
    if (sa->sa_family == AF_INET) {     /* inet_ntop's sprintf, by hand */
        const uint8_t *b = (const uint8_t *)&(
            (const struct sockaddr_in *)(const void *)sa)->sin_addr;
        char *o = out;
        int i;

        for (i = 0; i < 4; i++) {
            if (b[i] >= 100)
                *o++ = (char)('0' + b[i] / 100);
            if (b[i] >= 10)
                *o++ = (char)('0' + b[i] / 10 % 10);
            *o++ = (char)('0' + b[i] % 10);
            *o++ = i < 3 ? '.' : '\0';
        }
    } else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)
                                ->sin6_addr, out, 64);
}

/* The last XFF_LINES X-Forwarded-For header lines, in the order received:
 * the nearest hops are in the last ones, so earlier lines beyond this
 * many cannot push them out. */
#define XFF_LINES 16u

struct xff_lines {
    const char *v[XFF_LINES];    /* a ring once more lines came */
    size_t n;                    /* lines seen */
};

static enum MHD_Result xff_line(void *cls, enum MHD_ValueKind kind,
                                const char *key, const char *value)
{
    struct xff_lines *x = cls;

    (void)kind;
    if (key && strcasecmp(key, "X-Forwarded-For") == 0)
        x->v[x->n++ % XFF_LINES] = value ? value : "";
    return MHD_YES;
}

/* The client address behind trusted proxies: every X-Forwarded-For line
 * together is one list (README.md, "Behind a reverse proxy"). */
static void client_ip(struct app *app, struct MHD_Connection *conn,
                      const char *peer, char *out, size_t out_len)
{
    struct xff_lines x = { .n = 0 };
    const char *lines[XFF_LINES];
    size_t i, n;

    MHD_get_connection_values(conn, MHD_HEADER_KIND, xff_line, &x);
    n = x.n < XFF_LINES ? x.n : XFF_LINES;
    for (i = 0; i < n; i++)
        lines[i] = x.v[(x.n - n + i) % XFF_LINES];
    netlist_client_ip_lines(app->trusted, peer, lines, n, out, out_len);
}

/* Where the authority of an absolute-form target ("http://host/p", RFC
 * 9112 3.2.2, which a server must accept) begins; NULL for another form. */
static const char *target_authority(const char *url)
{
    if (strncasecmp(url, "http://", 7) == 0)
        return url + 7;
    if (strncasecmp(url, "https://", 8) == 0)
        return url + 8;
    return NULL;
}

/* The path of a request target: an absolute-form target stands for its
 * path. */
static const char *target_path(const char *url)
{
    const char *p = target_authority(url);

    if (!p)
        return url;
    p += strcspn(p, "/?");
    return *p == '/' ? p : "/";
}

static struct req_ctx *req_new(struct app *app, struct MHD_Connection *conn,
                               const char *url, const char *method)
{
    struct arena *a = arena_new();
    struct req_ctx *rc = a ? arena_alloc(a, sizeof *rc) : NULL;
    const char *rid;
    char peer[64];

    if (!rc) {
        arena_free(a);
        return NULL;
    }
    rc->app = app;
    rc->arena = a;
    rc->conn = conn;
    rc->source = &conn_source;
    rc->t0_us = now_us();
    rc->method = arena_strdup(a, method);
    rc->path = arena_strndup(a, target_path(url), 2048);
    rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-ID");
    if (rid && valid_request_id(rid))
        strcpy(rc->request_id, rid);
    else
        uuid_v7_new(rc->request_id);
    peer_ip(conn, peer);
    client_ip(app, conn, peer, rc->ip, sizeof rc->ip);
    if (!rc->method || !rc->path) {
        arena_free(a);
        return NULL;
    }
    return rc;
}

static void req_free(struct req_ctx *rc)
{
    json_decref(rc->res.body);
    json_decref(rc->res.errors);
    json_decref(rc->res.extra);
    free(rc->res.raw);
    if (rc->body)
        crypt_wipe(rc->body, rc->body_len);  /* passwords live here */
    arena_free(rc->arena);
}

/* ---- answering ---- */

/* The Origin to echo in CORS headers, or NULL when it is not allowed. */
static const char *cors_origin(struct req_ctx *rc)
{
    const char *list = rc->app->cfg->cors_origins;
    const char *origin = req_header(rc, "Origin");
    size_t olen;

    if (!list || !origin)
        return NULL;
    olen = strlen(origin);
    while (*list) {
        size_t n = strcspn(list, ",");
        const char *b = list, *e = list + n;

        while (b < e && *b == ' ')
            b++;
        while (e > b && e[-1] == ' ')
            e--;
        if (e - b == 1 && *b == '*')
            return "*";
        if ((size_t)(e - b) == olen && strncmp(b, origin, olen) == 0)
            return origin;
        list += n + (list[n] == ',');
    }
    return NULL;
}

static void add_cors_headers(struct req_ctx *rc, struct MHD_Response *r)
{
    const char *origin = cors_origin(rc);

    if (rc->app->cfg->cors_origins)
        MHD_add_response_header(r, "Vary", "Origin");
    if (!origin)
        return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
    MHD_add_response_header(r, "Access-Control-Expose-Headers",
                            "X-Request-ID, Location, Retry-After, "
                            "WWW-Authenticate");
    if (strcmp(rc->method, "OPTIONS") == 0) {
        MHD_add_response_header(r, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, "
                                "X-Request-ID");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    }
}

static void add_common_headers(struct req_ctx *rc, struct MHD_Response *r,
                               unsigned status)
{
    unsigned i;

    MHD_add_response_header(r, "X-Request-ID", rc->request_id);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (rc->route && (rc->route->flags & RF_NO_STORE)) {
        MHD_add_response_header(r, "Cache-Control", "no-store");
        MHD_add_response_header(r, "Pragma", "no-cache");
    }
    for (i = 0; i < rc->res.nhdr; i++)
        MHD_add_response_header(r, rc->res.hdr[i].name, rc->res.hdr[i].value);
    if (status == 401 && !MHD_get_response_header(r, "WWW-Authenticate"))
        MHD_add_response_header(r, "WWW-Authenticate",
                                rc->err == AS_ERR_INVALID_TOKEN
                                    ? WWW_AUTH_INVALID : WWW_AUTH_NONE);
    if (status == 503 && !MHD_get_response_header(r, "Retry-After")) {
        /* an open circuit knows when it will let a probe through */
        uint64_t ms = breaker_retry_after_ms(repo_breaker(rc->app->repo),
                                             clock_mono_ms());
        char secs[24];

        snprintf(secs, sizeof secs, "%llu",
                 (unsigned long long)(ms ? (ms + 999) / 1000 : 1));
        MHD_add_response_header(r, "Retry-After", secs);
    }
    add_cors_headers(rc, r);
}

static int conn_fd(struct MHD_Connection *c);

/* Set by respond_raw() on the thread that returns its MHD_NO, for the
 * one line libmicrohttpd logs about it at once (mhd_log). */
static _Thread_local bool raw_answered;

/* The answer to a request that left its reply no room in the pool (see
 * REPLY_ROOM), or to a body over the cap (refuse_large()): written to the
 * socket here, in one call, with the headers respond() would give, and
 * the connection closed (MHD_NO). The request's body, if any, was read
 * first (ST_DISCARD) or is read after it (ST_DRAIN), so closing does not
 * reset the connection under the answer. A socket that cannot take
 * it at once (a client not reading its earlier answers) is closed
 * without it, as libmicrohttpd would have. */
static enum MHD_Result respond_raw(struct req_ctx *rc)
{
    char *text, head[1024], date[40];
    const char *ctype, *origin = cors_origin(rc);
    unsigned status = res_render(rc, &text, &ctype);
    size_t tlen = text ? strlen(text) : 0;
    time_t now = time(NULL);
    struct tm tm;
    struct iovec iov[2];
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
    int n, fd = conn_fd(rc->conn);

    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    n = snprintf(head, sizeof head,
                 "HTTP/1.1 %u %s\r\nDate: %s\r\nConnection: close\r\n"
                 "Content-Type: %s\r\nContent-Length: %zu\r\n"
                 "X-Request-ID: %s\r\nX-Content-Type-Options: nosniff\r\n"
                 "%s%s%s%s\r\n",
                 status, as_err_title(rc->err), date, ctype, tlen,
                 rc->request_id,
                 rc->app->cfg->cors_origins ? "Vary: Origin\r\n" : "",
                 origin ? "Access-Control-Allow-Origin: " : "",
                 origin ? origin : "",
                 origin ? "\r\nAccess-Control-Expose-Headers: X-Request-ID, "
                          "Location, Retry-After, WWW-Authenticate\r\n"
                        : "");
    if (n > 0 && (size_t)n < sizeof head && fd >= 0) {
        iov[0] = (struct iovec){ head, (size_t)n };
        iov[1] = (struct iovec){ text, strcmp(rc->method, "HEAD") == 0
                                           ? 0 : tlen };  /* no body */
        (void)sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    free(text);
    rc->res.status = status;
    rc->state = ST_ANSWERED;
    rc->answered_raw = true;
    raw_answered = true;
    return MHD_NO;                      /* libmicrohttpd closes it */
}

/* A body over the cap: its 413 is written at once, before the body is
 * read (README "Framing": read no further), and the rest of the body the
 * client sends meanwhile is read and dropped, up to DISCARD_MAX, before
 * the connection is closed (ST_DRAIN), so that closing does not reset
 * the connection under the answer. */
static enum MHD_Result refuse_large(struct req_ctx *rc)
{
    (void)respond_raw(rc);
    raw_answered = false;               /* no MHD_NO to log about yet */
    rc->state = ST_DRAIN;
    return MHD_YES;
}

/* Set by server_stop(): the server drains, and every answer ends its
 * connection, so a client (a proxy's kept-alive upstream) takes its next
 * request to a server that is not stopping. */
static atomic_bool stopping;

static void close_after(struct req_ctx *rc);

/* Renders rc->err / rc->res and queues it. */
static enum MHD_Result respond(struct req_ctx *rc)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    char *text;
    const char *ctype;
    unsigned status;

    if (rc->err == AS_ERR_HEADERS_TOO_LARGE)
        return respond_raw(rc);
    if (atomic_load(&stopping))
        close_after(rc);
    if (rc->err == AS_OK && rc->res.fixed) {
        /* Embedded files are sent from where they are: a client that
         * never reads its answer holds no copy of it (README
         * "Connections"). */
        status = rc->res.status ? rc->res.status : 200;
        ctype = rc->res.raw_type;
        r = MHD_create_response_from_buffer(rc->res.fixed_len,
                                            (void *)rc->res.fixed,
                                            MHD_RESPMEM_PERSISTENT);
        text = NULL;
    } else {
        status = res_render(rc, &text, &ctype);
        r = MHD_create_response_from_buffer(text ? strlen(text) : 0,
                                            text ? text : (char *)"",
                                            text ? MHD_RESPMEM_MUST_FREE
                                                 : MHD_RESPMEM_PERSISTENT);
    }
    if (!r) {
        free(text);
        return MHD_NO;
    }
    if (text || rc->res.fixed)
        MHD_add_response_header(r, "Content-Type", ctype);
    add_common_headers(rc, r, status);
    rc->res.status = status;
    rc->state = ST_ANSWERED;
    ret = MHD_queue_response(rc->conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- checks made before any body byte is read ---- */

static bool media_is(const char *ctype, const char *want)
{
    size_t n = strlen(want);

    /* RFC 9110 s8.3.1: type "/" subtype *( OWS ";" OWS parameter ),
     * OWS being spaces and tabs; so a tab may come before the ";", and
     * "application/json x" is not JSON. */
    if (!ctype || strncasecmp(ctype, want, n) != 0)
        return false;
    for (ctype += n; *ctype == ' ' || *ctype == '\t'; ctype++)
        ;
    return *ctype == '\0' || *ctype == ';';
}

/* Parses Content-Length strictly (digits only). */
static bool parse_length(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > UINT64_MAX / 10 - 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

/* Every Content-Length and Transfer-Encoding line of a request
 * (libmicrohttpd itself reads only the first of each), and what the
 * request holds in the connection's pool (see REPLY_ROOM). */
struct framing {
    unsigned ncl, nte;
    bool cl_bad;                 /* malformed, or two different values */
    bool name_bad;               /* a field name that is not a token */
    bool line_bad;               /* a header line not as it was read */
    unsigned nhost;              /* Host lines */
    unsigned nauth;              /* Authorization lines */
    bool host_bad;               /* a Host value that is no host[:port] */
    uintptr_t prev;              /* past the last header read, or 0 */
    uintptr_t prev_trailer;      /* past the last trailer read, or 0 */
    uintptr_t block_end;         /* past the header block (trailers come
                                    after it), or 0 */
    bool trailer_bad;            /* a trailer line not as it was read, or
                                    whose name is not a token */
    uint64_t cl;
    size_t records;              /* headers, cookies and query arguments */
    size_t cookie_len, origin_len;
    uintptr_t base, end;         /* the request's first byte, and past the
                                    last header or trailer value */
};

/* True when `key` of `n` bytes is `name` (ASCII, any case). */
static bool key_is(const char *key, size_t n, const char *name,
                   size_t name_len)
{
    return key && n == name_len && strncasecmp(key, name, n) == 0;
}

#define KEY_IS(key, n, lit) key_is(key, n, lit, sizeof lit - 1)

/* True when `key` is an RFC 9110 token (5.1, 5.6.2), as a field name must
 * be. libmicrohttpd (0.9.75) keeps whatever precedes the colon, so
 * "Content-Length : 5" arrives as a field named "Content-Length " that
 * frames nothing, and its body would be read as the next request: RFC
 * 9112 5.1 asks for a 400. */
static bool field_name_ok(const char *key, size_t n)
{
    /* The token characters, a bit per ASCII code: "!#$%&'*+-.^_`|~",
     * digits and letters. */
    static const uint64_t tchar[2] = { 0x03ff6cfa00000000u,
                                       0x57ffffffc7fffffeu };
    size_t i;

    if (!key || n == 0)
        return false;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];

        if (c >= 128 || !(tchar[c >> 6] >> (c & 63) & 1))
            return false;
    }
    return true;
}

/* libmicrohttpd (0.9.75) parses a header block in place: it writes a NUL
 * over each colon and over each line end's bytes (CR and LF, or a lone
 * LF), and a value keeps its trailing blanks. So a line "Name: value"
 * lies as "Name", one NUL, blanks, "value", then one or two NULs before
 * the next name; the block's end is two to four NULs. */
static bool gap_ok(uintptr_t from, uintptr_t to, size_t min_nuls,
                   size_t max_nuls, bool blanks)
{
    const unsigned char *p = (const unsigned char *)from;
    size_t nuls = 0;

    if (to <= from || to - from > HEADER_POOL_BYTES)
        return false;
    for (; (uintptr_t)p < to && *p == '\0'; p++)
        nuls++;
    for (; blanks && (uintptr_t)p < to && (*p == ' ' || *p == '\t'); p++)
        ;
    return (uintptr_t)p == to && nuls >= min_nuls && nuls <= max_nuls;
}

/* From the end of a line's value (or of the request line) to the next
 * line's name: the line end, nothing else. A client's NUL there hid
 * nothing, but a strict reader refuses it; one NUL right before a lone
 * LF is the only one that cannot be told apart (the same bytes as CRLF's
 * once parsed), and it ends the line where a strict reader does. */
#define LINE_END_OK(from, to) gap_ok(from, to, 1, 2, false)
/* From the name's end to its value: the colon's NUL, then blanks. */
#define COLON_OK(from, to) gap_ok(from, to, 1, 1, true)
/* From the last value to the block's end: its line end and the empty
 * line's. */
#define BLOCK_END_OK(from, to) gap_ok(from, to, 2, 4, false)

/* A header line as libmicrohttpd (0.9.75) parsed it, in place: its name
 * right after the previous line, its value right after the name's colon.
 * Anything else means the library saw the line differently from a strict
 * reader, which a proxy in front may be: a folded (obs-fold) line, whose
 * continuation it appends to the *name* in a copy ("Content-:
 * 13\r\n Length" becomes "Content-Length: 13"), or a bare CR or a NUL
 * that ends a value early and hides the rest of its line (RFC 9112 5.2,
 * 2.2; RFC 9110 5.5: refuse). */
static bool header_in_place(struct framing *f, const char *key,
                            size_t key_size, const char *value,
                            size_t value_size)
{
    uintptr_t k = (uintptr_t)key, v = (uintptr_t)value;

    if (!key || !value || (f->prev && !LINE_END_OK(f->prev, k)))
        return false;
    return COLON_OK(k + key_size, v) &&
           !memchr(value, '\r', value_size);     /* a bare CR it kept */
}

static enum MHD_Result framing_line(void *cls, enum MHD_ValueKind kind,
                                    const char *key, size_t key_size,
                                    const char *value, size_t value_size)
{
    struct framing *f = cls;
    uint64_t v = 0;

    f->records++;
    if (kind == MHD_HEADER_KIND || kind == MHD_FOOTER_KIND) {
        /* Names and values lie where they were read, in the pool after
         * the request line, except a folded line's, which libmicrohttpd
         * (0.9.75) copies past its read buffer (appended to the name);
         * trailers come after the headers. */
        uintptr_t ek = key ? (uintptr_t)key + key_size + 1 : 0;
        uintptr_t ev = value ? (uintptr_t)value + value_size + 1 : 0;
        uintptr_t e = ek > ev ? ek : ev;

        if (e > f->base && e - f->base <= HEADER_POOL_BYTES && e > f->end)
            f->end = e;
    }
    if (kind == MHD_FOOTER_KIND) {
        /* Trailer lines are field lines too (RFC 9112 7.1.2), parsed in
         * place after the body: each checked as a header line is, and
         * against the trailer before it (where the section begins and
         * ends libmicrohttpd does not say). */
        uintptr_t k = (uintptr_t)key;

        /* libmicrohttpd (0.9.75), short of room, records a header's
         * "Connection: close" again as a trailer, in the header's place:
         * no trailer line. */
        if (k < f->block_end)
            return MHD_YES;
        if (!field_name_ok(key, key_size) || !value ||
            (f->prev_trailer && !LINE_END_OK(f->prev_trailer, k)) ||
            !COLON_OK(k + key_size, (uintptr_t)value) ||
            memchr(value, '\r', value_size))
            f->trailer_bad = true;
        f->prev_trailer = value ? (uintptr_t)value + value_size : 0;
        return MHD_YES;
    }
    if (kind != MHD_HEADER_KIND)
        return MHD_YES;
    if (!field_name_ok(key, key_size))
        f->name_bad = true;
    if (!header_in_place(f, key, key_size, value, value_size))
        f->line_bad = true;
    f->prev = (uintptr_t)value + value_size;
    if (value && KEY_IS(key, key_size, "Cookie"))
        f->cookie_len += value_size + 1;
    if (value && KEY_IS(key, key_size, "Origin"))
        f->origin_len += value_size;
    if (KEY_IS(key, key_size, "Transfer-Encoding"))
        f->nte++;
    if (KEY_IS(key, key_size, "Authorization"))
        f->nauth++;
    if (KEY_IS(key, key_size, "Host")) {
        f->nhost++;
        /* RFC 3986 3.2.2-3: reg-name, IPv4 or IP-literal, and a port */
        if (!value || value[strspn(value, "abcdefghijklmnopqrstuvwxyz"
                                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789-._~!$&'()*+,;=%:[]")])
            f->host_bad = true;
    }
    if (!KEY_IS(key, key_size, "Content-Length"))
        return MHD_YES;
    if (!value || !parse_length(value, &v) || (f->ncl && v != f->cl))
        f->cl_bad = true;
    f->cl = v;
    f->ncl++;
    return MHD_YES;
}

/* The size of the request line and headers as libmicrohttpd read them;
 * 0 when it does not say. */
static size_t request_header_size(struct req_ctx *rc)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
        rc->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);

    return ci ? ci->header_size : 0;
}

/* True when the request, whose line and headers took `header_size`
 * bytes, leaves its reply room in the connection's pool (see
 * REPLY_ROOM), by the records counted in `f`. */
static bool leaves_reply_room(const struct framing *f, size_t header_size)
{
    size_t front = header_size;

    if (!header_size)
        return true;                    /* not known: as before */
    if (f->end && f->end - f->base + 4 > front)   /* the last CRLFs */
        front = f->end - f->base + 4;
    return POOL_SLACK_BYTES + front +
               f->records * POOL_RECORD_BYTES + f->cookie_len +
               REPLY_ROOM + f->origin_len <=
           HEADER_POOL_BYTES;
}

/* Why a request whose framing is in doubt is refused (400, and nothing
 * after it on the connection read), or NULL: a header line libmicrohttpd
 * read differently from a strict reader, a field name that is not a
 * token, or (RFC 9112 3.2, checked here rather than by libmicrohttpd,
 * whose 0.9.75 sent that answer's status line and headers twice) a bad
 * Host, two of them, or none on HTTP/1.1. */
static const char *framing_doubt(const struct framing *f,
                                 const char *version)
{
    if (f->line_bad)
        return "A header line is folded, or holds a CR or NUL character.";
    if (f->name_bad)
        return "A header field name is malformed (no whitespace may come "
               "before its colon).";
    if (f->host_bad)
        return "The Host header is not a host name or address.";
    if (f->nhost > 1)
        return "A request has one Host header, not several.";
    if (f->nhost == 0 && version &&
        strcmp(version, MHD_HTTP_VERSION_1_1) == 0)
        return "A Host header is required (HTTP/1.1).";
    return NULL;
}

/* True when the answer already ends the connection. */
static bool closing(const struct req_ctx *rc)
{
    for (unsigned i = 0; i < rc->res.nhdr; i++)
        if (strcasecmp(rc->res.hdr[i].name, "Connection") == 0)
            return true;
    return false;
}

/* The connection ends after this answer (once, however many reasons). */
static void close_after(struct req_ctx *rc)
{
    if (!closing(rc))
        res_header_ref(rc, "Connection", "close");
}

/* The request leaves its answer room in the pool (431 otherwise), and
 * its framing is strict (src/openapi.json, "Conventions"): one
 * Content-Length value (repeated lines must agree), or exactly one
 * `chunked`. */
static enum as_err framing_checks(struct req_ctx *rc, const char *mhd_method,
                                  const char *version, bool target_whole,
                                  const char **detail)
{
    struct framing f = { .ncl = 0, .base = (uintptr_t)mhd_method };
    size_t header_size = request_header_size(rc);
    const char *te, *cl;
    uint64_t len = 0;

    /* The first header follows the request line, which ends with the
     * version (libmicrohttpd's, in its read buffer). */
    if (version && *version)
        f.prev = (uintptr_t)version + strlen(version);
    MHD_get_connection_values_n(rc->conn, MHD_HEADER_KIND |
                                              MHD_COOKIE_KIND |
                                              MHD_GET_ARGUMENT_KIND,
                                framing_line, &f);
    /* ... and the last one is followed by the end of the block. */
    if (f.prev && header_size &&
        !BLOCK_END_OK(f.prev, f.base + header_size))
        f.line_bad = true;
    if (!leaves_reply_room(&f, header_size)) {
        *detail = "The request line and headers are larger than the "
                  "server accepts.";
        return AS_ERR_HEADERS_TOO_LARGE;
    }
    *detail = target_whole ? framing_doubt(&f, version)
                           : "The request target holds a NUL character.";
    if (*detail) {
        close_after(rc);
        return AS_ERR_BAD_REQUEST;
    }
    if (f.cl_bad) {
        *detail = "Content-Length is malformed or given twice with "
                  "different values.";
        return AS_ERR_BAD_REQUEST;
    }
    if (f.nte > 1) {
        *detail = "Only one Transfer-Encoding line, chunked, is accepted.";
        return AS_ERR_BAD_REQUEST;
    }
    /* Before routing, as the checks above: an unknown path or OPTIONS *
     * keeps its connection (answered on the last call), so a body of
     * doubtful length there must be refused as anywhere else. */
    te = req_header(rc, "Transfer-Encoding");
    cl = req_header(rc, "Content-Length");
    if (te && cl) {
        close_after(rc);
        *detail = "Content-Length and Transfer-Encoding together are "
                  "refused.";
        return AS_ERR_BAD_REQUEST;
    }
    if (te && strcasecmp(te, "chunked") != 0) {
        close_after(rc);
        *detail = "Only the chunked transfer coding is supported.";
        return AS_ERR_BAD_REQUEST;
    }
    /* RFC 9112 6.1: HTTP/1.0 has no transfer codings, so an HTTP/1.0
     * reader in front frames such a body otherwise: faulty framing,
     * refused like the rest (the contract accepts chunked on HTTP/1.1
     * alone). */
    if (te && version && strcmp(version, MHD_HTTP_VERSION_1_0) == 0) {
        close_after(rc);
        *detail = "HTTP/1.0 has no transfer codings: send the body with "
                  "Content-Length.";
        return AS_ERR_BAD_REQUEST;
    }
    if (cl && !parse_length(cl, &len)) {
        close_after(rc);
        *detail = "Content-Length is malformed.";
        return AS_ERR_BAD_REQUEST;
    }
    /* Authorization is a singleton field (RFC 9110 11.6.2): of two, a
     * proxy in front and the daemon could each take another one. RFC
     * 6750 3.1 calls it invalid_request. */
    if (f.nauth > 1) {
        *detail = "A request carries one Authorization header, not "
                  "several.";
        res_header_ref(rc, "WWW-Authenticate", WWW_AUTH_REQUEST);
        return AS_ERR_BAD_REQUEST;
    }
    return AS_OK;
}

static enum as_err early_checks(struct req_ctx *rc, const char **detail)
{
    const char *te = req_header(rc, "Transfer-Encoding");
    const char *cl = req_header(rc, "Content-Length");
    const char *ct = req_header(rc, "Content-Type");
    uint64_t len = 0;
    bool has_body;

    (void)parse_length(cl ? cl : "0", &len);    /* checked: framing_checks */
    if (len > rc->app->cfg->max_body_bytes) {
        *detail = "The request body is larger than the server accepts.";
        return AS_ERR_TOO_LARGE;
    }
    has_body = te || len > 0;
    if (!has_body)
        return AS_OK;
    if (media_is(ct, "application/json"))
        return AS_OK;
    if (rc->route && (rc->route->flags & RF_FORM) &&
        media_is(ct, "application/x-www-form-urlencoded")) {
        rc->body_form = true;
        return AS_OK;
    }
    *detail = rc->route && (rc->route->flags & RF_FORM)
                  ? "Send application/json or "
                    "application/x-www-form-urlencoded."
                  : "Send application/json.";
    return AS_ERR_MEDIA_TYPE;
}

/* A chunked body's trailer lines are read after the headers were
 * checked, into the same pool: false (rc->err set) when one is not a
 * strict reader's field line (400, the connection closed: where the
 * request ends is in doubt), or when with them the reply would no longer
 * fit (see REPLY_ROOM). `mhd_method` is libmicrohttpd's own method
 * string, the request's first byte. */
static bool trailers_ok(struct req_ctx *rc, const char *mhd_method)
{
    size_t header_size = request_header_size(rc);
    struct framing f = { .ncl = 0, .base = (uintptr_t)mhd_method,
                         .block_end = (uintptr_t)mhd_method + header_size };

    if (!MHD_lookup_connection_value(rc->conn, MHD_HEADER_KIND,
                                     "Transfer-Encoding"))
        return true;
    MHD_get_connection_values_n(rc->conn, MHD_HEADER_KIND |
                                              MHD_COOKIE_KIND |
                                              MHD_GET_ARGUMENT_KIND |
                                              MHD_FOOTER_KIND,
                                framing_line, &f);
    /* The last trailer's line ends, and so does the section (an empty
     * line): two line ends, at least two NULs, both in what was read. A
     * byte other than NUL there is what a NUL in its value hid. */
    if (f.prev_trailer && (((const char *)f.prev_trailer)[0] != '\0' ||
                           ((const char *)f.prev_trailer)[1] != '\0'))
        f.trailer_bad = true;
    if (f.trailer_bad) {
        close_after(rc);
        rc->err = AS_ERR_BAD_REQUEST;
        rc->res.detail = "A trailer line is folded, holds a CR or NUL "
                         "character, or has a malformed field name.";
        return false;
    }
    if (leaves_reply_room(&f, header_size))
        return true;
    rc->err = AS_ERR_HEADERS_TOO_LARGE;
    rc->res.detail = "The request line, headers and trailers are larger "
                     "than the server accepts.";
    return false;
}

/* Looks the route up and checks headers; returns false when the answer
 * is already decided (rc->err set). */
static bool begin(struct req_ctx *rc, const char *mhd_method,
                  const char *version, bool target_whole)
{
    char allow[128];
    const char *detail = NULL;
    enum router_result m;
    enum as_err err;

    /* libmicrohttpd 0.9.75 serves any HTTP/1.x; the checks here (Host
     * on HTTP/1.1, no chunked on HTTP/1.0) know two versions, and a request
     * of another would pass both. */
    if (!version || (strcmp(version, MHD_HTTP_VERSION_1_1) != 0 &&
                     strcmp(version, MHD_HTTP_VERSION_1_0) != 0)) {
        close_after(rc);
        rc->err = AS_ERR_HTTP_VERSION;
        rc->res.detail = "Only versions 1.0 and 1.1 of HTTP are served.";
        return false;
    }
    err = framing_checks(rc, mhd_method, version, target_whole, &detail);
    if (err != AS_OK) {                 /* before anything else answers */
        rc->err = err;
        rc->res.detail = detail;
        return false;
    }
    /* RFC 9112 3.2: the target is a path (the absolute form arrives here
     * as its path); "*" is OPTIONS' alone and host:port CONNECT's, which
     * this server does not serve; anything else is no target at all. */
    if (rc->path[0] != '/' &&
        !(strcmp(rc->path, "*") == 0 && strcmp(rc->method, "OPTIONS") == 0)) {
        close_after(rc);
        rc->err = AS_ERR_BAD_REQUEST;
        rc->res.detail = "The request target must be a path beginning "
                         "with '/'.";
        return false;
    }
    /* RFC 9110 9.3.7: OPTIONS * asks about the server as a whole. */
    if (rc->path[0] == '*') {
        res_header(rc, "Allow", "GET, HEAD, POST, PATCH, DELETE, OPTIONS");
        rc->res.status = 204;
        return false;
    }
    m = router_match(rc->method, rc->path, rc->arena, &rc->route,
                     &rc->param_id, allow, sizeof allow);
    /* A restricted path (/metrics) does not exist for a client outside
     * AUTH_METRICS_ALLOW, whatever the method, headers or body: no 405,
     * Allow, OPTIONS, 413 or 415 shows it (README.md, "Operations").
     * rc->ip is the client behind trusted proxies, so a proxy does not
     * open it. */
    if (m != ROUTE_NOT_FOUND &&
        ((m == ROUTE_FOUND ? rc->route->flags : router_path_flags(rc->path)) &
         RF_RESTRICTED) &&
        !netlist_contains(rc->app->metrics_allow, rc->ip)) {
        rc->route = NULL;
        rc->param_id = NULL;
        m = ROUTE_NOT_FOUND;
    }
    if (m == ROUTE_NOT_FOUND) {
        rc->err = AS_ERR_NOT_FOUND;
        rc->res.detail = "No such resource.";
        return false;
    }
    /* OPTIONS is answered on every known path, so every Allow lists it
     * (RFC 9110 10.2.1: the methods the resource supports). */
    if (m == ROUTE_BAD_METHOD) {
        char full[160];

        rc->other_route = router_path_route(rc->path);
        if (rc->other_route)
            rc->route_pattern = rc->other_route->pattern;
        snprintf(full, sizeof full, "%s, OPTIONS", allow);
        res_header(rc, "Allow", full);
        if (strcmp(rc->method, "OPTIONS") == 0) {   /* CORS preflight too */
            if (cors_origin(rc))
                res_header(rc, "Access-Control-Allow-Methods", full);
            rc->res.status = 204;
            return false;
        }
        rc->err = AS_ERR_METHOD;
        rc->res.detail = "This method is not allowed on this resource.";
        return false;
    }
    rc->route_pattern = rc->route->pattern;
    err = early_checks(rc, &detail);
    if (err != AS_OK) {
        rc->err = err;
        rc->res.detail = detail;
        return false;
    }
    return true;
}

/* Appends upload data; false once the cap is passed. */
static bool body_append(struct req_ctx *rc, const char *data, size_t n)
{
    size_t cap = rc->app->cfg->max_body_bytes;
    char *p;

    if (n > cap - rc->body_len)
        return false;
    if (!rc->body) {
        rc->body = arena_alloc(rc->arena, cap + 1);   /* lives as rc does */
        if (!rc->body)
            return false;
    }
    p = rc->body + rc->body_len;
    memcpy(p, data, n);
    rc->body_len += n;
    rc->body[rc->body_len] = '\0';
    return true;
}

/* ---- running handlers ---- */

/* What a handler writes for a signed-in caller lands only while that
 * caller may still write it: a write in flight when its session is
 * revoked is refused, not committed after the revocation (repo_act_as,
 * README.md "Security", "Writes in flight"). */
static void run_handler(struct req_ctx *rc)
{
    enum role role = ROLE_USER;
    struct repo_actor who = { .sid = rc->claims.sid,
                              .user_id = rc->claims.sub,
                              .admin = rc->as_admin };

    who.admin_account = rc->authed && rc->claims.role &&
                        role_parse(rc->claims.role, &role) &&
                        role == ROLE_ADMIN;

    repo_act_as(rc->authed && who.sid && who.user_id ? &who : NULL);
    rc->err = rc->route->fn(rc, &rc->res);
    repo_act_as(NULL);
    if (rc->authed && !rc->res.detail && rc->err == AS_ERR_INVALID_TOKEN)
        rc->res.detail = "The session ended while this request was in "
                         "progress.";
    if (rc->as_admin && !rc->res.detail && rc->err == AS_ERR_FORBIDDEN)
        rc->res.detail = "The admin role was withdrawn while this request "
                         "was in progress.";
}

/* Offloaded routes hash a password before they reach the database; when
 * the circuit is not closed, that call would most likely be refused after
 * the hash. True when such a route should get 503 now: the database is
 * known to hang (repo_gated), the circuit is open, or (with `probe`, on a
 * worker, never on a network thread) it is half-open and a ping, the
 * probe, fails or finds a probe in flight. */
static bool db_refused(struct repo *r, bool probe)
{
    uint64_t now = clock_mono_ms();

    if (repo_gated(r, now))
        return true;
    switch (breaker_state(repo_breaker(r), now)) {
    case BREAKER_CLOSED:
        return false;
    case BREAKER_HALF_OPEN:
        return probe && repo_ping(r) != AS_OK;
    case BREAKER_OPEN:
        break;
    }
    return true;
}

static void refuse_unavailable(struct req_ctx *rc)
{
    rc->err = AS_ERR_UNAVAILABLE;
    rc->res.detail = "The database is unavailable; retry shortly.";
}

/* Set by server_stop() once its grace has passed: what is still queued
 * for a worker is answered 503 without being run. */
static atomic_bool cancelling;

/* libmicrohttpd 0.9.75 aborts the process when it is stopped with a
 * connection suspended, and a kept-alive connection may bring a request
 * (a login, say) after the drain found none in flight. So the stop sets
 * `sealed`, then waits for `suspended` to reach 0; a request counts
 * itself in `suspended` before it reads `sealed` (both sequentially
 * consistent): either the stop sees it and waits, or it sees the seal
 * and is answered 503 at once, unsuspended. */
static atomic_bool sealed;
static atomic_uint suspended;

/* True (the answer set) when `rc`, queued for a worker, is cancelled. */
static bool cancelled(struct req_ctx *rc)
{
    if (!atomic_load(&cancelling))
        return false;
    rc->err = AS_ERR_UNAVAILABLE;
    rc->res.detail = "The server is stopping; retry shortly.";
    return true;
}

/* Hands a suspended request, answered off the HTTP thread, back to
 * libmicrohttpd to send. */
static void resume_answered(struct req_ctx *rc)
{
    __atomic_store_n(&rc->state, ST_DONE, __ATOMIC_RELEASE);
    MHD_resume_connection(rc->conn);
    atomic_fetch_sub(&suspended, 1);
}

static void offloaded(void *arg)
{
    struct req_ctx *rc = arg;

    if (cancelled(rc))
        ;
    else if (db_refused(rc->app->repo, true))
        refuse_unavailable(rc);
    else
        run_handler(rc);
    /* The client may send its next request as soon as it is resumed: its
     * share of the hash pool is free from here (README "Security"). */
    workpool_leave_clients();
    resume_answered(rc);
}

/* Queues `fn` for `rc` on `pool`. A hashing request counts against its
 * client address (and account, when signed in): none may hold more than
 * its share of the hash pool (README "Security"). */
static enum workpool_refusal submit(struct req_ctx *rc,
                                    struct workpool *pool, workpool_fn fn)
{
    char key[NETADDR_KEY_LEN];

    if (pool != rc->app->pool)
        return workpool_submit(pool, fn, rc) ? WORKPOOL_QUEUED
                                             : WORKPOOL_FULL;
    netaddr_client_key(rc->ip, key);
    return workpool_submit_for(pool, fn, rc, key,
                               rc->authed ? rc->claims.sub : NULL);
}

static void refuse_busy(struct req_ctx *rc, enum workpool_refusal why)
{
    if (why == WORKPOOL_CLIENT_FULL) {
        res_header(rc, "Retry-After", "1");
        rc->err = AS_ERR_RATE_LIMITED;
        rc->res.detail = "Too many requests from this client are already "
                         "being processed; retry shortly.";
        return;
    }
    rc->err = AS_ERR_OVERLOADED;
    rc->res.detail = "The server is busy; retry shortly.";
}

/* A hashing request the full pool dropped to make room for a client with
 * fewer waiting (src/workpool.c): answered 503 overloaded, never run. */
static void dropped(void *arg)
{
    struct req_ctx *rc = arg;

    refuse_busy(rc, WORKPOOL_FULL);
    resume_answered(rc);
}

/* A request whose session was not in the cache, on a database worker:
 * authenticated here (this may wait on the database), then run as
 * dispatch() would have run it. */
static void authn_offloaded(void *arg)
{
    struct req_ctx *rc = arg;
    bool stop = cancelled(rc);
    enum as_err err = stop ? AS_OK : authn_route(rc);

    if (stop) {
        ;                                   /* cancelled() answered */
    } else if (err == AS_OK && (rc->route->flags & RF_OFFLOAD)) {
        enum workpool_refusal why = submit(rc, rc->app->pool, offloaded);

        if (why == WORKPOOL_QUEUED)
            return;
        refuse_busy(rc, why);
    } else if (err == AS_OK && (rc->route->flags & RF_DB)) {
        offloaded(rc);
        return;
    } else if (err == AS_OK) {
        run_handler(rc);
    } else {
        rc->err = err;
    }
    resume_answered(rc);
}

/* Takes a token for a credential route; false (rc->err set, Retry-After
 * added) when the client's bucket is empty. Runs before authentication
 * and before the work pool, so a flood never reaches Argon2. */
static bool rate_ok(struct server *srv, struct req_ctx *rc)
{
    unsigned retry = 0;
    char value[16];

    if (!(rc->route->flags & RF_CREDENTIAL) ||
        ratelimit_take(srv->limiter, rc->ip, clock_mono_ms(), &retry))
        return true;
    snprintf(value, sizeof value, "%u", retry);
    res_header(rc, "Retry-After", value);
    rc->err = AS_ERR_RATE_LIMITED;
    rc->res.detail = "Too many requests from this address; retry later.";
    return false;
}

/* An HTTP thread never waits on the database: a request that needs it,
 * for its route or to check its session (not in the session cache), is
 * suspended and finished on a worker; a cached session (the fast path of
 * /verify) is answered here. */

static enum MHD_Result dispatch(struct server *srv, struct req_ctx *rc)
{
    enum workpool_refusal refusal;
    enum as_err err;
    bool pending = false;
    struct workpool *pool;
    workpool_fn fn = offloaded;

    if (!rate_ok(srv, rc))
        return respond(rc);
    err = authn_route_nowait(rc, &pending);
    if (err != AS_OK) {
        rc->err = err;
        return respond(rc);
    }
    if (!pending && !(rc->route->flags & (RF_OFFLOAD | RF_DB))) {
        run_handler(rc);
        return respond(rc);
    }
    if (!pending && (rc->route->flags & RF_CACHED)) {
        rc->nowait = true;            /* from the caches, or not at all */
        run_handler(rc);
        rc->nowait = false;
        if (!rc->need_db)
            return respond(rc);
    }
    if ((rc->route->flags & (RF_OFFLOAD | RF_DB)) &&
        db_refused(rc->app->repo, false)) {
        refuse_unavailable(rc);
        return respond(rc);
    }
    pool = rc->route->flags & RF_OFFLOAD ? rc->app->pool : rc->app->db_pool;
    if (pending) {
        pool = rc->app->db_pool;
        fn = authn_offloaded;
    }
    atomic_fetch_add(&suspended, 1);
    if (atomic_load(&sealed)) {
        atomic_fetch_sub(&suspended, 1);
        rc->err = AS_ERR_UNAVAILABLE;
        rc->res.detail = "The server is stopping; retry shortly.";
        return respond(rc);
    }
    rc->state = ST_WORKING;
    MHD_suspend_connection(rc->conn);
    refusal = submit(rc, pool, fn);
    if (refusal != WORKPOOL_QUEUED) {
        refuse_busy(rc, refusal);
        rc->state = ST_DONE;
        MHD_resume_connection(rc->conn);
        atomic_fetch_sub(&suspended, 1);
    }
    return MHD_YES;
}

/* After an early error, the body a client already sent is read and
 * dropped (up to this much) before answering, so the answer is not lost
 * to a reset from closing a socket with unread data. */
#define DISCARD_MAX (1024u * 1024u)

/* True when the request announces a body we can afford to drain. */
static bool drainable_body(struct req_ctx *rc)
{
    const char *cl = req_header(rc, "Content-Length");
    uint64_t len = 0;

    if (rc->err == AS_ERR_BAD_REQUEST)
        return false;                           /* framing is in doubt */
    if (req_header(rc, "Transfer-Encoding"))
        return true;
    return cl && parse_length(cl, &len) && len > 0 && len <= DISCARD_MAX;
}

/* True when the request has no body at all (none announced, or an empty
 * one): its answer, decided early, waits for libmicrohttpd's last call so
 * the connection stays open for the next request (an answer queued
 * before the request is complete makes libmicrohttpd 0.9.75 close it). */
static bool bodiless(struct req_ctx *rc)
{
    const char *cl = req_header(rc, "Content-Length");
    uint64_t len = 0;

    if (req_header(rc, "Transfer-Encoding"))
        return false;
    return !cl || (parse_length(cl, &len) && len == 0);
}

/* True when the client waits for `100 Continue` before its body: an early
 * answer then goes out at once, and no `100 Continue` is sent. */
static bool expects_continue(struct req_ctx *rc)
{
    const char *e = req_header(rc, "Expect");

    return e && strcasecmp(e, "100-continue") == 0;
}

/* ---- connections: the header deadline and the per-prefix limit ---- */

static struct cg_conn *conn_guard(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci ? ci->socket_context : NULL;
}

static int conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

    return ci ? (int)ci->connect_fd : -1;
}

/* How long libmicrohttpd keeps `conn` idle between requests: until it
 * is parked (PARK_AFTER_S), or, for a connection that cannot be (on a
 * Unix socket: a keep-alive connection of a proxy there was closed after
 * 2 s idle), AUTH_CONNECTION_TIMEOUT. */
static unsigned idle_timeout(const struct server *srv,
                             struct MHD_Connection *conn)
{
    return connguard_parkable(conn_guard(conn)) ? PARK_AFTER_S
                                                : srv->timeout_s;
}

/* Records each new connection, refusing one past the per-address (IPv6:
 * per /64) limit, and forgets it before libmicrohttpd closes its socket. */
static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct server *srv = cls;
    const union MHD_ConnectionInfo *ci;
    int fd;

    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (!srv->parking ||
            !connguard_park(srv->guard, *socket_context, conn_fd(conn),
                            clock_mono_ms()))
            connguard_close(srv->guard, *socket_context);
        *socket_context = NULL;
        return;
    }
    fd = conn_fd(conn);
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    *socket_context = connguard_open(srv->guard, ci ? ci->client_addr : NULL,
                                     fd, connguard_tcp_rx(fd),
                                     clock_mono_ms());
    if (!*socket_context && fd >= 0)
        (void)shutdown(fd, SHUT_RDWR);  /* the server sees EOF and closes */
    else if (srv->parking && !connguard_parkable(*socket_context))
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  srv->timeout_s);
}

/* True when the query string alone holds more argument records than
 * leave the reply room in the pool (see REPLY_ROOM): libmicrohttpd
 * (0.9.75) parses them before any handler runs, and when they fill its
 * pool it can neither store them nor answer, and leaves the connection
 * without a word until a timeout. */
static bool query_leaves_no_room(const char *uri)
{
    const char *q = strchr(uri, '?');
    size_t args = 1;

    if (!q || !q[1])
        return false;
    for (q++; *q; q++)
        args += *q == '&';              /* empty ones are records too */
    return POOL_SLACK_BYTES + strlen(uri) + args * POOL_RECORD_BYTES +
               REPLY_ROOM >
           HEADER_POOL_BYTES;
}

/* RFC 9112 3.2, read raw (libmicrohttpd decodes the target in place
 * before the handler sees it, and `%2Fhealthz` decodes to a path): a
 * target in origin form, `*` (OPTIONS only: checked once the method is
 * known), or in absolute form with the http or https scheme, a host and
 * no user part (RFC 9110 4.2.1, 4.2.4). */
static bool target_form_ok(const char *uri)
{
    const char *auth = target_authority(uri);
    size_t n;

    if (uri[0] == '/' || strcmp(uri, "*") == 0)
        return true;
    if (!auth)
        return false;
    n = strcspn(auth, "/?#");
    return n > 0 && !memchr(auth, '@', n);
}

/* The request line has arrived: the request's first byte came no later.
 * A target with a blank in it is answered 400 here, and a query string
 * of too many arguments 431, before libmicrohttpd parses it, and the
 * connection is shut down (the
 * request's context, returned, is logged and freed on completion).
 * `uri` is libmicrohttpd's own buffer. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct server *srv = cls;
    struct req_ctx *rc;
    char *q;
    int fd;
    bool spaced, nul, form;

    connguard_request_line(srv->guard, conn_guard(conn), clock_mono_ms(),
                           strnlen(uri, HEADER_POOL_BYTES));
    if (srv->parking)                   /* a request: its own timeout */
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  srv->timeout_s);
    /* libmicrohttpd, told to be lenient (see start), takes a target with
     * blanks in it up to the last blank before the version: RFC 9112 3.2
     * has no blank in a request target, nor any other control character
     * or DEL (RFC 3986 2). */
    spaced = uri[strcspn(uri, "\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b"
                              "\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15"
                              "\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"
                              " \x7f")] != '\0';
    /* An encoded NUL ends the decoded path or argument where it stands:
     * `/metrics%00.js` would be served as `/metrics` (and a proxy or cache
     * in front matching on the suffix would see another resource). */
    nul = strstr(uri, "%00") != NULL;
    form = uri[0] && !target_form_ok(uri);  /* none: a NUL (begin()) */
    if (!spaced && !nul && !form && !query_leaves_no_room(uri))
        return NULL;
    /* the method is not given yet */
    rc = req_new(srv->app, conn, spaced || nul || form ? "/" : uri, "GET");
    fd = conn_fd(conn);
    if (rc) {
        atomic_fetch_add(&srv->inflight, 1);
        rc->err = spaced || nul || form ? AS_ERR_BAD_REQUEST
                                        : AS_ERR_HEADERS_TOO_LARGE;
        rc->res.detail = spaced ? "The request target has a blank or "
                                  "another control character in it."
                         : nul ? "The request target holds an encoded NUL "
                                 "(%00)."
                         : form ? "The request target must be a path "
                                  "beginning with '/' (or an http or "
                                  "https URL with a host)."
                                : "The query string has more arguments "
                                  "than the server accepts.";
        (void)respond_raw(rc);
        raw_answered = false;           /* no MHD_NO to log about */
    }
    /* Left to parse, the arguments would fill the pool, and then
     * libmicrohttpd stops reading the connection until its timeout: the
     * query is cut where it lies, in libmicrohttpd's read buffer (its
     * own to change before it parses it). */
    q = strchr(uri, '?');
    if (q)
        q[1] = '\0';
    if (fd >= 0)
        (void)shutdown(fd, SHUT_RDWR);  /* libmicrohttpd sees EOF, closes */
    return rc;
}

/* False when the request target libmicrohttpd parsed is longer than the
 * one on_uri() read up to its first NUL: a NUL in the target, which cut
 * the path or query there (`/users/me<NUL>.css` was served as
 * `/users/me`, and a cache in front matching on the suffix would have
 * kept it). libmicrohttpd (0.9.75) parses the request line in place:
 * the target is `url` up to the NUL it wrote over the blank before the
 * version; `url` itself is decoded in place by now, hence the length
 * recorded before. */
static bool target_whole(struct server *srv, struct MHD_Connection *conn,
                         const char *url, const char *version)
{
    uintptr_t u = (uintptr_t)url, v = (uintptr_t)version;
    size_t read_len;

    if (!url || !version || v <= u || v - u > HEADER_POOL_BYTES ||
        !connguard_target(srv->guard, conn_guard(conn), &read_len))
        return true;                    /* not known: as before */
    return read_len == v - u - 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version,
                                  const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct server *srv = cls;
    struct req_ctx *rc = *con_cls;
    size_t n = *upload_data_size;

    if (rc && rc->answered_raw) {
        if (rc->state == ST_DRAIN && n > 0 &&
            (rc->discarded += n) <= DISCARD_MAX) {
            *upload_data_size = 0;
            return MHD_YES;
        }
        raw_answered = true;            /* answered by respond_raw() */
        return MHD_NO;
    }
    if (!rc) {
        connguard_headers_done(srv->guard, conn_guard(conn),
                               clock_mono_ms());
        rc = req_new(srv->app, conn, url, method);
        if (!rc)
            return MHD_NO;
        *con_cls = rc;
        atomic_fetch_add(&srv->inflight, 1);
        if (begin(rc, method, version, target_whole(srv, conn, url,
                                                    version))) {
            rc->state = ST_BODY;
            return MHD_YES;
        }
        if (rc->err != AS_ERR_BAD_REQUEST && !closing(rc) &&
            bodiless(rc)) {
            rc->state = ST_DISCARD;     /* answered on the last call */
            return MHD_YES;
        }
        if (!drainable_body(rc) || expects_continue(rc))
            return respond(rc);
        if (rc->err == AS_ERR_TOO_LARGE)
            return refuse_large(rc);
        rc->state = ST_DISCARD;
        return MHD_YES;
    }
    *upload_data_size = 0;
    if (n == 0)                     /* the whole body is in (or none came) */
        connguard_body_done(srv->guard, conn_guard(conn));
    switch (__atomic_load_n(&rc->state, __ATOMIC_ACQUIRE)) {
    case ST_BODY:
        if (n == 0 && !trailers_ok(rc, method))
            return respond(rc);
        if (n == 0)
            return dispatch(srv, rc);
        if (body_append(rc, upload_data, n))
            return MHD_YES;
        rc->err = AS_ERR_TOO_LARGE;
        rc->res.detail = "The request body is larger than the server "
                         "accepts.";
        rc->discarded = rc->body_len;
        return refuse_large(rc);
    case ST_DISCARD:
        rc->discarded += n;
        if (n == 0)
            return respond(rc);
        /* Past the limit the body is not read on: libmicrohttpd (0.9.75)
         * queues no answer in the middle of a body, so it is written to
         * the socket here and the connection closed. */
        if (rc->discarded > DISCARD_MAX)
            return respond_raw(rc);
        return MHD_YES;
    case ST_DONE:
        return respond(rc);
    default:                              /* answered: drop the rest */
        return MHD_YES;
    }
}

/* The longest method the access log shows ("UPDATEREDIRECTREF", the
 * longest registered, has 17 characters). */
#define METHOD_SHOWN_MAX 32

/* An HTTP method as the access log shows it: the client's bytes when
 * they are an RFC 9110 token, else "(invalid)" (never bytes that are
 * not UTF-8 in a JSON line), and "(too long)" past METHOD_SHOWN_MAX: a
 * method fills what the request line may hold, and every line of a
 * client's made-up ones would carry kilobytes of it. */
static const char *method_shown(const char *m)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    const char *p;

    for (p = m; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9') || strchr(tchar, *p)))
            return "(invalid)";
    if (p - m > METHOD_SHOWN_MAX)
        return "(too long)";
    return p == m ? "(invalid)" : m;
}

/* The request's http.access line, written without a jansson tree: at
 * the default level every request writes one (README.md,
 * "Performance"). */
static void access_log(const struct req_ctx *rc, uint64_t us, bool done,
                       const char *error)
{
    struct log_line l;
    char ms[32];

    if (!log_begin(&l, LOG_INFO, "http.access", rc->request_id))
        return;
    snprintf(ms, sizeof ms, "%" PRIu64 ".%03u", us / 1000,
             (unsigned)(us % 1000));
    jw_str(&l.w, "method", method_shown(rc->method));
    jw_str(&l.w, "route", rc->route_pattern ? rc->route_pattern
                                            : "(unmatched)");
    jw_int(&l.w, "status", (int64_t)rc->res.status);
    jw_raw(&l.w, "duration_ms", ms);
    jw_str(&l.w, "ip", rc->ip);
    jw_bool(&l.w, "completed", done);
    if (error)
        jw_str(&l.w, "error", error);
    log_end(&l);
}

/* libmicrohttpd's word on a request whose answer it could not send
 * ("Failed to send the response headers for the request for `/x'. ..."):
 * kept by mhd_log() until the request's completion, which libmicrohttpd
 * reports next on the same thread, so that it goes into that request's
 * access line with its request id (README "Operations": every line of a
 * request carries its id). */
static _Thread_local char send_failed[512];

/* The kept message as a line of its own, when no request takes it. */
static void send_failed_flush(void)
{
    if (send_failed[0])
        log_event(LOG_WARN, "http.server", NULL,
                  json_pack("{s:s}", "message", send_failed));
    send_failed[0] = '\0';
}

static void on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct server *srv = cls;
    struct req_ctx *rc = *con_cls;
    uint64_t us;

    connguard_request_done(srv->guard, conn_guard(conn),
                           connguard_tcp_rx(conn_fd(conn)), clock_mono_ms());
    if (srv->parking)                   /* idle: parked after PARK_AFTER_S */
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  idle_timeout(srv, conn));
    if (!rc || toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        send_failed_flush();            /* not this request's */
    if (!rc)
        return;
    us = now_us() - rc->t0_us;
    if (!rc->route && rc->other_route)
        metrics_request_other(srv->app->metrics, rc->other_route,
                              rc->res.status, us);
    else
        metrics_request(srv->app->metrics, rc->route, rc->res.status, us);
    access_log(rc, us, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK,
               send_failed[0] ? send_failed : NULL);
    send_failed[0] = '\0';
    req_free(rc);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->inflight, 1);
}

/* libmicrohttpd's last word before it aborts the process (an internal
 * invariant broken): logged, so the reason is in the log, then abort as
 * libmicrohttpd itself would. */
static void mhd_panic(void *cls, const char *file, unsigned int line,
                      const char *reason)
{
    (void)cls;
    log_event(LOG_ERROR, "http.panic", NULL,
              json_pack("{s:s?, s:i, s:s?}", "file", file, "line", (int)line,
                        "reason", reason));
    abort();
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (raw_answered) {
        /* respond_raw()'s MHD_NO, which libmicrohttpd calls an
         * application error while closing: the access log has the 431. */
        raw_answered = false;
        if (strncmp(msg, "Application reported internal error", 35) == 0)
            return;
    }
    n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    send_failed_flush();                /* one kept before: unclaimed */
    if (strstr(msg, "request for ")) {  /* see send_failed */
        memcpy(send_failed, msg, n + 1);
        return;
    }
    log_event(LOG_WARN, "http.server", NULL, json_pack("{s:s}", "message",
                                                       msg));
}

/* Resolves cfg host/port into a socket address. */
static bool listen_addr(const struct cfg *cfg, struct sockaddr_storage *ss,
                        bool *v6)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)(void *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)ss;
    const char *host = strcmp(cfg->host, "localhost") == 0 ? "127.0.0.1"
                                                           : cfg->host;

    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)cfg->port);
        *v6 = false;
        return true;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)cfg->port);
        *v6 = true;
        return true;
    }
    return false;
}

/* Raises the open-file limit to its hard limit, so that the connection
 * limits, not the descriptors, decide who waits; warns when even that is
 * too low for AUTH_MAX_CONNECTIONS, or when a few addresses at their
 * per-address limit could hold every connection (README.md,
 * "Connections"). */
static void raise_fd_limit(const struct cfg *cfg)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)cfg->max_connections + 64u)
        log_event(LOG_WARN, "server.fd_limit", NULL,
                  json_pack("{s:I, s:i}", "limit", (json_int_t)rl.rlim_cur,
                            "max_connections", (int)cfg->max_connections));
    if (cfg->max_connections_per_ip &&
        (uint64_t)cfg->max_connections_per_ip * 8u >= cfg->max_connections)
        log_event(LOG_WARN, "server.connection_limits", NULL,
                  json_pack("{s:s}", "message",
                            "AUTH_MAX_CONNECTIONS_PER_IP x 8 is not below "
                            "AUTH_MAX_CONNECTIONS: a few addresses can "
                            "hold every connection"));
}

/* Gives a parked connection, its next request's bytes waiting, back to
 * libmicrohttpd (from the guard's thread; the library queues it for its
 * own). */
static bool unpark(int fd, const struct sockaddr *sa, socklen_t len,
                   void *arg)
{
    struct server *s = arg;

    return MHD_add_connection(s->d, fd, sa, len) == MHD_YES;
}

/* libmicrohttpd's own connection limit, which the connection guard's
 * (AUTH_MAX_CONNECTIONS, parked connections included) keeps it from
 * reaching: 0.9.75 divides it among its threads, and a thread at its
 * share when it takes in a connection given back by the guard
 * (MHD_add_connection()) returns with a mutex locked, and waits on it
 * forever at its next lock: its connections are never served again and
 * a stop never ends. Each thread may hold every connection the guard
 * lets in, plus those the guard refused that it has not closed yet (at
 * most 10 taken in per loop, closed the loop after). */
static unsigned mhd_limit(const struct cfg *cfg)
{
    uint64_t per = (uint64_t)cfg->max_connections + 256u;
    uint64_t all = per * (cfg->threads > 1 ? cfg->threads : 1u);

    return all < UINT32_MAX / 2 ? (unsigned)all : UINT32_MAX / 2;
}

/* How long server_stop() waits, past its grace, for the requests that
 * are running to finish once the queued ones are cancelled: the longest
 * a worker's job takes (a hash, a database call within its timeout),
 * and within systemd's stop timeout (config/auth-serve.service). */
#define STOP_CANCEL_MS 8000u

/* The most hashing requests one client may have queued or running: an
 * eighth of the queue, at least 2. */
static unsigned hash_share(const struct cfg *cfg)
{
    return cfg->hash_queue / 8 > 2 ? cfg->hash_queue / 8 : 2;
}

struct server *server_start(struct app *app)
{
    const struct cfg *cfg = app->cfg;
    struct server *s = calloc(1, sizeof *s);
    struct sockaddr_storage ss;
    const union MHD_DaemonInfo *info;
    struct MHD_OptionItem where[] = {
        { MHD_OPTION_SOCK_ADDR, 0, &ss },
        { MHD_OPTION_END, 0, NULL },
    };
    /* One HTTP thread is the polling thread itself: libmicrohttpd warns
     * about a pool of one, so none is asked for. */
    struct MHD_OptionItem pool[] = {
        { cfg->threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
          (intptr_t)cfg->threads, NULL },
        { MHD_OPTION_END, 0, NULL },
    };
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_ITC |
                     MHD_USE_TURBO;
    bool v6 = false;

    MHD_set_panic_func(mhd_panic, NULL);
    /* one server a process, but a stop's flags never outlive it */
    atomic_store(&stopping, false);
    atomic_store(&cancelling, false);
    atomic_store(&sealed, false);
    if (!s)
        return NULL;
    s->app = app;
    s->limiter = ratelimit_new(cfg->rate_limit_per_minute,
                               RATELIMIT_ENTRIES);
    if (!s->limiter ||
        !workpool_limit_clients(app->pool, hash_share(cfg))) {
        ratelimit_free(s->limiter);
        free(s);
        return NULL;
    }
    workpool_on_drop(app->pool, dropped);
    s->guard = connguard_new((uint64_t)cfg->header_timeout * 1000u,
                             (uint64_t)cfg->body_timeout * 1000u,
                             cfg->max_connections_per_ip,
                             cfg->max_connections);
    if (s->guard && app->listen_fd >= 0) {  /* socket activation: no bind */
        socklen_t len = sizeof ss;

        where[0].option = MHD_OPTION_LISTEN_SOCKET;
        where[0].value = app->listen_fd;
        where[0].ptr_value = NULL;
        v6 = getsockname(app->listen_fd, (struct sockaddr *)&ss, &len) == 0 &&
             ss.ss_family == AF_INET6;
    } else if (!s->guard || !listen_addr(cfg, &ss, &v6)) {
        log_event(LOG_ERROR, "server.failed", NULL,
                  json_pack("{s:s}", "reason", s->guard ? "bad AUTH_HOST"
                                                        : "out of memory"));
        connguard_free(s->guard);
        ratelimit_free(s->limiter);
        free(s);
        return NULL;
    }
    raise_fd_limit(cfg);
    s->timeout_s = cfg->connection_timeout;
    s->parking = cfg->connection_timeout > PARK_AFTER_S;
    if (s->parking)
        connguard_set_parking(s->guard,
                              (uint64_t)cfg->connection_timeout * 1000u,
                              PARK_AFTER_S * 1000u / 2u, unpark, s);
    if (v6)
        flags |= MHD_USE_IPv6;
    app->limiter = s->limiter;          /* before the first request */
    s->d = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,      /* first: see MHD */
        MHD_OPTION_ARRAY, where,            /* address or passed socket */
        MHD_OPTION_ARRAY, pool,             /* none for one thread */
        MHD_OPTION_CONNECTION_LIMIT, mhd_limit(cfg),
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,  /* per /64 too */
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_CONNECTION_TIMEOUT,
        s->parking ? PARK_AFTER_S : (unsigned)cfg->connection_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HEADER_POOL_BYTES,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        /* Lenient (0): libmicrohttpd 0.9.75's strict level answers an
         * HTTP/1.1 request without Host with its status line and headers
         * sent twice, and refuses a blank in the target without a word;
         * framing_checks() and on_uri() refuse both themselves, with a
         * problem document. Nothing else depends on the level there. */
        MHD_OPTION_STRICT_FOR_CLIENT, (int)0,
        MHD_OPTION_END);
    if (!s->d) {
        log_event(LOG_ERROR, "server.failed", NULL,
                  json_pack("{s:s, s:s, s:i}", "reason",
                            "cannot listen there (the http.server line "
                            "before says why: in use, not this host's)",
                            "host",
                            cfg->host, "port", (int)cfg->port));
        connguard_free(s->guard);
        app->limiter = NULL;
        ratelimit_free(s->limiter);
        free(s);
        return NULL;
    }
    if (!connguard_start(s->guard, 250)) {       /* no deadline: no serving */
        log_event(LOG_ERROR, "server.failed", NULL,
                  json_pack("{s:s}", "reason",
                            "cannot start the header deadline thread"));
        MHD_stop_daemon(s->d);
        connguard_free(s->guard);
        app->limiter = NULL;
        ratelimit_free(s->limiter);
        free(s);
        return NULL;
    }
    info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : cfg->port;
    if (app->listen_fd >= 0)            /* the passed socket's, not ours */
        s->port = ss.ss_family == AF_INET6
                      ? ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port)
                  : ss.ss_family == AF_INET
                      ? ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port)
                      : 0;
    log_event(LOG_INFO, "server.started", NULL,
              json_pack("{s:s, s:i, s:i, s:s}", "host", cfg->host, "port",
                        (int)s->port, "threads", (int)cfg->threads,
                        "version", AUTH_VERSION));
    return s;
}

unsigned server_port(const struct server *s)
{
    return s->port;
}

int server_listen_fd(const struct server *s)
{
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_LISTEN_FD);

    return info ? (int)info->listen_fd : -1;
}

/* Waits until `*count` (requests in flight, or suspended) is 0 or
 * `deadline` (monotonic ms) has passed; true when it is 0. */
static bool none_left(atomic_uint *count, uint64_t deadline)
{
    while (atomic_load(count) > 0 && clock_mono_ms() < deadline) {
        struct timespec ts = { 0, 5 * 1000 * 1000 };

        nanosleep(&ts, NULL);
    }
    return atomic_load(count) == 0;
}

void server_stop(struct server *s, unsigned grace_ms)
{
    uint64_t deadline = clock_mono_ms() + grace_ms;
    MHD_socket fd;

    if (!s)
        return;
    atomic_store(&stopping, true);
    mhdepoll_quiescing(server_listen_fd(s));
    fd = MHD_quiesce_daemon(s->d);
    /* Stop accepting now, not at exit: a socket left listening while the
     * requests in flight finish took new connections into its queue, and
     * their clients waited for the grace, then met a reset (a proxy
     * cannot send a request it already sent elsewhere; a refused connect
     * it can). shutdown(), not close(): the descriptor stays valid for
     * libmicrohttpd's threads that still take it out of their epoll sets
     * (see mhdepoll.c). A socket passed by socket activation is left
     * listening: systemd holds it, and its queue is for the next start. */
    if (fd != MHD_INVALID_SOCKET && s->app->listen_fd < 0)
        (void)shutdown(fd, SHUT_RDWR);
    /* The guard's deadlines hold while draining: a client sending its
     * body a byte a second would otherwise hold the stop past the grace
     * and past the cancel below, to an exit with status 1. */
    connguard_quiesce(s->guard);
    if (!none_left(&s->inflight, deadline)) {
        /* Past the grace, requests still queued for a worker (a backlog
         * of logins, say) are answered 503 without being run, and those
         * running finish: libmicrohttpd may not be stopped with a
         * connection suspended (it aborts the process). A request still
         * being sent has not run either: its connection is shut, as
         * the exit would (AUTH_BODY_TIMEOUT may be longer than the
         * grace). */
        log_event(LOG_WARN, "server.stop_cancelling", NULL,
                  json_pack("{s:i, s:i}", "in_flight",
                            (int)atomic_load(&s->inflight), "unread",
                            (int)connguard_cut_unread(s->guard)));
        atomic_store(&cancelling, true);
        if (!none_left(&s->inflight, clock_mono_ms() + STOP_CANCEL_MS)) {
            log_event(LOG_ERROR, "server.stop_stuck", NULL,
                      json_pack("{s:i}", "in_flight",
                                (int)atomic_load(&s->inflight)));
            _exit(EXIT_FAILURE);
        }
    }
    /* what came after the drain: answered 503 from here, or if queued */
    atomic_store(&sealed, true);
    atomic_store(&cancelling, true);
    if (!none_left(&suspended, clock_mono_ms() + STOP_CANCEL_MS)) {
        log_event(LOG_ERROR, "server.stop_stuck", NULL,
                  json_pack("{s:i}", "suspended",
                            (int)atomic_load(&suspended)));
        _exit(EXIT_FAILURE);
    }
    connguard_stop(s->guard);
    MHD_stop_daemon(s->d);
    mhdepoll_quiescing(-1);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    log_event(LOG_INFO, "server.stopped", NULL,
              json_pack("{s:i}", "unfinished", (int)atomic_load(
                                                   &s->inflight)));
    connguard_free(s->guard);
    s->app->limiter = NULL;
    ratelimit_free(s->limiter);
    free(s);
}
