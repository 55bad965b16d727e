#ifndef AUTH_FLEET_H             /* fleet.h: instances sharing PostgreSQL */
#define AUTH_FLEET_H
#include "http.h"

/* Keeps this instance in step with the others on one PostgreSQL database
 * (README.md, "Several instances"): one thread holds a LISTEN connection
 * of its own (outside the pool, TCP keepalives, application_name
 * "auth-serve-listen"), drops every announced revocation from
 * app->scache, and reloads app->keys when the keys table changes (on its
 * notification, and by a poll every FLEET_KEYS_POLL_MS). A lost
 * connection is made again with backoff; the session cache is emptied
 * then, since announcements may have been missed. */
struct fleet;

#define FLEET_KEYS_POLL_MS 2000

#ifdef AUTH_POSTGRES
/* Starts the thread; NULL when out of resources. `app` must outlive it.
 * Free with fleet_stop(). */
struct fleet *fleet_start(struct app *app);
/* Stops the thread and frees the key sets it replaced; call after the
 * server stopped. NULL is a no-op. */
void fleet_stop(struct fleet *f);
#else
/* A build without the PostgreSQL backend (CMake option AUTH_POSTGRES)
 * never shares a database with other instances: nothing to start. */
static inline struct fleet *fleet_start(struct app *app)
{
    (void)app;
    return NULL;
}
static inline void fleet_stop(struct fleet *f)
{
    (void)f;
}
#endif

#endif
