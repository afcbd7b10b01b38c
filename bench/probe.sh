#!/usr/bin/env bash
# Probe benchmark (issue: probes a second and CPU per probe next to blackbox_exporter;
# 30,000 targets at a 10 s period held with under 15% of a core and 150 MB). In one run on
# loopback it starts a private nginx (NGINX_WORKERS workers, default 1, one listening
# socket on each of 127.0.0.1..127.0.0.$ADDRESSES, `return 200`, no access log) and a
# private blackbox_exporter (modules http_2xx and tcp_connect), then measures:
#   1. the wrk ceiling of nginx with `Connection: close` (a new connection per request);
#   2. blackbox_exporter driven by wrk at BB_CONNECTIONS concurrent /probe requests, per
#      module: probes are answers saying `probe_success 1`, CPU is the exporter's
#      utime+stime (/proc/<pid>/stat);
#   3. the engine in-process (bench/probe.rs through `cargo bench --bench probe`):
#      throughput of HTTP and TCP checks (TARGETS and TCP_TARGETS at a 1 s period, more
#      than it can run, MAX_IN_FLIGHT in flight), then HOLD_TARGETS HTTP targets at a 10 s
#      period, and (VARIANTS=1) the same with the publisher's report building, with one
#      address per service, and with 1000 targets per service.
# Each phase lasts DURATION seconds (10; hold: HOLD_SECONDS, 60, after 20 s of warm-up)
# and stops by itself. Before each, it waits (at most QUIET_WAIT s) for the machine to be
# idle, and every row shows the load other processes put on it meanwhile ("others").
# Missing packages are installed when run as root. Only loopback addresses are used.
set -euo pipefail
cd "$(dirname "$0")/.."

PHASE_SECONDS=${DURATION:-10}
HOLD_SECONDS=${HOLD_SECONDS:-60}
HOLD_TARGETS=${HOLD_TARGETS:-30000}
ADDRESSES=${ADDRESSES:-250}
NGINX_WORKERS=${NGINX_WORKERS:-1}
BB_CONNECTIONS=${BB_CONNECTIONS:-16}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
TARGETS=${TARGETS:-40000}
TCP_TARGETS=${TCP_TARGETS:-80000}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-1024}
VARIANTS=${VARIANTS:-1}
QUIET_WAIT=${QUIET_WAIT:-120}

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v prometheus-blackbox-exporter >/dev/null || need+=(prometheus-blackbox-exporter)
command -v wrk >/dev/null || need+=(wrk)
command -v python3 >/dev/null || need+=(python3)
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
  if [[ $(id -u) == 0 ]]; then
    echo "installing ${need[*]}..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing: ${need[*]} (apt-get install them, or run as root)" >&2
    exit 1
  fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/extsvc-probe-bench.XXXXXX")
pids=()
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# utime + stime of processes, in seconds.
cpu_of() {
  local total=0 pid
  for pid in "$@"; do
    total=$(awk -v t="$total" -v tck="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print t + ($12 + $13) / tck }' "/proc/$pid/stat")
  done
  echo "$total"
}
# Busy CPU seconds of the whole machine (user, nice, system, irq, softirq).
machine_busy() { awk -v tck="$(getconf CLK_TCK)" '/^cpu / { print ($2 + $3 + $4 + $7 + $8) / tck; exit }' /proc/stat; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-4}f\", $1 }"; }
wait_http() {
  for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "not answering: $1" >&2
  exit 1
}
# Waits until other processes leave the machine nearly idle (< 0.25 of a core over 2 s),
# for QUIET_WAIT seconds at most.
wait_quiet() {
  local start b0 b1
  start=$(now)
  while :; do
    b0=$(machine_busy); sleep 2; b1=$(machine_busy)
    awk "BEGIN { exit !(($b1 - $b0) / 2 < 0.25) }" && return 0
    if awk "BEGIN { exit !($(now) - $start > $QUIET_WAIT) }"; then
      echo "warning: machine still busy ($(calc "($b1 - $b0) / 2" 2) cores) after ${QUIET_WAIT}s; measuring anyway" >&2
      return 0
    fi
  done
}

echo "building..." >&2
SQLX_OFFLINE=true cargo bench --bench probe --no-run --quiet 2>/dev/null

# nginx: a listening socket per loopback address, so that probes spread over many
# destinations without listening anywhere but loopback.
port=$(free_port)
mkdir -p "$work/nginx"
{
  echo "worker_processes $NGINX_WORKERS;"
  echo "worker_rlimit_nofile 32768;"
  echo "daemon off;"
  echo "pid $work/nginx/nginx.pid;"
  echo "error_log $work/nginx/error.log error;"
  echo "events { worker_connections 16384; }"
  echo "http {"
  echo "  access_log off;"
  for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $work/nginx/$t;"; done
  echo "  server {"
  for i in $(seq 1 "$ADDRESSES"); do echo "    listen 127.0.0.$i:$port backlog=4096;"; done
  echo "    location / { return 200 \"ok\\n\"; }"
  echo "  }"
  echo "}"
} >"$work/nginx/nginx.conf"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
npid=$!
pids+=($npid)
wait_http "http://127.0.0.1:$port/"
wait_http "http://127.0.0.$ADDRESSES:$port/"
nginx_pids="$npid $(pgrep -P "$npid" | tr '\n' ' ')"

