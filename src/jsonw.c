/* jsonw.c: flat JSON objects written straight into a buffer, escaped as
 * jansson escapes them (no JSON_ENSURE_ASCII: UTF-8 passes through). */
#include "jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(struct jw *w, const char *s, size_t n)
{
    if (w->bad)
        return;
    if (w->cap - w->len <= n) {
        size_t cap = (w->cap ? w->cap : 1024);   /* one malloc for most */
        char *p;

        while (cap - w->len <= n)
            cap *= 2;
        p = realloc(w->buf, cap);
        if (!p) {
            w->bad = true;
            return;
        }
        w->buf = p;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void puts_(struct jw *w, const char *s)
{
    put(w, s, strlen(s));
}

static void escaped(struct jw *w, const char *s)
{
    const char *run = s;

    put(w, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(w, run, (size_t)(s - run));
        run = s + 1;
        switch (c) {
        case '"': puts_(w, "\\\""); break;
        case '\\': puts_(w, "\\\\"); break;
        case '\b': puts_(w, "\\b"); break;
        case '\f': puts_(w, "\\f"); break;
        case '\n': puts_(w, "\\n"); break;
        case '\r': puts_(w, "\\r"); break;
        case '\t': puts_(w, "\\t"); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04X", c);
            puts_(w, esc);
        }
    }
    put(w, run, (size_t)(s - run));
    put(w, "\"", 1);
}

static void key(struct jw *w, const char *k)
{
    put(w, w->first ? "\"" : ",\"", w->first ? 1 : 2);
    w->first = false;
    puts_(w, k);
    put(w, "\":", 2);
}

void jw_begin(struct jw *w)
{
    memset(w, 0, sizeof *w);
    w->first = true;
    put(w, "{", 1);
}

void jw_str(struct jw *w, const char *k, const char *value)
{
    key(w, k);
    if (value)
        escaped(w, value);
    else
        puts_(w, "null");
}

void jw_int(struct jw *w, const char *k, int64_t n)
{
    char num[24];

    key(w, k);
    snprintf(num, sizeof num, "%" PRId64, n);
    puts_(w, num);
}

void jw_bool(struct jw *w, const char *k, bool b)
{
    key(w, k);
    puts_(w, b ? "true" : "false");
}

void jw_raw(struct jw *w, const char *k, const char *json)
{
    key(w, k);
    if (json)
        puts_(w, json);
    else
        w->bad = true;
}

char *jw_finish(struct jw *w)
{
    put(w, "}", 1);
    if (w->bad) {
        free(w->buf);
        w->buf = NULL;
    }
    return w->buf;
}
