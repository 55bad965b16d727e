/* cborlib.c: opening libcbor on first use (cborlib.h says why). */
#define CBORLIB_TABLE_ITSELF
#include "sec/cborlib.h"

#include "dynlib.h"

struct cborlib cborlib;

#define CBORLIB_NAME(f) { #f, offsetof(struct cborlib, f) },
static const struct dynlib_name names[] = { CBORLIB_NAMES(CBORLIB_NAME) };
#undef CBORLIB_NAME

static struct dynlib lib = DYNLIB_INIT(
    "libcbor.so.0.8", names, cborlib, "passkeys.unavailable",
    "libcbor cannot be opened: passkey registrations and logins fail "
    "with 500");

bool cborlib_load(const char **why)
{
    return dynlib_load(&lib, why);
}
