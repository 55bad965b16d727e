/* fuzz_netaddr.c: trusted-proxy lists and the X-Forwarded-For walk
 * (netlist_parse, netlist_contains, netlist_client_ip). The input is
 * three lines: the AUTH_TRUSTED_PROXIES value, the peer address and the
 * X-Forwarded-For value (absent when there is no third line). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netaddr.h"

#define SERVER_IP 64              /* sizeof rc->ip in http.h */

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
    struct netlist *l;
    size_t small = size ? 1u + data[0] % 24u : 1u;

    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    spec = next_line(&rest);
    peer = next_line(&rest);
    xff = next_line(&rest);
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
    netlist_free(l);
    free(s);
    return 0;
}
