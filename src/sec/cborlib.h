#ifndef AUTH_CBORLIB_H           /* cborlib.h: libcbor, opened when used */
#define AUTH_CBORLIB_H
#include <stdbool.h>
#include <cbor.h>

/* The daemon does not link libcbor: only passkey registrations and
 * logins read CBOR, and every start would pay for mapping it (README.md
 * "Performance"). webauthn.c opens it with cborlib_load() and, through
 * the names below, calls it through this table as usual. The package
 * still depends on libcbor0.8. */
#define CBORLIB_NAMES(X)                                                    \
    X(cbor_bytestring_handle) X(cbor_bytestring_is_definite)                \
    X(cbor_bytestring_length) X(cbor_decref) X(cbor_empty_callbacks)        \
    X(cbor_get_int) X(cbor_isa_bytestring) X(cbor_isa_map)                  \
    X(cbor_isa_negint) X(cbor_isa_string) X(cbor_isa_uint) X(cbor_load)     \
    X(cbor_map_handle) X(cbor_map_is_definite) X(cbor_map_size)             \
    X(cbor_stream_decode) X(cbor_string_handle)                             \
    X(cbor_string_is_definite) X(cbor_string_length)

struct cborlib {
#define CBORLIB_FIELD(f) __typeof__(f) *f;
    CBORLIB_NAMES(CBORLIB_FIELD)
#undef CBORLIB_FIELD
};

/* Filled by cborlib_load(); read only after it returned true. */
extern struct cborlib cborlib;

/* Opens libcbor.so.0.8 and fills `cborlib` (dynlib_load(); the first
 * failure is logged as `passkeys.unavailable`). */
bool cborlib_load(const char **why);

#ifndef CBORLIB_TABLE_ITSELF
#define cbor_bytestring_handle cborlib.cbor_bytestring_handle
#define cbor_bytestring_is_definite cborlib.cbor_bytestring_is_definite
#define cbor_bytestring_length cborlib.cbor_bytestring_length
#define cbor_decref cborlib.cbor_decref
#define cbor_empty_callbacks (*cborlib.cbor_empty_callbacks)
#define cbor_get_int cborlib.cbor_get_int
#define cbor_isa_bytestring cborlib.cbor_isa_bytestring
#define cbor_isa_map cborlib.cbor_isa_map
#define cbor_isa_negint cborlib.cbor_isa_negint
#define cbor_isa_string cborlib.cbor_isa_string
#define cbor_isa_uint cborlib.cbor_isa_uint
#define cbor_load cborlib.cbor_load
#define cbor_map_handle cborlib.cbor_map_handle
#define cbor_map_is_definite cborlib.cbor_map_is_definite
#define cbor_map_size cborlib.cbor_map_size
#define cbor_stream_decode cborlib.cbor_stream_decode
#define cbor_string_handle cborlib.cbor_string_handle
#define cbor_string_is_definite cborlib.cbor_string_is_definite
#define cbor_string_length cborlib.cbor_string_length
#endif

#endif
