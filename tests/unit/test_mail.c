/* test_mail.c: the pure parts of mail delivery (links, the message, the
 * webhook event and its signature, backoff, the loopback rule) and the
 * configuration checks of the mail settings. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "mail.h"

#define T0 INT64_C(1700000000000)          /* Tue, 14 Nov 2023 22:13:20 */
#define TOKEN "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde"

static const struct mail_msg reset_msg = {
    .id = "0190c1d2-0000-7000-8000-000000000001",
    .kind = MAIL_KIND_RESET,
    .to = "ada@example.com",
    .link = "https://app.example.com/reset-password?token=" TOKEN,
    .created_at = T0,
};

/* ---- links ------------------------------------------------------------- */

static void links_have_their_page_and_token(void **state)
{
    char out[MAIL_MAX_LINK + 1];

    (void)state;
    assert_true(mail_link("https://app.example.com", MAIL_KIND_RESET, TOKEN,
                          out, sizeof out));
    assert_string_equal(out, "https://app.example.com/reset-password?token="
                             TOKEN);
    assert_true(mail_link("https://app.example.com/base//", MAIL_KIND_VERIFY,
                          TOKEN, out, sizeof out));
    assert_string_equal(out, "https://app.example.com/base/verify-email?"
                             "token=" TOKEN);
    assert_false(mail_link("https://x", "other", TOKEN, out, sizeof out));
    assert_false(mail_link("https://x", MAIL_KIND_RESET, TOKEN, out, 20));
    assert_string_equal(out, "");        /* no partial link left behind */
}

/* ---- the message ------------------------------------------------------- */

/* True when every line of `s` ends in CRLF (no bare CR or LF) and none is
 * longer than 998 characters. */
static bool crlf_only(const char *s)
{
    size_t line = 0;

    for (; *s; s++) {
        if (*s == '\r') {
            if (s[1] != '\n')
                return false;
            s++;
            line = 0;
            continue;
        }
        if (*s == '\n' || ++line > 998)
            return false;
    }
    return true;
}

/* The value of header `name` in message `msg` (a static copy) or NULL. */
static const char *header(const char *msg, const char *name)
{
    static char val[512];
    const char *end = strstr(msg, "\r\n\r\n"), *p = msg;
    size_t n = strlen(name);

    while (p && p < end) {
        if (strncmp(p, name, n) == 0 && p[n] == ':' && p[n + 1] == ' ') {
            const char *e = strstr(p, "\r\n");

            snprintf(val, sizeof val, "%.*s", (int)(e - p - n - 2),
                     p + n + 2);
            return val;
        }
        p = strstr(p, "\r\n");
        if (p)
            p += 2;
    }
    return NULL;
}

static void message_has_headers_and_body(void **state)
{
    char *m = mail_render(&reset_msg, "Auth <auth@mail.example.com>", T0);
    const char *body;

    (void)state;
    assert_non_null(m);
    assert_true(crlf_only(m));
    assert_string_equal(header(m, "Date"), "Tue, 14 Nov 2023 22:13:20 +0000");
    assert_string_equal(header(m, "From"), "Auth <auth@mail.example.com>");
    assert_string_equal(header(m, "To"), "ada@example.com");
    assert_string_equal(header(m, "Subject"), "Reset your password");
    assert_string_equal(header(m, "Message-ID"),
                        "<0190c1d2-0000-7000-8000-000000000001"
                        "@mail.example.com>");
    assert_string_equal(header(m, "MIME-Version"), "1.0");
    assert_string_equal(header(m, "Content-Type"),
                        "text/plain; charset=utf-8");
    body = strstr(m, "\r\n\r\n");
    assert_non_null(body);
    assert_non_null(strstr(body, "\r\n" "https://app.example.com/"
                                 "reset-password?token=" TOKEN "\r\n"));
    assert_null(strstr(m, "verify-email"));
    free(m);
}

