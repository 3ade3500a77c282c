#!/usr/bin/env bash
# The whole job against the simulator with generated data. Run through `make demo`, which starts a
# throwaway PostgreSQL and sets PG* for this script. BIN picks the build (default: release).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
OUT=${OUT:-out/demo}
CAMPAIGNS=${CAMPAIGNS:-3}
MESSAGES=${MESSAGES:-200}
rm -rf "$OUT" && mkdir -p "$OUT"

echo "== reference agency table and sample rows"
psql -qX -v ON_ERROR_STOP=1 -f sql/reference-schema.sql -f sql/recommended-index.sql
"$BIN/postman-demo-data" --campaigns "$CAMPAIGNS" --messages "$MESSAGES" --seed 7 \
    --rows "$OUT/rows.csv" --simulator-data "$OUT/simulator.json"
psql -qX -v ON_ERROR_STOP=1 -c "\\copy outbound_messages ($(head -1 "$OUT/rows.csv")) FROM '$OUT/rows.csv' WITH (FORMAT csv, HEADER true)"

echo "== Postman simulator"
"$BIN/postman-sim" --port 0 --data "$OUT/simulator.json" --seed 7 --time-scale 10 --ledger "$OUT/ledger.json" \
    >"$OUT/simulator.out" 2>"$OUT/simulator.log" &
SIM=$!
trap 'kill $SIM 2>/dev/null || true; wait $SIM 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$OUT/simulator.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/^listening on //p' "$OUT/simulator.out" | head -1)
[ -n "$ADDR" ] || { echo "simulator did not start:"; cat "$OUT/simulator.log"; exit 1; }
export POSTMAN_API_URL="http://$ADDR/api/v2"
for c in $(seq 1 "$CAMPAIGNS"); do export "POSTMAN_API_KEY_CAMPAIGN_$c=key-campaign-$c"; done

echo "== postman-retry migrate"
"$BIN/postman-retry" migrate
echo "== postman-retry plan"
"$BIN/postman-retry" plan
echo "== postman-retry run"
set +e
"$BIN/postman-retry" run --poll-timeout 20s --log-level warning --format json --report-dir "$OUT/report" >"$OUT/summary.json"
code=$?
set -e
cat "$OUT/summary.json"
echo "run exited $code"
kill $SIM; wait $SIM 2>/dev/null || true
trap - EXIT
echo "== postman-retry runs"
"$BIN/postman-retry" runs
echo "simulator ledger: $OUT/ledger.json"
echo "report (markdown): $OUT/report/summary.md"
# The last line is the report a person opens (the run also wrote it; `report` shows the command).
echo "== postman-retry report"
"$BIN/postman-retry" report --output "$OUT/report"
exit $code
