#!/usr/bin/env bash
# DNS benchmark: anypop answering a steered record vs knot serving the same
# answer from a static zone, measured in the same run on loopback, with 1
# and with 2 UDP workers (threads) each, for two query mixes.
#
#   integration/bench/dns.sh [seconds-per-run (default 10)] [rounds (default 2)]
#
# Per worker count W (1, then 2) both servers are restarted with W UDP
# workers (anypop `dns.udp_workers: W`, knot `udp-workers: W`) and driven
# by the same dnsperf (8 client sockets, so SO_REUSEPORT spreads them over
# the workers; one thread) at full rate:
#   - mix `steered`: every query `www.bench.test A` (two A records);
#   - mix `nx10`:    90 % `www.bench.test A`, 10 % names that do not exist
#                    (NXDOMAIN with the SOA).
# W=1: servers pinned to CPU 0, dnsperf to CPU 1. W=2: servers on CPUs 0-1,
# dnsperf unpinned (it shares the cores: a 2-core machine has no third).
# Main figures: server CPU time (utime+stime of the whole process from
# /proc/PID/stat) per answered query, and qps. Runs alternate anypop/knot
# per round so machine drift hits both. Also, with 1 worker: latency at a
# fixed 1k and 50k qps. Prints the machine and date with the table.
#
# Needs: dnsperf, knotd (package knot), dig, taskset; the release binary is
# built here.
set -euo pipefail

