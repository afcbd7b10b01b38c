#!/usr/bin/env bash
# Pipeline benchmark (issue: time from a backend turning healthy to `extsvc wait`
# returning, against a client polling /health once a second; the cost of 1,000 idle event
# streams). In one run on loopback it starts a private PostgreSQL, a local control plane
# (tests/controlplane) and `extsvc serve` (release), then runs bench/pipeline.rs against
# them. RUNS, STREAMS and IDLE_SECONDS tune it. Needs root (a network namespace holds
# the backend).
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d "${TMPDIR:-/tmp}/extsvc-bench.XXXXXX")
chmod 755 "$work"
pids=()
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  scripts/postgres stop "$work/pg" || true
  rm -rf "$work"
}
trap cleanup EXIT
# A connection per stream, on both sides.
ulimit -n "$(ulimit -Hn)"

echo "building..." >&2
SQLX_OFFLINE=true cargo build --release --quiet
SQLX_OFFLINE=true cargo bench --bench pipeline --no-run --quiet 2>/dev/null

admin=$(scripts/postgres start "$work/pg")
psql -q "$admin" -c "CREATE DATABASE bench"
bin=$(tests/controlplane/build.sh 2>/dev/null)
"$bin/controlplane" --bin-dir "$bin" --dir "$work/cp" >"$work/cp.ready" 2>"$work/cp.log" &
pids+=($!)
for _ in $(seq 300); do grep -q '^ready ' "$work/cp.ready" && break; sleep 0.1; done
export KUBECONFIG=$work/cp/kubeconfig

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export EXTSVC_TOKEN
EXTSVC_TOKEN=$(head -c 32 /dev/urandom | base64 | tr -d '\n/+=')
DATABASE_URL="${admin%/*}/bench" EXTSVC_LISTEN=127.0.0.1:$port RUST_LOG=warn \
  EXTSVC_ADMIN_TOKEN=$EXTSVC_TOKEN EXTSVC_RATE_LIMIT=100000000 \
  target/release/extsvc serve --install-crd >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

EXTSVC_URL=http://127.0.0.1:$port SERVER_PID=$server SQLX_OFFLINE=true \
  cargo bench --bench pipeline --quiet
