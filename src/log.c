/* log.c: structured logs, one JSON object per line on stderr. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

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

/* The time of a line, to the millisecond (no gmtime_r: it takes
 * glibc's time-zone lock on every call). */
static void timestamp(char out[32])
{
    clock_rfc3339_ms(clock_ms(), out);
}

/* One line and its newline in one writev(2) under the lock: not torn by
 * another thread, nor by another writer to the same pipe or socket up to
 * PIPE_BUF bytes. stderr is unbuffered, so nothing of stdio's waits. */
static void emit(const char *line, size_t len)
{
    struct iovec iov[2] = { { (void *)line, len }, { (void *)"\n", 1 } };
    int i = 0;

    pthread_mutex_lock(&out_lock);
    while (i < 2) {
        ssize_t n = writev(STDERR_FILENO, iov + i, 2 - i);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;                      /* nowhere to log: drop the line */
        while (i < 2 && (size_t)n >= iov[i].iov_len)
            n -= (ssize_t)iov[i++].iov_len;
        if (i < 2) {
            iov[i].iov_base = (char *)iov[i].iov_base + n;
            iov[i].iov_len -= (size_t)n;
        }
    }
    pthread_mutex_unlock(&out_lock);
}

/* The text format's line: time, level, event, request id, then `rest`
 * (the fields as compact JSON). */
static char *render_text(const char *ts, const char *lvl, const char *event,
                         const char *rid, const char *rest)
{
    char *line = NULL;
    size_t len;
    FILE *f;

    f = open_memstream(&line, &len);
    if (f) {
        fprintf(f, "%s %-5s %s%s%s %s", ts, lvl, event, rid ? " rid=" : "",
                rid ? rid : "", rest ? rest : "");
        fclose(f);
    }
    return line;
}

void log_event(enum log_level lvl, const char *event,
               const char *request_id, json_t *fields)
{
    char ts[32];
    char *line;
    json_t *obj;

    if (!log_enabled(lvl)) {
        json_decref(fields);
        return;
    }
    timestamp(ts);
    if (!as_json) {
        char *rest = fields ? json_dumps(fields,
                                         JSON_COMPACT | JSON_SORT_KEYS)
                            : NULL;

        line = render_text(ts, names[lvl], event, request_id,
                           fields ? rest : "{}");
        free(rest);
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
    emit(line, strlen(line));
    free(line);
}

bool log_begin(struct log_line *l, enum log_level lvl, const char *event,
               const char *request_id)
{
    if (!log_enabled(lvl))
        return false;
    l->lvl = (int)lvl;
    l->event = event;
    l->request_id = request_id;
    timestamp(l->ts);
    l->w = (struct jw){ 0 };
    jw_begin(&l->w);
    if (as_json) {
        jw_str(&l->w, "ts", l->ts);
        jw_str(&l->w, "level", names[lvl]);
        jw_str(&l->w, "event", event);
        if (request_id)
            jw_str(&l->w, "request_id", request_id);
    }
    return true;
}

void log_end(struct log_line *l)
{
    char *fields = jw_finish(&l->w), *line = NULL;
    size_t len = 0;

    if (!fields)
        return;
    if (as_json) {
        line = fields;
        len = l->w.len;
    } else {
        line = render_text(l->ts, names[l->lvl], l->event, l->request_id,
                           fields);
        len = line ? strlen(line) : 0;
        free(fields);
    }
    if (line)
        emit(line, len);
    free(line);
}