static void verification_message(void **state)
{
    struct mail_msg v = reset_msg;
    char *m;

    (void)state;
    v.kind = MAIL_KIND_VERIFY;
    v.link = "https://app.example.com/verify-email?token=" TOKEN;
    m = mail_render(&v, "auth@example.com", T0);
    assert_non_null(m);
    assert_true(crlf_only(m));
    assert_string_equal(header(m, "Subject"), "Confirm your email address");
    assert_string_equal(header(m, "From"), "auth@example.com");
    assert_non_null(strstr(m, v.link));
    free(m);
}

static void message_refuses_header_injection(void **state)
{
    struct mail_msg bad = reset_msg;

    (void)state;
    bad.to = "ada@example.com\r\nBcc: eve@example.com";
    assert_null(mail_render(&bad, "auth@example.com", T0));
    bad = reset_msg;
    bad.to = "ada@example.com>, <eve@example.com";
    assert_null(mail_render(&bad, "auth@example.com", T0));
    bad = reset_msg;
    bad.link = "https://x/reset-password?token=a\nb";
    assert_null(mail_render(&bad, "auth@example.com", T0));
    bad = reset_msg;
    bad.kind = "other";
    assert_null(mail_render(&bad, "auth@example.com", T0));
    assert_null(mail_render(&reset_msg, "auth@example.com\r\nX: y", T0));
    assert_null(mail_render(&reset_msg, "no address", T0));
}

static void envelope_takes_the_address(void **state)
{
    char out[64];

    (void)state;
    assert_true(mail_envelope("auth@example.com", out, sizeof out));
    assert_string_equal(out, "<auth@example.com>");
    assert_true(mail_envelope("Auth Serve <auth@example.com>", out,
                              sizeof out));
    assert_string_equal(out, "<auth@example.com>");
    assert_false(mail_envelope("Auth <a@b> <c@d>", out, sizeof out));
    assert_false(mail_envelope("a@b@c", out, sizeof out));
    assert_false(mail_envelope("Auth <auth@example.com", out, sizeof out));
    assert_false(mail_envelope("@example.com", out, sizeof out));
    assert_false(mail_envelope("auth@example.com", out, 10));
}

/* ---- the webhook event ------------------------------------------------- */

/* The cap counts the mailbox: the subaddress (RFC 5233) goes. */
static void cap_key_is_the_mailbox(void **state)
{
    static const char *const pairs[][2] = {
        { "a+1@example.com", "a@example.com" },
        { "a+@example.com", "a@example.com" },
        { "a+b+c@example.com", "a@example.com" },
        { "a@example.com", "a@example.com" },
        { "+a@example.com", "+a@example.com" },   /* no mailbox before */
        { "a.b@x+y.example", "a.b@x+y.example" },  /* only the local part */
    };
    char out[MAIL_ADDR_MAX + 1], small[8];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        assert_true(mail_cap_key(pairs[i][0], out, sizeof out));
        assert_string_equal(out, pairs[i][1]);
    }
    assert_false(mail_cap_key("longer@example.com", small, sizeof small));
}

static void event_is_the_documented_json(void **state)
{
    char *s = mail_event_json(&reset_msg);
    json_error_t e;
    json_t *j;

    (void)state;
    assert_non_null(s);
    j = json_loads(s, JSON_REJECT_DUPLICATES, &e);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 5);
    assert_string_equal(json_string_value(json_object_get(j, "type")),
                        "password_reset");
    assert_string_equal(json_string_value(json_object_get(j, "to")),
                        reset_msg.to);
    assert_string_equal(json_string_value(json_object_get(j, "link")),
                        reset_msg.link);
    assert_string_equal(json_string_value(json_object_get(j, "id")),
                        reset_msg.id);
    assert_string_equal(json_string_value(json_object_get(j, "created_at")),
                        "2023-11-14T22:13:20Z");
    json_decref(j);
    free(s);
}

static void event_escapes_strings(void **state)
{
    struct mail_msg odd = reset_msg;
    char *s;
    json_t *j;

    (void)state;
    odd.to = "q\"uote\\d@example.com\n";
    s = mail_event_json(&odd);
    assert_non_null(s);
    j = json_loads(s, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "to")), odd.to);
    json_decref(j);
    free(s);
}

