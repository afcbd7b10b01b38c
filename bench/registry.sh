#!/usr/bin/env bash
# Registry API throughput and latency, against the ceiling of the same read in pgbench.
#
# In one run on loopback: a private PostgreSQL, `extsvc serve` (release build), then
#   - create:   wrk POSTing new registrations (unique names),
#   - get-one:  wrk GETting one registration (as the platform admin: one SHA-256 and a
#               comparison authenticate it),
#   - get-team: the same with a team's API token (a cache of what PostgreSQL said about
#               the token, asked again every 0.5 s),
#   - list-50:  wrk GETting a page of 50,
#   - pgbench:  the server's own primary-key read (prepared, same connection count),
# each for $DURATION seconds at $CONNECTIONS connections; get-one and pgbench read
# random names among the $SEED seeded ones, and alternate for $ROUNDS rounds, because a
# shared machine's speed drifts by 20% from minute to minute. Reports requests/s, p99
# and the server's CPU seconds per 1,000 requests (from /proc/<pid>/stat), and GET-one
# as a share of the pgbench ceiling in each round and as the median of the rounds.
# Everything shares this machine's cores, as it would.
# First, cold statistics: $COLD registrations bulk-registered in namespace `cold` through
# the API ($COLD_CLIENTS clients), then at once (statistics not refreshed; autovacuum
# is held off that table so that it cannot refresh them halfway through a run)
#   - cold-list:    wrk GETting a page of 50 of `cold`,
#   - cold-select:  wrk GETting a page with labelSelector shard=N (N random: 1% of $COLD),
# and the same two after ANALYZE (list-anl, select-anl).
# TRANSPORT=unix connects the server and pgbench to PostgreSQL over its Unix socket
# instead of TCP (both the same way, so the ceiling stays comparable).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
SEED=${SEED:-1000}
ROUNDS=${ROUNDS:-3}
COLD=${COLD:-30000}
COLD_CLIENTS=${COLD_CLIENTS:-16}

for tool in wrk pgbench; do
  command -v $tool >/dev/null || { echo "needs $tool (Debian packages wrk, postgresql-client)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/extsvc-bench.XXXXXX")
chmod 755 "$work"
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  scripts/postgres stop "$work/pg" || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "building release binary..." >&2
SQLX_OFFLINE=true cargo build --release --quiet

admin=$(scripts/postgres start "$work/pg")
psql -q "$admin" -c "CREATE DATABASE bench"
db="${admin%/*}/bench"
if [ "${TRANSPORT:-tcp}" = unix ]; then
  pg_port=$(sed -E 's|.*:([0-9]+)/.*|\1|' <<<"$admin")
  db="postgres://postgres@localhost/bench?host=$work/pg&port=$pg_port"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The cold run puts 30,000 in one namespace, above the default cap; every request is the
# platform admin's (authenticated, no rate limit in the way).
token=$(head -c 32 /dev/urandom | base64 | tr -d '\n/+=')
DATABASE_URL=$db EXTSVC_LISTEN=127.0.0.1:$port EXTSVC_MAX_SERVICES_PER_NAMESPACE=1000000 RUST_LOG=warn \
  EXTSVC_ADMIN_TOKEN=$token EXTSVC_RATE_LIMIT=100000000 \
  target/release/extsvc serve >"$work/server.log" 2>&1 &
server_pid=$!
base=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
# Until the cold runs are over, only ANALYZE refreshes statistics (the server ran it on
# the empty tables when it migrated them).
psql -q "$db" -c "ALTER TABLE external_services SET (autovacuum_enabled = false)"

