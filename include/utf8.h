#ifndef AUTH_UTF8_H
#define AUTH_UTF8_H

#include <stddef.h>

/* Code points of `s`, or -1 when it is not strict UTF-8 (an overlong
 * form, a surrogate, a value past U+10FFFF, a sequence cut short); the
 * bytes before its NUL in *bytes when it is. */
long utf8_count(const char *s, size_t *bytes);

#endif
