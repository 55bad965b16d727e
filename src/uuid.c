/* uuid.c: UUIDv7 (RFC 9562): 48-bit ms timestamp, version, random. */
#include "uuid.h"

#include <string.h>

#include "clock.h"
#include "crypto.h"

void uuid_v7_format(int64_t now_ms, const uint8_t rnd[10],
                    char out[UUID_STR_LEN])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    uint64_t ts = (uint64_t)now_ms;
    size_t i, o = 0;

    for (i = 0; i < 6; i++)
        b[i] = (uint8_t)(ts >> (40 - 8 * i));
    memcpy(b + 6, rnd, 10);
    b[6] = (uint8_t)(0x70 | (b[6] & 0x0f));          /* version 7 */
    b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));          /* variant 10 */
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

void uuid_v7_new(char out[UUID_STR_LEN])
{
    uint8_t rnd[10];

    crypt_random_id(rnd, sizeof rnd);
    uuid_v7_format(clock_ms(), rnd, out);
}

bool uuid_valid(const char *s)
{
    size_t i;

    for (i = 0; i < 36; i++) {
        char c = s[i];

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                     (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return s[36] == '\0';
}
