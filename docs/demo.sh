#!/usr/bin/env bash
# The demo behind `make demo`: origin-sim and the proxy on free loopback ports, a few
# fetches through the proxy (one after another, then several at once), then a clean stop.
# Everything stays on 127.0.0.1 and ends by itself.
set -euo pipefail
bin=${1:-target/release}
source "$(dirname "$0")/lib.sh"

step "Starting origin-sim and the proxy on free ports"
start origin-sim "$bin/origin-sim" --http 127.0.0.1:0 --tls 127.0.0.1:0 --ca-out "$work/ca.pem" \
  --echo 127.0.0.1:0 --chat 127.0.0.1:0
origin=$URL
tls=$(sed -n 's/.*https listening on https:\/\///p' "$work/origin-sim.out")
chat=$(sed -n 's/.*chat listening on tcp:\/\///p' "$work/origin-sim.out")
start proxy "$bin/proxy" --listen 127.0.0.1:0 --workers 2 --connect-ports any
proxy=$URL
proxy_pid=${pids[1]}
echo "origin-sim: $origin    proxy: $proxy"
proxy_addr=${proxy#http://}

step "One request through the proxy: what the origin received (note Via and X-Forwarded-For)"
"$bin/client" get --proxy "$proxy_addr" "$origin/headers"

step "Three requests on one keep-alive connection (curl): X-Origin-Conn shows the upstream connection reused"
if command -v curl >/dev/null; then
  curl -s -x "$proxy" -o /dev/null -o /dev/null -o /dev/null \
    -w '  %{url_effective} -> %{http_code}, %{size_download} bytes, upstream connection %header{x-origin-conn}\n' \
    "$origin/bytes/100" "$origin/chunked/5000" "$origin/bytes/300"
else
  echo "  (curl is not installed; skipping)"
fi

step "Five clients at once, each fetching a slow body (watch the proxy's worker threads)"
for i in 1 2 3 4 5; do
  "$bin/client" get --proxy "$proxy_addr" "$origin/drip/5?ms=100" >/dev/null 2>"$work/c$i.err" &
  pids+=($!)
done
wait "${pids[@]:2}"
pids=("${pids[@]:0:2}")
for i in 1 2 3 4 5; do echo "  client $i: $(tail -n1 "$work/c$i.err")"; done

step "HTTPS through a CONNECT tunnel, verified against origin-sim's generated CA"
"$bin/client" get --proxy "$proxy_addr" --cacert "$work/ca.pem" "https://localhost:${tls#*:}/bytes/16" | od -An -tx1 | head -n1

step "Two chat clients through the proxy (each is a tunnel): bob waits, alice talks"
(sleep 1; echo "hi alice, bob here"; sleep 0.5; echo "!DISCONNECT") |
  "$bin/client" chat --server "$chat" --proxy "$proxy_addr" --name bob >"$work/bob.txt" &
bob=$!
wait_for "$work/bob.txt" welcome
(echo "hello bob"; sleep 2; echo "!DISCONNECT") |
  "$bin/client" chat --server "$chat" --proxy "$proxy_addr" --name alice >"$work/alice.txt"
wait "$bob"
echo "  what alice saw:"; sed 's/^/    /' "$work/alice.txt"
echo "  what bob saw:"; sed 's/^/    /' "$work/bob.txt"

step "Errors come with a reason"
"$bin/client" get --proxy "$proxy_addr" "$origin/malformed" || true
echo
"$bin/client" get --proxy "$proxy_addr" "http://127.0.0.1:1/" || true

step "Stopping (SIGTERM): the proxy finishes in-flight requests, then exits"
kill -TERM "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true
sleep 0.2 # let the last log lines through the prefixing pipe

step "Grading: the reference proxy on lab 2 (any program can be graded: lab run 2 --cmd '... {port}')"
"$bin/lab" run 2 || true

echo "Done. Run it yourself: make origin (one terminal), make run (another), then"
echo "  curl -x http://127.0.0.1:8080 http://127.0.0.1:9000/bytes/100"
echo "and grade a proxy: make lab2 PROXY_CMD=\"python3 myproxy.py {port}\""
