#ifndef AUTH_ARGON2MEM_H     /* argon2mem.h: inside src/sec/ only */
#define AUTH_ARGON2MEM_H
#include <stdbool.h>
#include <stddef.h>

/* The calling thread (a hashing thread) keeps Argon2's working memory
 * from one hash to the next. */
void argon2mem_keep(void);
/* Around one libsodium Argon2 call on this thread, whose working memory
 * is `len` bytes (0: unknown): between them, on a keeping thread,
 * libsodium's mapping of that size is the thread's kept region, wiped
 * when libsodium unmaps it (and by argon2mem_leave() if it did not). */
void argon2mem_enter(size_t len);
void argon2mem_leave(void);
/* Unmaps this thread's kept region (idle, or ending). */
void argon2mem_release(void);
/* This thread's kept region, if any (tests). */
bool argon2mem_kept(const void **base, size_t *len);
/* Regions made so far, and kept now, by all threads (tests). */
unsigned long argon2mem_made(void);
unsigned long argon2mem_held(void);

#endif
