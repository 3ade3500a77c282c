#!/usr/bin/env bash
# Throughput of postman-sim: wrk against GET single message, with the rate limit set out of the way.
#
# Usage: bench/sim-load.sh [DURATION] [CONNECTIONS] [THREADS]      (defaults: 10s 64 2)
# Env:   SCRATCH_PATH=.build-other   build somewhere other than .build (e.g. beside another build)
#        MESSAGES=10000              messages in the generated data
# Needs: wrk (apt-get install -y wrk), awk, a Swift toolchain.
set -euo pipefail

DURATION=${1:-10s}
CONNECTIONS=${2:-64}
THREADS=${3:-2}
MESSAGES=${MESSAGES:-10000}
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }

build_flags=(-c release --product postman-sim)
[[ -n "${SCRATCH_PATH:-}" ]] && build_flags+=(--scratch-path "$SCRATCH_PATH")
swift build "${build_flags[@]}" >&2
BIN="$(swift build "${build_flags[@]}" --show-bin-path)/postman-sim"

WORK=$(mktemp -d)
SIM_PID=""
cleanup() {
    [[ -n "$SIM_PID" ]] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# One campaign, MESSAGES failed messages with one attempt each.
awk -v n="$MESSAGES" 'BEGIN {
    printf "{\"campaigns\":[{\"id\":\"bench\",\"api_key\":\"key-bench\",\"rate_limit\":1000000000}],\"batches\":[],\"messages\":["
    for (i = 0; i < n; i++) {
        if (i > 0) printf ","
        printf "{\"id\":\"message_%d\",\"campaign_id\":\"bench\",\"batch_id\":null,\"recipient\":\"659%07d\",", i, i
        printf "\"latest_status\":\"failure\",\"retries\":0,\"attempts\":[{\"status\":\"failure\",\"error_type\":\"delivery_error\","
        printf "\"error_code\":\"recipient_unavailable\",\"created_at\":\"2026-11-21T20:00:00+08:00\"}]}"
    }
    printf "]}\n"
}' > "$WORK/data.json"

"$BIN" --port 0 --data "$WORK/data.json" --rate-limit 1000000000 > "$WORK/stdout" 2> "$WORK/stderr" &
SIM_PID=$!
for _ in $(seq 1 100); do
    [[ -s "$WORK/stdout" ]] && break
    sleep 0.1
done
ADDR=$(head -n1 "$WORK/stdout" | sed -n 's/^listening on //p')
[[ -n "$ADDR" ]] || { echo "postman-sim did not start:" >&2; cat "$WORK/stderr" >&2; exit 1; }

URL="http://$ADDR/api/v2/campaigns/bench/messages/message_42"
CMD=(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer key-bench" "$URL")
echo "command: $(printf '%q ' "${CMD[@]}")"
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
/usr/bin/time -f "%U %S" -o "$WORK/wrk-cpu.txt" "${CMD[@]}" | tee "$WORK/wrk.txt"
RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/wrk.txt")
TOTAL=$(awk '/requests in/ { print $1 }' "$WORK/wrk.txt")
# The load tool's own CPU per request: the baseline for the job's client CPU (bench/engine-rate.sh).
awk -v total="$TOTAL" '{ printf "wrk CPU: %.2f s user+sys for %d requests = %.0f us per request\n", $1 + $2, total, 1e6 * ($1 + $2) / total }' "$WORK/wrk-cpu.txt"
# Kept for bench/many-campaigns.sh, which prints it beside the job's CPU per request.
mkdir -p out/bench-sim-load
awk -v total="$TOTAL" '{ printf "wrk %.0f us\n", 1e6 * ($1 + $2) / total }' "$WORK/wrk-cpu.txt" > out/bench-sim-load/wrk-cpu.txt
NON2XX=$(awk '/Non-2xx or 3xx responses:/ { print $5 }' "$WORK/wrk.txt")
echo "requests/s: $RPS"
[[ -z "$NON2XX" ]] || echo "WARNING: $NON2XX non-2xx answers" >&2
