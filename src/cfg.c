/* cfg.c: configuration from defaults, an optional .env file and the
 * environment, every value range-checked once before any thread starts. */
#include "cfg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "crypto.h"
#include "fsperm.h"

#include "log.h"
#include "netaddr.h"
#include "utf8.h"
#include "mail.h"

enum var_type { T_STR, T_UINT, T_ALG, T_LEVEL, T_FORMAT };
enum var_check { C_NONE, C_HOST, C_DBURL, C_URL, C_SMTP, C_CIDRS,
                 C_ORIGINS, C_NONEMPTY, C_RP_ID, C_WA_ORIGINS };

#define SECRET 1u

struct cfg_var {
    const char *name;
    enum var_type type;
    size_t off;
    const char *def;              /* NULL: unset */
    unsigned long min, max;       /* T_UINT */
    unsigned flags;
    enum var_check check;
};

#define F(field) offsetof(struct cfg, field)
static const struct cfg_var vars[] = {
    { "AUTH_HOST", T_STR, F(host), "127.0.0.1", 0, 0, 0, C_HOST },
    { "AUTH_PORT", T_UINT, F(port), "8000", 0, 65535, 0, C_NONE },
    { "AUTH_DATA_DIR", T_STR, F(data_dir), "./data", 0, 0, 0, C_NONEMPTY },
    { "AUTH_DATABASE_URL", T_STR, F(database_url), NULL, 0, 0, SECRET,
      C_DBURL },
    { "AUTH_JWT_ALG", T_ALG, F(jwt_alg), "ES256", 0, 0, 0, C_NONE },
    { "AUTH_JWT_SECRET", T_STR, F(jwt_secret), NULL, 0, 0, SECRET, C_NONE },
    { "AUTH_JWT_KEY_FILE", T_STR, F(jwt_key_file), NULL, 0, 0, 0,
      C_NONEMPTY },
    { "AUTH_JWT_ISSUER", T_STR, F(jwt_issuer), "auth-serve", 0, 0, 0,
      C_NONEMPTY },
    { "AUTH_JWT_AUDIENCE", T_STR, F(jwt_audience), "auth-serve", 0, 0, 0,
      C_NONEMPTY },
    { "AUTH_ACCESS_TOKEN_TTL", T_UINT, F(access_ttl), "900", 30,
      CFG_ACCESS_TTL_MAX, 0,
      C_NONE },
    { "AUTH_REFRESH_TOKEN_TTL", T_UINT, F(refresh_ttl), "2592000", 60,
      31536000, 0, C_NONE },
    { "AUTH_ARGON2_MEMORY_KIB", T_UINT, F(argon2_memory_kib), "19456", 8,
      4194304, 0, C_NONE },
    { "AUTH_ARGON2_ITERATIONS", T_UINT, F(argon2_iterations), "2", 1, 64, 0,
      C_NONE },
    { "AUTH_MAX_BODY_BYTES", T_UINT, F(max_body_bytes), "16384", 256,
      1048576, 0, C_NONE },
    { "AUTH_PASSWORD_MIN_LENGTH", T_UINT, F(password_min_length), "8", 1,
      128, 0, C_NONE },
    { "AUTH_HASH_WORKERS", T_UINT, F(hash_workers), "0", 0, 256, 0,
      C_NONE },
    { "AUTH_HASH_QUEUE", T_UINT, F(hash_queue), "64", 1, 100000, 0,
      C_NONE },
    { "AUTH_RATE_LIMIT_PER_MINUTE", T_UINT, F(rate_limit_per_minute), "30",
      0, 1000000, 0, C_NONE },
    { "AUTH_LOCKOUT_THRESHOLD", T_UINT, F(lockout_threshold), "10", 1, 1000,
      0, C_NONE },
    { "AUTH_LOCKOUT_MAX_SECONDS", T_UINT, F(lockout_max_seconds), "900", 1,
      86400, 0, C_NONE },
    { "AUTH_TRUSTED_PROXIES", T_STR, F(trusted_proxies), NULL, 0, 0, 0,
      C_CIDRS },
    { "AUTH_SESSION_CACHE_SECONDS", T_UINT, F(session_cache_seconds), "5",
      0, 3600, 0, C_NONE },
    { "AUTH_REFRESH_REUSE_GRACE_SECONDS", T_UINT,
      F(refresh_reuse_grace_seconds), "10", 0, 3600, 0, C_NONE },
    { "AUTH_INTROSPECTION_TOKEN", T_STR, F(introspection_token), NULL, 0, 0,
      SECRET, C_NONEMPTY },
    { "AUTH_CORS_ORIGINS", T_STR, F(cors_origins), NULL, 0, 0, 0,
      C_ORIGINS },
    { "AUTH_CB_FAILURE_THRESHOLD", T_UINT, F(cb_failure_threshold), "5", 1,
      1000, 0, C_NONE },
    { "AUTH_CB_OPEN_SECONDS", T_UINT, F(cb_open_seconds), "10", 1, 3600, 0,
      C_NONE },
    { "AUTH_SMTP_URL", T_STR, F(smtp_url), NULL, 0, 0, SECRET, C_SMTP },
    { "AUTH_SMTP_FROM", T_STR, F(smtp_from), NULL, 0, 0, 0, C_NONEMPTY },
    { "AUTH_SMTP_USER", T_STR, F(smtp_user), NULL, 0, 0, 0, C_NONEMPTY },
    { "AUTH_SMTP_PASSWORD", T_STR, F(smtp_password), NULL, 0, 0, SECRET,
      C_NONE },
    /* A webhook URL often carries its credential (user:password, a path
     * or query token): logged as its origin only. */
    { "AUTH_NOTIFY_WEBHOOK_URL", T_STR, F(notify_webhook_url), NULL, 0, 0,
      SECRET, C_URL },
    { "AUTH_NOTIFY_WEBHOOK_SECRET", T_STR, F(notify_webhook_secret), NULL,
      0, 0, SECRET, C_NONE },
    { "AUTH_PUBLIC_URL", T_STR, F(public_url), "http://127.0.0.1:8000", 0, 0,
      0, C_URL },
    { "AUTH_LOG_LEVEL", T_LEVEL, F(log_level), "info", 0, 0, 0, C_NONE },
    { "AUTH_LOG_FORMAT", T_FORMAT, F(log_format), "json", 0, 0, 0, C_NONE },
    { "AUTH_THREADS", T_UINT, F(threads), "0", 0, 256, 0, C_NONE },
    { "AUTH_MAX_CONNECTIONS", T_UINT, F(max_connections), "1024", 1, 65536,
      0, C_NONE },
    { "AUTH_MAX_CONNECTIONS_PER_IP", T_UINT, F(max_connections_per_ip),
      "64", 0, 65536, 0, C_NONE },
    { "AUTH_CONNECTION_TIMEOUT", T_UINT, F(connection_timeout), "15", 1,
      3600, 0, C_NONE },
    { "AUTH_DB_POOL_SIZE", T_UINT, F(db_pool_size), "8", 1, 256, 0,
      C_NONE },
    { "AUTH_DB_TIMEOUT_MS", T_UINT, F(db_timeout_ms), "5000", 100, 600000,
      0, C_NONE },
    { "AUTH_SESSION_MAX_SECONDS", T_UINT, F(session_max_seconds), "7776000",
      60, 315360000, 0, C_NONE },
    /* at most what GET /sessions lists (REPO_SESSION_LIST_MAX) */
    { "AUTH_MAX_SESSIONS_PER_USER", T_UINT, F(max_sessions), "100", 1, 100,
      0, C_NONE },
    { "AUTH_METRICS_ALLOW", T_STR, F(metrics_allow), "127.0.0.0/8,::1", 0, 0,
      0, C_CIDRS },
    { "AUTH_KEYS_SECRET", T_STR, F(keys_secret), NULL, 0, 0, SECRET,
      C_NONE },
    { "AUTH_KEY_PUBLISH_SECONDS", T_UINT, F(key_publish_seconds), "600", 0,
      2592000, 0, C_NONE },
    { "AUTH_HEADER_TIMEOUT", T_UINT, F(header_timeout), "10", 1, 3600, 0,
      C_NONE },
    { "AUTH_BODY_TIMEOUT", T_UINT, F(body_timeout), "10", 1, 3600, 0,
      C_NONE },
    { "AUTH_MAIL_PER_RECIPIENT_PER_HOUR", T_UINT,
      F(mail_per_recipient_per_hour), "5", 1, 1000, 0, C_NONE },
    { "AUTH_WEBAUTHN_RP_ID", T_STR, F(webauthn_rp_id), NULL, 0, 0, 0,
      C_RP_ID },
    { "AUTH_WEBAUTHN_RP_NAME", T_STR, F(webauthn_rp_name), "auth-serve", 0,
      0, 0, C_NONEMPTY },
    { "AUTH_WEBAUTHN_ORIGINS", T_STR, F(webauthn_origins), NULL, 0, 0, 0,
      C_WA_ORIGINS },
};
#undef F
#define NVARS (sizeof vars / sizeof vars[0])
#define MAX_VALUE 4096            /* longest value accepted for any var */

