/* mailmsg.c: what a mail is, with no I/O: links, the message and the
 * webhook event of a mail, its signature, the checks of a sender address
 * and of a transport URL, and the retry backoff. The outbox's delivery
 * thread is src/mail.c. */
#include "mail.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"
#include "crypto.h"

#define MAX_ADDR 320
bool mail_url_loopback(const char *url)
{
    const char *p = url ? strstr(url, "://") : NULL;
    const char *end, *at, *h, *he;
    struct in_addr a4;
    struct in6_addr a6;
    char host[256];
    size_t n;

    if (!p)
        return false;
    p += 3;
    end = p + strcspn(p, "/?#");
    at = memchr(p, '@', (size_t)(end - p));
    if (at && memchr(at + 1, '@', (size_t)(end - at - 1)))
        return false;                 /* ambiguous: parsers disagree */
    h = at ? at + 1 : p;
    if (*h == '[') {
        he = memchr(h, ']', (size_t)(end - h));
        if (!he || (he + 1 != end && he[1] != ':'))
            return false;
        h++;
    } else {
        he = memchr(h, ':', (size_t)(end - h));
        if (!he)
            he = end;
    }
    n = (size_t)(he - h);
    if (n == 0 || n >= sizeof host)
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* The path of the page a mail of `kind` links to, or NULL. */
static const char *link_path(const char *kind)
{
    if (kind && strcmp(kind, MAIL_KIND_RESET) == 0)
        return "/reset-password";
    if (kind && strcmp(kind, MAIL_KIND_VERIFY) == 0)
        return "/verify-email";
    return NULL;
}

bool mail_link(const char *public_url, const char *kind, const char *token,
               char *out, size_t cap)
{
    const char *path = link_path(kind);
    size_t n = public_url ? strlen(public_url) : 0;
    int w;

    if (cap)
        out[0] = '\0';
    if (!path || !token || n == 0 || n > MAIL_MAX_LINK)
        return false;
    while (n > 0 && public_url[n - 1] == '/')
        n--;
    w = snprintf(out, cap, "%.*s%s?token=%s", (int)n, public_url, path,
                 token);
    if (w < 0 || (size_t)w >= cap) {
        if (cap)
            crypt_wipe(out, cap);
        return false;
    }
    return true;
}

/* True when `s` is 1 to `max` bytes of printable ASCII (no controls, so
 * nothing can start a new header line). */
static bool header_safe(const char *s, size_t max)
{
    size_t i;

    if (!s || !*s)
        return false;
    for (i = 0; s[i]; i++)
        if (i >= max || (unsigned char)s[i] < 0x20 ||
            (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

bool mail_envelope(const char *from, char *out, size_t cap)
{
    const char *b = from, *e, *at;
    int w;

    if (cap)
        out[0] = '\0';
    if (!header_safe(from, MAX_ADDR))
        return false;
    if (strchr(from, '<')) {
        b = strchr(from, '<') + 1;
        e = strchr(b, '>');
        if (!e || strchr(e + 1, '<') || strchr(e + 1, '>'))
            return false;
    } else {
        e = b + strlen(b);
    }
    while (b < e && *b == ' ')
        b++;
    while (e > b && e[-1] == ' ')
        e--;
    at = memchr(b, '@', (size_t)(e - b));
    if (!at || at == b || at + 1 == e ||
        memchr(at + 1, '@', (size_t)(e - at - 1)) ||
        memchr(b, ' ', (size_t)(e - b)) || memchr(b, '<', (size_t)(e - b)))
        return false;
    w = snprintf(out, cap, "<%.*s>", (int)(e - b), b);
    return w > 0 && (size_t)w < cap;
}

/* RFC 5322 date of `ms` (UTC), locale-independent. */
static void rfc5322_date(int64_t ms, char out[40])
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu",
                                     "Fri", "Sat" };
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May",
                                         "Jun", "Jul", "Aug", "Sep", "Oct",
                                         "Nov", "Dec" };
    time_t s = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&s, &tm);
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d +0000",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

#define CRLF "\r\n"

static const char reset_text[] =
    "Hello," CRLF CRLF
    "Someone asked to reset the password of the account registered with" CRLF
    "this email address. To choose a new password, open this link within" CRLF
    "one hour:" CRLF CRLF
    "%s" CRLF CRLF
    "The link works once. If you did not ask for this, ignore this mail:" CRLF
    "your password stays as it is." CRLF;

static const char verify_text[] =
    "Hello," CRLF CRLF
    "Please confirm that this email address is yours by opening this" CRLF
    "link within 24 hours:" CRLF CRLF
    "%s" CRLF CRLF
    "The link works once. If you did not create an account, ignore this" CRLF
    "mail." CRLF;

static const char email_changed_text[] =
    "Hello," CRLF CRLF
    "The email address of your account was changed from this address to" CRLF
    "another one. Mail about the account now goes there." CRLF CRLF
    "If you did not make this change, someone else may have your" CRLF
    "password: contact the administrator of the service at once." CRLF;

static const char passkey_added_text[] =
    "Hello," CRLF CRLF
    "A passkey was added to your account: it signs in without the" CRLF
    "password." CRLF CRLF
    "If you did not add it, someone else can use your account: reset" CRLF
    "your password, remove the passkeys you do not know from your" CRLF
    "account, and contact the administrator of the service." CRLF;

/* True for a kind of mail that carries no link. */
bool mail_linkless(const char *kind)
{
    return kind && (strcmp(kind, MAIL_KIND_EMAIL_CHANGED) == 0 ||
                    strcmp(kind, MAIL_KIND_PASSKEY_ADDED) == 0);
}

bool mail_cap_key(const char *recipient, char *out, size_t cap)
{
    const char *at = strrchr(recipient, '@');
    const char *plus = at ? memchr(recipient, '+', (size_t)(at - recipient))
                          : NULL;
    /* a local part that begins with '+' has no mailbox before it */
    size_t local = plus && plus > recipient ? (size_t)(plus - recipient)
                                            : at ? (size_t)(at - recipient)
                                                 : strlen(recipient);
    int n = snprintf(out, cap, "%.*s%s", (int)local, recipient,
                     at ? at : "");

    return n >= 0 && (size_t)n < cap;
}

/* The body and subject of mail `m`, or NULL for an unknown kind. Caller
 * wipes and frees the body with free(). */
static char *mail_body(const struct mail_msg *m, const char **subject)
{
    bool reset = strcmp(m->kind, MAIL_KIND_RESET) == 0;
    char *body;
    int blen;

    if (strcmp(m->kind, MAIL_KIND_EMAIL_CHANGED) == 0) {
        *subject = "Your email address was changed";
        return strdup(email_changed_text);
    }
    if (strcmp(m->kind, MAIL_KIND_PASSKEY_ADDED) == 0) {
        *subject = "A passkey was added to your account";
        return strdup(passkey_added_text);
    }
    if (!reset && strcmp(m->kind, MAIL_KIND_VERIFY) != 0)
        return NULL;
    *subject = reset ? "Reset your password" : "Confirm your email address";
    blen = snprintf(NULL, 0, reset ? reset_text : verify_text, m->link);
    body = blen > 0 ? malloc((size_t)blen + 1) : NULL;
    if (body)
        snprintf(body, (size_t)blen + 1, reset ? reset_text : verify_text,
                 m->link);
    return body;
}

#define MESSAGE_FORMAT                                                     \
    "Date: %s" CRLF                                                        \
    "From: %s" CRLF                                                        \
    "To: %s" CRLF                                                          \
    "Subject: %s" CRLF                                                     \
    "Message-ID: <%s@%s>" CRLF                                             \
    "MIME-Version: 1.0" CRLF                                               \
    "Content-Type: text/plain; charset=utf-8" CRLF                         \
    "Content-Transfer-Encoding: 8bit" CRLF                                 \
    "Auto-Submitted: auto-generated" CRLF                                  \
    CRLF                                                                   \
    "%s"

char *mail_render(const struct mail_msg *m, const char *from,
                  int64_t now_ms)
{
    char date[40], env[MAX_ADDR + 3], domain[MAX_ADDR];
    char *body = NULL, *out = NULL;
    const char *at, *subject = NULL;
    int len;

    if (!m->kind || !header_safe(m->to, MAX_ADDR) ||
        !header_safe(m->id, 64) ||
        (!mail_linkless(m->kind) && !header_safe(m->link, MAIL_MAX_LINK)) ||
        strchr(m->to, '<') || strchr(m->to, '>') || !strchr(m->to, '@') ||
        !mail_envelope(from, env, sizeof env))
        return NULL;
    at = strchr(env, '@');
    snprintf(domain, sizeof domain, "%.*s", (int)(strlen(at + 1) - 1),
             at + 1);                           /* without the '>' */
    rfc5322_date(now_ms, date);
    body = mail_body(m, &subject);
    if (!body)
        return NULL;
    len = snprintf(NULL, 0, MESSAGE_FORMAT, date, from, m->to, subject,
                   m->id, domain, body);
    out = len > 0 ? malloc((size_t)len + 1) : NULL;
    if (out)
        snprintf(out, (size_t)len + 1, MESSAGE_FORMAT, date, from, m->to,
                 subject, m->id, domain, body);
    crypt_wipe(body, strlen(body));
    free(body);
    return out;
}

/* Appends `s` as a JSON string (quotes included) at `out` + *n, when
 * `out` is not NULL; counts the bytes either way. */
static void json_str(char *out, size_t *n, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;

#define PUT(c) do { if (out) out[*n] = (char)(c); (*n)++; } while (0)
    PUT('"');
    for (; *p; p++) {
        if (*p == '"' || *p == '\\') {
            PUT('\\');
            PUT(*p);
        } else if (*p < 0x20) {
            PUT('\\');
            PUT('u');
            PUT('0');
            PUT('0');
            PUT(hex[*p >> 4]);
            PUT(hex[*p & 15]);
        } else {
            PUT(*p);
        }
    }
    PUT('"');
#undef PUT
}

/* Writes the event into `out` (NULL: only counts); returns its length. */
static size_t event_write(char *out, const struct mail_msg *m,
                          const char *created)
{
    const char *keys[] = { "type", "to", "link", "id", "created_at" };
    const char *vals[] = { m->kind, m->to, m->link, m->id, created };
    size_t n = 0, i;

    if (out)
        out[n] = '{';
    n++;
    for (i = 0; i < 5; i++) {
        if (i) {
            if (out)
                out[n] = ',';
            n++;
        }
        json_str(out, &n, keys[i]);
        if (out)
            out[n] = ':';
        n++;
        if (vals[i]) {
            json_str(out, &n, vals[i]);
        } else {                      /* a mail without a link */
            if (out)
                memcpy(out + n, "null", 4);
            n += 4;
        }
    }
    if (out)
        out[n] = '}';
    return n + 1;
}

char *mail_event_json(const struct mail_msg *m)
{
    char created[32];
    char *out;
    size_t n;

    if (!m->kind || !m->to || (!m->link && !mail_linkless(m->kind)) || !m->id)
        return NULL;
    clock_rfc3339(m->created_at, created);
    /* Written by hand rather than through jansson so that the only copy
     * of the link is this buffer, which the caller wipes. */
    n = event_write(NULL, m, created);
    out = malloc(n + 1);
    if (!out)
        return NULL;
    event_write(out, m, created);
    out[n] = '\0';
    return out;
}

void mail_sign(const char *secret, int64_t timestamp, const char *body,
               size_t body_len, char out[MAIL_HEX_SIG_LEN + 1])
{
    struct crypt_hmac_sha256 st;
    uint8_t mac[CRYPT_HMAC_SHA256_LEN];
    char ts[24];

    snprintf(ts, sizeof ts, "%" PRId64 ".", timestamp);
    crypt_hmac_sha256_init(&st, secret, strlen(secret));
    crypt_hmac_sha256_update(&st, ts, strlen(ts));
    crypt_hmac_sha256_update(&st, body, body_len);
    crypt_hmac_sha256_final(&st, mac);             /* wipes the state */
    crypt_hex_encode(mac, sizeof mac, out, MAIL_HEX_SIG_LEN + 1);
}

/* `base` doubling per failure after the first, at most `max`, then
 * between half and all of that as `rnd` says. */
static int64_t jittered(int64_t failures, int64_t base, int64_t max,
                        uint32_t rnd)
{
    int64_t d = base, lo;

    while (failures-- > 1 && d < max)
        d *= 2;
    if (d > max)
        d = max;
    lo = d / 2;
    return lo + (int64_t)(rnd % (uint64_t)(d - lo + 1));
}

int64_t mail_backoff_ms(int64_t failures, uint32_t rnd)
{
    return jittered(failures, MAIL_RETRY_BASE_MS, MAIL_RETRY_MAX_MS, rnd);
}

int64_t mail_pause_ms(int64_t failures, uint32_t rnd)
{
    return jittered(failures, MAIL_PAUSE_BASE_MS, MAIL_PAUSE_MAX_MS, rnd);
}

bool mail_give_up(int64_t attempts, int64_t created_at, int64_t now)
{
    return attempts >= MAIL_MAX_ATTEMPTS || now - created_at >= MAIL_STALE_MS;
}

bool mail_webhook_refused(long status)
{
    return status >= 400 && status < 500 && status != 408 && status != 429;
}
