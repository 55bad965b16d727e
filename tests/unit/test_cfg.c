/* Configuration: defaults, ranges, unknown names, .env precedence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfg.h"

#define EXAMPLE SOURCE_DIR "/.env.example"

#define SECRET32 "0123456789abcdef0123456789abcdef"

static char why[512];

static bool load(struct cfg *c, const char *file, char **env)
{
    why[0] = '\0';
    return cfg_load_from(c, file, env, why, sizeof why);
}

static void test_defaults(void **state)
{
    struct cfg c;
    char *env[] = { NULL };

    (void)state;
    assert_true(load(&c, NULL, env));
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 8000);
    assert_string_equal(c.database_url, "sqlite:./data/auth.db");
    assert_int_equal(c.jwt_alg, CFG_ALG_ES256);
    assert_int_equal(c.access_ttl, 900);
    assert_int_equal(c.refresh_ttl, 2592000);
    assert_int_equal(c.argon2_memory_kib, 19456);
    assert_int_equal(c.max_body_bytes, 16384);
    assert_int_equal(c.session_cache_seconds, 5);
    assert_true(c.hash_workers >= 1);
    assert_null(c.introspection_token);
    assert_int_equal(c.session_max_seconds, 7776000);
    assert_string_equal(c.metrics_allow, "127.0.0.0/8,::1");
    assert_null(c.keys_secret);
    assert_int_equal(c.key_publish_seconds, 600);
    assert_int_equal(c.header_timeout, 10);
    assert_int_equal(c.body_timeout, 10);
    assert_int_equal(c.mail_per_recipient_per_hour, 5);
    cfg_cleanup(&c);
}

/* The names cfg_unused() reports for `env`, joined by spaces. */
static const char *unused_of(char **env)
{
    static char names[256];
    struct cfg c;
    struct cfg_unused u[8];
    size_t i, n;

    names[0] = '\0';
    assert_true(load(&c, NULL, env));
    n = cfg_unused(&c, u, 8);
    assert_true(n <= 8);
    for (i = 0; i < n; i++) {
        assert_non_null(u[i].why);
        strcat(names, i ? " " : "");
        strcat(names, u[i].name);
    }
    cfg_cleanup(&c);
    return names;
}

/* A setting with no effect under the others is reported, and only
 * then (a warning at start, `config check`). */
static void test_unused_settings(void **state)
{
    char *none[] = { NULL };
    char *es_secret[] = { "AUTH_JWT_SECRET=" SECRET32, NULL };
    char *hs[] = { "AUTH_JWT_ALG=HS256", "AUTH_JWT_SECRET=" SECRET32,
                   NULL };
    char *hs_file[] = { "AUTH_JWT_ALG=HS256", "AUTH_JWT_SECRET=" SECRET32,
                        "AUTH_JWT_KEY_FILE=/k.pem",
                        "AUTH_KEYS_SECRET=" SECRET32, NULL };
    char *sqlite_sealed[] = { "AUTH_KEYS_SECRET=" SECRET32, NULL };
    char *pg_sealed[] = { "AUTH_DATABASE_URL=postgresql://h/db",
                          "AUTH_KEYS_SECRET=" SECRET32, NULL };
    char *pg_file[] = { "AUTH_DATABASE_URL=postgresql://h/db",
                        "AUTH_JWT_KEY_FILE=/k.pem",
                        "AUTH_KEYS_SECRET=" SECRET32, NULL };
    char *smtp_off[] = { "AUTH_SMTP_FROM=a@example.com",
                         "AUTH_SMTP_USER=u", "AUTH_SMTP_PASSWORD=p", NULL };
    char *smtp_on[] = { "AUTH_SMTP_URL=smtp://127.0.0.1:25",
                        "AUTH_SMTP_FROM=a@example.com", "AUTH_SMTP_USER=u",
                        "AUTH_SMTP_PASSWORD=p", NULL };

    (void)state;
    assert_string_equal(unused_of(none), "");
    assert_string_equal(unused_of(es_secret), "AUTH_JWT_SECRET");
    assert_string_equal(unused_of(hs), "");
    assert_string_equal(unused_of(hs_file),
                        "AUTH_JWT_KEY_FILE AUTH_KEYS_SECRET");
    assert_string_equal(unused_of(sqlite_sealed), "AUTH_KEYS_SECRET");
    assert_string_equal(unused_of(pg_sealed), "");
    assert_string_equal(unused_of(pg_file), "AUTH_KEYS_SECRET");
    assert_string_equal(unused_of(smtp_off),
                        "AUTH_SMTP_FROM AUTH_SMTP_USER AUTH_SMTP_PASSWORD");
    assert_string_equal(unused_of(smtp_on), "");
}