static const char *const alg_names[] = { "ES256", "RS256", "HS256" };

const char *cfg_var_name(size_t i)
{
    return i < NVARS ? vars[i].name : NULL;
}

const char *cfg_alg_name(enum cfg_alg a)
{
    return (unsigned)a < 3 ? alg_names[a] : "?";
}

static const struct cfg_var *find_var(const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < NVARS; i++)
        if (strlen(vars[i].name) == len &&
            memcmp(vars[i].name, name, len) == 0)
            return &vars[i];
    return NULL;
}

static char **str_at(struct cfg *c, const struct cfg_var *v)
{
    return (char **)(void *)((char *)c + v->off);
}

static unsigned *uint_at(struct cfg *c, const struct cfg_var *v)
{
    return (unsigned *)(void *)((char *)c + v->off);
}

static bool parse_uint(const char *s, unsigned long min, unsigned long max,
                       unsigned *out)
{
    char *end;
    unsigned long v;

    if (!isdigit((unsigned char)s[0]) || strlen(s) > 10)
        return false;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = (unsigned)v;
    return true;
}

static bool valid_host(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1
           || strcmp(s, "localhost") == 0;
}

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static bool valid_http_url(const char *s)
{
    const char *rest;

    if (has_prefix(s, "http://"))
        rest = s + 7;
    else if (has_prefix(s, "https://"))
        rest = s + 8;
    else
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)          /* no control characters */
            return false;
    return *rest && *rest != '/' && !strpbrk(s, " \t\r\n\"<>\\");
}

/* One address or CIDR: "10.0.0.1", "10.0.0.0/8", "::1", "fd00::/8",
 * exactly as the daemon will parse it (netaddr.c). */
static bool valid_cidr(const char *s, size_t len)
{
    char tmp[64];
    struct netlist *l;

    if (len == 0 || len >= sizeof tmp)
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    l = netlist_parse(tmp);
    netlist_free(l);
    return l != NULL;
}

/* Comma-separated list, each item checked by `item` after trimming. */
static bool valid_list(const char *s, bool (*item)(const char *, size_t))
{
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *b = s, *e = s + len;

        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (!item(b, (size_t)(e - b)))
            return false;
        s = end ? end + 1 : s + len;
    }
    return true;
}

/* A WebAuthn RP ID: a host name (lower-case letters, digits, '-', '.'),
 * without scheme, port or path, and not an IP address: a host whose
 * last label is all digits is one to a browser (WHATWG URL, "ends in a
 * number"), and browsers refuse an IP address as the RP ID. */
static bool valid_rp_id(const char *s)
{
    size_t n = strlen(s);
    const char *last = strrchr(s, '.');

    last = last ? last + 1 : s;
    return n > 0 && n <= 253 && s[0] != '.' && s[n - 1] != '.' &&
           strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-.") == n &&
           strspn(last, "0123456789") != strlen(last);
}

/* Where the port of an origin's authority [host, end) begins (its ':'),
 * or NULL: after an IPv6 literal's ']', else the first ':'. */
static const char *origin_port(const char *host, const char *end)
{
    const char *p = host;

    if (*host == '[') {
        p = memchr(host, ']', (size_t)(end - host));
        if (!p)
            return NULL;
    }
    return memchr(p, ':', (size_t)(end - p));
}

/* True when [p, end) is a port a browser can have: digits, at most
 * 65535 (empty: none); its value in *n (0 when empty). */
