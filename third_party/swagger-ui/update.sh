#!/bin/sh
# Replaces the vendored Swagger UI with swagger-ui-dist VERSION from the npm registry: sh third_party/swagger-ui/update.sh 5.35.0
set -eu; v=${1:?usage: update.sh VERSION}; d=$(cd "$(dirname "$0")" && pwd); t=$(mktemp -d); (cd "$t" && npm pack --silent "swagger-ui-dist@$v" >/dev/null && tar -xzf "swagger-ui-dist-$v.tgz" && cd package && cp swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE "$d/") && echo "$v" >"$d/VERSION" && rm -rf "$t"
