/* test_cfg_webauthn.c: the AUTH_WEBAUTHN_* settings: defaults taken from
 * AUTH_PUBLIC_URL, and values refused at start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "cfg.h"

static char why[512];

/* Loads a configuration from `env` alone (no .env file). */
static bool load(struct cfg *c, char **env)
{
    why[0] = '\0';
    return cfg_load_from(c, NULL, env, why, sizeof why);
}

static void defaults_follow_public_url(void **state)
{
    static const struct { const char *url, *rp_id, *origin; } v[] = {
        { "http://127.0.0.1:8000", "127.0.0.1", "http://127.0.0.1:8000" },
        { "https://auth.example.com", "auth.example.com",
          "https://auth.example.com" },
        { "https://auth.example.com:8443/base/path", "auth.example.com",
          "https://auth.example.com:8443" },
        { "http://localhost:4000/", "localhost", "http://localhost:4000" },
    };
    char url[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        char *env[] = { url, NULL };
        struct cfg c;

        snprintf(url, sizeof url, "AUTH_PUBLIC_URL=%s", v[i].url);
        assert_true(load(&c, env));
        assert_string_equal(c.webauthn_rp_id, v[i].rp_id);
        assert_string_equal(c.webauthn_origins, v[i].origin);
        assert_string_equal(c.webauthn_rp_name, "auth-serve");
        cfg_cleanup(&c);
    }
}

static void explicit_values(void **state)
{
    char *env[] = { "AUTH_PUBLIC_URL=https://auth.example.com",
                    "AUTH_WEBAUTHN_RP_ID=example.com",
                    "AUTH_WEBAUTHN_RP_NAME=Example",
                    "AUTH_WEBAUTHN_ORIGINS=https://example.com, "
                    "https://app.example.com:8443",
                    NULL };
    struct cfg c;

    (void)state;
    assert_true(load(&c, env));
    assert_string_equal(c.webauthn_rp_id, "example.com");
    assert_string_equal(c.webauthn_rp_name, "Example");
    assert_string_equal(c.webauthn_origins, "https://example.com,"
                                            "https://app.example.com:8443");
    cfg_cleanup(&c);
}

/* WebAuthn origins and the RP ID as a browser serialises them (scheme
 * and host in lower case, no default port), whatever their spelling in
 * the settings: clientDataJSON's origin is compared exactly. */
static void origins_serialised(void **state)
{
    struct cfg c;
    char *dflt[] = { "AUTH_PUBLIC_URL=https://Auth.Example.com:443/app",
                     NULL };
    char *listed[] = { "AUTH_PUBLIC_URL=https://auth.example.com",
                       "AUTH_WEBAUTHN_RP_ID=example.com",
                       "AUTH_WEBAUTHN_ORIGINS= https://App.example.com:443 ,"
                       "http://X.example.com:80,https://y.example.com:8443,"
                       "http://z.example.com:443,https://w.example.com:0443,"
                       "https://v.example.com:,https://u.example.com:08443",
                       NULL };
    char *plain[] = { "AUTH_PUBLIC_URL=http://localhost:8000", NULL };

    (void)state;
    assert_true(load(&c, dflt));
    assert_string_equal(c.webauthn_origins, "https://auth.example.com");
    assert_string_equal(c.webauthn_rp_id, "auth.example.com");
    cfg_cleanup(&c);
    assert_true(load(&c, listed));
    assert_string_equal(c.webauthn_origins,
                        "https://app.example.com,http://x.example.com,"
                        "https://y.example.com:8443,"
                        "http://z.example.com:443,https://w.example.com,"
                        "https://v.example.com,"
                        "https://u.example.com:8443");
    cfg_cleanup(&c);
    assert_true(load(&c, plain));
    assert_string_equal(c.webauthn_origins, "http://localhost:8000");
    assert_string_equal(c.webauthn_rp_id, "localhost");
    cfg_cleanup(&c);
}

