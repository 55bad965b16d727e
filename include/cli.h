#ifndef AUTH_CLI_H               /* cli.h: operator subcommands */
#define AUTH_CLI_H
#include "cfg.h"

/* `auth-serve user create|set-password|list ...`: argv[0] is the verb.
 * Passwords come from stdin (no echo on a terminal). Returns the exit
 * status: 0, 1 on failure, 2 on bad arguments. */
int cli_user(const struct cfg *cfg, int argc, char **argv);

#endif
