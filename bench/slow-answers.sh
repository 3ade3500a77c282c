#!/usr/bin/env bash
# A campaign whose Postman holds some answers back past the job's request timeout (a gateway, a slow
# backend): 100 failed rows, one campaign at 10 requests/s, `postman-sim --fault-slow P --fault-slow-seconds S`
# (the answer held S seconds, the request already taken effect), the job's default 5 s request timeout.
# Prints the wall time (the run is cut at LIMIT seconds), the requests that reached the simulator, the
# accepted retries, and the requests per second of the simulator's clock: a campaign that stalls shows
# seconds with none.
#
# Usage:  bash bench/slow-answers.sh      (needs PG*: scripts/pg-throwaway.sh run -- bash bench/slow-answers.sh)
# Env:    BIN=.build/release  SLOW=0.3  SLOW_SECONDS=15  LIMIT=60  OUT=out/bench-slow
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
SLOW=${SLOW:-0.3}
SLOW_SECONDS=${SLOW_SECONDS:-15}
LIMIT=${LIMIT:-60}
OUT=${OUT:-out/bench-slow}
rm -rf "$OUT" && mkdir -p "$OUT"
"$BIN/postman-demo-data" --plain --campaigns 1 --messages 100 --seed 5 --rate-limit 10 \
    --rows "$OUT/rows.csv" --simulator-data "$OUT/sim.json" >/dev/null
psql -qX -d postgres -c "DROP DATABASE IF EXISTS bench_slow" -c "CREATE DATABASE bench_slow" >/dev/null
export PGDATABASE=bench_slow
psql -qX -v ON_ERROR_STOP=1 -f sql/reference-schema.sql -f sql/recommended-index.sql >/dev/null
psql -qX -v ON_ERROR_STOP=1 -c "\\copy outbound_messages ($(head -1 "$OUT/rows.csv")) FROM '$OUT/rows.csv' WITH (FORMAT csv, HEADER true)"
"$BIN/postman-sim" --port 0 --data "$OUT/sim.json" --seed 4 --time-scale 10 --fault-slow "$SLOW" \
    --fault-slow-seconds "$SLOW_SECONDS" --ledger "$OUT/ledger.json" >"$OUT/sim.out" 2>"$OUT/sim.log" &
sim=$!
trap "kill $sim 2>/dev/null || true" EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$OUT/sim.out" 2>/dev/null && break; sleep 0.1; done
export POSTMAN_API_URL="http://$(sed -n 's/^listening on //p' "$OUT/sim.out" | head -1)/api/v2"
export POSTMAN_API_KEY_CAMPAIGN_1=key-campaign-1
"$BIN/postman-retry" migrate >/dev/null
start=$(date +%s.%N)
code=0
timeout "$LIMIT" "$BIN/postman-retry" run --poll-timeout 30s --format json >"$OUT/summary.json" 2>"$OUT/run.log" || code=$?
end=$(date +%s.%N)
kill $sim && wait $sim 2>/dev/null || true
trap - EXIT
python3 - "$OUT" "$start" "$end" "$code" "$LIMIT" <<'PY'
import json, sys, collections
out, start, end, code, limit = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ledger = json.load(open(f"{out}/ledger.json"))
requests = ledger["requests"]
accepted = ledger.get("accepted_retries", ledger.get("acceptedRetries", {}))
per_second = collections.Counter(int(r["t"]) for r in requests)
last = max(per_second) if per_second else 0
silent = sum(1 for s in range(min(per_second, default=0), last + 1) if per_second[s] == 0)
ended = "cut at the limit of " + limit + " s" if code == 124 else f"exit {code}"
print(f"slow answers: {ended} after {end - start:.1f} s; {len(requests)} requests, {len(accepted)} retries accepted; "
      f"{silent} silent seconds between the first request and the last")
PY