static void test_bad_values_named(void **state)
{
    static const char *bad[] = {
        "AUTH_PORT=65536", "AUTH_PORT=-1", "AUTH_PORT=80x", "AUTH_PORT=",
        "AUTH_HOST=example.com", "AUTH_JWT_ALG=none", "AUTH_JWT_ALG=es256",
        "AUTH_DATABASE_URL=mysql://x", "AUTH_DATABASE_URL=sqlite:",
        "AUTH_ACCESS_TOKEN_TTL=0", "AUTH_ARGON2_ITERATIONS=0",
        "AUTH_MAX_BODY_BYTES=99999999", "AUTH_LOG_LEVEL=loud",
        "AUTH_LOG_FORMAT=xml", "AUTH_TRUSTED_PROXIES=10.0.0.0/33",
        "AUTH_TRUSTED_PROXIES=bogus", "AUTH_PUBLIC_URL=ftp://x",
        "AUTH_SMTP_URL=http://x", "AUTH_CORS_ORIGINS=https://a/,",
        "AUTH_PORT=99999999999999999999",
        "AUTH_INTROSPECTION_TOKEN=x",
        "AUTH_INTROSPECTION_TOKEN=0123456789abcdef0123456789abcde",
        "AUTH_KEYS_SECRET=short", "AUTH_HEADER_TIMEOUT=0",
        "AUTH_METRICS_ALLOW=everyone", "AUTH_SESSION_MAX_SECONDS=1",
        "AUTH_MAIL_PER_RECIPIENT_PER_HOUR=0",
        /* text that is not UTF-8, or holds a control character */
        "AUTH_JWT_ISSUER=iss\xff", "AUTH_JWT_AUDIENCE=a\xc0\xaf" "b",
        "AUTH_JWT_ISSUER=a\nb", "AUTH_SMTP_FROM=x\x7f",
        "AUTH_SMTP_FROM=a@example.com\r\nBcc: b@example.com",
        "AUTH_PUBLIC_URL=http://h/\xed\xa0\x80",       /* a surrogate */
        "AUTH_JWT_ISSUER=a\xc2\x85" "b",              /* U+0085, C1 */
        "AUTH_SMTP_FROM=x\xc2\x9f",                    /* U+009F */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cfg c;
        char *env[] = { (char *)bad[i], NULL };
        char name[64];

        snprintf(name, sizeof name, "%.*s", (int)strcspn(bad[i], "="),
                 bad[i]);
        assert_false(load(&c, NULL, env));
        assert_non_null(strstr(why, name));
        assert_null(strchr(why, '\n'));
        cfg_cleanup(&c);
    }
}

/* A refused number says what it may be (it said "invalid value"). */
static void test_a_bad_number_gives_its_range(void **state)
{
    struct cfg c;
    char *env[] = { "AUTH_ACCESS_TOKEN_TTL=15m", NULL };

    (void)state;
    assert_false(load(&c, NULL, env));
    assert_non_null(strstr(why, "AUTH_ACCESS_TOKEN_TTL"));
    assert_non_null(strstr(why, "from 30 to 86400"));
    cfg_cleanup(&c);
}

static void test_unknown_name(void **state)
{
    struct cfg c;
    char *env[] = { "AUTH_PROT=8000", "PATH=/bin", "NOT_AUTH_X=1", NULL };

    (void)state;
    assert_false(load(&c, NULL, env));
    assert_non_null(strstr(why, "AUTH_PROT"));
    cfg_cleanup(&c);
}

static void test_hs256_needs_secret(void **state)
{
    struct cfg c;
    char *short_secret[] = { "AUTH_JWT_ALG=HS256",
                             "AUTH_JWT_SECRET=0123456789", NULL };
    char *good[] = { "AUTH_JWT_ALG=HS256",
                     "AUTH_JWT_SECRET=0123456789abcdef0123456789abcdef",
                     NULL };

    (void)state;
    assert_false(load(&c, NULL, short_secret));
    assert_non_null(strstr(why, "AUTH_JWT_SECRET"));
    cfg_cleanup(&c);
    assert_true(load(&c, NULL, good));
    assert_int_equal(c.jwt_alg, CFG_ALG_HS256);
    cfg_cleanup(&c);
}