static bool port_number(const char *p, const char *end, unsigned long *n)
{
    for (*n = 0; p < end; p++)
        if (*p < '0' || *p > '9' ||
            (*n = *n * 10 + (unsigned long)(*p - '0')) > 65535)
            return false;
    return true;
}

/* Where the host of `url` (scheme://[user@]host[:port]...) begins, and
 * in *end where its authority ends. With `loose`, the user and password
 * end at the last '@' before any query, even where they hold a '/' that
 * should have been percent-encoded: what the logs hide (url_origin()).
 * Else RFC 3986 s3.2: the authority ends at the first '/', '?' or '#',
 * and a '@' after it is the path's. */
static const char *url_authority(const char *url, bool loose,
                                 const char **end)
{
    const char *host = strstr(url, "://"), *stop, *q;

    host = host ? host + 3 : url;
    stop = host + strcspn(host, loose ? "?#" : "/?#");
    for (q = host; q < stop; q++)
        if (*q == '@')
            host = q + 1;
    *end = host + strcspn(host, "/?#");
    return host;
}

/* True when the port of the authority [host, end), if it has one, is
 * digits from 1 to 65535 or empty (the scheme's, RFC 3986 s3.2.3). */
static bool authority_port_ok(const char *host, const char *end)
{
    const char *port = origin_port(host, end);
    unsigned long n;

    return !port || port + 1 == end ||
           (port_number(port + 1, end, &n) && n >= 1);
}

/* True when the port of `url` is one (authority_port_ok()): what follows
 * the ':' is otherwise no port but a typo, or a token pasted in the
 * wrong place (README.md, "Configuration"). A '@' after a '/' is read
 * both ways: as the path's (RFC 3986), or as the end of a password
 * holding an unencoded '/', as the logs read it; either reading with a
 * port (or none) will do, and url_origin() hides a port it reads that
 * is not one, so the logs never show what is not a host and port. */
static bool url_port_ok(const char *url)
{
    const char *end, *host = url_authority(url, false, &end);
    const char *lend, *lhost = url_authority(url, true, &lend);

    return authority_port_ok(host, end) || authority_port_ok(lhost, lend);
}

/* True when the port of origin `s` is as a browser writes it in an
 * Origin header: none for the scheme's own, no leading zero, not empty.
 * CORS compares origins as strings (README.md, "Configuration"), so any
 * other spelling would pass the check and never match. */
static bool canonical_port(const char *s)
{
    const char *end, *host = url_authority(s, false, &end);
    const char *port = origin_port(host, end);

    if (!port)
        return true;
    port++;
    if (port == end || *port == '0')
        return false;
    if (has_prefix(s, "http://"))
        return (size_t)(end - port) != 2 || strncmp(port, "80", 2) != 0;
    return (size_t)(end - port) != 3 || strncmp(port, "443", 3) != 0;
}

/* One AUTH_CORS_ORIGINS item: "*", or scheme://host[:port] with no
 * trailing '/'. */
static bool valid_origin(const char *s, size_t len)
{
    char tmp[512];

    if (len == 0 || len >= sizeof tmp)
        return false;
    if (len == 1 && s[0] == '*')
        return true;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return valid_http_url(tmp) && tmp[len - 1] != '/' && url_port_ok(tmp);
}

/* One AUTH_CORS_ORIGINS item, spelled as browsers send it
 * (canonical_port()). */
static bool valid_cors_origin(const char *s, size_t len)
{
    char tmp[512];

    if (!valid_origin(s, len))
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return (len == 1 && s[0] == '*') || canonical_port(tmp);
}

/* One WebAuthn origin: scheme://host[:port], no path, no wildcard, no
 * user, no ',' (the list's separator: AUTH_PUBLIC_URL's origin is
 * serialised as a list of one), a port of digits up to 65535 (what a
 * browser's origin can be). */
static bool valid_wa_origin(const char *s, size_t len)
{
    const char *host, *end = s + len, *port, *close, *p;
    unsigned long n;

    if (len == 1 && s[0] == '*')
        return false;
    if (!valid_origin(s, len))
        return false;
    host = memchr(s, ':', len) + 3;
    for (p = host; p < end; p++)          /* a ',' would split the list */
        if (strchr("/@?#,", *p))
            return false;
    port = origin_port(host, end);
    if (*host == '[') {          /* "]" then the end or the port, only */
        close = memchr(host, ']', (size_t)(end - host));
        if (!close || (close + 1 < end && close + 1 != port))
            return false;
    }
    return port != host &&                          /* a host */
           port_number(port ? port + 1 : end, end, &n);
}

static bool check_value(const struct cfg_var *v, const char *s)
{
    switch (v->check) {
    case C_NONE:
        return true;
    case C_NONEMPTY:
        return *s != '\0';
    case C_HOST:
        return valid_host(s);
    case C_DBURL:
        return (has_prefix(s, "sqlite:") && s[7] != '\0') ||
               (has_prefix(s, "postgresql://") ||
                has_prefix(s, "postgres://"));
    case C_URL:
        return valid_http_url(s) && url_port_ok(s);
    case C_SMTP:                 /* plain SMTP only on this machine */
        return ((has_prefix(s, "smtp://") && s[7] && mail_url_loopback(s) &&
                 !strpbrk(s, " \t\r\n\\")) ||
                (has_prefix(s, "smtps://") && s[8] &&
                 !strpbrk(s, " \t\r\n\\"))) && url_port_ok(s);
    case C_CIDRS:
        return valid_list(s, valid_cidr);
    case C_ORIGINS:
        return valid_list(s, valid_cors_origin);
    case C_RP_ID:
        return valid_rp_id(s);
    case C_WA_ORIGINS:
        return *s && valid_list(s, valid_wa_origin);
    }
    return false;
}

/* Replaces the string at `slot` with a copy of `s`, wiping the old one.
 * (gcc 12's analyzer cannot see that the slot lives in the cfg, freed by
 * cfg_cleanup(); LeakSanitizer covers it.) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
static bool replace_str(char **slot, const char *s)
{
    char *dup = strdup(s);

    if (!dup)
        return false;
    if (*slot) {
        crypt_wipe(*slot, strlen(*slot));
        free(*slot);
    }
    *slot = dup;
    return true;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* True when `s` is UTF-8 text without control characters (Unicode's
 * Cc: U+0000-U+001F, U+007F-U+009F) other than tab: such a value is
 * logged (config.loaded), signed into tokens and written into mail
 * headers, where anything else breaks the JSON or the header, or shows
 * as something else than it is. Secrets are only ever used as bytes,
 * and may hold anything. */
