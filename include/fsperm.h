#ifndef AUTH_FSPERM_H            /* fsperm.h: who else may write a file */
#define AUTH_FSPERM_H

/* Why the file open on `fd`, opened as `path` (symbolic links followed),
 * could be rewritten or replaced by someone other than this user or
 * root, or NULL when it cannot: the file is group or world writable or
 * another user's; or a folder on its resolved path, up to `/`, is
 * another user's or writable by others without the sticky bit (they
 * could put another file, or another folder, in its place); or `path`
 * no longer names the file that was opened. The caller reads what it
 * checked from `fd`, so nothing swapped in after the check is read. */
const char *fsperm_others_can_write(int fd, const char *path);

#endif