/* Keys stored in PostgreSQL are sealed with AUTH_KEYS_SECRET: required
 * there, unless the keys come from a file or HS256 signs. */
static void test_postgres_needs_keys_secret(void **state)
{
    struct cfg c;
    char *bare[] = { "AUTH_DATABASE_URL=postgresql://h/db", NULL };
    char *sealed[] = { "AUTH_DATABASE_URL=postgresql://h/db",
                       "AUTH_KEYS_SECRET=0123456789abcdef0123456789abcdef",
                       NULL };
    char *file[] = { "AUTH_DATABASE_URL=postgres://h/db",
                     "AUTH_JWT_KEY_FILE=/etc/auth/key.pem", NULL };
    char *hs[] = { "AUTH_DATABASE_URL=postgres://h/db", "AUTH_JWT_ALG=HS256",
                   "AUTH_JWT_SECRET=0123456789abcdef0123456789abcdef",
                   NULL };
    /* a secret under ES256 is unused: it exempts nothing (the start
     * refused what `config check` passed) */
    char *es_secret[] = { "AUTH_DATABASE_URL=postgres://h/db",
                          "AUTH_JWT_SECRET=0123456789abcdef0123456789abcdef",
                          NULL };
    char *lite[] = { "AUTH_DATABASE_URL=sqlite:/tmp/x.db", NULL };

    (void)state;
    assert_false(load(&c, NULL, bare));
    assert_non_null(strstr(why, "AUTH_KEYS_SECRET"));
    cfg_cleanup(&c);
    assert_false(load(&c, NULL, es_secret));
    assert_non_null(strstr(why, "AUTH_KEYS_SECRET"));
    cfg_cleanup(&c);
    assert_true(load(&c, NULL, sealed));
    cfg_cleanup(&c);
    assert_true(load(&c, NULL, file));
    cfg_cleanup(&c);
    assert_true(load(&c, NULL, hs));
    cfg_cleanup(&c);
    assert_true(load(&c, NULL, lite));
    cfg_cleanup(&c);
}

/* A password holding '/', '?', '#' or '@' unencoded is refused (libpq
 * would read part of it as the host or port, and its error would quote
 * it); encoded, and with '@' only in the query, it is taken. */
static void test_database_url_password_unambiguous(void **state)
{
    static const char *const bad[] = {
        "postgres://u:pa/ss-SECRET@127.0.0.1/db",
        "postgres://u:pa?ss@127.0.0.1/db",
        "postgres://u:pa#ss@127.0.0.1/db",
        "postgres://u:p@ss@127.0.0.1/db",
        "postgres://u:p@127.0.0.1/db?application_name=a@b",
    };
    static const char *const good[] = {
        "postgres://u:pa%2Fss%40x@127.0.0.1/db",
        "postgres://127.0.0.1/db",
        "postgresql://u@h:5432/db?sslmode=disable",
    };
    char var[128];
    char *env[] = { var, "AUTH_KEYS_SECRET=0123456789abcdef0123456789abcdef",
                    NULL };
    struct cfg c;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(var, sizeof var, "AUTH_DATABASE_URL=%s", bad[i]);
        assert_false(load(&c, NULL, env));
        assert_non_null(strstr(why, "percent-encode"));
        assert_null(strstr(why, "SECRET"));
        cfg_cleanup(&c);
    }
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        snprintf(var, sizeof var, "AUTH_DATABASE_URL=%s", good[i]);
        assert_true(load(&c, NULL, env));
        cfg_cleanup(&c);
    }
}

