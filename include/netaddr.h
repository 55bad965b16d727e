#ifndef AUTH_NETADDR_H           /* netaddr.h: addresses and CIDR lists */
#define AUTH_NETADDR_H
#include <stdbool.h>
#include <stddef.h>

/* A parsed list of addresses/CIDRs ("10.0.0.0/8, ::1"). Immutable once
 * made; share it between threads freely. */
struct netlist;

/* The address of a peer on a Unix socket (socket activation with
 * `ListenStream=/path`): a list holding the item "unix" contains it, so
 * AUTH_TRUSTED_PROXIES=unix believes the X-Forwarded-For of a proxy in
 * front that connects over the socket. */
#define NETADDR_UNIX_PEER "unix"

/* Parses `spec` (NULL or "" gives an empty list); an item is an address,
 * a CIDR, or "unix" (any case). NULL on a malformed item or no memory.
 * Free with netlist_free(); NULL is a no-op. */
struct netlist *netlist_parse(const char *spec);
void netlist_free(struct netlist *l);
/* How many addresses the entries of `l` span, IPv4 (an IPv4-mapped
 * entry too) and IPv6 apart; entries that overlap count twice. */
void netlist_span(const struct netlist *l, double *v4, double *v6);
/* True when the textual address `ip` (IPv4 or IPv6; IPv4-mapped IPv6 is
 * treated as IPv4) is inside one of the entries of `l`. */
bool netlist_contains(const struct netlist *l, const char *ip);
/* The client address behind trusted proxies: walks `xff` (the
 * X-Forwarded-For value) from the right while the hop is in `trusted`,
 * and copies the first untrusted hop into `out`. Keeps `peer` when the
 * peer is not trusted or the header is absent or malformed. */
void netlist_client_ip(const struct netlist *trusted, const char *peer,
                       const char *xff, char *out, size_t out_len);
/* The same over every X-Forwarded-For header line, `xff[0]` to
 * `xff[nlines - 1]` in the order received: together they are one list
 * (the last line's last hop is the nearest), walked from the right. */
void netlist_client_ip_lines(const struct netlist *trusted, const char *peer,
                             const char *const *xff, size_t nlines,
                             char *out, size_t out_len);

#define NETADDR_KEY_LEN 64
/* The key that counts a client address for rate limits and lockout,
 * written into `out`: an IPv4 address (or IPv4-mapped IPv6) as dotted
 * quad, an IPv6 address as its /64 ("2001:db8:1:2::/64": one host
 * usually owns the whole /64), any other text as itself (cut to fit). */
void netaddr_client_key(const char *ip, char out[NETADDR_KEY_LEN]);

#endif
