#!/usr/bin/env bash
# The demo behind `make cluster`: three proxy replicas in front of one origin, first each
# with its own cache, then sharing one through Redis (--cache-store); the same load runs
# across the three both times, and the origin says how many times it was asked for each
# object. Needs redis-server on PATH. Everything stays on 127.0.0.1 and ends by itself.
set -euo pipefail
bin=${1:-target/release}
if ! command -v redis-server >/dev/null; then
  echo "make cluster needs redis-server on PATH (Debian: apt-get install redis-server)" >&2
  exit 1
fi
source "$(dirname "$0")/lib.sh"

OBJECTS=20
REQUESTS=3000
CLIENTS=6

step "Starting redis-server, origin-sim"
# redis-server cannot take port 0: the first free port from 16379 up.
redis_port=
for port in $(seq 16379 16399); do
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    >"$work/redis.out" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    grep -q "Ready to accept connections" "$work/redis.out" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if grep -q "Ready to accept connections" "$work/redis.out"; then
    pids+=("$pid")
    redis_port=$port
    break
  fi
done
[ -n "$redis_port" ] || { echo "redis-server would not start:" >&2; cat "$work/redis.out" >&2; exit 1; }
store="redis://127.0.0.1:$redis_port"
echo "  redis-server: $store"
start origin-sim "$bin/origin-sim" --http 127.0.0.1:0
origin=$URL
echo "  origin-sim: $origin"

# Starts three replicas with the extra flags given; sets REPLICAS to their addresses.
replicas() {
  REPLICAS=()
  for n in 1 2 3; do
    start "replica-$n" "$bin/proxy" --listen 127.0.0.1:0 --via-name "replica-$n" \
      --log warn,proxy::cache::remote=info "$@"
    REPLICAS+=("${URL#http://}")
  done
}

stop_replicas() {
  local keep=2 # redis-server and origin-sim
  for pid in "${pids[@]:$keep}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]:$keep}"; do wait "$pid" 2>/dev/null || true; done
  pids=("${pids[@]:0:$keep}")
}

# Runs the load across the replicas, OBJECTS objects named after $1; prints the origin's
# count and sets FETCHES.
load() {
  local name=$1
  local args=()
  for r in "${REPLICAS[@]}"; do args+=(--proxy "$r"); done
  "$bin/client" load "${args[@]}" --clients "$CLIENTS" --requests "$REQUESTS" \
    --objects "$OBJECTS" "$origin/etag/$name-{i}?max-age=600" | sed 's/^/  /'
  "$bin/client" get "$origin/hits?prefix=/etag/$name-" 2>/dev/null >"$work/hits-$name.txt"
  FETCHES=$(awk 'NR == 1 { print $1 }' "$work/hits-$name.txt")
  echo "  the origin: $(head -n1 "$work/hits-$name.txt")"
}

step "Three replicas, each with its own cache: $REQUESTS requests for $OBJECTS objects, clients round-robin"
replicas
echo "  replicas: ${REPLICAS[*]}"
load alone
alone=$FETCHES
stop_replicas

step "Three replicas sharing one cache through Redis (--cache-store $store)"
replicas --cache-store "$store"
for n in 1 2 3; do wait_for "$work/replica-$n.err" "cache store .* connected"; done
echo "  replicas: ${REPLICAS[*]}"
load shared
shared=$FETCHES
echo "  per object:"
sed -n '2,4p' "$work/hits-shared.txt" | sed 's/^/  /'
echo "    …"

step "Origin fetches and hit ratio for $REQUESTS requests of $OBJECTS objects over 3 replicas"
awk -v r="$REQUESTS" -v a="$alone" -v s="$shared" 'BEGIN {
  printf "  %-22s %14s %10s\n", "", "origin fetches", "hit ratio"
  printf "  %-22s %14d %9.1f%%\n", "each its own cache", a, 100 * (r - a) / r
  printf "  %-22s %14d %9.1f%%\n", "shared through Redis", s, 100 * (r - s) / r
}'
stop_replicas
echo
echo "Done. By hand: redis-server --port 6379, then each replica with"
echo "  proxy --listen 127.0.0.1:PORT --via-name NAME --cache-store redis://127.0.0.1:6379"