static bool plain_text(const struct cfg_var *v, const char *s)
{
    const unsigned char *p;
    json_t *utf8;

    if (v->flags & SECRET)
        return true;
    for (p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f ||
            (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))  /* C1 */
            return false;
    utf8 = json_string(s);              /* NULL unless strict UTF-8 */
    json_decref(utf8);
    return utf8 != NULL;
}

/* Stores one value; false when it does not parse or is out of range. */
static bool set_var(struct cfg *c, const struct cfg_var *v, const char *s)
{
    int n;

    if (strlen(s) > MAX_VALUE || !plain_text(v, s))
        return false;
    switch (v->type) {
    case T_STR:
        if (!check_value(v, s))
            return false;
        return replace_str(str_at(c, v), s);
    case T_UINT:
        return parse_uint(s, v->min, v->max, uint_at(c, v));
    case T_ALG:
        for (n = 0; n < 3; n++)
            if (strcmp(s, alg_names[n]) == 0) {
                c->jwt_alg = (enum cfg_alg)n;
                return true;
            }
        return false;
    case T_LEVEL:
        n = log_level_parse(s);
        if (n < 0)
            return false;
        c->log_level = n;
        return true;
    case T_FORMAT:
        if (strcmp(s, "json") == 0 || strcmp(s, "text") == 0) {
            c->log_format = s[0] == 'j' ? CFG_LOG_JSON : CFG_LOG_TEXT;
            return true;
        }
        return false;
    }
    return false;
}

static bool fail(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
    return false;
}

/* Applies one NAME=value pair from `origin`. */
static bool apply(struct cfg *c, const char *name, size_t name_len,
                  const char *value, const char *origin, char *why,
                  size_t why_len)
{
    const struct cfg_var *v = find_var(name, name_len);
    char nm[128];

    snprintf(nm, sizeof nm, "%.*s", (int)(name_len < 100 ? name_len : 100),
             name);
    if (!v)
        return fail(why, why_len, "unknown configuration variable %s (%s)",
                    nm, origin);
    if (set_var(c, v, value))
        return true;
    /* A number says what it may be: the bounds are in cfg.c alone. */
    if (v->type == T_UINT)
        return fail(why, why_len, "invalid value for %s (%s): a whole "
                    "number from %lu to %lu, in at most 10 digits", nm,
                    origin, v->min, v->max);
    return fail(why, why_len, "invalid value for %s (%s)", nm, origin);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Decodes a quoted .env value in place: `p` is just past the opening
 * quote `q`. Inside double quotes \n \r \t \" \' \\ are escapes (any
 * other backslash stays as it is); inside single quotes nothing is.
 * Returns the end of the closing quote, or NULL when there is none. */
static char *dotenv_quoted(char *p, char q)
{
    char *out = p;

    for (; *p && *p != q; p++) {
        if (q == '"' && *p == '\\' && p[1] && strchr("nrt\"'\\", p[1])) {
            p++;
            *out++ = *p == 'n' ? '\n' : *p == 'r' ? '\r'
                                      : *p == 't' ? '\t' : *p;
        } else {
            *out++ = *p;
        }
    }
    if (*p != q)
        return NULL;
    *out = '\0';
    return p + 1;
}

/* Parses one .env line (no newline) in place, the common dotenv syntax:
 * blank or `#` lines; [export <blanks>] NAME [blanks] = [blanks] value,
 * NAME a shell identifier; the value in double quotes (escapes as
 * dotenv_quoted says), in single quotes (literal), or bare up to a `#`
 * that follows a blank, blanks around it trimmed; after a closing quote
 * only blanks and a `#` comment. Returns 1 with *name (*nlen bytes) and
 * *value set, 0 for a line without a setting, -1 with *bad saying what
 * it cannot read. */
static int dotenv_line(char *p, const char **name, size_t *nlen,
                       const char **value, const char **bad)
{
    size_t len = strlen(p);
    char *v, *end;

    if (len && p[len - 1] == '\r')
        p[--len] = '\0';
    while (is_blank(*p))
        p++;
    if (*p == '#' || *p == '\0')
        return 0;
    if (strncmp(p, "export", 6) == 0 && is_blank(p[6]))
        for (p += 6; is_blank(*p);)
            p++;
    *name = p;
    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
           (*p == '_') || (p > *name && *p >= '0' && *p <= '9'))
        p++;
    *nlen = (size_t)(p - *name);
    while (is_blank(*p))
        p++;
    if (*p != '=' || *nlen == 0) {
        *bad = strchr(p, '=') ? "the name is not a letter or _ followed "
                                "by letters, digits or _"
                              : "it is not NAME=value";
        return -1;
    }
    v = ++p;
    while (is_blank(*v))
        v++;
    if (*v == '"' || *v == '\'') {
        end = dotenv_quoted(v + 1, *v);
        while (end && is_blank(*end))
            end++;
        if (!end || (*end != '\0' && *end != '#')) {
            *bad = end ? "text after the closing quote"
                       : "the quote is not closed on this line";
            return -1;
        }
        *value = v + 1;
        return 1;
    }
    for (end = v; *end && !(*end == '#' && end > p && is_blank(end[-1]));)
        end++;
    while (end > v && is_blank(end[-1]))
        end--;
    *end = '\0';
    *value = v;
    return 1;
}

/* Applies the AUTH_* lines of a .env file unless `envp` sets them too
 * (the environment wins). Other names are read and left alone; a line
 * that cannot be read stops the load, naming the file and the line. */
#define MAX_DOTENV_BYTES (1024 * 1024)     /* a .env larger is refused */

/* Opens `path` for reading when it is a regular file: NULL with *absent
 * when there is none, NULL with `why` set when it cannot be read or is
 * something else (a FIFO would block the start for good, so it is opened
 * without waiting and refused). */