static void signature_is_hmac_of_timestamp_and_body(void **state)
{
    char sig[MAIL_HEX_SIG_LEN + 1];
    const char body[] = "{\"a\":1}";

    (void)state;
    /* python3: hmac.new(key, b'1700000000.{"a":1}', 'sha256').hexdigest() */
    mail_sign("0123456789abcdef-secret", 1700000000, body, strlen(body),
              sig);
    assert_string_equal(sig, "6948a2dc6985c92d09b9edade5c97dce"
                             "2ba201452d91a72e4a20d35abe4d3420");
    mail_sign("0123456789abcdef-secret", 1700000001, body, strlen(body),
              sig);
    assert_string_not_equal(sig, "6948a2dc6985c92d09b9edade5c97dce"
                                 "2ba201452d91a72e4a20d35abe4d3420");
}

/* ---- backoff and the loopback rule -------------------------------------- */

/* With the largest random number the delay is the whole doubling step;
 * with 0, half of it. */
static void backoff_doubles_up_to_an_hour(void **state)
{
    (void)state;
    assert_int_equal(mail_backoff_ms(1, 2500), 5000);
    assert_int_equal(mail_backoff_ms(1, 0), 2500);
    assert_int_equal(mail_backoff_ms(2, 5000), 10000);
    assert_int_equal(mail_backoff_ms(3, 10000), 20000);
    assert_int_equal(mail_backoff_ms(10, 1280000), 2560000);
    assert_int_equal(mail_backoff_ms(11, 1800000), 3600000);
    assert_int_equal(mail_backoff_ms(11, 0), 1800000);
    assert_int_equal(mail_backoff_ms(1000000, 1800000), 3600000);
    assert_int_equal(mail_backoff_ms(INT64_MAX, 1800000), 3600000);
    assert_int_equal(mail_backoff_ms(0, 2500), 5000);
}

/* Rows that failed together retry at spread-out times: every delay lies
 * between half and all of its step, and different random numbers give
 * different delays. */
