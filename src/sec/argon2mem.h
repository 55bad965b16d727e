#ifndef AUTH_ARGON2MEM_H     /* argon2mem.h: inside src/sec/ only */
#define AUTH_ARGON2MEM_H
#include <stdbool.h>
#include <stddef.h>

/* The calling thread (a hashing thread) keeps Argon2's working memory
 * from one hash to the next. */
void argon2mem_keep(void);
/* Around one libsodium Argon2 call on this thread, whose working memory
 * is `len` bytes (0: unknown): between them, on a keeping thread,
 * libsodium's mapping of that size is the thread's kept region, which
 * then holds what the hash left until the next hash overwrites it or
 * argon2mem_wipe() clears it. */
void argon2mem_enter(size_t len);
void argon2mem_leave(void);
/* Clears what a hash left in this thread's region (no next hash is
 * waiting to overwrite it); whether there is any. */
void argon2mem_wipe(void);
bool argon2mem_dirty_here(void);
/* Unmaps this thread's kept region (idle, or ending). */
void argon2mem_release(void);
/* This thread's kept region, if any (tests). */
bool argon2mem_kept(const void **base, size_t *len);
/* By all threads (tests): regions made so far, kept now, holding a
 * hash's leftovers now, and wipes so far. */
unsigned long argon2mem_made(void);
unsigned long argon2mem_held(void);
unsigned long argon2mem_dirty(void);
unsigned long argon2mem_wipes(void);

#endif