static FILE *dotenv_open(const char *path, bool *absent, bool *public,
                         char *why, size_t why_len)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st = { 0 };
    const char *bad = NULL, *others;
    FILE *f = NULL;

    *absent = false;
    if (fd < 0) {
        struct stat link;

        /* a symbolic link to nothing (a secret not mounted yet, say) is
         * a .env that cannot be read, not an absent one */
        if (errno == ENOENT && lstat(path, &link) == 0)
            fail(why, why_len, "%s cannot be read: it is a symbolic link "
                 "to a file that does not exist", path);
        else if (errno == ENOENT)
            *absent = true;
        else
            fail(why, why_len, "%s cannot be read: %s", path,
                 strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0)
        bad = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        bad = "not a regular file";
    else if (st.st_size > MAX_DOTENV_BYTES)
        bad = "larger than 1 MiB";
    /* It sets the secrets and the keys' source: whoever can write it
     * signs as the daemon (AUTH_JWT_ALG=HS256 with their secret). */
    else if ((others = fsperm_others_can_write(fd, path)) != NULL)
        bad = others;
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0 ||
             !(f = fdopen(fd, "r")))
        bad = strerror(errno);
    if (bad) {
        fail(why, why_len, "%s cannot be read: %s", path, bad);
        close(fd);
        return NULL;
    }
    *public = (st.st_mode & S_IROTH) != 0;
    return f;
}

/* The names of the .env lines read so far and their lines, to tell an
 * operator of a name set twice (the last line counts, as in the common
 * dotenv tools): an AUTH_METRICS_ALLOW or AUTH_TRUSTED_PROXIES added at
 * the end of a long file silently replaced the one above, or the other
 * way round. */
struct seen_names {
    struct { char name[48]; unsigned line; } at[96];
    size_t n;
};

static void note_name(struct cfg *c, struct seen_names *s, const char *path,
                      const char *name, size_t nlen, unsigned line)
{
    size_t i;

    if (nlen >= sizeof s->at[0].name)
        return;                          /* no such name: apply() says */
    for (i = 0; i < s->n; i++)
        if (strlen(s->at[i].name) == nlen &&
            memcmp(s->at[i].name, name, nlen) == 0)
            break;
    if (i < s->n && !c->dotenv_repeated[0]) {
        snprintf(c->dotenv_repeated, sizeof c->dotenv_repeated, "%.*s",
                 (int)nlen, name);
        snprintf(c->dotenv_repeated_why, sizeof c->dotenv_repeated_why,
                 "%s sets it on line %u and again on line %u, which counts",
                 path, s->at[i].line, line);
    }
    if (i < s->n) {
        s->at[i].line = line;
    } else if (s->n < sizeof s->at / sizeof s->at[0]) {
        memcpy(s->at[s->n].name, name, nlen);
        s->at[s->n].name[nlen] = '\0';
        s->at[s->n++].line = line;
    }
}

/* Whether `value` of `v` holds a secret: a secret setting's, but of
 * the URLs only one with a user part or a password in its query (a
 * SQLite path, a relay on localhost, a webhook's address hold none). */
static bool holds_secret(const struct cfg_var *v, const char *value)
{
    if (!v || !(v->flags & SECRET) || !value || !value[0])
        return false;
    if (strncmp(v->name, "AUTH_JWT_", 9) == 0 ||
        strstr(v->name, "SECRET") || strstr(v->name, "PASSWORD") ||
        strstr(v->name, "TOKEN"))
        return true;
    return strchr(value, '@') || strstr(value, "password");
}

