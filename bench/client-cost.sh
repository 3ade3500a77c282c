#!/usr/bin/env bash
# The HTTP path alone (issue 17): `retry-bench client` reads through PostmanClient, as the job makes them,
# against `postman-sim` with the rate limit out of the way, and prints the process's CPU per request for
# several shapes of traffic. Set beside bench/many-campaigns.sh's whole-job figure, what is left is the
# worker's, the journal's and the timers' share; between the shapes, what a wake-up costs.
#
# Usage: bash bench/client-cost.sh          (no PostgreSQL needed)
# Env:   BIN=.build/release  SEED=3  OUT=out/bench-client
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
SEED=${SEED:-3}
OUT=${OUT:-out/bench-client}
mkdir -p "$OUT"
# Three campaigns of about 1,900 messages (the data of many-campaigns' 3 x 2,000 case), 10,000 requests/s each.
"$BIN/postman-demo-data" --plain --campaigns 3 --messages 2000 --seed "$SEED" --rate-limit 10000 --stale-share 0.3 \
    --rows "$OUT/rows.csv" --simulator-data "$OUT/simulator.json" >/dev/null
"$BIN/postman-sim" --port 0 --data "$OUT/simulator.json" --seed "$SEED" --time-scale 1 >"$OUT/sim.out" 2>"$OUT/sim.log" &
sim=$!
trap "kill $sim 2>/dev/null || true" EXIT
for _ in $(seq 1 300); do grep -q "listening on" "$OUT/sim.out" 2>/dev/null && break; sleep 0.1; done
url="http://$(sed -n 's/^listening on //p' "$OUT/sim.out" | head -1)/api/v2"
client() { "$BIN/retry-bench" client --url "$url" "$@"; }
client --requests 3000                                  # back to back, one connection
client --requests 100 --interval-ms 100                 # one every 100 ms: each request wakes the process alone
client --requests 100 --interval-ms 1000 --burst 10     # ten back to back every second
client --requests 300 --interval-ms 1000 --streams 10   # ten at once every second (as the job's pacer sends)
client --requests 100 --page-size 1000                  # list pages of 1,000 messages, none wanted
