#!/usr/bin/env bash
# make bench-peers: our release proxy side by side with Squid, Tinyproxy and Privoxy, in the
# shared loopback harness (BENCH_DIR, default ../shared/bench; its README says how to
# install the peers). Two targets of ours: `ours` (--cache-size 0, forwarding) and
# `ours-cache` (the default cache, for hits). Extra arguments go to the harness's run.sh,
# e.g. DURATION=10 ROUNDS=2 or WORKLOADS=tunnel.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR="${BENCH_DIR:-../shared/bench}"
if [ ! -x "$BENCH_DIR/run.sh" ]; then
  echo "bench-peers: skipped: no harness at $BENCH_DIR (set BENCH_DIR=…/bench)"
  exit 0
fi
missing=()
for tool in squid tinyproxy privoxy nginx wrk; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench-peers: skipped: not installed: ${missing[*]}"
  echo "  (as root: apt-get install -y --no-install-recommends squid tinyproxy privoxy nginx-light wrk curl python3 iproute2 procps)"
  exit 0
fi
cargo build --release -q -p proxy
PORT="${PORT:-3130}"
CACHE_PORT="${CACHE_PORT:-3131}"
# CONNECT to the harness's tunnel target (19100) must be allowed.
flags=(--connect-ports 443,19100)
target/release/proxy --listen "127.0.0.1:$PORT" --cache-size 0 "${flags[@]}" >/dev/null 2>&1 &
forward=$!
target/release/proxy --listen "127.0.0.1:$CACHE_PORT" "${flags[@]}" >/dev/null 2>&1 &
cached=$!
trap 'kill $forward $cached 2>/dev/null || true' EXIT
for port in "$PORT" "$CACHE_PORT"; do
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
  done
done
"$BENCH_DIR/run.sh" --with-env "ours=127.0.0.1:$PORT" "ours-cache=127.0.0.1:$CACHE_PORT" "$@"