bport=$(free_port)
cat >"$work/blackbox.yml" <<EOF
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
  tcp_connect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
EOF
prometheus-blackbox-exporter --config.file="$work/blackbox.yml" \
  --web.listen-address="127.0.0.1:$bport" --log.level=error >"$work/blackbox.log" 2>&1 &
bpid=$!
pids+=($bpid)
wait_http "http://127.0.0.1:$bport/metrics"

# Counts blackbox answers by probe_success, across wrk's threads.
cat >"$work/probe.lua" <<'EOF'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; failed = 0 end
function response(status, headers, body)
  if status == 200 and string.find(body, "\nprobe_success 1\n", 1, true) then
    ok = ok + 1
  else
    failed = failed + 1
  end
end
function done(summary, latency, requests)
  local o, f = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); f = f + t:get("failed") end
  io.write(string.format("PROBES ok=%d failed=%d\n", o, f))
end
EOF

# Runs wrk; prints the machine's busy CPU seconds, nginx's, wrk's own, and the wall time.
measure_wrk() {
  local out=$1; shift
  local b0 n0 t0 b1 n1 t1
  b0=$(machine_busy); n0=$(cpu_of $nginx_pids); t0=$(now)
  /usr/bin/time -f '%U %S' -o "$work/wrk.time" wrk "$@" >"$out"
  t1=$(now); n1=$(cpu_of $nginx_pids); b1=$(machine_busy)
  echo "$(calc "$b1 - $b0") $(calc "$n1 - $n0") $(awk '{ print $1 + $2 }' "$work/wrk.time") $(calc "$t1 - $t0")"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); nginx workers: $NGINX_WORKERS; cores: $(nproc)" >&2

# 1. nginx ceiling, a new connection per request.
wait_quiet
read -r busy ncpu wcpu wall < <(measure_wrk "$work/wrk.txt" -t2 -c"$WRK_CONNECTIONS" -d"${PHASE_SECONDS}s" \
  -H 'Connection: close' "http://127.0.0.1:$port/")
ceiling=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$work/wrk.txt")
requests=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
wrk_failed=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$work/wrk.txt")
wrk_nginx=$(calc "$ncpu / $requests * 1000" 4)
wrk_cpu=$(calc "$wcpu / $requests * 1000" 4)
wrk_others=$(calc "($busy - $ncpu - $wcpu) / $wall" 2)
echo "wrk: $ceiling req/s, nginx $wrk_nginx CPU s/1000, wrk itself $wrk_cpu CPU s/1000" >&2

# 2. blackbox_exporter, per module.
declare -A bb_rate bb_cpu bb_failed bb_nginx bb_others
for module in http_2xx tcp_connect; do
  case $module in
    http_2xx) target="http://127.0.0.1:$port/" ;;
    tcp_connect) target="127.0.0.1:$port" ;;
  esac
  url="http://127.0.0.1:$bport/probe?module=$module&target=$target"
  curl -sf "$url" | grep -qx 'probe_success 1' || { echo "blackbox $module does not succeed" >&2; exit 1; }
  wrk -t1 -c"$BB_CONNECTIONS" -d2s "$url" >/dev/null # warm-up
  wait_quiet
  cpu0=$(cpu_of "$bpid")
  read -r busy ncpu wcpu wall < <(measure_wrk "$work/bb-$module.txt" -t2 -c"$BB_CONNECTIONS" \
    -d"${PHASE_SECONDS}s" -s "$work/probe.lua" "$url")
  cpu1=$(cpu_of "$bpid")
  read -r ok failed < <(sed -n 's/^PROBES ok=\([0-9]*\) failed=\([0-9]*\)$/\1 \2/p' "$work/bb-$module.txt")
  bb_rate[$module]=$(calc "$ok / $wall" 0)
  bb_cpu[$module]=$(calc "($cpu1 - $cpu0) / ($ok + $failed) * 1000" 4)
  bb_failed[$module]=$failed
  bb_nginx[$module]=$(calc "$ncpu / ($ok + $failed) * 1000" 4)
  bb_others[$module]=$(calc "($busy - ($cpu1 - $cpu0) - $ncpu - $wcpu) / $wall" 2)
  echo "blackbox $module: $ok ok, $failed failed in $(calc "$wall" 1)s; CPU $(calc "$cpu1 - $cpu0" 2)s" >&2
done