# Registers $COLD services in namespace `cold`, labelled shard=0..99, over keep-alive
# connections from $COLD_CLIENTS threads; fails on any answer but 201.
bulk_register() {
  python3 - "$port" "$COLD" "$COLD_CLIENTS" "$token" <<'PY'
import http.client, json, sys, threading
port, count, clients, token = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
spec = {"ports": [{"name": "https", "port": 443}, {"name": "metrics", "port": 9100}],
        "endpoints": [{"address": "192.0.2.10"}, {"address": "2001:db8::10", "ports": ["https"]}],
        "healthChecks": [{"name": "web", "http": {"port": "https", "path": "/healthz", "scheme": "HTTPS"}}]}
failures = []
def work(first):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(first, count, clients):
        body = json.dumps({"metadata": {"name": f"svc-{i:05d}", "labels": {"team": "bench", "shard": str(i % 100)}}, "spec": spec})
        conn.request("POST", "/api/v1/namespaces/cold/external-services", body,
                     {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        if response.status != 201:
            failures.append(response.status)
threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
sys.exit(f"{len(failures)} registrations failed: {failures[:5]}" if failures else 0)
PY
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
hz=$(getconf CLK_TCK)

# create.lua: every request registers a new name (thread id + counter).
cat >"$work/create.lua" <<'LUA'
local counter = 0
local threads = 0
function setup(thread) thread:set("id", threads); threads = threads + 1 end
function request()
  counter = counter + 1
  local body = string.format([[{"metadata":{"name":"load-%d-%d","labels":{"team":"bench"}},"spec":{"ports":[{"name":"https","port":443},{"name":"metrics","port":9100}],"endpoints":[{"address":"192.0.2.10"},{"address":"2001:db8::10","ports":["https"]}],"healthChecks":[{"name":"web","http":{"port":"https","path":"/healthz","scheme":"HTTPS"}}]}}]], id, counter)
  -- Headers given here replace wrk's own (-H), so the token is copied over.
  local headers = {["Content-Type"] = "application/json"}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  return wrk.format("POST", "/api/v1/namespaces/bench/external-services", headers, body)
end
LUA

# get.lua: every request reads one of the seeded names, as pgbench does below.
cat >"$work/get.lua" <<LUA
function request()
  return wrk.format("GET", string.format("/api/v1/namespaces/bench/external-services/svc-%04d", math.random(1, $SEED)))
end
LUA

# Seed the namespace read by get-one and list-50.
for i in $(seq -w 1 "$SEED"); do
  printf '{"metadata":{"name":"svc-%s","labels":{"team":"bench"}},"spec":{"ports":[{"name":"https","port":443},{"name":"metrics","port":9100}],"endpoints":[{"address":"192.0.2.10"},{"address":"2001:db8::10","ports":["https"]}],"healthChecks":[{"name":"web","http":{"port":"https","path":"/healthz","scheme":"HTTPS"}}]}}\n' "$i"
done | while read -r doc; do
  curl -sf -o /dev/null -X POST -H 'content-type: application/json' -H "authorization: Bearer $token" \
    -d "$doc" "$base/api/v1/namespaces/bench/external-services"
done

run_wrk() { # name, extra wrk args...; as the platform admin unless $bearer is set
  local name=$1; shift
  local before after
  before=$(cpu_ticks)
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Authorization: Bearer ${bearer:-$token}" "$@" >"$work/$name.txt"
  after=$(cpu_ticks)
  local requests rps p99 non2xx
  requests=$(awk '/requests in/ {print $1}' "$work/$name.txt")
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$name.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$work/$name.txt")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/$name.txt")
  local cpu_per_k
  cpu_per_k=$(python3 -c "print(f'{($after - $before) / $hz / $requests * 1000:.3f}')")
  printf '%-11s %10s %9s %12s %8s\n' "$name" "$rps" "$p99" "$cpu_per_k" "${non2xx:-0}" >>"$work/results.txt"
  echo "$rps"
}

# The ceiling: the server's own read, straight to PostgreSQL.
cat >"$work/get.sql" <<SQL
\set n random(1, $SEED)
SELECT uid, namespace, name, labels, annotations, spec, generation, resource_version, created_at,
       origin, mirrored_generation, mirror_error, status
FROM external_services WHERE namespace = 'bench' AND name = 'svc-' || lpad(:n::text, 4, '0');
SQL
run_pgbench() { # name
  pgbench -n -M prepared -c "$CONNECTIONS" -j "$THREADS" -T "$DURATION" -f "$work/get.sql" "$db" >"$work/$1.txt" 2>&1
  local tps
  tps=$(awk -F'= ' '/^tps/ {split($2, a, " "); printf "%.0f", a[1]}' "$work/$1.txt")
  printf '%-11s %10s\n' "$1" "$tps" >>"$work/results.txt"
  echo "$tps"
}

# select.lua: the first page of a 1% label selector (one shard of 100, at random).
cat >"$work/select.lua" <<'LUA'
function request()
  return wrk.format("GET", string.format("/api/v1/namespaces/cold/external-services?limit=50&labelSelector=shard%%3D%d", math.random(0, 99)))
end
LUA

stats() { # what the planner knows of the table
  psql -Atq "$db" -c "SELECT 'reltuples ' || reltuples || ', last analyzed ' || coalesce(greatest(last_analyze, last_autoanalyze)::text, 'never')
                      FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relname = 'external_services'"
}
echo "bulk-registering $COLD services with $COLD_CLIENTS clients..." >&2
start=$(date +%s.%N)
bulk_register
bulk_seconds=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
cold_stats=$(stats)
run_wrk cold-list "$base/api/v1/namespaces/cold/external-services?limit=50" >/dev/null
run_wrk cold-select -s "$work/select.lua" "$base" >/dev/null
psql -q "$db" -c "ALTER TABLE external_services RESET (autovacuum_enabled)" -c "ANALYZE external_services"
analyzed_stats=$(stats)
run_wrk list-anl "$base/api/v1/namespaces/cold/external-services?limit=50" >/dev/null
run_wrk select-anl -s "$work/select.lua" "$base" >/dev/null

run_wrk create -s "$work/create.lua" "$base" >/dev/null
run_wrk list-50 "$base/api/v1/namespaces/bench/external-services?limit=50" >/dev/null
# A team's API token for `bench`: looked up in PostgreSQL once per 0.5 s, not per request.
curl -sf -o /dev/null -X POST -H 'content-type: application/json' -H "authorization: Bearer $token" \
  -d '{"name": "bench", "namespaces": ["bench"]}' "$base/api/v1/teams"
team_token=$(curl -sf -X POST -H 'content-type: application/json' -H "authorization: Bearer $token" \
  -d '{"name": "bench", "scopes": ["read"]}' "$base/api/v1/teams/bench/tokens" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
ratios=()
token_ratios=()
for round in $(seq "$ROUNDS"); do
  get_rps=$(run_wrk "get-one-$round" -s "$work/get.lua" "$base")
  team_rps=$(bearer=$team_token run_wrk "get-team-$round" -s "$work/get.lua" "$base")
  pg_tps=$(run_pgbench "pgbench-$round")
  ratios+=("$(python3 -c "print(f'{$get_rps / $pg_tps:.3f}')")")
  token_ratios+=("$(python3 -c "print(f'{$team_rps / $get_rps:.3f}')")")
done

echo
echo "extsvc registry benchmark: ${DURATION}s per run, $CONNECTIONS connections, $(nproc) cores, loopback, PostgreSQL over ${TRANSPORT:-tcp}"
printf '%-11s %10s %9s %12s %8s\n' run "req/s" p99 "CPU-s/1k" non-2xx
cat "$work/results.txt"
echo "cold: $COLD registered in ${bulk_seconds}s; statistics at cold-*: $cold_stats; at *-anl: $analyzed_stats"
echo "get-one / pgbench ceiling by round: ${ratios[*]}"
python3 -c "import statistics, sys; print(f'get-one / pgbench ceiling, median: {statistics.median(map(float, sys.argv[1:])):.2f}')" "${ratios[@]}"
echo "get-team (a team's API token) / get-one (the admin's token) by round: ${token_ratios[*]}"
python3 -c "import statistics, sys; print(f'get-team / get-one, median: {statistics.median(map(float, sys.argv[1:])):.2f}')" "${token_ratios[@]}"
