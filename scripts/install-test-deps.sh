#!/usr/bin/env bash
# Installs what the test suite needs beyond the build: PostgreSQL's server
# binaries and psql (Debian's `postgresql`), for the tests that run against
# a throwaway PostgreSQL. A failure here is reported, not fatal: those tests
# then say loudly that they were skipped.
set -uo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && command -v psql >/dev/null; then
  exit 0
fi
echo "installing postgresql for the test suite" >&2
SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null; }; then
  echo "!!! could not install postgresql: PostgreSQL tests will be SKIPPED !!!" >&2
fi
