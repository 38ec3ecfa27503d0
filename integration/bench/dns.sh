#!/usr/bin/env bash
# DNS benchmark: anypop answering a steered record vs knot serving the same
# answer from a static zone, measured in the same run on loopback.
#
#   integration/bench/dns.sh [seconds-per-run (default 10)] [rounds (default 2)]
#
# Servers are pinned to CPU 0, dnsperf to CPU 1, one UDP worker each.
# Main figure: server CPU time (utime+stime from /proc/PID/stat, whole
# process) per answered query, at dnsperf's full rate. Also: qps, latency at
# fixed 1k and 50k qps, lost queries, RSS, and the anypop/knot ratio.
# Runs alternate anypop/knot per round so machine drift hits both.
#
# Needs: dnsperf, knotd (package knot), dig, taskset; the release binary is
# built here. If `anypop run` does not serve DNS (not wired yet), the DNS
# server is started through the library bench harness instead (same code,
# all PoPs up) and the report says so.
set -euo pipefail

SECS=${1:-10}
ROUNDS=${2:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
for tool in dnsperf knotd dig taskset; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done

TMP=$(mktemp -d /tmp/anypop-dnsbench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
AP_PORT=$(free_port)
KN_PORT=$(free_port)
CLK_TCK=$(getconf CLK_TCK)

cd "$ROOT"
echo "building release binary..." >&2
cargo build --release --bin anypop >&2

# ---------------------------------------------------------------- anypop
cat >"$TMP/anypop.yaml" <<EOF
node:
  name: bench
  pop: ams
pops:
  - name: ams
    prefixes: [203.0.113.0/24]
    addresses: [192.0.2.1, 192.0.2.11]
    checks:
      - {name: up, type: file, path: $TMP/absent, healthy_when: absent, interval: 1s}
  - name: fra
    prefixes: [203.0.113.0/24]
    addresses: [192.0.2.2, 192.0.2.12]
    checks:
      - {name: up, type: file, path: $TMP/absent, healthy_when: absent, interval: 1s}
dns:
  listen: ["127.0.0.1:$AP_PORT"]
  zones:
    - origin: bench.test.
      ns: [ns1.bench.test.]
      soa: {rname: hostmaster.bench.test., serial: 1}
      ttl: 300
      records:
        - {name: ns1, type: A, values: [192.0.2.53]}
        - name: www
          ttl: 30
          steer: {policy: failover, pops: [ams, fra]}
api:
  listen: off
EOF

MODE=binary
taskset -c 0 "$ROOT/target/release/anypop" run --config "$TMP/anypop.yaml" >"$TMP/anypop.log" 2>&1 &
AP_PID=$!
PIDS+=("$AP_PID")
answer() { dig @127.0.0.1 -p "$1" +short +time=1 +tries=1 www.bench.test A 2>/dev/null | sort | tr '\n' ' '; }
for _ in $(seq 1 50); do
    [ "$(answer "$AP_PORT")" = "192.0.2.1 192.0.2.11 " ] && break
    sleep 0.2
done
if [ "$(answer "$AP_PORT")" != "192.0.2.1 192.0.2.11 " ]; then
    echo "anypop run does not answer DNS; using the library bench harness" >&2
    kill "$AP_PID" 2>/dev/null || true
    MODE=harness
    cargo test --release --lib --no-run >&2 2>&1
    TESTBIN=$(ls -t "$ROOT"/target/release/deps/anypop-* | grep -v '\.d$' | head -1)
    ANYPOP_DNS_BENCH_CONFIG="$TMP/anypop.yaml" taskset -c 0 "$TESTBIN" \
        dns::tests::bench_harness --ignored --exact --nocapture >"$TMP/anypop.log" 2>&1 &
    AP_PID=$!
    PIDS+=("$AP_PID")
    for _ in $(seq 1 100); do
        [ "$(answer "$AP_PORT")" = "192.0.2.1 192.0.2.11 " ] && break
        sleep 0.2
    done
fi
[ "$(answer "$AP_PORT")" = "192.0.2.1 192.0.2.11 " ] || { echo "anypop not answering" >&2; cat "$TMP/anypop.log" >&2; exit 1; }

# ---------------------------------------------------------------- knot
mkdir -p "$TMP/knot"
cat >"$TMP/knot/bench.test.zone" <<EOF
\$ORIGIN bench.test.
\$TTL 300
@    IN SOA ns1.bench.test. hostmaster.bench.test. 1 3600 600 86400 60
@    IN NS  ns1.bench.test.
ns1  IN A   192.0.2.53
www  30 IN A 192.0.2.1
www  30 IN A 192.0.2.11
EOF
cat >"$TMP/knot/knot.conf" <<EOF
server:
    rundir: "$TMP/knot"
    listen: 127.0.0.1@$KN_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$TMP/knot"
log:
  - target: stderr
    any: warning
zone:
  - domain: bench.test
    storage: "$TMP/knot"
    file: "bench.test.zone"
EOF
taskset -c 0 knotd -c "$TMP/knot/knot.conf" >"$TMP/knot.log" 2>&1 &
KN_PID=$!
PIDS+=("$KN_PID")
for _ in $(seq 1 50); do
    [ "$(answer "$KN_PORT")" = "192.0.2.1 192.0.2.11 " ] && break
    sleep 0.2
done
[ "$(answer "$KN_PORT")" = "192.0.2.1 192.0.2.11 " ] || { echo "knot not answering" >&2; cat "$TMP/knot.log" >&2; exit 1; }

echo "www.bench.test A" >"$TMP/queries"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
field() { grep "$1" "$2" | head -1 | sed 's/.*: *//' | awk '{print $1}'; }

# run NAME PID PORT [QPS]: prints "qps completed lost avg_latency_us cpu_us_per_query"
run() {
    local pid=$2 port=$3 qps=${4:-} out="$TMP/out.$1"
    local t0 t1
    t0=$(cpu_ticks "$pid")
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$TMP/queries" -c 1 -T 1 -l "$SECS" \
        ${qps:+-Q "$qps"} >"$out" 2>&1
    t1=$(cpu_ticks "$pid")
    local done_q lost qpsr lat
    done_q=$(field "Queries completed" "$out")
    lost=$(field "Queries lost" "$out")
    qpsr=$(field "Queries per second" "$out")
    lat=$(field "Average Latency" "$out")
    awk -v q="$qpsr" -v d="$done_q" -v l="$lost" -v lat="$lat" -v dt=$((t1 - t0)) -v hz="$CLK_TCK" \
        'BEGIN { printf "%.0f %d %d %.1f %.2f\n", q, d, l, lat * 1e6, (d > 0 ? dt / hz * 1e6 / d : 0) }'
}

declare -A SUM_CPU SUM_QPS SUM_N
echo
echo "mode: anypop DNS via $MODE; $ROUNDS rounds x ${SECS}s per server; server on CPU 0, dnsperf on CPU 1"
printf "%-8s %-6s %10s %10s %8s %12s %14s\n" server round qps answered lost "avg lat us" "CPU us/query"
for r in $(seq 1 "$ROUNDS"); do
    for s in anypop knot; do
        if [ "$s" = anypop ]; then pid=$AP_PID port=$AP_PORT; else pid=$KN_PID port=$KN_PORT; fi
        read -r qps done_q lost lat cpu < <(run "$s" "$pid" "$port")
        printf "%-8s %-6s %10s %10s %8s %12s %14s\n" "$s" "$r" "$qps" "$done_q" "$lost" "$lat" "$cpu"
        SUM_CPU[$s]=$(awk -v a="${SUM_CPU[$s]:-0}" -v b="$cpu" 'BEGIN{print a+b}')
        SUM_QPS[$s]=$(awk -v a="${SUM_QPS[$s]:-0}" -v b="$qps" 'BEGIN{print a+b}')
        SUM_N[$s]=$(( ${SUM_N[$s]:-0} + 1 ))
    done
done
echo
printf "%-8s %-18s %-10s\n" "" "fixed rate" "avg lat us / lost / CPU us/query"
for rate in 1000 50000; do
    for s in anypop knot; do
        if [ "$s" = anypop ]; then pid=$AP_PID port=$AP_PORT; else pid=$KN_PID port=$KN_PORT; fi
        read -r qps done_q lost lat cpu < <(run "$s" "$pid" "$port" "$rate")
        printf "%-8s %-18s %s / %s / %s\n" "$s" "$rate qps" "$lat" "$lost" "$cpu"
    done
done
echo
AP_CPU=$(awk -v a="${SUM_CPU[anypop]}" -v n="${SUM_N[anypop]}" 'BEGIN{printf "%.2f", a/n}')
KN_CPU=$(awk -v a="${SUM_CPU[knot]}" -v n="${SUM_N[knot]}" 'BEGIN{printf "%.2f", a/n}')
AP_QPS=$(awk -v a="${SUM_QPS[anypop]}" -v n="${SUM_N[anypop]}" 'BEGIN{printf "%.0f", a/n}')
KN_QPS=$(awk -v a="${SUM_QPS[knot]}" -v n="${SUM_N[knot]}" 'BEGIN{printf "%.0f", a/n}')
echo "summary (full rate, mean of $ROUNDS rounds):"
echo "  anypop (steered failover): ${AP_CPU} us CPU/query, ${AP_QPS} qps, RSS $(rss_kb "$AP_PID") kB"
echo "  knot   (static zone):      ${KN_CPU} us CPU/query, ${KN_QPS} qps, RSS $(rss_kb "$KN_PID") kB"
awk -v a="$AP_CPU" -v k="$KN_CPU" 'BEGIN{ if (k > 0) printf "  ratio anypop/knot CPU per query: %.2f\n", a/k }'
