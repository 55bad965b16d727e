#ifndef AUTH_LOG_H               /* log.h: one JSON object per line, stderr */
#define AUTH_LOG_H
#include <jansson.h>

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
/* Parses "debug", "info", "warn", "error"; -1 when unknown. */
int log_level_parse(const char *s);

#endif
