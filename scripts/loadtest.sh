#!/usr/bin/env bash
# Load test of tokenguard's layer over loopback HTTP, with wrk.
#
#   scripts/loadtest.sh
#
# Builds examples/loadtest_server.rs in release and starts one server per
# scenario, each on its own port of 127.0.0.1:
#
#   1. no layer                     GET /open/invoices (a pool of $POOL tokens is sent anyway)
#   2. layer, small token pool      GET /guarded/invoices, $POOL tokens, cache on
#   3. layer, all-distinct tokens   $DISTINCT tokens, cache on (more than its 10,000
#                                   entries, cycled round-robin: it mostly misses)
#   4. layer, cache off             $POOL tokens, every request verified
#   5. layer, DPoP                  $POOL DPoP-bound tokens (cache on: hits), each
#                                   request with a fresh ES256 proof checked in
#                                   full, the in-memory replay store
#   6. layer, opaque tokens         $POOL opaque tokens introspected at a loopback
#                                   endpoint in the server process, introspection
#                                   cache on (hits; calls counted per round)
#
# Then runs wrk against the scenarios in rotation, $ROUNDS rounds of
# $DURATION each, so that a change in the speed of the (shared) machine
# affects every scenario alike. Each request carries another token,
# round-robin (scripts/loadtest_tokens.lua). Prints a markdown table: the
# median over the rounds of requests/s, p50 and p99 latency; the lowest and
# highest requests/s; non-2xx answers; the share of guard calls that took at
# least 8 µs (signature checks rather than cache hits; see /stats in the
# example); the server's peak RSS (VmHWM from /proc/PID/status at the end).
#
# DPoP: wrk cannot sign, so right before each round the server makes one
# proof per request of the round (GET /proofs?count=N of the example: token
# and proof, tab-separated, a line each) and scripts/loadtest_dpop.lua sends
# each line once. N = DPOP_PROOFS, or else the requests/s of a 3 s
# calibration run × the round's duration × 1.3 + 10,000. A request beyond N
# reuses a proof (the server refuses it: non-2xx) and is counted. The replay
# store is the in-memory one (MemoryReplayStore) with REPLAY_CAPACITY
# entries: every proof stays in it for the 65 s of its `iat` window, so the
# default capacity (100,000) would fill within seconds at these rates and
# answer 503 from then on.
#
# Then measures the memory of a cached token: a server with COUNT_ALLOC=1 (its
# global allocator counts live heap bytes) receives $FILL distinct tokens,
# each at least once; bytes per token = growth of the live heap (and of RSS) /
# $FILL. The same with the cache off is the control.
#
# Settings (environment): DURATION (10s), ROUNDS (3), THREADS (2),
# CONNECTIONS (32), POOL (16), DISTINCT (20000), FILL (5000), PORT (3900: uses
# PORT..PORT+6), ALG (RS256), REPLAY_CAPACITY (1000000), DPOP_PROOFS (unset:
# calibrated). Takes about 5 minutes after the build; a round's proofs take
# about 1.3 KB each of temporary disk (some 400 MB at 25,000 requests/s).
# Needs wrk (installed with apt-get if missing), cargo, curl. Only 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
POOL=${POOL:-16}
DISTINCT=${DISTINCT:-20000}
FILL=${FILL:-5000}
PORT=${PORT:-3900}
export ALG=${ALG:-RS256}
export REPLAY_CAPACITY=${REPLAY_CAPACITY:-1000000}
DPOP_PROOFS=${DPOP_PROOFS:-}
LUA="scripts/loadtest_tokens.lua"
LUA_DPOP="scripts/loadtest_dpop.lua"
WORK=$(mktemp -d)
PIDS=()
declare -A PID_OF # port -> pid

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    stop_all
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "== installing wrk"
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get install -y -qq wrk >/dev/null 2>&1; then
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq wrk >/dev/null
    fi
fi
command -v curl >/dev/null 2>&1 || { echo "curl is needed" >&2; exit 1; }

