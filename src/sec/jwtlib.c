/* jwtlib.c: opening libjwt for HS256 (jwtlib.h says why). */
#define JWTLIB_TABLE_ITSELF
#include "sec/jwtlib.h"

#include "dynlib.h"

struct jwtlib jwtlib;

#define JWTLIB_NAME(f) { #f, offsetof(struct jwtlib, f) },
static const struct dynlib_name names[] = { JWTLIB_NAMES(JWTLIB_NAME) };
#undef JWTLIB_NAME

static struct dynlib lib = DYNLIB_INIT(
    "libjwt.so.0", names, jwtlib, "keys.libjwt_unavailable",
    "libjwt cannot be opened: AUTH_JWT_ALG=HS256 cannot sign or check "
    "tokens");

bool jwtlib_load(const char **why)
{
    return dynlib_load(&lib, why);
}