static bool load_dotenv(struct cfg *c, const char *path, char *const *envp,
                        char *why, size_t why_len)
{
    char *line = NULL, origin[PATH_MAX + 32];
    struct seen_names seen = { .n = 0 };
    size_t cap = 0;
    ssize_t got;
    unsigned lineno = 0;
    bool ok = true, absent, public = false, secret = false;
    FILE *f = dotenv_open(path, &absent, &public, why, why_len);

    if (!f)
        return absent;                         /* optional */
    while (ok && (got = getline(&line, &cap, f)) >= 0) {
        char *p = line;
        const char *name = NULL, *value = NULL, *bad = NULL;
        size_t i, nlen = 0, len = (size_t)got;
        bool overridden = false;
        int kind;

        lineno++;
        if (memchr(line, '\0', len)) {
            ok = fail(why, why_len, "%s: line %u holds a NUL byte", path,
                      lineno);
            break;
        }
        line[strcspn(line, "\n")] = '\0';
        if (lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
            p += 3;                                /* UTF-8 byte-order mark */
        kind = dotenv_line(p, &name, &nlen, &value, &bad);
        if (kind < 0) {
            ok = fail(why, why_len, "%s: line %u cannot be read: %s", path,
                      lineno, bad);
            break;
        }
        /* Comments, blank lines and other programs' names are skipped,
         * however long; ours are bounded. */
        if (kind <= 0 || nlen < 5 || strncmp(name, "AUTH_", 5) != 0)
            continue;
        if (len > MAX_VALUE + 256) {
            ok = fail(why, why_len, "%s: line %u is too long", path, lineno);
            break;
        }
        for (i = 0; envp[i]; i++)
            if (strncmp(envp[i], name, nlen) == 0 && envp[i][nlen] == '=')
                overridden = true;
        snprintf(origin, sizeof origin, "%s line %u", path, lineno);
        if (!overridden)          /* else the environment's counts */
            note_name(c, &seen, path, name, nlen, lineno);
        if (holds_secret(find_var(name, nlen), value))
            secret = true;
        if (!overridden)
            ok = apply(c, name, nlen, value, origin, why, why_len);
    }
    if (ok && ferror(f))
        ok = fail(why, why_len, "%s cannot be read: %s", path,
                  strerror(errno));
    if (ok && public && secret)
        snprintf(c->dotenv_exposed, sizeof c->dotenv_exposed, "%s", path);
    if (line) {
        crypt_wipe(line, cap);
        free(line);
    }
    fclose(f);
    return ok;
}

#define MAX_PUBLIC_URL 512        /* links in mails stay one short line */

/* The mail settings together: one transport, complete, and nothing in
 * clear text beyond this machine. */
static bool mail_finish(const struct cfg *c, char *why, size_t why_len)
{
    char env[512];

    if (strlen(c->public_url) > MAX_PUBLIC_URL)
        return fail(why, why_len, "invalid value for AUTH_PUBLIC_URL: "
                    "longer than %d bytes", MAX_PUBLIC_URL);
    /* mailed links are $AUTH_PUBLIC_URL/reset-password?token=T: after a
     * '?' or '#' the path lands in the query or the fragment, and the
     * link no longer reaches the page (README.md, "Mail") */
    if (strpbrk(c->public_url, "?#"))
        return fail(why, why_len, "invalid value for AUTH_PUBLIC_URL: no "
                    "query or fragment ('?', '#'); mailed links add "
                    "/reset-password?token=... to it");
    if (c->smtp_url && c->notify_webhook_url)
        return fail(why, why_len, "invalid value for AUTH_NOTIFY_WEBHOOK_URL: "
                    "set AUTH_SMTP_URL or AUTH_NOTIFY_WEBHOOK_URL, not both");
    /* without AUTH_SMTP_URL either is only unused (cfg_unused()) */
    if (c->smtp_url && (c->smtp_user != NULL) != (c->smtp_password != NULL))
        return fail(why, why_len, "invalid value for %s: not set, and %s "
                    "is (AUTH_SMTP_USER and AUTH_SMTP_PASSWORD go "
                    "together)",
                    c->smtp_user ? "AUTH_SMTP_PASSWORD" : "AUTH_SMTP_USER",
                    c->smtp_user ? "AUTH_SMTP_USER" : "AUTH_SMTP_PASSWORD");
    if (c->smtp_url && !c->smtp_from)
        return fail(why, why_len, "invalid value for AUTH_SMTP_FROM: "
                    "AUTH_SMTP_URL needs a sender address");
    if (c->smtp_from && !mail_envelope(c->smtp_from, env, sizeof env))
        return fail(why, why_len, "invalid value for AUTH_SMTP_FROM: "
                    "not an address (addr or Name <addr>, ASCII)");
    if ((c->notify_webhook_url != NULL) != (c->notify_webhook_secret != NULL))
        return fail(why, why_len, "invalid value for "
                    "AUTH_NOTIFY_WEBHOOK_SECRET: AUTH_NOTIFY_WEBHOOK_URL "
                    "and AUTH_NOTIFY_WEBHOOK_SECRET go together");
    if (c->notify_webhook_secret && strlen(c->notify_webhook_secret) < 16)
        return fail(why, why_len, "invalid value for "
                    "AUTH_NOTIFY_WEBHOOK_SECRET: at least 16 bytes");
    if (c->notify_webhook_url && has_prefix(c->notify_webhook_url, "http://")
        && !mail_url_loopback(c->notify_webhook_url))
        return fail(why, why_len, "invalid value for AUTH_NOTIFY_WEBHOOK_URL: "
                    "http:// only to a loopback host, else https://");
    return true;
}

/* True when `rp_id` is the host, or a parent domain of the host, of
 * every origin of the comma-separated `origins` (WebAuthn's "registrable
 * domain suffix" rule, s5.1.4.1: a browser refuses any other pairing, so
 * every ceremony would fail). */
static bool rp_id_covers(const char *rp_id, const char *origins)
{
    size_t rlen = strlen(rp_id);
    const char *p = origins;

    while (*p) {
        const char *host, *end;
        size_t hlen;

        p += strspn(p, " \t,");
        if (!*p)
            break;
        end = p + strcspn(p, ",");
        host = strstr(p, "://");
        if (!host || host >= end)
            return false;
        host += 3;
        hlen = host[0] == '[' ? strcspn(host, "]") + 1
                              : strcspn(host, ":, \t");
        if (host + hlen > end)
            hlen = (size_t)(end - host);
        if (!(hlen == rlen && strncasecmp(host, rp_id, rlen) == 0) &&
            !(hlen > rlen + 1 && host[hlen - rlen - 1] == '.' &&
              strncasecmp(host + hlen - rlen, rp_id, rlen) == 0))
            return false;
        p = end;
    }
    return true;
}

/* Appends origin `s` (`len` bytes, valid_wa_origin()) to `out` as a
 * browser serialises it (RFC 6454 6.1; HTML's "ASCII serialization of an
 * origin"), which is what clientDataJSON carries and origin_allowed()
 * compares exactly: scheme and host in lower case, the scheme's default
 * port left out. `out` has room for `len` more bytes and a NUL. */
static void origin_serialise(const char *s, size_t len, char *out)
{
    const char *host = memchr(s, ':', len) + 3, *end = s + len;
    const char *port = origin_port(host, end), *p;
    char *o = out + strlen(out);
    bool https = (size_t)(host - s) == 8;
    unsigned long n = 0;

    if (port)
        (void)port_number(port + 1, end, &n);     /* valid_wa_origin() */
    for (p = s; p < (port ? port : end); p++)
        *o++ = (char)tolower((unsigned char)*p);
    *o = '\0';
    /* the port as a number (`:0443` is 443), none when it is the
     * scheme's default or empty */
    if (port && port + 1 < end && n != (https ? 443u : 80u))
        sprintf(o, ":%lu", n);
}

/* Rewrites the comma-separated origins at `slot` serialised (above), so
 * that `https://App.example.com:443` in the settings matches what a
 * browser sends, `https://app.example.com`. */
static bool origins_serialise(char **slot)
{
    const char *p = *slot;
    char *out = calloc(1, strlen(p) + 1);

    if (!out)
        return false;
    while (*p) {
        size_t n;

        p += strspn(p, " \t,");
        n = strcspn(p, ",");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == 0)
            break;
        if (*out)
            strcat(out, ",");
        origin_serialise(p, n, out);
        p += n;
        p += strcspn(p, ",");
    }
    free(*slot);
    *slot = out;
    return true;
}

/* True when [host, host + len) is a host a browser can reach: a name
 * (letters, digits, '-', '_', '.'; not starting with '.') or an IPv6
 * literal in brackets (an IPv4 address is a name here). */
static bool url_host_ok(const char *host, size_t len)
{
    char tmp[64];
    unsigned char a6[16];
    size_t n;

    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        if (len - 2 >= sizeof tmp)
            return false;
        memcpy(tmp, host + 1, len - 2);
        tmp[len - 2] = '\0';
        return inet_pton(AF_INET6, tmp, a6) == 1;
    }
    for (n = 0; n < len && (isalnum((unsigned char)host[n]) ||
                            strchr("-_.", host[n])); n++)
        ;
    return len > 0 && len <= 253 && n == len && host[0] != '.';
}

