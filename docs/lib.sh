# Helpers the demos share (`make demo`, `make cluster`): a temporary folder, servers
# started in the background and stopped on exit, and step headings. Sourced, not run.

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Starts a server in the background, waits (up to 10 s) for its `listening on` line, and
# sets URL to the address it printed. Its log lines are shown, prefixed with its name, and
# kept in $work/NAME.err.
start() {
  local name=$1; shift
  "$@" >"$work/$name.out" 2> >(tee "$work/$name.err" | sed -u "s/^/  [$name] /" >&2) &
  pids+=($!)
  for _ in $(seq 1 200); do
    if grep -q "listening on" "$work/$name.out"; then
      URL=$(sed 's/.* listening on //' "$work/$name.out" | head -n1)
      return
    fi
    sleep 0.05
  done
  echo "$name did not start" >&2
  exit 1
}

# Waits (up to 10 s) until FILE contains PATTERN.
wait_for() {
  local file=$1 pattern=$2
  for _ in $(seq 1 200); do
    grep -q "$pattern" "$file" 2>/dev/null && return
    sleep 0.05
  done
  echo "timed out waiting for '$pattern' in $file" >&2
  exit 1
}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
