/* log.c: structured logs, one JSON object per line on stderr. */
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int min_level = LOG_INFO;
static int as_json = 1;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const names[] = { "debug", "info", "warn", "error" };

void log_init(enum log_level min, int json)
{
    min_level = (int)min;
    as_json = json;
}

int log_enabled(enum log_level lvl)
{
    return (int)lvl >= min_level;
}

int log_level_parse(const char *s)
{
    int i;

    for (i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static void timestamp(char out[64])
{
    struct timespec ts;
    struct tm tm;
    char base[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 64, "%s.%03dZ", base, (int)(ts.tv_nsec / 1000000));
}

static char *render_text(const char *ts, const char *lvl, const char *event,
                         const char *rid, json_t *fields)
{
    char *rest = json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS);
    char *line = NULL;
    size_t len;
    FILE *f;

    f = open_memstream(&line, &len);
    if (f) {
        fprintf(f, "%s %-5s %s%s%s %s", ts, lvl, event, rid ? " rid=" : "",
                rid ? rid : "", rest ? rest : "");
        fclose(f);
    }
    free(rest);
    return line;
}

void log_event(enum log_level lvl, const char *event,
               const char *request_id, json_t *fields)
{
    char ts[64];
    char *line;
    json_t *obj;

    if (!log_enabled(lvl)) {
        json_decref(fields);
        return;
    }
    timestamp(ts);
    if (!as_json) {
        line = render_text(ts, names[lvl], event, request_id,
                           fields ? fields : json_object());
        json_decref(fields);
    } else {
        obj = json_pack("{s:s, s:s, s:s}", "ts", ts, "level", names[lvl],
                        "event", event);
        if (obj && request_id)
            json_object_set_new(obj, "request_id", json_string(request_id));
        if (obj && json_is_object(fields))
            json_object_update_missing(obj, fields);
        json_decref(fields);
        line = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER)
                   : NULL;
        json_decref(obj);
    }
    if (!line)
        return;
    pthread_mutex_lock(&out_lock);
    fputs(line, stderr);
    fputc('\n', stderr);
    fflush(stderr);
    pthread_mutex_unlock(&out_lock);
    free(line);
}
