/* cli.c: `auth-serve user ...`, so an operator can create the first admin
 * before any HTTP call. It reads arguments and the password and calls the
 * rules of src/core/ that the HTTP handlers call. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "crypto.h"

#include "clock.h"
#include "core.h"
#include "lockout.h"
#include "log.h"
#include "mfa.h"
#include "password.h"
#include "repo.h"
#include "uuid.h"
#include "validate.h"

#define PW_LINE 1024

struct user_args {
    const char *email, *name;
    bool admin;
};

/* Blank input read after the password's line at most (`yes ''` piped in
 * would be read for good). */
#define PW_TRAILER_MAX 65536

/* Reads one line from stdin without echo on a terminal: at most `len` - 1
 * bytes before its LF (or CRLF, or the end of the input). A NUL, a CR
 * elsewhere, a longer line and, from a pipe or a file, more than blank
 * lines after it are refused, not cut at: the password set would be a
 * prefix of the one given (a password pasted with a line break in it
 * was set as its first line; one with a NUL after its last line end, as
 * what came before the NUL). */
static bool read_password(char *buf, size_t len)
{
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    bool ok = true, ended = false;
    size_t n = 0, extra = 0;
    int ch;

    if (tty) {                /* the prompt once the echo is off: what */
        quiet = old;          /* is typed after it is not flushed */
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        fputs("Password: ", stderr);
    }
    while ((ch = getchar()) != EOF) {
        if (ch == '\n') {
            ended = true;
            break;
        }
        if (ch == '\0' || n + 1 >= len) {
            ok = false;
            break;
        }
        buf[n++] = (char)ch;
    }
    buf[n] = '\0';
    if (tty) {
        int waiting = 0;

        /* pasted with a line break: the rest waits in the terminal's
         * queue, which restoring the echo would throw away */
        if (ok && ioctl(STDIN_FILENO, FIONREAD, &waiting) == 0 &&
            waiting > 0)
            ok = false;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (!ok || (n == 0 && !ended))
        return false;                      /* refused, or no input */
    if (ended && n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';                   /* CRLF */
    if (memchr(buf, '\r', n))
        return false;
    while (!tty && ended && (ch = getchar()) != EOF)
        if (!strchr(" \t\r\n", ch) || ++extra > PW_TRAILER_MAX)
            return false;
    return true;
}

static int parse_args(int argc, char **argv, struct user_args *a)
{
    int i;

    memset(a, 0, sizeof *a);
    /* An option given twice is refused, and so is an option where a
     * value belongs (`--name --admin`): which account was meant (created,
     * unlocked, reset, an admin or not) is not for the daemon to guess. */
    for (i = 1; i < argc; i++) {
        bool value = i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0;

        if (strcmp(argv[i], "--admin") == 0 && !a->admin)
            a->admin = true;
        else if (strcmp(argv[i], "--email") == 0 && value && !a->email)
            a->email = argv[++i];
        else if (strcmp(argv[i], "--name") == 0 && value && !a->name)
            a->name = argv[++i];
        else
            return 2;
    }
    return 0;
}

/* Says why and gives the exit status: 1 when the database or the host
 * failed (what the HTTP API answers 5xx), 2 when the arguments were
 * refused (an email taken, or not found, a name not valid). */
static int fail(const char *what, enum as_err err)
{
    fprintf(stderr, "auth-serve: %s: %s\n", what, as_err_code(err));
    return as_err_http_status(err) >= 500 ? 1 : 2;
}

/* Reads a password for `email` into `pw` (PW_LINE bytes) and checks
 * the policy: 0, or the exit status after saying why. */
static int new_password(const struct cfg *cfg, const char *email, char *pw)
{
    const char *why;

    if (!read_password(pw, PW_LINE)) {
        fprintf(stderr, "auth-serve: no password read from stdin: one "
                        "line of at most %d bytes, without CR or NUL, and "
                        "nothing but blank lines after it (from a pipe, "
                        "read to its end)\n", PW_LINE - 1);
        return 2;
    }
    why = pw_policy_check(pw, email, cfg->password_min_length);
    if (why) {
        fprintf(stderr, "auth-serve: password %s\n", why);
        return 2;
    }
    return 0;
}

/* Creates the user of `a` (its email and name checked by cli_user())
 * with password `pw`. */
static int user_create(const struct core *c, const struct user_args *a,
                       const char *pw, struct arena *ar)
{
    struct user u = { .role = a->admin ? ROLE_ADMIN : ROLE_USER,
                      .is_active = true };
    enum as_err err;

    u.email = v_new_email(ar, a->email);
    u.full_name = a->name;
    err = u.email ? core_user_create(c, &u, pw) : AS_ERR_VALIDATION;
    if (err != AS_OK)
        return fail("cannot create the user", err);
    log_event(LOG_INFO, "audit", NULL,
              json_pack("{s:s, s:s, s:s, s:s}", "action", "user.created",
                        "actor", "cli", "user_id", u.id, "role",
                        role_name(u.role)));
    printf("%s\n", u.id);
    return 0;
}

/* The user named by --email into `u` (its strings in `ar`) and the
 * normalised email into *email: 0, or the exit status after saying why. */
static int named_user(const struct core *c, const struct user_args *a,
                      struct arena *ar, struct user *u, const char **email)
{
    enum as_err err;

    *email = v_email(ar, a->email);
    if (!*email) {
        fprintf(stderr, "auth-serve: invalid --email\n");
        return 2;
    }
    err = core_user_by_email(c, *email, u, ar);
    return err == AS_OK ? 0 : fail("no such user", err);
}

static int user_set_password(const struct core *c, const struct user_args *a,
                             const char *pw, struct arena *ar)
{
    const char *email;
    struct user u;
    enum as_err err;
    int status = named_user(c, a, ar, &u, &email);

    if (status != 0)
        return status;
    /* every session of the user ends */
    err = core_user_set_password(c, u.id, pw, NULL);
    if (err != AS_OK)
        return fail("cannot set the password", err);
    log_event(LOG_INFO, "audit", NULL,
              json_pack("{s:s, s:s, s:s}", "action", "password_set",
                        "actor", "cli", "user_id", u.id));
    return 0;
}

/* `user mfa-reset`: turns the second factor of a user off (a user who
 * lost the device), audited like the admin route. */
static int user_mfa_reset(const struct core *c, const struct user_args *a,
                          struct arena *ar)
{
    struct mfa_env e = { .repo = c->repo, .now_ms = c->now_ms() };
    const char *email;
    struct user u;
    bool was_on = false;
    int status = named_user(c, a, ar, &u, &email);
    enum as_err err;

    if (status != 0)
        return status;
    err = mfa_disable(&e, u.id, NULL, &was_on);
    if (err != AS_OK)
        return fail("cannot reset the second factor", err);
    log_event(LOG_INFO, "audit", NULL,
              json_pack("{s:s, s:s, s:s, s:b}", "action", "mfa.reset",
                        "actor", "cli", "user_id", u.id, "was_on", was_on));
    printf("%s\n", was_on ? "second factor turned off"
                          : "no second factor was on");
    return 0;
}

/* Lifts every lockout of the account (and of its email from any
 * address), as DELETE /api/v1/users/{id}/lockout does. */
static int user_unlock(const struct core *c, const struct user_args *a,
                       struct arena *ar)
{
    const char *email;
    struct user u;
    int status = named_user(c, a, ar, &u, &email);
    enum as_err err;

    if (status != 0)
        return status;
    err = lockout_unlock(c->repo, email);
    if (err != AS_OK)
        return fail("cannot unlock the user", err);
    log_event(LOG_INFO, "audit", NULL,
              json_pack("{s:s, s:s, s:s}", "action", "user.unlocked",
                        "actor", "cli", "user_id", u.id));
    return 0;
}

static int user_list(const struct core *c, struct arena *ar)
{
    struct user page[100];
    const char *after = NULL;
    size_t n, i;
    enum as_err err;

    do {
        err = core_user_list(c, NULL, after, 100, page, &n, ar);
        if (err != AS_OK)
            return fail("cannot list users", err);
        for (i = 0; i < n; i++)
            printf("%s\t%s\t%s\t%s\n", page[i].id, page[i].email,
                   role_name(page[i].role),
                   page[i].is_active ? "active" : "disabled");
        after = n ? arena_strdup(ar, page[n - 1].id) : NULL;
    } while (n == 100);
    return 0;
}

int cli_user(const struct cfg *cfg, int argc, char **argv)
{
    struct pw_params params = { cfg->argon2_iterations,
                                (size_t)cfg->argon2_memory_kib * 1024u };
    struct user_args a;
    struct repo *r = NULL;
    struct arena *ar = NULL;
    struct core c;
    enum as_err err;
    int status = 2;
    char pw[PW_LINE] = "";
    bool create, set_pw;

    if (argc < 1 || parse_args(argc, argv, &a) != 0)
        goto usage;
    create = strcmp(argv[0], "create") == 0;
    set_pw = strcmp(argv[0], "set-password") == 0;
    if (!create && !set_pw && strcmp(argv[0], "list") != 0 &&
        strcmp(argv[0], "mfa-reset") != 0 && strcmp(argv[0], "unlock") != 0)
        goto usage;                   /* `--help`, before any database */
    if ((strcmp(argv[0], "create") == 0 ||
         strcmp(argv[0], "set-password") == 0 ||
         strcmp(argv[0], "mfa-reset") == 0 ||
         strcmp(argv[0], "unlock") == 0) && !a.email)
        goto usage;
    if (strcmp(argv[0], "create") != 0 && (a.admin || a.name) )
        goto usage;
    if (strcmp(argv[0], "list") == 0 && a.email)
        goto usage;
    ar = arena_new();
    if (!ar)
        return fail("out of memory", AS_ERR_NOMEM);
    /* before any database is made for it */
    if (strcmp(argv[0], "create") == 0 &&
        (!v_new_email(ar, a.email) || (a.name && !v_full_name(a.name)))) {
        fprintf(stderr, "auth-serve: invalid %s\n",
                v_new_email(ar, a.email) ? "--name" : "--email");
        arena_free(ar);
        return 2;
    }
    /* A mistyped AUTH_DATA_DIR, or a command run from the wrong folder
     * (the default is ./data), made and migrated a new, empty database
     * and listed its no users with exit 0. Only `create` may make one
     * (the first admin, before the first start), and says so. */
    if (strncmp(cfg->database_url, "sqlite:", 7) == 0 &&
        access(cfg->database_url + 7, F_OK) != 0 && errno == ENOENT) {
        if (strcmp(argv[0], "create") != 0) {
            fprintf(stderr, "auth-serve: no database at %s (check "
                    "AUTH_DATA_DIR or AUTH_DATABASE_URL, and the working "
                    "folder: the default is ./data)\n",
                    cfg->database_url + 7);
            arena_free(ar);
            return 2;
        }
    }
    /* The password read and checked before a database is made for it,
     * or opened: a refused password made one before. */
    if ((create || set_pw) &&
        (status = new_password(cfg, v_email(ar, a.email), pw)) != 0) {
        crypt_wipe(pw, sizeof pw);
        arena_free(ar);
        return status;
    }
    if (strncmp(cfg->database_url, "sqlite:", 7) == 0 &&
        access(cfg->database_url + 7, F_OK) != 0 && errno == ENOENT)
        fprintf(stderr, "auth-serve: making a new database at %s\n",
                cfg->database_url + 7);
    err = core_store_open(cfg, &r);
    core_init(&c, r, NULL, cfg, &params, NULL);
    if (err != AS_OK) {
        status = fail("database unavailable", err);
    } else if (create) {
        status = user_create(&c, &a, pw, ar);
    } else if (set_pw) {
        status = user_set_password(&c, &a, pw, ar);
    } else if (strcmp(argv[0], "list") == 0) {
        status = user_list(&c, ar);
    } else if (strcmp(argv[0], "mfa-reset") == 0) {
        status = user_mfa_reset(&c, &a, ar);
    } else if (strcmp(argv[0], "unlock") == 0) {
        status = user_unlock(&c, &a, ar);
    }
    crypt_wipe(pw, sizeof pw);
    arena_free(ar);
    core_store_close(r);
    return status;
usage:
    fputs("usage: auth-serve user create --email E [--admin] [--name N]\n"
          "       auth-serve user set-password --email E\n"
          "       auth-serve user unlock --email E\n"
          "       auth-serve user list\n"
          "       auth-serve user mfa-reset --email E\n", stderr);
    return 2;
}
