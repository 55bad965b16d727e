#!/usr/bin/env bash
# Builds the Debian package from a Release tree and installs it into a
# clean Debian 12 root (mmdebstrap, apt variant, from the configured
# mirror; about a minute), where the binary must start and its example
# configuration pass `config check`. Run by tests/run.sh (stage package).
#   tests/package.sh BUILD_DIR    a tree configured with
#                                 -DCMAKE_INSTALL_PREFIX=/usr, built
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: tests/package.sh BUILD_DIR}
# The new root is a fresh host: none of the caller's AUTH_* settings (the
# test runner's own AUTH_TEST_* among them) may leak into its checks.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^AUTH_')

rm -f "$build"/auth-serve_*.deb
(cd "$build" && cpack -G DEB >cpack.log 2>&1) ||
    { cat "$build/cpack.log"; exit 1; }
deb=$(ls "$build"/auth-serve_*.deb)
fields=$(dpkg-deb -f "$deb" Package Depends)
echo "$fields"
# Depends come from the linked libraries (dpkg-shlibdeps), not by hand;
# libcurl4, libsystemd0, libqrencode4, libcbor0.8, libjwt0 and libpq5 are
# named in CMakeLists.txt (opened with dlopen() when used: src/mail.c,
# src/sysd.c, src/qr.c, src/sec/cborlib.c, src/sec/jwtlib.c,
# src/repo/pqlib.c).
for lib in libmicrohttpd12 libsodium23 libpq5 libsqlite3-0 libjwt0 \
           libjansson4 libsystemd0 libcurl4 libqrencode4 libcbor0.8; do
    grep -q "$lib" <<<"$fields" || { echo "Depends lacks $lib"; exit 1; }
done

root=$(mktemp -d /tmp/auth-deb-root.XXXXXX)
trap 'rm -rf "$root"' EXIT
name=$(basename "$deb")
unit=/usr/lib/systemd/system/auth-serve.service
bin=/usr/bin/auth-serve
# with no configuration, then with the example environment file as the
# .env of the working directory (as the unit hands it over, a credential
# in the working directory)
check="cd /tmp && auth-serve config check && mkdir /tmp/cred &&
cp /usr/share/doc/auth-serve/auth-serve.env /tmp/cred/.env &&
cd /tmp/cred && auth-serve config check"
start=$(date +%s)
# Each hook runs inside the new root; any failure fails mmdebstrap.
mmdebstrap --quiet --variant=apt --mode=root \
    --customize-hook="copy-in $deb /tmp" \
    --customize-hook="chroot \"\$1\" apt-get install -y -q /tmp/$name" \
    --customize-hook='chroot "$1" sh -c "! ldd /usr/bin/auth-serve |
grep \"not found\""' \
    --customize-hook='chroot "$1" auth-serve --version' \
    --customize-hook="chroot \"\$1\" sh -ec '$check'" \
    --customize-hook="chroot \"\$1\" grep -qx ExecStart=$bin $unit" \
    --customize-hook="chroot \"\$1\" test -f ${unit%.service}.socket" \
    bookworm "$root" >"$build/mmdebstrap.log" 2>&1 ||
    { tail -40 "$build/mmdebstrap.log"; exit 1; }
grep -E '^auth-serve |^configuration ok' "$build/mmdebstrap.log"
echo "package installed and ran in a clean Debian 12 root in" \
     "$(( $(date +%s) - start )) s"