/* The WebAuthn defaults from AUTH_PUBLIC_URL: the RP ID is its host (in
 * lower case, as a browser has it), the one origin its
 * scheme://host[:port]; every origin serialised as a browser sends it. */
static bool webauthn_finish(struct cfg *c, char *why, size_t why_len)
{
    const char *u = c->public_url, *host = strstr(u, "://") + 3;
    size_t olen = strcspn(host, "/?#") + (size_t)(host - u);
    size_t hlen = host[0] == '[' ? strcspn(host, "]") + 1
                                 : strcspn(host, ":/?#");

    /* `http://]`, `http://a;b` started, the RP ID taken from them */
    if (!url_host_ok(host, hlen))
        return fail(why, why_len, "invalid value for AUTH_PUBLIC_URL: its "
                    "host must be a host name or an IP address");
    if (!c->webauthn_origins) {
        if (!valid_wa_origin(u, olen))
            return fail(why, why_len, "invalid value for AUTH_PUBLIC_URL: "
                        "its origin must be scheme://host[:port] (no user, "
                        "a port of digits)");
        c->webauthn_origins = strndup(u, olen);
        if (!c->webauthn_origins)
            return fail(why, why_len, "out of memory");
    }
    if (!origins_serialise(&c->webauthn_origins))
        return fail(why, why_len, "out of memory");
    if (!c->webauthn_rp_id) {
        char *p;

        c->webauthn_rp_id = strndup(host, hlen);
        if (!c->webauthn_rp_id)
            return fail(why, why_len, "out of memory");
        for (p = c->webauthn_rp_id; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    if (!rp_id_covers(c->webauthn_rp_id, c->webauthn_origins))
        return fail(why, why_len, "invalid value for AUTH_WEBAUTHN_RP_ID: "
                    "it must be the host of every AUTH_WEBAUTHN_ORIGINS "
                    "origin or a parent domain of it");
    return true;
}

unsigned cfg_usable_cpus(void)
{
    cpu_set_t set;
    long n = -1;

    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        n = 2;
    return n <= 256 ? (unsigned)n : 256;
}

/* True unless the part of a URL before its last '@' (the user and
 * password) holds a '/', '?', '#' or another '@': parsers disagree on
 * where such a password ends (RFC 3986 wants those percent-encoded), and
 * libpq's error about the host or port it then reads quotes a piece of
 * the password. */
static bool userinfo_unambiguous(const char *url)
{
    const char *auth = strstr(url, "://"), *at;

    if (!auth)
        return true;
    auth += 3;
    at = strrchr(auth, '@');
    return !at || strcspn(auth, "/?#@") >= (size_t)(at - auth);
}

/* The characters (code points) of secret `s`, which README.md and
 * .env.example count where a secret is "at least N characters"; -1 when
 * `s` is not UTF-8 (secrets skip plain_text(): they may hold anything). */
static long secret_chars(const char *s)
{
    size_t bytes;

    return utf8_count(s, &bytes);
}

static bool finish(struct cfg *c, char *why, size_t why_len)
{
    bool derived = !c->database_url;

    if (derived) {
        size_t n = strlen(c->data_dir) + sizeof "sqlite:/auth.db";

        c->database_url = malloc(n);
        if (!c->database_url)
            return fail(why, why_len, "out of memory");
        snprintf(c->database_url, n, "sqlite:%s/auth.db", c->data_dir);
    }
    /* SQLite reads a name beginning "file:" as a URI where libsqlite3
     * takes them (Debian's does), while the folder making and the
     * daemon's claim on the file (repo_claim()) read a path: two daemons
     * reached one file by its URI and its path, each claiming another. */
    if (has_prefix(c->database_url, "sqlite:file:"))
        return fail(why, why_len, "invalid value for %s: sqlite: takes a "
                    "file's path, not a file: URI",
                    derived ? "AUTH_DATA_DIR (a folder named file:...)"
                            : "AUTH_DATABASE_URL");
    if (!userinfo_unambiguous(c->database_url))
        return fail(why, why_len, "invalid value for AUTH_DATABASE_URL: "
                    "percent-encode '@', '/', '?' and '#' in its user "
                    "name and password (%%40, %%2F, %%3F, %%23), and '@' "
                    "after the host");
    if (c->jwt_alg == CFG_ALG_HS256 &&
        (!c->jwt_secret || strlen(c->jwt_secret) < 32))
        return fail(why, why_len, "invalid value for AUTH_JWT_SECRET: "
                    "HS256 needs a secret of at least 32 bytes");
    if (c->introspection_token && secret_chars(c->introspection_token) < 32)
        return fail(why, why_len, "invalid value for "
                    "AUTH_INTROSPECTION_TOKEN: at least 32 characters of "
                    "UTF-8 text");
    if (c->keys_secret && strlen(c->keys_secret) < 32)
        return fail(why, why_len, "invalid value for AUTH_KEYS_SECRET: "
                    "at least 32 bytes");
    /* The keys go to the database unless HS256 (the secret signs) or a
     * key file is used: the secret alone, under ES256 or RS256, is
     * unused and exempts nothing (as the start finds). */
    if (!c->keys_secret && !c->jwt_key_file &&
        c->jwt_alg != CFG_ALG_HS256 &&
        !has_prefix(c->database_url, "sqlite:"))
        return fail(why, why_len, "AUTH_KEYS_SECRET is required with "
                    "PostgreSQL (it encrypts the signing keys stored "
                    "there) unless AUTH_JWT_KEY_FILE is set or "
                    "AUTH_JWT_ALG is HS256");
    if (!mail_finish(c, why, why_len) || !webauthn_finish(c, why, why_len))
        return false;
    if (c->hash_workers == 0)
        c->hash_workers = cfg_usable_cpus();
    if (c->threads == 0)
        c->threads = cfg_usable_cpus();
    return true;
}

bool cfg_load_from(struct cfg *out, const char *env_file,
                   char *const *envp, char *why, size_t why_len)
{
    size_t i;

    memset(out, 0, sizeof *out);
    for (i = 0; i < NVARS; i++)
        if (vars[i].def && !set_var(out, &vars[i], vars[i].def))
            return fail(why, why_len, "bad default for %s", vars[i].name);
    if (env_file && !load_dotenv(out, env_file, envp, why, why_len))
        return false;
    for (i = 0; envp[i]; i++) {
        const char *eq = strchr(envp[i], '=');

        if (strncmp(envp[i], "AUTH_", 5) != 0 || !eq)
            continue;
        if (!apply(out, envp[i], (size_t)(eq - envp[i]), eq + 1,
                   "environment", why, why_len))
            return false;
    }
    return finish(out, why, why_len);
}

static struct cfg defaults;
static pthread_once_t defaults_once = PTHREAD_ONCE_INIT;

/* Fills `defaults` with the default of every unsigned setting. */
static void defaults_fill(void)
{
    size_t i;

    for (i = 0; i < NVARS; i++)
        if (vars[i].type == T_UINT && vars[i].def &&
            !parse_uint(vars[i].def, vars[i].min, vars[i].max,
                        uint_at(&defaults, &vars[i])))
            abort();                 /* the table itself is wrong */
}

const struct cfg *cfg_defaults(void)
{
    pthread_once(&defaults_once, defaults_fill);
    return &defaults;
}

extern char **environ;

bool cfg_load(struct cfg *out, const char *env_file, char *why,
              size_t why_len)
{
    return cfg_load_from(out, env_file, environ, why, why_len);
}

void cfg_cleanup(struct cfg *c)
{
    size_t i;

    for (i = 0; i < NVARS; i++) {
        char **s;

        if (vars[i].type != T_STR)
            continue;
        s = str_at(c, &vars[i]);
        if (*s) {
            crypt_wipe(*s, strlen(*s));
            free(*s);
        }
    }
    memset(c, 0, sizeof *c);
}

/* The database URL with any password replaced, for logs. */
static json_t *redacted_url(const char *url)
{
    const char *scheme = strstr(url, "://");
    const char *at, *colon;

    if (!scheme)
        return json_string(url);
    at = strrchr(scheme + 3, '@');
    if (!at)
        return json_stringn(url, strcspn(url, "?"));
    colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3));
    /* A user part without a password may be the secret itself (an API
     * token as the SMTP user name): hidden whole. */
    if (!colon)
        return json_sprintf("%.*s***%.*s", (int)(scheme + 3 - url), url,
                            (int)strcspn(at, "?"), at);
    return json_sprintf("%.*s:***%.*s", (int)(colon - url), url,
                        (int)strcspn(at, "?"), at);
}