static void bad_values_refused(void **state)
{
    static const char *const bad[] = {
        "AUTH_WEBAUTHN_RP_ID=https://example.com",
        "AUTH_WEBAUTHN_RP_ID=Example.com",
        "AUTH_WEBAUTHN_RP_ID=example.com:443",
        "AUTH_WEBAUTHN_RP_ID=.example.com",
        "AUTH_WEBAUTHN_RP_ID=",
        /* an IP address (browsers refuse one as the RP ID) */
        "AUTH_WEBAUTHN_RP_ID=127.0.0.1",
        "AUTH_WEBAUTHN_RP_ID=0.0.1",
        "AUTH_WEBAUTHN_RP_ID=2130706433",
        "AUTH_WEBAUTHN_RP_NAME=",
        "AUTH_WEBAUTHN_ORIGINS=*",
        "AUTH_WEBAUTHN_ORIGINS=",
        "AUTH_WEBAUTHN_ORIGINS=example.com",
        "AUTH_WEBAUTHN_ORIGINS=https://example.com/",
        "AUTH_WEBAUTHN_ORIGINS=https://example.com/login",
        "AUTH_WEBAUTHN_ORIGINS=https://example.com,,https://a.example",
        "AUTH_WEBAUTHN_ORIGINS=ftp://example.com",
        "AUTH_WEBAUTHN_ORIGINS=https://u@example.com",
        "AUTH_WEBAUTHN_ORIGINS=https://example.com:44x",
        "AUTH_WEBAUTHN_ORIGINS=https://example.com:65536",
        "AUTH_WEBAUTHN_ORIGINS=https://example.com?x",
        "AUTH_WEBAUTHN_ORIGINS=https://:443",
        "AUTH_WEBAUTHN_ORIGINS=https://[::1]x",
        "AUTH_PUBLIC_URL=https://u@auth.example.com",
        "AUTH_PUBLIC_URL=https://auth.example.com:port/",
        "AUTH_PUBLIC_URL=https://auth.example.com,x",
        "AUTH_PUBLIC_URL=http://]",
        "AUTH_PUBLIC_URL=http://[]",
        "AUTH_PUBLIC_URL=http://[zz::1]:8000",
        "AUTH_PUBLIC_URL=http://a;b",
        "AUTH_PUBLIC_URL=http://.example.com",
        "AUTH_PUBLIC_URL=https://a.example.com,https://b.example.com/",
        /* mailed links append "/reset-password?token=..." to it */
        "AUTH_PUBLIC_URL=https://auth.example.com#frag",
        "AUTH_PUBLIC_URL=https://auth.example.com/?x=1",
        "AUTH_PUBLIC_URL=https://auth.example.com/base?",
        "AUTH_WEBAUTHN_ORIGINS=https://example.com#frag",
        "AUTH_WEBAUTHN_ORIGINS=https://example.com/?x=1",
    };
    /* An RP ID must be every origin's host or a parent domain of it
     * (else every ceremony fails): refused, or taken. */
    static const struct { const char *rp_id, *origins; bool ok; } pair[] = {
        { "AUTH_WEBAUTHN_RP_ID=evil.com", "https://auth.example.com", 0 },
        { "AUTH_WEBAUTHN_RP_ID=example.com",
          "https://auth.example.com,https://notexample.com", 0 },
        { "AUTH_WEBAUTHN_RP_ID=ample.com", "https://example.com", 0 },
        { "AUTH_WEBAUTHN_RP_ID=auth.example.com", "https://example.com",
          0 },
        { "AUTH_WEBAUTHN_RP_ID=example.com",
          "https://example.com, https://a.b.example.com:8443", 1 },
        { "AUTH_WEBAUTHN_RP_ID=localhost", "http://localhost:4000", 1 },
        { "AUTH_WEBAUTHN_RP_ID=1password.example9",
          "https://1password.example9", 1 },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *env[] = { (char *)bad[i], NULL };
        struct cfg c;
        char name[64];

        assert_false(load(&c, env));
        snprintf(name, sizeof name, "%.*s", (int)strcspn(bad[i], "="),
                 bad[i]);
        if (!strstr(why, name))
            fail_msg("%s: %s", bad[i], why);
        cfg_cleanup(&c);
    }
    for (i = 0; i < sizeof pair / sizeof pair[0]; i++) {
        char origins[256];
        char *env[] = { (char *)pair[i].rp_id, origins, NULL };
        struct cfg c;

        snprintf(origins, sizeof origins, "AUTH_WEBAUTHN_ORIGINS=%s",
                 pair[i].origins);
        if (load(&c, env) != pair[i].ok ||
            (!pair[i].ok && !strstr(why, "AUTH_WEBAUTHN_RP_ID")))
            fail_msg("%s, %s: %s", pair[i].rp_id, pair[i].origins, why);
        cfg_cleanup(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_follow_public_url),
        cmocka_unit_test(explicit_values),
        cmocka_unit_test(origins_serialised),
        cmocka_unit_test(bad_values_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
