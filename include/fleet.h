#ifndef AUTH_FLEET_H             /* fleet.h: instances sharing PostgreSQL */
#define AUTH_FLEET_H
#include "http.h"

/* Keeps this instance in step with the others on one PostgreSQL database
 * (README.md, "Several instances"): one thread holds a LISTEN connection
 * of its own (outside the pool, TCP keepalives, application_name
 * "auth-serve-listen") and drops every announced revocation from
 * app->scache; another reloads app->keys when the keys table changes (on
 * its notification, and by a poll every FLEET_KEYS_POLL_MS). A lost
 * connection is made again with backoff; the session cache is emptied
 * then, since announcements may have been missed. While connected it
 * tells the cache how far it has read (scache_heard()), so a process
 * that stood still does not answer from entries whose revocations wait
 * unread; having stood still, it empties the cache too (the connection
 * may have died meanwhile, and the announcements with it). */
struct fleet;

#define FLEET_KEYS_POLL_MS 2000
/* The listener reads its connection at least this often, so the session
 * cache's entries keep answering (scache_heard(), SCACHE_HEARD_SLACK_MS)
 * unless this process stood still. */
#define FLEET_HEARD_EVERY_MS 25

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
