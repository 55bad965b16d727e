#ifndef AUTH_LOG_H               /* log.h: one JSON object per line, stderr */
#define AUTH_LOG_H
#include <jansson.h>
#include <stdbool.h>

#include "jsonw.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the minimum level and the format (json = 1, text = 0). Call once
 * before threads start; the defaults are info and json. */
void log_init(enum log_level min, int json);
/* True when `lvl` would be written (to skip building fields). */
int log_enabled(enum log_level lvl);
/* Writes {"ts","level","event","request_id"?, ...fields} as one line.
 * `request_id` may be NULL. Steals `fields` (NULL allowed), even when the
 * level is filtered out. Never put a secret in `fields`. Thread-safe. */
void log_event(enum log_level lvl, const char *event,
               const char *request_id, json_t *fields);
/* A line written member by member with jw_*() on `w`, no jansson tree:
 * the access log, one line per request at the default level (README.md,
 * "Performance"). log_begin() returns false, and the line is not
 * started, when `lvl` is filtered out; otherwise add the fields to `w`
 * (plain keys other than ts, level, event and request_id) and end with
 * log_end(), which writes the line and frees it. `event` and
 * `request_id` (NULL allowed) must live until log_end(). */
struct log_line {
    struct jw w;
    int lvl;
    const char *event, *request_id;
    char ts[32];
};
bool log_begin(struct log_line *l, enum log_level lvl, const char *event,
               const char *request_id);
void log_end(struct log_line *l);
/* Parses "debug", "info", "warn", "error"; -1 when unknown. */
int log_level_parse(const char *s);

#endif