echo "== cargo build --release --example loadtest_server"
cargo build --release --example loadtest_server
BIN="${CARGO_TARGET_DIR:-target}/release/examples/loadtest_server"

# --- helpers -----------------------------------------------------------------
# start_server PORT CACHE TOKENS FILE [COUNT_ALLOC [KIND]]: starts it in the
# background.
start_server() {
    PORT=$1 CACHE=$2 TOKENS=$3 TOKENS_FILE=$4 COUNT_ALLOC=${5:-0} TOKEN_KIND=${6:-jwt} \
        "$BIN" >"$WORK/server-$1.log" 2>&1 &
    PIDS+=($!)
    PID_OF[$1]=$!
}

# wait_ready PORT...: waits until each server has written its tokens and listens.
wait_ready() {
    local port
    for port in "$@"; do
        # Minting 20,000 RS256 tokens takes a while on two cores.
        for _ in $(seq 1800); do
            grep -q "^listening on" "$WORK/server-$port.log" 2>/dev/null && continue 2
            kill -0 "${PID_OF[$port]}" 2>/dev/null || break
            sleep 0.1
        done
        echo "the server on port $port did not start:" >&2
        cat "$WORK/server-$port.log" >&2
        exit 1
    done
}

stat_field() { # stat_field NAME JSON
    echo "$2" | grep -o "\"$1\":[-0-9]*" | cut -d: -f2
}

# run_wrk SCRIPT URL FILE ARG THREADS CONNECTIONS DURATION -> RESULT line
# (ARG: LIMIT for $LUA, THREADS for $LUA_DPOP)
run_wrk() {
    local cmd=(wrk -t"$5" -c"$6" -d"$7" --timeout 5s -s "$1" "$2" -- "$3" "$4")
    echo "${cmd[*]}" >>"$WORK/commands"
    timeout 120 "${cmd[@]}" | grep '^RESULT'
}

field() { # field NAME RESULT_LINE
    echo "$2" | tr ' ' '\n' | grep "^$1=" | cut -d= -f2
}

