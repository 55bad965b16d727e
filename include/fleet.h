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
/* The keys in force count as current this long after the start of a
 * poll that read them. The other instances keep a key listed until its
 * successor's signs_from, the access-token lifetime, 60 s and a reload
 * slack (RELOAD_SLACK_S of src/sec/dbstore.c, 10 s) have passed: an
 * instance that signs only with keys this fresh never signs with one
 * they have dropped. */
#define FLEET_KEYS_STALE_MS 5000
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
/* True when the keys in force were found current by a poll that started
 * at most FLEET_KEYS_STALE_MS ago; else asks for a poll now and waits
 * up to `wait_ms` for one. A process that stood still (SIGSTOP, a
 * stalled host) must not sign with the key it held before: its
 * successor may have started signing meanwhile, and the other instances
 * may have dropped it. */
bool fleet_keys_current(struct fleet *f, unsigned wait_ms);
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
static inline bool fleet_keys_current(struct fleet *f, unsigned wait_ms)
{
    (void)f;
    (void)wait_ms;
    return true;
}
#endif

#endif
