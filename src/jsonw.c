/* jsonw.c: flat JSON objects written straight into a buffer, escaped as
 * jansson escapes them (no JSON_ENSURE_ASCII: UTF-8 passes through). */
#include "jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for `n` more bytes and the NUL; false (and w->bad) when
 * out of memory. */
static bool room(struct jw *w, size_t n)
{
    size_t cap;
    char *p;

    if (w->bad)
        return false;
    if (w->cap - w->len > n)
        return true;
    cap = w->cap ? w->cap : 1024;               /* one malloc for most */
    while (cap - w->len <= n)
        cap *= 2;
    p = realloc(w->buf, cap);
    if (!p) {
        w->bad = true;
        return false;
    }
    w->buf = p;
    w->cap = cap;
    return true;
}

static void put(struct jw *w, const char *s, size_t n)
{
    if (!room(w, n))
        return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void puts_(struct jw *w, const char *s)
{
    put(w, s, strlen(s));
}

/* Eight bytes at once: true when none needs escaping (no control byte,
 * '"' or '\\'). Bytes from 0x80 (UTF-8) never match. The three tests are
 * the exact "has a byte less than / equal to" word tricks. */
static inline bool plain8(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');

    return (((v - ones * 0x20) & ~v) | ((q - ones) & ~q) |
            ((b - ones) & ~b)) & highs ? false : true;
}

/* Writes `s` quoted and escaped, in one pass into room reserved for the
 * worst case (every byte a six-byte \u escape), eight plain bytes at a
 * time: the hottest loop of the hot answers (README.md, "Performance"). */
static void escaped(struct jw *w, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *o;

    if (!room(w, 6 * n + 2))
        return;
    o = w->buf + w->len;
    *o++ = '"';
    while (n) {
        unsigned char c;
        uint64_t v;

        while (n >= 8) {
            memcpy(&v, s, 8);
            if (!plain8(v))
                break;
            memcpy(o, s, 8);
            o += 8;
            s += 8;
            n -= 8;
        }
        if (!n)
            break;
        c = (unsigned char)*s++;
        n--;
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
        }
    }
    *o++ = '"';
    *o = '\0';
    w->len = (size_t)(o - w->buf);
}

/* Writes `,"k":` (no comma first) in one piece. */
static void key(struct jw *w, const char *k)
{
    size_t n = strlen(k);
    char *o;

    if (!room(w, n + 4))
        return;
    o = w->buf + w->len;
    if (!w->first)
        *o++ = ',';
    w->first = false;
    *o++ = '"';
    memcpy(o, k, n);
    o += n;
    *o++ = '"';
    *o++ = ':';
    *o = '\0';
    w->len = (size_t)(o - w->buf);
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
