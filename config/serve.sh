#!/usr/bin/env bash
# One command from a fresh Debian 12 checkout to a running daemon: installs
# what is missing, builds, and serves on 127.0.0.1:8000 with the embedded
# SQLite database under ./data (override with AUTH_* variables or .env).
set -euo pipefail
cd "$(dirname "$0")/.."
bash config/deps.sh build
cmake -S . -B build -DAUTH_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target auth-serve >/dev/null
exec ./build/auth-serve "$@"