/* scheme://host[:port] of a URL, without what may be secret (user and
 * password, path, query), for logs; "***" when it has no such form. A
 * port is shown only when it is one (url_port_ok()): whatever else
 * follows the host's ':' is hidden with the rest, should a value that
 * the checks refuse ever get here. */
static json_t *url_origin(const char *url)
{
    const char *scheme = strstr(url, "://"), *host, *end, *port;
    json_t *o;

    if (!scheme)
        return json_string("***");
    host = url_authority(url, true, &end);
    port = origin_port(host, end);
    if (port && !authority_port_ok(host, end))
        end = port;
    o = json_sprintf("%.*s%.*s%s", (int)(scheme + 3 - url), url,
                     (int)(end - host), host, *end ? "/***" : "");
    return o ? o : json_string("***");       /* not UTF-8 */
}

size_t cfg_unused(const struct cfg *c, struct cfg_unused *out, size_t max)
{
    bool hs = c->jwt_alg == CFG_ALG_HS256;
    bool key_file = c->jwt_key_file && c->jwt_key_file[0];
    bool sqlite = !c->database_url || has_prefix(c->database_url, "sqlite:");
    const struct cfg_unused all[] = {
        { c->jwt_secret && !hs ? "AUTH_JWT_SECRET" : NULL,
          "only HS256 signs with it, and AUTH_JWT_ALG is not HS256" },
        { key_file && hs ? "AUTH_JWT_KEY_FILE" : NULL,
          "AUTH_JWT_ALG is HS256, which signs with AUTH_JWT_SECRET" },
        { c->keys_secret && (hs || key_file || sqlite) ? "AUTH_KEYS_SECRET"
                                                      : NULL,
          "it seals signing keys kept in PostgreSQL, and none are (SQLite, "
          "AUTH_JWT_KEY_FILE or HS256)" },
        { c->smtp_from && !c->smtp_url ? "AUTH_SMTP_FROM" : NULL,
          "AUTH_SMTP_URL is not set" },
        { c->smtp_user && !c->smtp_url ? "AUTH_SMTP_USER" : NULL,
          "AUTH_SMTP_URL is not set" },
        { c->smtp_password && !c->smtp_url ? "AUTH_SMTP_PASSWORD" : NULL,
          "AUTH_SMTP_URL is not set" },
        { c->dotenv_repeated[0] ? c->dotenv_repeated : NULL,
          c->dotenv_repeated_why },
    };
    size_t i, n = 0;

    for (i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i].name) {
            if (n < max)
                out[n] = all[i];
            n++;
        }
    return n;
}

const char *cfg_dotenv_exposed(const struct cfg *c)
{
    return c->dotenv_exposed[0] ? c->dotenv_exposed : NULL;
}

void cfg_log(const struct cfg *c)
{
    json_t *o = json_object();
    size_t i;

    for (i = 0; i < NVARS; i++) {
        const struct cfg_var *v = &vars[i];
        const void *p = (const char *)c + v->off;
        json_t *val = NULL;

        switch (v->type) {
        case T_STR: {
            const char *s = *(char *const *)p;

            if (!s)
                val = json_null();
            else if (v->check == C_DBURL || v->check == C_SMTP)
                val = redacted_url(s);
            else if (v->check == C_URL && (v->flags & SECRET))
                val = url_origin(s);
            else if (v->flags & SECRET)
                val = json_string("***");
            else
                val = json_string(s);
            break;
        }
        case T_UINT:
            val = json_integer(*(const unsigned *)p);
            break;
        case T_ALG:
            val = json_string(cfg_alg_name(c->jwt_alg));
            break;
        case T_LEVEL: {
            static const char *const lv[] = { "debug", "info", "warn",
                                              "error" };

            val = json_string(lv[c->log_level & 3]);
            break;
        }
        case T_FORMAT:
            val = json_string(c->log_format == CFG_LOG_JSON ? "json"
                                                           : "text");
            break;
        }
        json_object_set_new(o, v->name, val);
    }
    log_event(LOG_INFO, "config.loaded", NULL, json_pack("{s:o}", "config",
                                                         o));
}
