/* utf8.c: strict UTF-8, counted in code points (README.md counts a
 * password's and a secret's characters so). */
#include "utf8.h"

#include <stdint.h>

/* Length of the strict UTF-8 sequence at `s` (1 to 4), or 0 when it is
 * malformed: overlong, a surrogate, above U+10FFFF, or truncated. */
static int utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    uint32_t v, min;
    int n, i;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, v = c & 0x1Fu, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
        n = 3, v = c & 0x0Fu, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, v = c & 0x07u, min = 0x10000;
    else
        return 0;
    for (i = 1; i < n; i++) {            /* a NUL stops here: not 10xxxxxx */
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    return n;
}

long utf8_count(const char *s, size_t *bytes)
{
    const unsigned char *p = (const unsigned char *)s;
    long count = 0;

    while (*p) {
        int n = utf8_seq(p);

        if (n == 0)
            return -1;
        p += n;
        count++;
    }
    *bytes = (size_t)(p - (const unsigned char *)s);
    return count;
}
