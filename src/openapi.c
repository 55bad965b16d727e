/* openapi.c: serves the embedded OpenAPI document. */
#include "openapi.h"

#include <pthread.h>

extern const char auth_openapi_json[], auth_openapi_json_end[];

static json_t *doc;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
    json_error_t e;

    doc = json_loadb(auth_openapi_json,
                     (size_t)(auth_openapi_json_end - auth_openapi_json), 0,
                     &e);
}

json_t *openapi_document(void)
{
    pthread_once(&once, load);
    return doc ? json_deep_copy(doc) : NULL;
}
