#ifndef AUTH_FSPERM_H            /* fsperm.h: who else may write a file */
#define AUTH_FSPERM_H

/* Why a file the daemon trusts (a signing key, a .env) could be replaced
 * or rewritten by someone other than this user or root, or NULL when it
 * cannot: the file (symbolic links followed) is group or world writable
 * or another user's, or the folder that names it is writable by others
 * without the sticky bit (they could put another file in its place). A
 * path that cannot be examined gives NULL: reading it says why. */
const char *fsperm_others_can_write(const char *path);

#endif
