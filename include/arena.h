#ifndef AUTH_ARENA_H             /* arena.h: request-lifetime allocations */
#define AUTH_ARENA_H
#include <stddef.h>

struct arena;                    /* opaque: a list of chunks */

/* A new, empty arena; NULL when out of memory. Free with arena_free(). */
struct arena *arena_new(void);
/* Frees every allocation made from `a`, then `a` itself; NULL is a no-op.
 * The calling thread keeps one arena with one chunk for its next
 * arena_new() (freed when the thread ends). */
void arena_free(struct arena *a);
/* `n` zeroed bytes aligned for any type, valid until arena_free();
 * NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t n);
/* Copies of strings, owned by the arena; NULL for a NULL `s` or no memory. */
char *arena_strdup(struct arena *a, const char *s);
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* printf into the arena; NULL on error. */
char *arena_printf(struct arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
