#!/bin/sh
# layout.sh: what the layout promises (README "Layout"), checked on the
# source tree: run from the repository root (ctest does). Prints each
# breach and exits 1 when there is one.
bad=0
breach() {
    printf 'layout: %s\n' "$1"
    printf '%s\n' "$2" | sed 's/^/    /'
    bad=1
}

# libsodium is used only under src/sec/; the rest goes through crypto.h.
hits=$(grep -rlE '#[[:space:]]*include[[:space:]]*<sodium\.h>' src include |
       grep -v '^src/sec/')
[ -z "$hits" ] || breach "<sodium.h> outside src/sec/" "$hits"

# One mapping of the role names: src/role.c.
hits=$(grep -rn '"admin"' src --include='*.c' | grep -v '^src/role\.c:' |
       grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/\*|\*)')     # not comments
[ -z "$hits" ] || breach 'the role name "admin" outside src/role.c' "$hits"

# Backends are chosen by CMake (AUTH_POSTGRES), not by probing sources.
hits=$(grep -rn '__has_include' src include)
[ -z "$hits" ] || breach "__has_include in the sources" "$hits"

# The contract cited is the repository's own (src/openapi.json, README),
# never a document kept elsewhere.
hits=$(grep -rnI --exclude-dir=node_modules 'API[.]md' src include tests \
       migrations config bench fuzz README.md CMakeLists.txt)
[ -z "$hits" ] || breach "a citation of a document outside the repository" \
                         "$hits"
# Handlers and the CLI translate and call the core: no storage call, no
# cache invalidation of their own (src/core/ decides what a change
# revokes and forgets).
hits=$(grep -nE '\b(repo_[a-z_]+|scache_forget[a-z_]*|vcache_[a-z_]+)\(' \
       src/handlers/*.c src/cli.c)
[ -z "$hits" ] || breach "a handler or the CLI past the core" "$hits"

# The storage backends only store: they are drivers (src/repo/driver.h),
# the statements and flows are written once in the area files, and the
# two stay small (at most 2,600 lines together).
n=$(cat src/repo/sqlite.c src/repo/pg.c | wc -l)
[ "$n" -le 2600 ] || breach "the backends hold $n lines (over 2,600)" \
                            "src/repo/sqlite.c src/repo/pg.c"
exit $bad