SECS=${1:-10}
ROUNDS=${2:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
for tool in dnsperf knotd dig taskset; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done

TMP=$(mktemp -d /tmp/anypop-dnsbench.XXXXXX)
PIDS=()
stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}
cleanup() {
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    rm -rf "$TMP"
}
# stop PID: stops one of our servers and forgets it (a pid is never killed
# twice: it could belong to another process by then).
stop() {
    stop_pid "$1"
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLK_TCK=$(getconf CLK_TCK)

cd "$ROOT"
echo "building release binary..." >&2
cargo build --release --bin anypop >&2

# ---------------------------------------------------------------- queries
echo "www.bench.test A" >"$TMP/q.steered"
for i in $(seq 1 100); do
    for _ in $(seq 1 9); do echo "www.bench.test A"; done
    echo "nx-$i.bench.test A"
done >"$TMP/q.nx10"

# ---------------------------------------------------------------- servers
answer() { dig @127.0.0.1 -p "$1" +short +time=1 +tries=1 www.bench.test A 2>/dev/null | sort | tr '\n' ' '; }
WANT="192.0.2.1 192.0.2.11 "
wait_answer() {
    for _ in $(seq 1 100); do
        [ "$(answer "$1")" = "$WANT" ] && return 0
        sleep 0.2
    done
    return 1
}

# start_anypop WORKERS CPUS: sets AP_PID, AP_PORT
start_anypop() {
    AP_PORT=$(free_port)
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
  udp_workers: $1
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
    taskset -c "$2" "$ROOT/target/release/anypop" run --config "$TMP/anypop.yaml" >"$TMP/anypop.log" 2>&1 &
    AP_PID=$!
    PIDS+=("$AP_PID")
    wait_answer "$AP_PORT" || { echo "anypop not answering" >&2; cat "$TMP/anypop.log" >&2; exit 1; }
}

# start_knot WORKERS CPUS: sets KN_PID, KN_PORT
start_knot() {
    KN_PORT=$(free_port)
    rm -rf "$TMP/knot"
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
    udp-workers: $1
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
    taskset -c "$2" knotd -c "$TMP/knot/knot.conf" >"$TMP/knot.log" 2>&1 &
    KN_PID=$!
    PIDS+=("$KN_PID")
    wait_answer "$KN_PORT" || { echo "knot not answering" >&2; cat "$TMP/knot.log" >&2; exit 1; }
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
field() { grep "$1" "$2" | head -1 | sed 's/.*: *//' | awk '{print $1}'; }

# run NAME PID PORT QUERIES DNSPERF_CPUS [QPS]:
# prints "qps completed lost avg_latency_us cpu_us_per_query"
run() {
    local pid=$2 port=$3 queries=$4 cpus=$5 qps=${6:-} out="$TMP/out.$1"
    local t0 t1
    t0=$(cpu_ticks "$pid")
    taskset -c "$cpus" dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -c 8 -T 1 -l "$SECS" \
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

mean() { awk '{ s += $1; n++ } END { if (n) printf "%.2f", s / n; else print "-" }'; }

declare -A CPU QPS LOST RSS
echo
echo "anypop $(git -C "$ROOT" rev-parse --short HEAD), $(knotd --version | head -1)"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), kernel $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "$ROUNDS rounds x ${SECS}s per server, mix and worker count; dnsperf -c 8 -T 1"
printf "%-7s %-8s %-7s %-5s %10s %10s %8s %14s\n" workers mix server round qps answered lost "CPU us/answer"
for w in 1 2; do
    if [ "$w" = 1 ]; then srv_cpus=0 perf_cpus=1; else srv_cpus=0,1 perf_cpus=0,1; fi
    start_anypop "$w" "$srv_cpus"
    start_knot "$w" "$srv_cpus"
    for mix in steered nx10; do
        for r in $(seq 1 "$ROUNDS"); do
            for s in anypop knot; do
                if [ "$s" = anypop ]; then pid=$AP_PID port=$AP_PORT; else pid=$KN_PID port=$KN_PORT; fi
                read -r qps done_q lost _lat cpu < <(run "$s" "$pid" "$port" "$TMP/q.$mix" "$perf_cpus")
                printf "%-7s %-8s %-7s %-5s %10s %10s %8s %14s\n" "$w" "$mix" "$s" "$r" "$qps" "$done_q" "$lost" "$cpu"
                CPU[$w.$mix.$s]+="$cpu"$'\n'
                QPS[$w.$mix.$s]+="$qps"$'\n'
                LOST[$w.$mix.$s]=$(( ${LOST[$w.$mix.$s]:-0} + lost ))
            done
        done
    done
    if [ "$w" = 1 ]; then
        echo
        printf "%-8s %-12s %s\n" "" "fixed rate" "avg lat us / lost / CPU us/answer (1 worker, steered)"
        for rate in 1000 50000; do
            for s in anypop knot; do
                if [ "$s" = anypop ]; then pid=$AP_PID port=$AP_PORT; else pid=$KN_PID port=$KN_PORT; fi
                read -r _qps _done lost lat cpu < <(run "$s" "$pid" "$port" "$TMP/q.steered" "$perf_cpus" "$rate")
                printf "%-8s %-12s %s / %s / %s\n" "$s" "$rate qps" "$lat" "$lost" "$cpu"
            done
        done
        echo
    fi
    RSS[$w.anypop]=$(rss_kb "$AP_PID")
    RSS[$w.knot]=$(rss_kb "$KN_PID")
    stop "$AP_PID"
    stop "$KN_PID"
done

echo
echo "summary (full rate, mean of $ROUNDS rounds):"
printf "| %-7s | %-7s | %-22s | %-22s | %-13s | %-12s | %-12s |\n" workers mix "anypop CPU us/answer" "knot CPU us/answer" "anypop/knot" "anypop qps" "knot qps"
for w in 1 2; do
    for mix in steered nx10; do
        a=$(printf '%s' "${CPU[$w.$mix.anypop]}" | mean)
        k=$(printf '%s' "${CPU[$w.$mix.knot]}" | mean)
        aq=$(printf '%s' "${QPS[$w.$mix.anypop]}" | mean)
        kq=$(printf '%s' "${QPS[$w.$mix.knot]}" | mean)
        ratio=$(awk -v a="$a" -v k="$k" 'BEGIN { if (k > 0) printf "%.2f", a / k; else print "-" }')
        printf "| %-7s | %-7s | %-22s | %-22s | %-13s | %-12.0f | %-12.0f |\n" "$w" "$mix" "$a" "$k" "$ratio" "$aq" "$kq"
    done
done
for w in 1 2; do
    echo "  $w worker(s): lost anypop $(( ${LOST[$w.steered.anypop]} + ${LOST[$w.nx10.anypop]} )), knot $(( ${LOST[$w.steered.knot]} + ${LOST[$w.nx10.knot]} )); RSS anypop ${RSS[$w.anypop]} kB, knot ${RSS[$w.knot]} kB"
done
