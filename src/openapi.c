/* openapi.c: serves the embedded OpenAPI document. */
#include "openapi.h"

#include <pthread.h>
#include <string.h>

extern const char auth_openapi_json[], auth_openapi_json_end[];

static json_t *doc;
static char *text;               /* doc, compact, as answers are written */
static size_t text_len;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
    json_error_t e;

    doc = json_loadb(auth_openapi_json,
                     (size_t)(auth_openapi_json_end - auth_openapi_json), 0,
                     &e);
    if (doc)
        text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    text_len = text ? strlen(text) : 0;
}

json_t *openapi_document(void)
{
    pthread_once(&once, load);
    return doc ? json_deep_copy(doc) : NULL;
}

const char *openapi_text(size_t *len)
{
    pthread_once(&once, load);
    *len = text_len;
    return text;
}
