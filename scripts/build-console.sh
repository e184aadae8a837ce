#!/usr/bin/env bash
# Builds the web console's bundle (crates/aitier-server/console/dist), which
# is committed so that building the server needs no Node.js. With --check,
# fails when the sources do not build to exactly the committed bundle.
set -euo pipefail
cd "$(dirname "$0")/../crates/aitier-server/console"
if ! command -v npm >/dev/null; then
  echo "npm is needed to build the console (Node.js 20 or later)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build >/dev/null
if [[ "${1:-}" == "--check" ]]; then
  changed="$(git status --porcelain -- dist)"
  if [[ -n "$changed" ]]; then
    echo "the console's sources build to another bundle than the committed one:" >&2
    echo "$changed" >&2
    echo "run scripts/build-console.sh and commit dist/" >&2
    exit 1
  fi
fi
