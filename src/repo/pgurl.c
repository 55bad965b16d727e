/* pgurl.c: the values of a PostgreSQL URL's options that libpq reads only
 * when it connects, checked before (src/repo/pg.c, url_options()). */
#include "repo/pgurl.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


/* libpq reads the values of these options only when it connects, and
 * refuses a wrong one as a failure to connect: a start that exits 1 and
 * is restarted for good, past a `config check` that said ok, with libpq's
 * message quoting the value in the log. Each is read here as libpq 15
 * (Debian 12's) reads it, so that nothing it takes is refused. */
enum opt_kind {
    OPT_WORD,           /* one of `values`, as spelt */
    OPT_WORD_NOCASE,    /* one of `values` in any case, or empty */
    OPT_INT,            /* an int as libpq's parse_int_param() reads it */
};

static const struct {
    const char *key;
    enum opt_kind kind;
    const char *values;         /* space-separated */
} checked_options[] = {
    { "sslmode", OPT_WORD,
      "disable allow prefer require verify-ca verify-full" },
    { "gssencmode", OPT_WORD, "disable prefer require" },
    { "channel_binding", OPT_WORD, "disable prefer require" },
    { "target_session_attrs", OPT_WORD,
      "any read-write read-only primary standby prefer-standby" },
    { "ssl_min_protocol_version", OPT_WORD_NOCASE,
      "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3" },
    { "ssl_max_protocol_version", OPT_WORD_NOCASE,
      "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3" },
    { "keepalives", OPT_INT, NULL },
    { "connect_timeout", OPT_INT, NULL },
    { "tcp_user_timeout", OPT_INT, NULL },
    /* (over TCP the kernel refuses 0, which libpq makes of a negative
     * one, but over a Unix socket libpq reads none of these: an int) */
    { "keepalives_idle", OPT_INT, NULL },
    { "keepalives_interval", OPT_INT, NULL },
    { "keepalives_count", OPT_INT, NULL },
};

static bool word_in(const char *v, const char *list, bool nocase)
{
    size_t n = strlen(v);

    while (*list) {
        size_t w = strcspn(list, " ");

        if (w == n && n > 0 && (nocase ? strncasecmp(list, v, n)
                                       : strncmp(list, v, n)) == 0)
            return true;
        list += w + (list[w] == ' ');
    }
    return false;
}

/* libpq's parse_int_param(): blanks around an int's digits and sign. */
static bool int_as_libpq(const char *v, long *out)
{
    char *end = NULL;

    errno = 0;
    *out = strtol(v, &end, 10);
    if (end == v || errno != 0 || *out < INT_MIN || *out > INT_MAX)
        return false;
    while (*end && isspace((unsigned char)*end))
        end++;
    return *end == '\0';
}

/* True when each port of a comma-separated list (libpq's, one per host)
 * is empty or an int from 1 to 65535 as libpq reads it: libpq takes any
 * text here and refuses it only when it connects. */
static bool ports_ok(const char *v)
{
    char one[32];
    long port;

    while (*v) {
        size_t n = strcspn(v, ",");

        if (n >= sizeof one)
            return false;
        memcpy(one, v, n);
        one[n] = '\0';
        if (n > 0 && (!int_as_libpq(one, &port) || port < 1 ||
                      port > 65535))
            return false;
        v += n + (v[n] == ',');
    }
    return true;
}

const char *pgurl_option_refused(const char *key, const char *val)
{
    size_t i;
    long n;

    if (strcmp(key, "port") == 0)
        return ports_ok(val) ? NULL : key;
    for (i = 0; i < sizeof checked_options / sizeof *checked_options; i++) {
        if (strcmp(key, checked_options[i].key) != 0)
            continue;
        switch (checked_options[i].kind) {
        case OPT_WORD:
            return word_in(val, checked_options[i].values, false) ? NULL
                                                                  : key;
        case OPT_WORD_NOCASE:
            return !val[0] || word_in(val, checked_options[i].values, true)
                       ? NULL : key;
        case OPT_INT:
            return int_as_libpq(val, &n) ? NULL : key;
        }
    }
    return NULL;
}
