#!/usr/bin/env bash
# Operator benchmark (issue: registration to EndpointSlice latency, writes per service,
# zero writes when nothing changes). In one run on loopback it starts a private
# PostgreSQL, a local control plane (tests/controlplane) and `extsvc serve` (release),
# then runs bench/operator.rs against them: once as fast as the API accepts registrations
# and once paced at 50 a second (RATES lists the rates; 0 = unpaced). COUNT, CONCURRENCY
# and QUIET_SECONDS tune it. First it measures the peer, the API server's own ceiling for
# server-side applies (CEILING_COUNT EndpointSlices, 32 in flight), and reports each
# run's write rate as a share of it.
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

echo "building..." >&2
SQLX_OFFLINE=true cargo build --release --quiet
SQLX_OFFLINE=true cargo bench --bench operator --no-run --quiet 2>/dev/null

admin=$(scripts/postgres start "$work/pg")
psql -q "$admin" -c "CREATE DATABASE bench"
bin=$(tests/controlplane/build.sh 2>/dev/null)
"$bin/controlplane" --bin-dir "$bin" --dir "$work/cp" >"$work/cp.ready" 2>"$work/cp.log" &
pids+=($!)
for _ in $(seq 300); do grep -q '^ready ' "$work/cp.ready" && break; sleep 0.1; done
export KUBECONFIG=$work/cp/kubeconfig

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The benchmark registers as the platform admin, with no rate limit in the way.
export EXTSVC_ADMIN_TOKEN
EXTSVC_ADMIN_TOKEN=$(head -c 32 /dev/urandom | base64 | tr -d '\n/+=')
DATABASE_URL="${admin%/*}/bench" EXTSVC_LISTEN=127.0.0.1:$port RUST_LOG=warn EXTSVC_RATE_LIMIT=100000000 \
  target/release/extsvc serve --install-crd >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

# The peer: what this API server takes at all, in the same run.
ceiling=$(MODE=ceiling COUNT=${CEILING_COUNT:-5000} BENCH_NAMESPACE=bench-ceiling SQLX_OFFLINE=true \
  cargo bench --bench operator --quiet)
echo "$ceiling"
export API_SERVER_CEILING
API_SERVER_CEILING=$(sed -nE 's/^API server ceiling: ([0-9]+) .*/\1/p' <<<"$ceiling")

for rate in ${RATES:-0 50}; do
  echo
  BENCH_NAMESPACE=bench-$rate RATE=$rate EXTSVC_URL=http://127.0.0.1:$port SQLX_OFFLINE=true cargo bench --bench operator --quiet
done