static char *write_tmp(const char *text)
{
    static char path[64];
    int fd;

    snprintf(path, sizeof path, "/tmp/auth-cfg-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_dotenv_precedence(void **state)
{
    struct cfg c;
    char *path = write_tmp("# comment\n\nexport AUTH_PORT=9001\n"
                           "AUTH_JWT_ISSUER = \"from file\"\n"
                           "AUTH_JWT_AUDIENCE='aud'\nOTHER=ignored\n"
                           "AUTH_DATA_DIR=/var/lib/x\r\n");
    char *env[] = { "AUTH_JWT_ISSUER=from-env", NULL };

    (void)state;
    assert_true(load(&c, path, env));
    assert_int_equal(c.port, 9001);
    assert_string_equal(c.jwt_issuer, "from-env");
    assert_string_equal(c.jwt_audience, "aud");
    assert_string_equal(c.data_dir, "/var/lib/x");
    assert_string_equal(c.database_url, "sqlite:/var/lib/x/auth.db");
    cfg_cleanup(&c);
    unlink(path);
}

static void test_dotenv_errors(void **state)
{
    struct cfg c;
    char *env[] = { NULL };
    char *env_fix[] = { "AUTH_PORT=1", NULL };
    char *path = write_tmp("AUTH_PORT=abc\n");

    (void)state;
    assert_false(load(&c, path, env));
    assert_non_null(strstr(why, "AUTH_PORT"));
    cfg_cleanup(&c);
    assert_true(load(&c, path, env_fix));      /* the environment wins */
    cfg_cleanup(&c);
    unlink(path);
    path = write_tmp("AUTH_UNHEARD_OF=1\n");
    assert_false(load(&c, path, env));
    assert_non_null(strstr(why, "AUTH_UNHEARD_OF"));
    cfg_cleanup(&c);
    unlink(path);
    path = write_tmp("just words\n");
    assert_false(load(&c, path, env));
    cfg_cleanup(&c);
    unlink(path);
    assert_true(load(&c, "/nonexistent/.env", env));   /* optional */
    cfg_cleanup(&c);
    /* but a link to nothing is a .env that cannot be read */
    path = write_tmp("");
    unlink(path);
    {
        char link[80];

        snprintf(link, sizeof link, "%s-link", path);
        assert_int_equal(symlink(path, link), 0);
        assert_false(load(&c, link, env));
        assert_non_null(strstr(why, "symbolic link"));
        cfg_cleanup(&c);
        unlink(link);
    }
}

/* Loads `text` as the .env file with an empty environment. */
static bool load_text(struct cfg *c, const char *text)
{
    char *env[] = { NULL };
    char *path = write_tmp(text);
    bool ok = load(c, path, env);

    unlink(path);
    return ok;
}

/* The common dotenv syntax: quotes removed, comments after a closing
 * quote or a blank, `export` with any blanks, a byte-order mark. */
static void test_dotenv_syntax(void **state)
{
    struct cfg c;

    (void)state;
    assert_true(load_text(&c, "AUTH_JWT_ISSUER=\"issuer-a\" # prod\n"
                              "export  AUTH_JWT_AUDIENCE=v\n"
                              "export\tAUTH_PORT=9003 # a comment\n"
                              "  # indented comment\n\n"
                              "AUTH_WEBAUTHN_RP_NAME=a#b\n"));
    assert_string_equal(c.jwt_issuer, "issuer-a");
    assert_string_equal(c.jwt_audience, "v");
    assert_int_equal(c.port, 9003);
    assert_string_equal(c.webauthn_rp_name, "a#b");      /* no blank */
    cfg_cleanup(&c);

    assert_true(load_text(&c, "AUTH_JWT_ISSUER = 'a \\n \"b\" # c'   \n"
                              "AUTH_JWT_AUDIENCE=\"q\\\"\\\\\\x\"#c\r\n"
                              "export=not ours\n"));
    assert_string_equal(c.jwt_issuer, "a \\n \"b\" # c");  /* literal */
    assert_string_equal(c.jwt_audience, "q\"\\\\x");
    cfg_cleanup(&c);

    assert_true(load_text(&c, "AUTH_JWT_ISSUER=\"a\\tb\"\n"
                              "OTHER= # only a comment\n"
                              "AUTH_PORT=\"9004\"\n"));
    assert_string_equal(c.jwt_issuer, "a\tb");
    assert_int_equal(c.port, 9004);
    cfg_cleanup(&c);

    /* A byte-order mark hides nothing: the first line is read. */
    assert_true(load_text(&c, "\xEF\xBB\xBF" "AUTH_PORT=9005\n"));
    assert_int_equal(c.port, 9005);
    cfg_cleanup(&c);
    assert_false(load_text(&c, "\xEF\xBB\xBF" "AUTH_PORT=abc\n"));
    assert_non_null(strstr(why, "AUTH_PORT"));
    assert_non_null(strstr(why, "line 1"));
    cfg_cleanup(&c);
}

/* A line the parser cannot read stops the load, naming file and line. */
static void test_dotenv_unreadable_lines(void **state)
{
    static const char *const bad[] = {
        "AUTH_JWT_ISSUER=\"unterminated\n",
        "AUTH_JWT_ISSUER='unterminated\n",
        "AUTH_JWT_ISSUER=\"a\" junk\n",
        "AUTH_JWT_ISSUER='a'b\n",
        "AUTH_PORT 9000\n",
        "AUTH-PORT=9000\n",
        "1AUTH=x\n",
        "=x\n",
        "OTHER=\"not ours but unreadable\n",
        "export  \n",
    };
    struct cfg c;
    char text[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "# one\nAUTH_PORT=9000\n%s", bad[i]);
        if (load_text(&c, text))
            fail_msg("read: %s", bad[i]);
        if (!strstr(why, "line 3") || !strstr(why, "/tmp/auth-cfg-"))
            fail_msg("%s: %s", bad[i], why);
        cfg_cleanup(&c);
    }
}

/* .env.example documents every variable and is itself a valid file. */
static void test_example_documents_everything(void **state)
{
    FILE *f = fopen(EXAMPLE, "r");
    char *text;
    long len;
    size_t i;
    struct cfg c;
    char *env[] = { NULL };

    (void)state;
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    rewind(f);
    text = calloc(1, (size_t)len + 1);
    assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    for (i = 0; cfg_var_name(i); i++) {
        char needle[80];

        snprintf(needle, sizeof needle, "%s=", cfg_var_name(i));
        if (!strstr(text, needle))
            fail_msg("%s is not documented in .env.example",
                     cfg_var_name(i));
    }
    free(text);
    assert_true(load(&c, EXAMPLE, env));
    cfg_cleanup(&c);
}

/* AUTH_INTROSPECTION_TOKEN is at least 32 characters, as README.md
 * ("Configuration") and .env.example say: code points, not bytes; a
 * value that is not UTF-8 has no characters to count. */
static void test_introspection_token_counts_characters(void **state)
{
    static const char *const bad[] = {
        "AUTH_INTROSPECTION_TOKEN="
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
        "AUTH_INTROSPECTION_TOKEN=\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x80",
        "AUTH_INTROSPECTION_TOKEN=" SECRET32 "\xff",    /* not UTF-8 */
    };
    char *ascii[] = { "AUTH_INTROSPECTION_TOKEN=" SECRET32, NULL };
    char *emoji32[] = { "AUTH_INTROSPECTION_TOKEN=" SECRET32
                        "\xf0\x9f\x98\x80", NULL };
    struct cfg c;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *env[] = { (char *)bad[i], NULL };

        assert_false(load(&c, NULL, env));
        if (!strstr(why, "AUTH_INTROSPECTION_TOKEN") ||
            !strstr(why, "characters"))
            fail_msg("%zu: %s", i, why);
        cfg_cleanup(&c);
    }
    assert_true(load(&c, NULL, ascii));
    cfg_cleanup(&c);
    assert_true(load(&c, NULL, emoji32));
    cfg_cleanup(&c);
}

