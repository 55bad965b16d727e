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
exit $bad
