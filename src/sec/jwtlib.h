#ifndef AUTH_JWTLIB_H            /* jwtlib.h: libjwt, opened when used */
#define AUTH_JWTLIB_H
#include <stdbool.h>
#include <jwt.h>

/* The daemon does not link libjwt: it signs and checks only HS256
 * tokens (ES256 and RS256 are OpenSSL's, src/sec/jwt.c), and every start
 * would pay for mapping it and libb64 (README.md "Performance"). The
 * keys are loaded with AUTH_JWT_ALG=HS256 only after jwtlib_load() has
 * opened it; jwt.c calls it through this table under the usual names.
 * The package still depends on libjwt0. */
#define JWTLIB_NAMES(X)                                                     \
    X(jwt_add_grant) X(jwt_add_grant_int) X(jwt_add_grants_json)            \
    X(jwt_add_header) X(jwt_decode) X(jwt_encode_str) X(jwt_free)           \
    X(jwt_get_alg) X(jwt_new) X(jwt_set_alg)

struct jwtlib {
#define JWTLIB_FIELD(f) __typeof__(f) *f;
    JWTLIB_NAMES(JWTLIB_FIELD)
#undef JWTLIB_FIELD
};

/* Filled by jwtlib_load(); read only after it returned true. */
extern struct jwtlib jwtlib;

/* Opens libjwt.so.0 and fills `jwtlib` (dynlib_load(); the first
 * failure is logged as `keys.libjwt_unavailable`). */
bool jwtlib_load(const char **why);

#ifndef JWTLIB_TABLE_ITSELF
#define jwt_add_grant jwtlib.jwt_add_grant
#define jwt_add_grant_int jwtlib.jwt_add_grant_int
#define jwt_add_grants_json jwtlib.jwt_add_grants_json
#define jwt_add_header jwtlib.jwt_add_header
#define jwt_decode jwtlib.jwt_decode
#define jwt_encode_str jwtlib.jwt_encode_str
#define jwt_free jwtlib.jwt_free
#define jwt_get_alg jwtlib.jwt_get_alg
#define jwt_new jwtlib.jwt_new
#define jwt_set_alg jwtlib.jwt_set_alg
#endif

#endif
