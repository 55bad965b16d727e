/* log.c: what a line looks like once it is on stderr. stderr is pointed
 * at a temporary file; each test reads back the lines it wrote and
 * parses them with jansson, as a log shipper would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "log.h"

static FILE *sink;
static long read_from;

static int setup(void **state)
{
    (void)state;
    sink = tmpfile();
    if (!sink || dup2(fileno(sink), STDERR_FILENO) < 0)
        return -1;
    read_from = 0;
    return 0;
}

/* The lines written since the last call, one string each, NULL-ended. */
static char **new_lines(size_t *n)
{
    char **out = calloc(64, sizeof *out);
    char buf[4096];
    FILE *f;

    assert_non_null(out);
    fflush(stderr);
    f = fopen("/proc/self/fd/2", "r");
    assert_non_null(f);
    assert_int_equal(fseek(f, read_from, SEEK_SET), 0);
    *n = 0;
    while (*n < 63 && fgets(buf, sizeof buf, f)) {
        char *nl = strchr(buf, '\n');

        if (!nl || nl[1] != '\0')
            fail_msg("not one whole line: %s", buf);
        else
            *nl = '\0';
        out[(*n)++] = strdup(buf);
    }
    read_from = ftell(f);
    fclose(f);
    return out;
}

static void free_lines(char **l)
{
    for (size_t i = 0; l[i]; i++)
        free(l[i]);
    free(l);
}

/* `ts` is RFC 3339 UTC with milliseconds and within a second of now. */
static void check_ts(const char *ts)
{
    int64_t now = clock_ms();
    char lo[32], hi[32];

    assert_int_equal(strlen(ts), 24);
    clock_rfc3339_ms(now - 1000, lo);
    clock_rfc3339_ms(now + 1000, hi);
    assert_true(strcmp(ts, lo) >= 0 && strcmp(ts, hi) <= 0);
}

static void test_line_built_member_by_member(void **state)
{
    struct log_line l;
    json_error_t err;
    json_t *o;
    char **lines;
    size_t n;

    (void)state;
    log_init(LOG_INFO, 1);
    assert_true(log_begin(&l, LOG_INFO, "http.access", "rid-1"));
    jw_str(&l.w, "method", "GET");
    jw_str(&l.w, "quoted", "a \"b\"\n\\c");
    jw_int(&l.w, "status", 200);
    jw_raw(&l.w, "duration_ms", "0.250");
    jw_bool(&l.w, "completed", true);
    log_end(&l);
    lines = new_lines(&n);
    assert_int_equal(n, 1);
    o = json_loads(lines[0], 0, &err);
    assert_non_null(o);
    check_ts(json_string_value(json_object_get(o, "ts")));
    assert_string_equal(json_string_value(json_object_get(o, "level")),
                        "info");
    assert_string_equal(json_string_value(json_object_get(o, "event")),
                        "http.access");
    assert_string_equal(json_string_value(json_object_get(o, "request_id")),
                        "rid-1");
    assert_string_equal(json_string_value(json_object_get(o, "quoted")),
                        "a \"b\"\n\\c");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 200);
    assert_true(json_real_value(json_object_get(o, "duration_ms")) == 0.25);
    assert_true(json_is_true(json_object_get(o, "completed")));
    /* the order a reader sees: ts, level, event, request_id, fields */
    assert_true(strncmp(lines[0], "{\"ts\":\"", 7) == 0);
    assert_non_null(strstr(lines[0], "\"event\":\"http.access\","
                                     "\"request_id\":\"rid-1\","
                                     "\"method\":\"GET\""));
    json_decref(o);
    free_lines(lines);
}

static void test_filtered_level_writes_nothing(void **state)
{
    struct log_line l;
    char **lines;
    size_t n;

    (void)state;
    log_init(LOG_WARN, 1);
    assert_false(log_begin(&l, LOG_INFO, "http.access", NULL));
    log_event(LOG_INFO, "dropped", NULL, json_pack("{s:i}", "a", 1));
    assert_true(log_begin(&l, LOG_ERROR, "kept", NULL));
    log_end(&l);
    lines = new_lines(&n);
    assert_int_equal(n, 1);
    assert_non_null(strstr(lines[0], "\"event\":\"kept\""));
    assert_null(strstr(lines[0], "request_id"));
    free_lines(lines);
}

static void test_log_event_lines(void **state)
{
    json_t *o;
    char **lines;
    size_t n;

    (void)state;
    log_init(LOG_DEBUG, 1);
    log_event(LOG_WARN, "one", "r", json_pack("{s:s, s:s}", "ts", "spoof",
                                               "k", "v"));
    log_event(LOG_DEBUG, "two", NULL, NULL);
    lines = new_lines(&n);
    assert_int_equal(n, 2);
    o = json_loads(lines[0], 0, NULL);
    assert_non_null(o);
    check_ts(json_string_value(json_object_get(o, "ts")));   /* not spoof */
    assert_string_equal(json_string_value(json_object_get(o, "k")), "v");
    assert_string_equal(json_string_value(json_object_get(o, "level")),
                        "warn");
    json_decref(o);
    o = json_loads(lines[1], 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "event")),
                        "two");
    json_decref(o);
    free_lines(lines);
}

static void test_text_format(void **state)
{
    struct log_line l;
    char **lines, want[128];
    size_t n;

    (void)state;
    log_init(LOG_INFO, 0);
    assert_true(log_begin(&l, LOG_INFO, "http.access", "rid-2"));
    jw_int(&l.w, "status", 404);
    log_end(&l);
    log_event(LOG_ERROR, "boom", NULL, json_pack("{s:i}", "n", 3));
    log_event(LOG_INFO, "bare", NULL, NULL);
    lines = new_lines(&n);
    assert_int_equal(n, 3);
    check_ts(strtok(lines[0], " "));
    snprintf(want, sizeof want, "info  http.access rid=rid-2 "
             "{\"status\":404}");
    assert_string_equal(lines[0] + 25, want);
    assert_string_equal(lines[1] + 25, "error boom {\"n\":3}");
    assert_string_equal(lines[2] + 25, "info  bare {}");
    free_lines(lines);
    log_init(LOG_INFO, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_built_member_by_member),
        cmocka_unit_test(test_filtered_level_writes_nothing),
        cmocka_unit_test(test_log_event_lines),
        cmocka_unit_test(test_text_format),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