/* The port of a URL setting is digits, 1 to 65535, or empty (the
 * scheme's, as RFC 3986 has it); the refusal does not
 * quote what follows the ':' (a token pasted there by mistake). */
static void test_url_port_checked(void **state)
{
    static const char *const bad[] = {
        "AUTH_NOTIFY_WEBHOOK_URL=http://127.0.0.1:1TOPSECRETTOKEN",
        "AUTH_NOTIFY_WEBHOOK_URL=http://localhost:99999999/x",
        "AUTH_NOTIFY_WEBHOOK_URL=https://hooks.example.com:0/x",
        "AUTH_NOTIFY_WEBHOOK_URL=https://u:p@hooks.example.com:4TOPSECRET",
        "AUTH_NOTIFY_WEBHOOK_URL=https://[::1]:TOPSECRET/x",
        "AUTH_SMTP_URL=smtps://mail.example.com:4TOPSECRET",
        "AUTH_SMTP_URL=smtps://mail.example.com:65536",
        "AUTH_SMTP_URL=smtp://127.0.0.1:2TOPSECRET",
        "AUTH_PUBLIC_URL=https://auth.example.com:8TOPSECRET/",
        /* browsers never send these spellings in Origin */
        "AUTH_CORS_ORIGINS=http://a.example.com:",
        "AUTH_CORS_ORIGINS=http://a.example.com:080",
        "AUTH_CORS_ORIGINS=https://a.example.com:443",
        "AUTH_CORS_ORIGINS=http://b.example.com,http://a.example.com:80",
    };
    static const char *const good[] = {
        "AUTH_NOTIFY_WEBHOOK_URL=https://hooks.example.com:8443/x?t=a:b",
        "AUTH_NOTIFY_WEBHOOK_URL=http://[::1]:8080/x",
        "AUTH_NOTIFY_WEBHOOK_URL=https://u:p@hooks.example.com:65535/x",
        "AUTH_NOTIFY_WEBHOOK_URL=https://hooks.example.com/a:b",
        "AUTH_NOTIFY_WEBHOOK_URL=https://hooks.example.com:/x",  /* 443 */
        /* a '@' in the path is the path's (RFC 3986 s3.3) */
        "AUTH_NOTIFY_WEBHOOK_URL=https://hooks.example.com/T0/B1@x:sekret",
        "AUTH_PUBLIC_URL=http://127.0.0.1:8000/~u@h:x/app",
        "AUTH_CORS_ORIGINS=https://a.example.com:8443,http://b.example.com:80"
        "80",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *env[] = { (char *)bad[i], "AUTH_SMTP_FROM=a@example.com",
                        NULL };
        char name[64];
        struct cfg c;

        if (strstr(bad[i], "WEBHOOK"))
            env[1] = "AUTH_NOTIFY_WEBHOOK_SECRET=0123456789abcdef";
        snprintf(name, sizeof name, "%.*s", (int)strcspn(bad[i], "="),
                 bad[i]);
        if (load(&c, NULL, env) || !strstr(why, name) ||
            strstr(why, "TOPSECRET") || strstr(why, "99999999"))
            fail_msg("%s: %s", bad[i], why);
        cfg_cleanup(&c);
    }
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        char *env[] = { (char *)good[i],
                        "AUTH_NOTIFY_WEBHOOK_SECRET=0123456789abcdef", NULL };
        struct cfg c;

        if (!strstr(good[i], "WEBHOOK"))
            env[1] = NULL;

        if (!load(&c, NULL, env))
            fail_msg("%s: %s", good[i], why);
        cfg_cleanup(&c);
    }
}

