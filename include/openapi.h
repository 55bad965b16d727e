#ifndef AUTH_OPENAPI_H           /* openapi.h: the served API description */
#define AUTH_OPENAPI_H
#include <jansson.h>

/* The OpenAPI 3.1 document of the HTTP API (src/openapi.json, embedded at
 * build time), parsed once. New reference; NULL when out of memory. */
json_t *openapi_document(void);
/* The same document as compact JSON text, written once and kept for the
 * process's life (the handler sends it without a copy); *len gets its
 * length. NULL when out of memory. */
const char *openapi_text(size_t *len);

#endif
