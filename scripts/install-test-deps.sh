#!/usr/bin/env bash
# Installs what the test suite needs beyond the build, from Debian's
# packages: PostgreSQL's server binaries and psql (`postgresql`) and Redis
# (`redis-server`), for the tests that run against throwaway ones, and
# Chromium, which the console's end-to-end tests drive. A failure here is reported, not fatal:
# the tests that need what is missing then fail or say loudly that they
# were skipped.
set -uo pipefail
missing=()
if ! { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && command -v psql >/dev/null; }; then
  missing+=(postgresql)
fi
command -v redis-server >/dev/null || missing+=(redis-server)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "installing ${missing[*]} for the test suite" >&2
SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
  echo "!!! could not install ${missing[*]}: the tests that need them will fail or be SKIPPED !!!" >&2
fi