/* AUTH_SMTP_USER and AUTH_SMTP_PASSWORD go together when AUTH_SMTP_URL
 * is set, and the refusal names the one missing; without AUTH_SMTP_URL
 * either one alone is only unused (README.md, "Configuration"). */
static void test_smtp_login_pair(void **state)
{
    char *user_only[] = { "AUTH_SMTP_USER=u", NULL };
    char *password_only[] = { "AUTH_SMTP_PASSWORD=p", NULL };
    char *url_user[] = { "AUTH_SMTP_URL=smtp://127.0.0.1:25",
                         "AUTH_SMTP_FROM=a@example.com", "AUTH_SMTP_USER=u",
                         NULL };
    char *url_password[] = { "AUTH_SMTP_URL=smtp://127.0.0.1:25",
                             "AUTH_SMTP_FROM=a@example.com",
                             "AUTH_SMTP_PASSWORD=p", NULL };
    struct cfg c;

    (void)state;
    assert_string_equal(unused_of(user_only), "AUTH_SMTP_USER");
    assert_string_equal(unused_of(password_only), "AUTH_SMTP_PASSWORD");
    assert_false(load(&c, NULL, url_user));
    if (!strstr(why, "invalid value for AUTH_SMTP_PASSWORD"))
        fail_msg("%s", why);
    cfg_cleanup(&c);
    assert_false(load(&c, NULL, url_password));
    if (!strstr(why, "invalid value for AUTH_SMTP_USER"))
        fail_msg("%s", why);
    cfg_cleanup(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_values_named),
        cmocka_unit_test(test_a_bad_number_gives_its_range),
        cmocka_unit_test(test_unknown_name),
        cmocka_unit_test(test_hs256_needs_secret),
        cmocka_unit_test(test_postgres_needs_keys_secret),
        cmocka_unit_test(test_database_url_password_unambiguous),
        cmocka_unit_test(test_dotenv_precedence),
        cmocka_unit_test(test_dotenv_errors),
        cmocka_unit_test(test_unused_settings),
        cmocka_unit_test(test_dotenv_syntax),
        cmocka_unit_test(test_dotenv_unreadable_lines),
        cmocka_unit_test(test_example_documents_everything),
        cmocka_unit_test(test_introspection_token_counts_characters),
        cmocka_unit_test(test_url_port_checked),
        cmocka_unit_test(test_smtp_login_pair),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
