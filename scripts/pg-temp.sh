#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite, from Debian's
# `postgresql` package: `pg-temp.sh start DIR` initialises a cluster in DIR,
# starts it on a free loopback port and prints its URL; `pg-temp.sh stop DIR`
# stops it and removes DIR. `pause DIR` kills the server as a crash would
# (`-m immediate`) and keeps its data; `resume DIR` starts it again on the
# same port. As root, the server runs as the `postgres` user (it refuses root).
set -euo pipefail
cmd=${1:?usage: pg-temp.sh start|stop|pause|resume DIR}
dir=${2:?usage: pg-temp.sh start|stop|pause|resume DIR}

bindir=""
for d in /usr/lib/postgresql/*/bin; do
  [[ -x "$d/initdb" ]] && bindir="$d"
done
if [[ -z "$bindir" ]]; then
  echo "pg-temp: PostgreSQL server binaries not found (package postgresql)" >&2
  exit 1
fi

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then
      chown postgres "$dir"
      # The server user must be able to reach DIR (mktemp makes 0700 parents).
      chmod a+x "$(dirname "$dir")"
    fi
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    echo "$port" >"$dir/port"
    "$0" resume "$dir"
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  resume)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $(cat "$dir/port") -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
    ;;
  pause)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
    ;;
  stop)
    if [[ -f "$dir/data/postmaster.pid" ]]; then
      as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: pg-temp.sh start|stop|pause|resume DIR" >&2
    exit 2
    ;;
esac
