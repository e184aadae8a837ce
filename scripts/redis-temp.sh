#!/usr/bin/env bash
# A throwaway Redis server for the test suite, from Debian's `redis-server`
# package: `redis-temp.sh start DIR` starts one on a free loopback port
# (nothing saved to disk) and prints its URL; `stop DIR` stops it and
# removes DIR. `pause DIR` kills it as a crash would (its data is lost, as
# with a Redis that restarts without persistence); `resume DIR` starts it
# again on the same port.
set -euo pipefail
cmd=${1:?usage: redis-temp.sh start|stop|pause|resume DIR}
dir=${2:?usage: redis-temp.sh start|stop|pause|resume DIR}
if ! command -v redis-server >/dev/null; then
  echo "redis-temp: redis-server not found (package redis-server)" >&2
  exit 1
fi
port() { cat "$dir/port"; }

case "$cmd" in
  start)
    mkdir -p "$dir"
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' >"$dir/port"
    "$0" resume "$dir"
    echo "redis://127.0.0.1:$(port)"
    ;;
  resume)
    redis-server --port "$(port)" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --daemonize yes
    for _ in $(seq 100); do
      [[ "$(redis-cli -p "$(port)" ping 2>/dev/null)" == PONG ]] && exit 0
      sleep 0.1
    done
    echo "redis-temp: redis did not start (see $dir/redis.log)" >&2
    exit 1
    ;;
  pause)
    pid=$(cat "$dir/redis.pid")
    kill -9 "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    rm -f "$dir/redis.pid"
    ;;
  stop)
    redis-cli -p "$(port)" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: redis-temp.sh start|stop|pause|resume DIR" >&2
    exit 2
    ;;
esac
