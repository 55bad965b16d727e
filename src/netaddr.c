/* netaddr.c: CIDR lists and the X-Forwarded-For walk. */
#include "netaddr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct net {
    uint8_t addr[16];                /* IPv4 stored as ::ffff:a.b.c.d */
    unsigned bits;                   /* prefix over the 128-bit form */
};

struct netlist {
    bool unix_peers;             /* "unix": peers on a Unix socket */
    size_t n;
    struct net nets[];
};

/* Parses an address into 16 bytes; *v4 tells which family it was. */
static bool parse_ip(const char *s, uint8_t out[16], bool *v4)
{
    struct in_addr a4;

    if (inet_pton(AF_INET, s, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        *v4 = true;
        return true;
    }
    *v4 = false;
    if (inet_pton(AF_INET6, s, out) != 1)
        return false;
    *v4 = memcmp(out, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
    return true;
}

static bool parse_net(const char *s, size_t len, struct net *out)
{
    char tmp[64], *slash, *end;
    unsigned long bits;
    bool v4;

    if (len == 0 || len >= sizeof tmp)
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    slash = strchr(tmp, '/');
    if (slash)
        *slash++ = '\0';
    if (!parse_ip(tmp, out->addr, &v4))
        return false;
    out->bits = 128;
    if (slash) {
        if (!isdigit((unsigned char)*slash) || strlen(slash) > 3)
            return false;                 /* no sign, blank or junk */
        bits = strtoul(slash, &end, 10);
        if (*end || bits > (v4 ? 32u : 128u))
            return false;
        out->bits = (unsigned)bits + (v4 ? 96u : 0u);
    }
    return true;
}

struct netlist *netlist_parse(const char *spec)
{
    size_t cap = 1;
    struct netlist *l;
    const char *p;

    for (p = spec; p && *p; p++)
        cap += *p == ',';
    l = calloc(1, sizeof *l + cap * sizeof l->nets[0]);
    if (!l)
        return NULL;
    for (p = spec; p && *p;) {
        size_t n = strcspn(p, ",");
        const char *b = p, *e = p + n;

        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if ((size_t)(e - b) == strlen(NETADDR_UNIX_PEER) &&
            strncasecmp(b, NETADDR_UNIX_PEER, (size_t)(e - b)) == 0)
            l->unix_peers = true;
        else if (e > b &&
                 !parse_net(b, (size_t)(e - b), &l->nets[l->n++])) {
            free(l);
            return NULL;
        }
        p += n + (p[n] == ',');
    }
    return l;
}

void netlist_free(struct netlist *l)
{
    free(l);
}

static bool in_net(const struct net *n, const uint8_t a[16])
{
    unsigned full = n->bits / 8, rest = n->bits % 8;

    if (memcmp(n->addr, a, full) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((n->addr[full] ^ a[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

void netlist_span(const struct netlist *l, double *v4, double *v6)
{
    static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
    size_t i;

    *v4 = *v6 = 0;
    for (i = 0; l && i < l->n; i++) {
        const struct net *n = &l->nets[i];
        double span = ldexp(1.0, (int)(128 - n->bits));

        if (n->bits >= 96 && memcmp(n->addr, mapped, sizeof mapped) == 0)
            *v4 += span;
        else
            *v6 += span;
    }
}

bool netlist_contains(const struct netlist *l, const char *ip)
{
    uint8_t a[16];
    bool v4;
    size_t i;

    if (l && ip && strcmp(ip, NETADDR_UNIX_PEER) == 0)
        return l->unix_peers;
    if (!l || !parse_ip(ip, a, &v4))
        return false;
    for (i = 0; i < l->n; i++)
        if (in_net(&l->nets[i], a))
            return true;
    return false;
}

/* True when `s` is a port: 1 to 5 digits. */
static bool is_port(const char *s)
{
    size_t n = strspn(s, "0123456789");

    return n >= 1 && n <= 5 && s[n] == '\0';
}

/* Reduces hop `h` in place to its address: some proxies write a port
 * ("192.0.2.1:4711") or brackets ("[2001:db8::1]", "[2001:db8::1]:443")
 * into X-Forwarded-For. Left as it is otherwise (parse_ip() decides). */
static void strip_port(char *h)
{
    char *c;

    if (h[0] == '[') {
        c = strchr(h, ']');
        if (c && (c[1] == '\0' || (c[1] == ':' && is_port(c + 2)))) {
            *c = '\0';
            memmove(h, h + 1, strlen(h + 1) + 1);
        }
        return;
    }
    c = strchr(h, ':');
    if (c && !strchr(c + 1, ':') && is_port(c + 1))
        *c = '\0';                       /* one colon: IPv4 and a port */
}

/* Walks one X-Forwarded-For line from the right, copying each hop into
 * `out`; true when every hop was trusted (go on with the line before),
 * false once an untrusted or malformed hop ends the walk. */
static bool walk_line(const struct netlist *trusted, const char *xff,
                      char *out, size_t out_len)
{
    const char *end = xff + strlen(xff);

    while (end > xff) {
        const char *start = end;
        char hop[64];
        uint8_t a[16];
        bool v4;
        size_t n;

        while (start > xff && start[-1] != ',')
            start--;
        while (start < end && isspace((unsigned char)*start))
            start++;
        n = (size_t)(end - start);
        while (n && isspace((unsigned char)start[n - 1]))
            n--;
        if (n == 0 || n >= sizeof hop)
            return false;                 /* malformed: keep what we have */
        memcpy(hop, start, n);
        hop[n] = '\0';
        strip_port(hop);
        if (!parse_ip(hop, a, &v4))
            return false;
        snprintf(out, out_len, "%s", hop);
        if (!netlist_contains(trusted, hop))
            return false;
        end = start;
        while (end > xff && end[-1] != ',')
            end--;
        if (end > xff)
            end--;                        /* step over the comma */
        else
            return true;
    }
    return false;                         /* an empty line is malformed */
}

void netlist_client_ip_lines(const struct netlist *trusted, const char *peer,
                             const char *const *xff, size_t nlines,
                             char *out, size_t out_len)
{
    size_t i = nlines;

    snprintf(out, out_len, "%s", peer);
    if (nlines == 0 || !netlist_contains(trusted, peer))
        return;
    while (i > 0 && xff[i - 1] && walk_line(trusted, xff[i - 1], out,
                                            out_len))
        i--;
}

void netlist_client_ip(const struct netlist *trusted, const char *peer,
                       const char *xff, char *out, size_t out_len)
{
    netlist_client_ip_lines(trusted, peer, &xff, xff ? 1 : 0, out, out_len);
}

void netaddr_client_key(const char *ip, char out[NETADDR_KEY_LEN])
{
    char text[INET6_ADDRSTRLEN];
    uint8_t a[16];
    bool v4;

    if (!ip || !parse_ip(ip, a, &v4)) {
        snprintf(out, NETADDR_KEY_LEN, "%s", ip ? ip : "");
        return;
    }
    if (v4) {
        inet_ntop(AF_INET, a + 12, text, sizeof text);
        snprintf(out, NETADDR_KEY_LEN, "%s", text);
        return;
    }
    memset(a + 8, 0, 8);                    /* the /64 */
    inet_ntop(AF_INET6, a, text, sizeof text);
    snprintf(out, NETADDR_KEY_LEN, "%s/64", text);
}