# 3. The engine.
engine() {
  wait_quiet
  echo "engine: $*" >&2
  env "$@" PORT="$port" ADDRESSES="$ADDRESSES" NGINX_PIDS="$nginx_pids" SQLX_OFFLINE=true \
    cargo bench --bench probe --quiet | grep '^RESULT ' | tail -1
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
http=$(engine MODE=throughput CHECK=http TARGETS="$TARGETS" MAX_IN_FLIGHT="$MAX_IN_FLIGHT" DURATION="$PHASE_SECONDS")
tcp=$(engine MODE=throughput CHECK=tcp TARGETS="$TCP_TARGETS" MAX_IN_FLIGHT="$MAX_IN_FLIGHT" DURATION="$PHASE_SECONDS")
holds=("$(engine MODE=hold TARGETS="$HOLD_TARGETS" PERIOD=10 DURATION="$HOLD_SECONDS")")
labels=("$HOLD_TARGETS http @10s, 10 addresses/service")
if [[ $VARIANTS == 1 ]]; then
  holds+=("$(engine MODE=hold TARGETS="$HOLD_TARGETS" PERIOD=10 DURATION="$HOLD_SECONDS" PUBLISH=2)")
  labels+=("  + publisher's reports (no database)")
  holds+=("$(engine MODE=hold TARGETS="$HOLD_TARGETS" PERIOD=10 DURATION="$HOLD_SECONDS" PER_SERVICE=1)")
  labels+=("  1 address/service")
  holds+=("$(engine MODE=hold TARGETS="$HOLD_TARGETS" PERIOD=10 DURATION="$HOLD_SECONDS" PER_SERVICE=250 CHECKS=4)")
  labels+=("  250 addresses x 4 checks/service")
fi

failed_of() { calc "$(field probes "$1") - $(field successes "$1")" 0; }
nginx_per_1000() { calc "$(field nginx_cpu_seconds "$1") / $(field probes "$1") * 1000" 4; }
row() { printf '%-40s %9s %10s %10s %7s %7s  %s\n' "$@"; }

echo
echo "Probe benchmark: $(nproc) cores, loopback, nginx $(nginx -v 2>&1 | sed 's|.*/||') ($NGINX_WORKERS worker), blackbox_exporter $(prometheus-blackbox-exporter --version 2>&1 | sed -n 's/.*version \([^ ]*\).*/\1/p' | head -1), extsvc $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo '+changes')"
row "" "probes/s" "CPU s/1000" "nginx s/1000" "failed" "others" ""
row "nginx ceiling (wrk -c$WRK_CONNECTIONS, Connection: close)" "$ceiling" "$wrk_cpu" "$wrk_nginx" "$wrk_failed" "$wrk_others" "requests/s; CPU is wrk's own (a C client's floor)"
for kind in http tcp; do
  case $kind in http) module=http_2xx r=$http ;; tcp) module=tcp_connect r=$tcp ;; esac
  row "blackbox_exporter $module (c=$BB_CONNECTIONS)" "${bb_rate[$module]}" "${bb_cpu[$module]}" \
    "${bb_nginx[$module]}" "${bb_failed[$module]}" "${bb_others[$module]}" ""
  note="$(calc "${bb_cpu[$module]} / $(field cpu_ms_per_probe "$r")" 1)x less CPU, $(calc "$(field rate "$r") / ${bb_rate[$module]}" 1)x the rate"
  awk "BEGIN { exit !($(field rate "$r") > 0.95 * $(field due_rate "$r")) }" && note+="; NOT saturated (raise TARGETS)"
  row "extsvc $kind ($(field targets "$r") @1s, in flight $MAX_IN_FLIGHT)" "$(calc "$(field rate "$r")" 0)" \
    "$(calc "$(field cpu_ms_per_probe "$r")" 4)" "$(nginx_per_1000 "$r")" "$(failed_of "$r")" \
    "$(calc "$(field others_cores "$r")" 2)" "$note"
done
echo
printf '%-40s %9s %10s %10s %7s %7s  %s\n' "hold (${HOLD_SECONDS}s after 20s warm-up)" "probes/s" "CPU s/1000" "% of core" "failed" "others" "peak RSS"
for i in "${!holds[@]}"; do
  r=${holds[i]}
  row "${labels[i]}" "$(calc "$(field rate "$r")" 0)" "$(calc "$(field cpu_ms_per_probe "$r")" 4)" \
    "$(calc "$(field core_percent "$r")" 1)" "$(failed_of "$r")" "$(calc "$(field others_cores "$r")" 2)" \
    "$(field rss_peak_mib "$r") MiB ($(field services "$r") services, $(field checks_ok "$r")/$(field checks "$r") checks ok, due $(calc "$(field due_rate "$r")" 0)/s)"
done
echo "CPU s/1000 = CPU seconds per 1,000 probes = CPU ms per probe (user+system of the prober's"
echo "process; on loopback that includes the kernel's work for both ends of each connection)."
echo "others = cores busy with processes outside this benchmark during the phase."
