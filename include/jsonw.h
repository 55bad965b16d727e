#ifndef AUTH_JSONW_H             /* jsonw.h: flat JSON objects, fast */
#define AUTH_JSONW_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes one flat JSON object into a growing malloc'd buffer, byte for
 * byte as json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) writes the same
 * members, without building a tree (the hot paths' answers). Any failure
 * (out of memory) is remembered and jw_finish() then returns NULL. */
struct jw {
    char *buf;
    size_t len, cap;
    bool bad, first;
};

/* Starts the object ("{"). */
void jw_begin(struct jw *w);
/* Adds "key":"value" (value escaped; NULL writes null). `key` is a plain
 * ASCII name. */
void jw_str(struct jw *w, const char *key, const char *value);
/* Adds "key":n. */
void jw_int(struct jw *w, const char *key, int64_t n);
/* Adds "key":true or false. */
void jw_bool(struct jw *w, const char *key, bool b);
/* Adds "key":<json>, a JSON text already compact. */
void jw_raw(struct jw *w, const char *key, const char *json);
/* Ends the object; the text, owned by the caller (free()), or NULL after
 * any failure. */
char *jw_finish(struct jw *w);

#endif
