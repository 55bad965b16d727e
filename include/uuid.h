#ifndef AUTH_UUID_H              /* uuid.h: time-ordered UUIDv7 ids */
#define AUTH_UUID_H
#include <stdbool.h>
#include <stdint.h>

#define UUID_STR_LEN 37          /* 36 characters and the NUL */

/* Writes the canonical lower-case text of a UUIDv7 made from `now_ms` and
 * 10 bytes of randomness `rnd` (RFC 9562 s5.7). Pure: tests pass both. */
void uuid_v7_format(int64_t now_ms, const uint8_t rnd[10],
                    char out[UUID_STR_LEN]);
/* A fresh UUIDv7 from the wall clock and crypt_random(). */
void uuid_v7_new(char out[UUID_STR_LEN]);
/* True when `s` is a canonical 36-character UUID (any version, hex digits
 * of either case). Does not allocate. */
bool uuid_valid(const char *s);

#endif