median() { # median NUMBER...
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

ms() { awk -v u="$1" 'BEGIN { printf "%.2f ms", u / 1000 }'; }

seconds() { # seconds DURATION (wrk's 10s, 2m, 1h or a plain number of seconds)
    case $1 in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
    esac
}

# fetch_proofs PORT COUNT FILE: COUNT fresh DPoP proofs from the server.
fetch_proofs() {
    curl -fsS -o "$3" "http://127.0.0.1:$1/proofs?count=$2"
    [ "$(wc -l <"$3")" -eq "$2" ] || { echo "the server made too few proofs" >&2; exit 1; }
}

# --- load scenarios ----------------------------------------------------------
NAMES=("no layer" "layer, $POOL-token pool, cache on" \
    "layer, $DISTINCT distinct tokens, cache on" "layer, $POOL-token pool, cache off" \
    "layer, DPoP: $POOL-token pool, cache on, a fresh proof per request" \
    "layer, opaque: $POOL-token pool, introspection cache on")
PATHS=(/open/invoices /guarded/invoices /guarded/invoices /guarded/invoices /guarded/invoices \
    /guarded/invoices)
CACHES=(on on on off on on)
COUNTS=("$POOL" "$POOL" "$DISTINCT" "$POOL" "$POOL" "$POOL")
KINDS=(jwt jwt jwt jwt dpop opaque)
MEM_PORT=$((PORT + ${#NAMES[@]}))

echo "== starting ${#NAMES[@]} servers on 127.0.0.1:$PORT-$((MEM_PORT - 1))"
for i in "${!NAMES[@]}"; do
    start_server $((PORT + i)) "${CACHES[$i]}" "${COUNTS[$i]}" "$WORK/tokens-$i.txt" 0 "${KINDS[$i]}"
done
wait_ready $(seq "$PORT" $((MEM_PORT - 1)))

PROOFS="$WORK/proofs.tsv"
ROUND_S=$(seconds "$DURATION")
for i in "${!NAMES[@]}"; do
    [ "${KINDS[$i]}" = dpop ] || continue
    DPOP_STORE=$(sed -n 's/^dpop: .*replay store //p' "$WORK/server-$((PORT + i)).log")
    if [ -z "$DPOP_PROOFS" ]; then
        echo "== DPoP: calibrating the number of proofs a round needs (3 s)"
        fetch_proofs $((PORT + i)) 150000 "$PROOFS"
        r=$(run_wrk "$LUA_DPOP" "http://127.0.0.1:$((PORT + i))${PATHS[$i]}" "$PROOFS" "$THREADS" \
            "$THREADS" "$CONNECTIONS" 3s)
        echo "   calibration: $r"
        DPOP_PROOFS=$(awk -v r="$(field rps "$r")" -v d="$ROUND_S" 'BEGIN { printf "%d", r * d * 1.3 + 10000 }')
    fi
    echo "== DPoP: $DPOP_PROOFS proofs per round; replay store: $DPOP_STORE"
done

declare -A RES
declare -A CALLS # introspection calls, per scenario and round
declare -A MADE  # seconds the server took to make a round's proofs
for round in $(seq "$ROUNDS"); do
    for i in "${!NAMES[@]}"; do
        port=$((PORT + i))
        url="http://127.0.0.1:$port${PATHS[$i]}"
        before=$(curl -fsS "http://127.0.0.1:$port/stats")
        if [ "${KINDS[$i]}" = dpop ]; then
            # Fresh proofs, made just now: their `iat` is within the window.
            t0=$(date +%s.%N)
            fetch_proofs "$port" "$DPOP_PROOFS" "$PROOFS"
            MADE[$round]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
            r=$(run_wrk "$LUA_DPOP" "$url" "$PROOFS" "$THREADS" "$THREADS" "$CONNECTIONS" "$DURATION")
            rm -f "$PROOFS"
        else
            r=$(run_wrk "$LUA" "$url" "$WORK/tokens-$i.txt" 0 "$THREADS" "$CONNECTIONS" "$DURATION")
        fi
        after=$(curl -fsS "http://127.0.0.1:$port/stats")
        CALLS[$i,$round]=$(($(stat_field introspection_calls "$after") - $(stat_field introspection_calls "$before")))
        RES[$i,$round]=$r
        echo "   round $round, ${NAMES[$i]}: $r"
    done
done

ROWS=()
NOTES=()
for i in "${!NAMES[@]}"; do
    rps=() p50=() p99=() bad=0
    for round in $(seq "$ROUNDS"); do
        r=${RES[$i,$round]}
        rps+=("$(field rps "$r")")
        p50+=("$(field p50_us "$r")")
        p99+=("$(field p99_us "$r")")
        bad=$((bad + $(field non2xx "$r") + $(field errors "$r")))
    done
    stats=$(curl -fsS "http://127.0.0.1:$((PORT + i))/stats")
    slow=$(awk -v f="$(stat_field guard_calls_fast "$stats")" -v s="$(stat_field guard_calls_slow "$stats")" \
        'BEGIN { if (f + s == 0) print "-"; else printf "%.1f %%", 100 * s / (f + s) }')
    hwm=$(awk '/^VmHWM:/ { printf "%.1f MiB", $2 / 1024 }' "/proc/${PID_OF[$((PORT + i))]}/status")
    range="$(printf '%s\n' "${rps[@]}" | sort -n | head -1)–$(printf '%s\n' "${rps[@]}" | sort -n | tail -1)"
    ROWS+=("| ${NAMES[$i]} | $(median "${rps[@]}") | $range | $(ms "$(median "${p50[@]}")") | $(ms "$(median "${p99[@]}")") | $bad | $slow | $hwm |")
    if [ "${KINDS[$i]}" = dpop ]; then
        reused=() made=()
        for round in $(seq "$ROUNDS"); do
            reused+=("$(field reused "${RES[$i,$round]}")")
            made+=("${MADE[$round]} s")
        done
        NOTES+=("DPoP: $DPOP_PROOFS proofs per round, made by the server right before the round (in $(printf '%s, ' "${made[@]}" | sed 's/, $//')); requests that reused a proof, per round: $(printf '%s, ' "${reused[@]}" | sed 's/, $//') (each one refused, counted in non-2xx). Replay store: $DPOP_STORE.")
    fi
    if [ "${KINDS[$i]}" = opaque ]; then
        calls=() reqs=()
        for round in $(seq "$ROUNDS"); do
            calls+=("${CALLS[$i,$round]}")
            reqs+=("$(field requests "${RES[$i,$round]}")")
        done
        NOTES+=("Opaque: introspection calls per round: $(printf '%s, ' "${calls[@]}" | sed 's/, $//') for $(printf '%s, ' "${reqs[@]}" | sed 's/, $//') requests ($POOL tokens; an active answer is cached until \`exp\`, at most 30 s by default).")
    fi
done
stop_all

# --- memory per cached token -------------------------------------------------
# cache_bytes CACHE: sets CB_HEAP and CB_RSS (bytes per token) and CB_REQ.
cache_bytes() {
    local port=$MEM_PORT file="$WORK/fill.txt"
    local url="http://127.0.0.1:$port/guarded/invoices"
    start_server "$port" "$1" "$FILL" "$file" 1
    wait_ready "$port"
    # Warm the server (connection, buffers) with one token.
    run_wrk "$LUA" "$url" "$file" 1 1 1 1s >/dev/null
    local before after r
    before=$(curl -fsS "http://127.0.0.1:$port/stats")
    # One connection, round-robin from the first token: every token is sent.
    r=$(run_wrk "$LUA" "$url" "$file" 0 1 1 3s)
    after=$(curl -fsS "http://127.0.0.1:$port/stats")
    stop_all
    if [ "$(field requests "$r")" -lt "$FILL" ] || [ "$(field non2xx "$r")" -ne 0 ]; then
        echo "the fill run did not send every token once with success: $r" >&2
        exit 1
    fi
    local dheap drss
    dheap=$(($(stat_field heap_live_bytes "$after") - $(stat_field heap_live_bytes "$before")))
    drss=$((($(stat_field vm_rss_kib "$after") - $(stat_field vm_rss_kib "$before")) * 1024))
    CB_HEAP=$((dheap / FILL))
    CB_RSS=$((drss / FILL))
    CB_REQ=$(field requests "$r")
}

echo "== memory of cached tokens: $FILL distinct tokens, cache on"
cache_bytes on
HEAP_ON=$CB_HEAP RSS_ON=$CB_RSS REQ_ON=$CB_REQ
echo "== the same, cache off (control)"
cache_bytes off
HEAP_OFF=$CB_HEAP RSS_OFF=$CB_RSS REQ_OFF=$CB_REQ

# --- report ------------------------------------------------------------------
echo
echo "## tokenguard load test"
echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); alg $ALG; the servers and wrk share the machine."
echo
echo "wrk: $THREADS threads, $CONNECTIONS connections, $ROUNDS rounds of $DURATION per scenario, scenarios in rotation; one token per request, round-robin (DPoP: one proof per request). Medians over the rounds."
echo
echo "| scenario | requests/s | requests/s, lowest–highest round | p50 | p99 | non-2xx + errors | guard calls ≥ 8 µs (≈ signature checks: misses, DPoP proofs) | server peak RSS (VmHWM) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo
printf '%s\n\n' "${NOTES[@]}"
echo "Memory per cached token ($FILL distinct $ALG tokens sent through the layer, each at least once; live heap counted by the example's global allocator, RSS from /proc):"
echo
echo "| cache | requests | live heap growth per token | RSS growth per token |"
echo "|---|---:|---:|---:|"
echo "| on | $REQ_ON | $HEAP_ON B | $RSS_ON B |"
echo "| off (control) | $REQ_OFF | $HEAP_OFF B | $RSS_OFF B |"
echo
echo "Token size: $(head -1 "$WORK/fill.txt" | tr -d '\n' | wc -c) bytes."
echo
echo "Commands:"
awk '!seen[$0]++' "$WORK/commands" | sed "s|$WORK|\$WORK|g; s/^/    /"
