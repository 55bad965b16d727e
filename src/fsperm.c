/* fsperm.c: who else may write a file the daemon trusts (its signing key,
 * its .env): the file, and every folder its path is looked up through,
 * symbolic links followed one by one. */
#include "fsperm.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LINKS 40                    /* as the kernel's ELOOP */

static int others_own(const struct stat *st)
{
    return st->st_uid != geteuid() && st->st_uid != 0;
}

/* Whether whoever else may rename what folder `dir` holds. */
static int folder_open_to_others(const char *dir)
{
    struct stat st;

    if (stat(dir, &st) != 0)
        return 1;
    return ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
            (st.st_mode & S_ISVTX) == 0) || others_own(&st);
}

/* Looks `path` up as the kernel does, a name at a time, and checks each
 * folder a name is looked up in (the folders of the links met on the
 * way too: whoever may write one could point the link elsewhere). The
 * path the lookup ends at goes to `dir`. */
static const char *walk(const char *path, char *dir, size_t dir_len)
{
    char rest[PATH_MAX * 2], target[PATH_MAX], next[PATH_MAX * 2];
    char cur[PATH_MAX], *name, *end;
    struct stat st;
    ssize_t n;
    int links = 0;

    if (path[0] == '/')
        snprintf(cur, sizeof cur, "/");
    else if (!getcwd(cur, sizeof cur))
        return "it cannot be examined";
    if (snprintf(rest, sizeof rest, "%s", path) >= (int)sizeof rest)
        return "it cannot be examined";
    for (;;) {
        name = rest;
        while (*name == '/')
            name++;
        if (!*name)
            break;
        end = strchr(name, '/');
        if (end)
            *end++ = '\0';
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
            if (name[1] == '.' && strrchr(cur, '/') != cur)
                *strrchr(cur, '/') = '\0';
            else if (name[1] == '.')
                snprintf(cur, sizeof cur, "/");
        } else {
            char full[PATH_MAX];

            if (folder_open_to_others(cur))
                return "others can replace it: a folder on its path (or "
                       "on a link's) is another user's, or group or world "
                       "writable without the sticky bit";
            if (snprintf(full, sizeof full, "%s%s%s", cur,
                         strcmp(cur, "/") == 0 ? "" : "/", name) >=
                    (int)sizeof full || lstat(full, &st) != 0)
                return "it cannot be examined";
            if (S_ISLNK(st.st_mode)) {
                if (++links > MAX_LINKS ||
                    (n = readlink(full, target, sizeof target - 1)) <= 0)
                    return "it cannot be examined";
                target[n] = '\0';
                if (snprintf(next, sizeof next, "%s/%s", target,
                             end ? end : "") >= (int)sizeof next)
                    return "it cannot be examined";
                memcpy(rest, next, strlen(next) + 1);
                if (target[0] == '/')
                    snprintf(cur, sizeof cur, "/");
                continue;
            }
            if (!end || !*end) {               /* the file itself */
                snprintf(dir, dir_len, "%s", full);
                return NULL;
            }
            memcpy(cur, full, strlen(full) + 1);
        }
        if (!end)
            break;
        memmove(rest, end, strlen(end) + 1);
    }
    return "it cannot be examined";
}

const char *fsperm_others_can_write(int fd, const char *path)
{
    char file[PATH_MAX];
    struct stat opened, st;
    const char *why;

    if (fstat(fd, &opened) != 0)
        return "it cannot be examined";
    if ((opened.st_mode & (S_IWGRP | S_IWOTH)) != 0 || others_own(&opened))
        return "others can write it (another user's, or group or world "
               "writable): chown it to this user and chmod 600 it";
    why = walk(path, file, sizeof file);
    if (why)
        return why;
    if (stat(file, &st) != 0 || st.st_dev != opened.st_dev ||
        st.st_ino != opened.st_ino)
        return "it was replaced while it was read";
    return NULL;
}
