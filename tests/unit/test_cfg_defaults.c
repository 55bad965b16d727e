/* test_cfg_defaults.c: cfg.c's table is the one source of every default:
 * cfg_defaults() (what the backends and the breaker fall back to) and
 * .env.example state the same values cfg_load() sets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cfg.h"

#define EXAMPLE SOURCE_DIR "/.env.example"

/* Every unsigned field of struct cfg but the two that cfg_load() turns
 * from 0 into the number of cores (hash_workers, threads). */
#define UINT_FIELDS(X)                                                     \
    X(port) X(access_ttl) X(refresh_ttl) X(argon2_memory_kib)              \
    X(argon2_iterations) X(max_body_bytes) X(password_min_length)          \
    X(hash_queue) X(rate_limit_per_minute) X(lockout_threshold)            \
    X(lockout_max_seconds) X(session_cache_seconds)                        \
    X(refresh_reuse_grace_seconds) X(cb_failure_threshold)                 \
    X(cb_open_seconds) X(max_connections) X(max_connections_per_ip)        \
    X(connection_timeout) X(db_pool_size) X(db_timeout_ms)                 \
    X(session_max_seconds) X(key_publish_seconds) X(header_timeout)        \
    X(body_timeout) X(mail_per_recipient_per_hour)

static char why[512];

static void defaults_are_what_load_sets(void **state)
{
    struct cfg c;
    char *env[] = { NULL };
    const struct cfg *d = cfg_defaults();
    (void)state;

    assert_true(cfg_load_from(&c, NULL, env, why, sizeof why));
#define X(f) assert_int_equal(d->f, c.f);
    UINT_FIELDS(X)
#undef X
    /* The ones the database and its breaker fall back to: nonzero. */
    assert_true(d->db_pool_size > 0 && d->db_timeout_ms > 0);
    assert_true(d->cb_failure_threshold > 0 && d->cb_open_seconds > 0);
    assert_int_equal(d->hash_workers, 0);        /* 0: one per core */
    assert_int_equal(d->threads, 0);
    assert_null(d->host);
    assert_ptr_equal(cfg_defaults(), d);         /* one immutable copy */
    cfg_cleanup(&c);
}

/* .env.example lists each setting "with its default" (README,
 * "Configuration"): loading it changes no default. */
static void example_states_the_defaults(void **state)
{
    struct cfg c, e;
    char *env[] = { NULL };
    (void)state;

    assert_true(cfg_load_from(&c, NULL, env, why, sizeof why));
    assert_true(cfg_load_from(&e, EXAMPLE, env, why, sizeof why));
#define X(f)                                                               \
    if (c.f != e.f)                                                        \
        fail_msg(".env.example sets %s to %u, the default is %u", #f,      \
                 e.f, c.f);
    UINT_FIELDS(X)
#undef X
    assert_string_equal(c.host, e.host);
    assert_string_equal(c.data_dir, e.data_dir);
    assert_string_equal(c.jwt_issuer, e.jwt_issuer);
    assert_string_equal(c.jwt_audience, e.jwt_audience);
    assert_string_equal(c.public_url, e.public_url);
    assert_string_equal(c.metrics_allow, e.metrics_allow);
    assert_string_equal(c.webauthn_rp_name, e.webauthn_rp_name);
    assert_int_equal(c.jwt_alg, e.jwt_alg);
    assert_int_equal(c.log_level, e.log_level);
    assert_int_equal(c.log_format, e.log_format);
    cfg_cleanup(&c);
    cfg_cleanup(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_what_load_sets),
        cmocka_unit_test(example_states_the_defaults),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