static void backoff_is_jittered(void **state)
{
    int64_t d, lo = INT64_MAX, hi = 0;
    uint32_t rnd = 12345;
    int i;

    (void)state;
    for (i = 0; i < 1000; i++) {
        rnd = rnd * 1103515245u + 12345u;
        d = mail_backoff_ms(4, rnd);
        assert_in_range(d, 20000, 40000);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(hi - lo > 15000);
    assert_int_not_equal(mail_backoff_ms(4, 1), mail_backoff_ms(4, 2));
}

/* The transport pauses 0.5-1 s after one failure, doubling, at most a
 * minute: a failing receiver gets a handful of tries a minute whatever
 * the number of queued rows. */
static void transport_pause_grows_and_is_capped(void **state)
{
    int64_t total = 0;
    int n;

    (void)state;
    assert_in_range(mail_pause_ms(1, 0), 500, 1000);
    assert_int_equal(mail_pause_ms(1, 500), 1000);
    assert_int_equal(mail_pause_ms(2, 1000), 2000);
    assert_int_equal(mail_pause_ms(7, 0), 30000);
    assert_int_equal(mail_pause_ms(8, 30000), 60000);
    assert_int_equal(mail_pause_ms(1000, 30000), 60000);
    /* the shortest pauses: tries in the first 45 s of an outage */
    for (n = 1; total < 45000; n++)
        total += mail_pause_ms(n, 0);
    assert_in_range(n - 1, 1, 8);
}

/* A mail is given up after its last try or a day after it was queued,
 * so rows that keep failing do not wait in the outbox forever. */
static void failing_mail_is_given_up(void **state)
{
    (void)state;
    assert_false(mail_give_up(0, T0, T0));
    assert_false(mail_give_up(MAIL_MAX_ATTEMPTS - 1, T0, T0 + 3600000));
    assert_true(mail_give_up(MAIL_MAX_ATTEMPTS, T0, T0 + 1));
    assert_true(mail_give_up(MAIL_MAX_ATTEMPTS + 40, T0, T0 + 1));
    assert_false(mail_give_up(1, T0, T0 + MAIL_STALE_MS - 1));
    assert_true(mail_give_up(0, T0, T0 + MAIL_STALE_MS));
    /* between 10 and 60 attempts: retries last hours, not forever */
    assert_true(MAIL_MAX_ATTEMPTS >= 10 && MAIL_MAX_ATTEMPTS <= 60);
    assert_true(MAIL_STALE_MS <= INT64_C(86400000));
}

/* A webhook answer that refuses one event drops that mail without
 * pausing the transport; one about the receiver does not. */
static void webhook_refusals(void **state)
{
    (void)state;
    assert_true(mail_webhook_refused(400));
    assert_true(mail_webhook_refused(404));
    assert_true(mail_webhook_refused(422));
    assert_false(mail_webhook_refused(408));     /* timed out */
    assert_false(mail_webhook_refused(429));     /* slow down */
    assert_false(mail_webhook_refused(500));
    assert_false(mail_webhook_refused(503));
    assert_false(mail_webhook_refused(204));
    assert_false(mail_webhook_refused(302));
    assert_false(mail_webhook_refused(0));
}

static void loopback_hosts(void **state)
{
    (void)state;
    assert_true(mail_url_loopback("smtp://127.0.0.1:2525"));
    assert_true(mail_url_loopback("smtp://127.8.9.10"));
    assert_true(mail_url_loopback("smtp://localhost/"));
    assert_true(mail_url_loopback("smtp://LocalHost:25/relay"));
    assert_true(mail_url_loopback("smtp://[::1]:25"));
    assert_true(mail_url_loopback("smtp://user:pw@127.0.0.1:25"));
    assert_true(mail_url_loopback("http://127.0.0.1:9/hook?x=1"));
    assert_false(mail_url_loopback("smtp://mail.example.com"));
    assert_false(mail_url_loopback("smtp://localhost.example.com"));
    assert_false(mail_url_loopback("smtp://127.0.0.1.example.com"));
    assert_false(mail_url_loopback("smtp://10.0.0.1"));
    assert_false(mail_url_loopback("smtp://[::2]:25"));
    assert_false(mail_url_loopback("smtp://[::1"));
    assert_false(mail_url_loopback("smtp://127.0.0.1@evil.example.com"));
    assert_false(mail_url_loopback("smtp://a@127.0.0.1@evil.example.com"));
    assert_false(mail_url_loopback("smtp://evil.example.com#@127.0.0.1"));
    assert_false(mail_url_loopback("smtp://evil.example.com/@127.0.0.1"));
    assert_false(mail_url_loopback("smtp://"));
    assert_false(mail_url_loopback("127.0.0.1"));
    assert_false(mail_url_loopback(NULL));
}

/* ---- configuration ----------------------------------------------------- */

/* Loads a configuration from `env` alone; returns whether it is valid
 * and, when not, whether the reason names `var`. */
static bool cfg_ok(char *const *env, const char *var)
{
    struct cfg c;
    char why[512] = "";
    bool ok = cfg_load_from(&c, NULL, env, why, sizeof why);

    cfg_cleanup(&c);
    if (!ok && var && !strstr(why, var))
        fail_msg("\"%s\" does not name %s", why, var);
    return ok;
}

static void smtp_plain_only_to_loopback(void **state)
{
    char *local[] = { "AUTH_SMTP_URL=smtp://127.0.0.1:2525",
                      "AUTH_SMTP_FROM=auth@example.com", NULL };
    char *remote[] = { "AUTH_SMTP_URL=smtp://mail.example.com:587",
                       "AUTH_SMTP_FROM=auth@example.com", NULL };
    char *tls[] = { "AUTH_SMTP_URL=smtps://mail.example.com:465",
                    "AUTH_SMTP_FROM=Auth <auth@example.com>", NULL };
    char *no_from[] = { "AUTH_SMTP_URL=smtps://mail.example.com", NULL };
    char *bad_from[] = { "AUTH_SMTP_URL=smtps://mail.example.com",
                         "AUTH_SMTP_FROM=not an address", NULL };

    (void)state;
    assert_true(cfg_ok(local, NULL));
    assert_false(cfg_ok(remote, "AUTH_SMTP_URL"));
    assert_true(cfg_ok(tls, NULL));
    assert_false(cfg_ok(no_from, "AUTH_SMTP_FROM"));
    assert_false(cfg_ok(bad_from, "AUTH_SMTP_FROM"));
}

static void webhook_settings(void **state)
{
    char *ok[] = { "AUTH_NOTIFY_WEBHOOK_URL=https://hooks.example.com/mail",
                   "AUTH_NOTIFY_WEBHOOK_SECRET=0123456789abcdef", NULL };
    char *local[] = { "AUTH_NOTIFY_WEBHOOK_URL=http://127.0.0.1:9/mail",
                      "AUTH_NOTIFY_WEBHOOK_SECRET=0123456789abcdef", NULL };
    char *clear[] = { "AUTH_NOTIFY_WEBHOOK_URL=http://hooks.example.com/m",
                      "AUTH_NOTIFY_WEBHOOK_SECRET=0123456789abcdef", NULL };
    char *no_secret[] = { "AUTH_NOTIFY_WEBHOOK_URL=https://h.example.com",
                          NULL };
    char *short_secret[] = { "AUTH_NOTIFY_WEBHOOK_URL=https://h.example.com",
                             "AUTH_NOTIFY_WEBHOOK_SECRET=short", NULL };
    char *both[] = { "AUTH_NOTIFY_WEBHOOK_URL=https://hooks.example.com/m",
                     "AUTH_NOTIFY_WEBHOOK_SECRET=0123456789abcdef",
                     "AUTH_SMTP_URL=smtps://mail.example.com",
                     "AUTH_SMTP_FROM=auth@example.com", NULL };

    (void)state;
    assert_true(cfg_ok(ok, NULL));
    assert_true(cfg_ok(local, NULL));
    assert_false(cfg_ok(clear, "AUTH_NOTIFY_WEBHOOK_URL"));
    assert_false(cfg_ok(no_secret, "AUTH_NOTIFY_WEBHOOK_SECRET"));
    assert_false(cfg_ok(short_secret, "AUTH_NOTIFY_WEBHOOK_SECRET"));
    assert_false(cfg_ok(both, "AUTH_NOTIFY_WEBHOOK_URL"));
}

static void public_url_is_bounded(void **state)
{
    char long_url[700];
    char *env[] = { long_url, NULL };

    (void)state;
    snprintf(long_url, sizeof long_url, "AUTH_PUBLIC_URL=https://%0600d",
             0);
    assert_false(cfg_ok(env, "AUTH_PUBLIC_URL"));
    /* a long path (a host name is at most 253 characters) */
    snprintf(long_url, sizeof long_url,
             "AUTH_PUBLIC_URL=https://auth.example.com/%0380d", 0);
    assert_true(cfg_ok(env, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(links_have_their_page_and_token),
        cmocka_unit_test(message_has_headers_and_body),
        cmocka_unit_test(verification_message),
        cmocka_unit_test(message_refuses_header_injection),
        cmocka_unit_test(envelope_takes_the_address),
        cmocka_unit_test(cap_key_is_the_mailbox),
        cmocka_unit_test(event_is_the_documented_json),
        cmocka_unit_test(event_escapes_strings),
        cmocka_unit_test(signature_is_hmac_of_timestamp_and_body),
        cmocka_unit_test(backoff_doubles_up_to_an_hour),
        cmocka_unit_test(backoff_is_jittered),
        cmocka_unit_test(transport_pause_grows_and_is_capped),
        cmocka_unit_test(failing_mail_is_given_up),
        cmocka_unit_test(webhook_refusals),
        cmocka_unit_test(loopback_hosts),
        cmocka_unit_test(smtp_plain_only_to_loopback),
        cmocka_unit_test(webhook_settings),
        cmocka_unit_test(public_url_is_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
