/* fuzz_netaddr.c: trusted-proxy lists and the X-Forwarded-For walk
 * (netlist_parse, netlist_contains, netlist_client_ip and, over several
 * header lines, netlist_client_ip_lines). The input is lines: the
 * AUTH_TRUSTED_PROXIES value, the peer address, then X-Forwarded-For
 * header lines (none when there is no third line). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netaddr.h"

#define SERVER_IP 64              /* sizeof rc->ip in http.h */
#define MAX_LINES 16              /* XFF_LINES in server.c */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* `out` is the peer or one hop of `xff`, truncated to fit. */
static void check_ip(const char *out, size_t out_len, const char *peer,
                     const char *xff)
{
    size_t n = strlen(out);

    if (n >= out_len)
        abort();
    if (strncmp(out, peer, n) == 0)
        return;
    if (!xff || !strstr(xff, out))
        abort();
}

/* `out` is the peer or one hop of one of the `n` lines. */
static void check_ip_lines(const char *out, size_t out_len, const char *peer,
                           char *const *lines, size_t n)
{
    size_t len = strlen(out), i;

    if (len >= out_len)
        abort();
    if (strncmp(out, peer, len) == 0)
        return;
    for (i = 0; i < n; i++)
        if (strstr(lines[i], out))
            return;
    abort();
}

/* The `n` lines joined by commas; caller frees. */
static char *join(char *const *lines, size_t n)
{
    size_t len = 1, i;
    char *j, *p;

    for (i = 0; i < n; i++)
        len += strlen(lines[i]) + 1;
    j = malloc(len);
    if (!j)
        abort();
    p = j;
    for (i = 0; i < n; i++) {
        size_t k = strlen(lines[i]);

        if (i)
            *p++ = ',';
        memcpy(p, lines[i], k);
        p += k;
    }
    *p = '\0';
    return j;
}

static void client_ip_lines(const struct netlist *l, const char *peer,
                            char *const *lines, size_t n, size_t out_len)
{
    char *out = malloc(out_len);
    char one[SERVER_IP];

    if (!out)
        abort();
    netlist_client_ip_lines(l, peer, (const char *const *)lines, n, out,
                            out_len);
    check_ip_lines(out, out_len, peer, lines, n);
    if (n > 0 && out_len == sizeof one) {
        /* the lines are one list: the same as the lines joined by commas */
        char *joined = join(lines, n);

        netlist_client_ip(l, peer, joined, one, sizeof one);
        if (strcmp(one, out) != 0)
            abort();
        free(joined);
    }
    free(out);
}

static void client_ip(const struct netlist *l, const char *peer,
                      const char *xff, size_t out_len)
{
    char *out = malloc(out_len);          /* exact size: ASan sees more */

    if (!out)
        abort();
    netlist_client_ip(l, peer, xff, out, out_len);
    check_ip(out, out_len, peer, xff);
    free(out);
}

/* Splits off the next line of `*s` (NULL when none is left). */
static char *next_line(char **s)
{
    char *line = *s, *nl;

    if (!line)
        return NULL;
    nl = strchr(line, '\n');
    if (nl) {
        *nl = '\0';
        *s = nl + 1;
    } else {
        *s = NULL;
    }
    return line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1), *rest = s, *spec, *peer, *xff;
    char *lines[MAX_LINES];
    size_t n = 0;
    struct netlist *l;
    size_t small = size ? 1u + data[0] % 24u : 1u;

    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    spec = next_line(&rest);
    peer = next_line(&rest);
    xff = next_line(&rest);
    if (xff)
        lines[n++] = xff;
    while (n < MAX_LINES && rest)
        lines[n++] = next_line(&rest);
    if (!peer)
        peer = "";
    l = netlist_parse(spec);
    if (l) {
        (void)netlist_contains(l, peer);
        if (xff)
            (void)netlist_contains(l, xff);
    }
    client_ip(l, peer, xff, SERVER_IP);
    client_ip(l, peer, xff, small);
    client_ip_lines(l, peer, lines, n, SERVER_IP);
    client_ip_lines(l, peer, lines, n, small);
    netlist_free(l);
    free(s);
    return 0;
}
