/* test_pgurl.c: option values libpq 15 refuses only when it connects are
 * told apart from those it takes (each checked against psql 15). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "repo/pgurl.h"

static void what_libpq_takes_passes(void **state)
{
    static const char *const ok[][2] = {
        { "sslmode", "verify-full" }, { "sslmode", "disable" },
        { "target_session_attrs", "prefer-standby" },
        { "gssencmode", "prefer" }, { "channel_binding", "require" },
        { "connect_timeout", " 5" }, { "connect_timeout", "+5" },
        { "connect_timeout", "-1" }, { "connect_timeout", "5 " },
        { "connect_timeout", "2147483647" }, { "tcp_user_timeout", "-1" },
        { "keepalives", "2" }, { "keepalives", "0" },
        { "keepalives_idle", "30" },
        { "ssl_min_protocol_version", "tlsv1.2" },
        { "ssl_max_protocol_version", "TLSV1.3" },
        { "ssl_min_protocol_version", "" }, { "sslcompression", "yes" },
        { "port", "5432" }, { "port", "5432,,6432" }, { "port", "+5432" },
        { "port", " 5432" }, { "keepalives_idle", "0" },
        { "keepalives_count", "-1" },
        { "application_name", "anything at all" },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (pgurl_option_refused(ok[i][0], ok[i][1]))
            fail_msg("%s=%s refused", ok[i][0], ok[i][1]);
}

static void what_it_refuses_at_connect_is_refused(void **state)
{
    static const char *const bad[][2] = {
        { "sslmode", "requir" }, { "sslmode", "Require" },
        { "sslmode", "" }, { "target_session_attrs", "primary-ish" },
        { "connect_timeout", "abc" }, { "connect_timeout", "" },
        { "connect_timeout", "2147483648" }, { "keepalives", "1x" },
        { "keepalives_idle", "x" }, { "keepalives_count", "1.5" },
        { "ssl_max_protocol_version", "TLSv1.4" }, { "port", "99999" },
        { "port", "0" }, { "port", "54a" }, { "port", "5432,70000" },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = pgurl_option_refused(bad[i][0], bad[i][1]);

        if (!why || strcmp(why, bad[i][0]) != 0)
            fail_msg("%s=%s passed", bad[i][0], bad[i][1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(what_libpq_takes_passes),
        cmocka_unit_test(what_it_refuses_at_connect_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
