#!/usr/bin/env bash
# Rate-budget use of a real run against the simulator with realistic latency (0.2-2 s to an outcome):
# CAMPAIGNS x MESSAGES failed messages at RATE requests/s each. Prints, from the simulator's ledger:
# 429s, the busiest second per campaign, the request rate against the limit, wall time against the
# minimum the limits allow for the calls made, and API calls per retried message.
# Needs PG* (run through `make bench` or scripts/pg-throwaway.sh run --).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
CAMPAIGNS=${CAMPAIGNS:-3}
MESSAGES=${MESSAGES:-2000}
RATE=${RATE:-10}
OUT=${OUT:-out/bench-rate}
rm -rf "$OUT" && mkdir -p "$OUT"
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }

psql -qX -v ON_ERROR_STOP=1 -c "DROP TABLE IF EXISTS outbound_messages CASCADE; DROP SCHEMA IF EXISTS postman_retry CASCADE" \
    -f sql/reference-schema.sql -f sql/recommended-index.sql
"$BIN/postman-demo-data" --plain --campaigns "$CAMPAIGNS" --messages "$MESSAGES" --seed 3 --rate-limit "$RATE" \
    --rows "$OUT/rows.csv" --simulator-data "$OUT/simulator.json" >/dev/null
psql -qX -v ON_ERROR_STOP=1 -c "\\copy outbound_messages ($(head -1 "$OUT/rows.csv")) FROM '$OUT/rows.csv' WITH (FORMAT csv, HEADER true)"

"$BIN/postman-sim" --port 0 --data "$OUT/simulator.json" --seed 3 --time-scale 1 --ledger "$OUT/ledger.json" \
    >"$OUT/sim.out" 2>"$OUT/sim.log" &
SIM=$!
trap 'kill $SIM 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$OUT/sim.out" 2>/dev/null && break; sleep 0.1; done
export POSTMAN_API_URL="http://$(sed -n 's/^listening on //p' "$OUT/sim.out" | head -1)/api/v2"
for c in $(seq 1 "$CAMPAIGNS"); do export "POSTMAN_API_KEY_CAMPAIGN_$c=key-campaign-$c"; done

"$BIN/postman-retry" migrate >/dev/null
"$BIN/postman-retry" plan --rate-limit "$RATE" --format json >"$OUT/plan.json"
/usr/bin/time -f "%e %M %U %S" -o "$OUT/time.txt" "$BIN/postman-retry" run --rate-limit "$RATE" --log-level warning \
    --format json >"$OUT/summary.json"
kill $SIM && wait $SIM 2>/dev/null || true
trap - EXIT

python3 - "$OUT" "$RATE" <<'PY'
import json, sys, collections
out, rate = sys.argv[1], int(sys.argv[2])
ledger = json.load(open(f"{out}/ledger.json"))
summary = json.load(open(f"{out}/summary.json"))
plan = json.load(open(f"{out}/plan.json"))
wall, rss_kb, user, system = open(f"{out}/time.txt").read().split()[-4:]
by = collections.defaultdict(list)
for r in ledger["requests"]:
    by[r["campaign_id"]].append(r["t"])
print(f"campaigns {len(by)} x {summary['counts']['selected'] // max(1, len(by))} messages at {rate} req/s each")
print(f"429 answers: {ledger['rate_limited']}   busiest second per campaign: {ledger['max_requests_in_1s']}")
worst = 0.0
for c, ts in sorted(by.items()):
    ts.sort()
    span = ts[-1] - ts[0]
    # requests while retries remained: from the first request to the last retry call
    print(f"  {c}: {len(ts)} requests over {span:.1f} s = {len(ts)/span:.2f} req/s ({100*len(ts)/span/rate:.1f}% of {rate})")
    worst = max(worst, len(ts) / rate)
calls = summary["api_calls"]["retry"] + summary["api_calls"]["poll"]
retried = summary["counts"]["retried"]
print(f"API calls: {summary['api_calls']}; per retried message: {calls/retried:.3f}")
print(f"wall time {float(wall):.1f} s; minimum for the calls made {worst:.1f} s (+1 s lock wait = {worst+1:.1f} s); "
      f"ratio {float(wall)/(worst+1):.3f}; plan's minimum before the run {plan['minimum_wall_seconds']:.1f} s")
print(f"peak RSS of the run: {int(rss_kb)/1024:.1f} MiB")
requests = len(ledger["requests"])
print(f"client CPU: {float(user)+float(system):.2f} s user+sys for {requests} requests = "
      f"{1e6*(float(user)+float(system))/max(1,requests):.0f} us per request (whole job: selection, journal, write-back included)")
print(f"outcomes: {summary['counts']['succeeded']} succeeded, {summary['counts']['failed']} failed, {summary['counts']['pending']} pending")
PY
