#!/usr/bin/env bash
# Engine 2 against the previous engine, side by side in one run (issue 13): the same data (the stale mix of
# production tables: rows whose table count lags Postman, rows Postman already shows final, at 3 retries,
# unknown, or in a blocked batch), the same simulator settings, each engine on its own database and its own
# simulator, both at once. Scenarios (SCENARIOS, space separated):
#   clean    no faults
#   faults   10% API faults (5xx before, 5xx after accept, dropped connections, cut bodies; 429s from other
#            traffic on every campaign: 3% of the budget)
#   history  HISTORY older messages per campaign that only Postman holds (months of sends)
#   traffic  agency traffic taking 40% of the fast campaigns' budget
# One campaign runs at SLOW_RATE requests/s beside CAMPAIGNS-1 at RATE. Prints, per engine: API calls per
# retried message, wall time against the floor (retried messages of the slowest campaign / its rate) and
# against the minimum for the calls made, 429s, the busiest second, and how many rows were recorded
# `retried` without an accepted retry in the simulator's ledger (wrong rows) or the reverse.
# OLD_BIN: the previous engine's release binaries (bench/build-previous-engine.sh builds them).
# Needs PG* (run through `make bench` or scripts/pg-throwaway.sh run --).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
OLD_BIN=${OLD_BIN:-out/engine1/.build/release}
CAMPAIGNS=${CAMPAIGNS:-3}
MESSAGES=${MESSAGES:-700}
RATE=${RATE:-10}
SLOW_RATE=${SLOW_RATE:-2}
STALE=${STALE:-0.3}
HISTORY=${HISTORY:-20000}
SCENARIOS=${SCENARIOS:-clean faults history traffic}
OUT=${OUT:-out/bench-engine2}
mkdir -p "$OUT"
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }

# ENGINES: new (this build), singles (this build with --no-whole-batch: Engine 2 alone, every retry its own
# call), old (the previous engine at OLD_BIN).
engines=${ENGINES:-new singles old}
if [ ! -x "$OLD_BIN/postman-retry" ]; then
    echo "engine2: no previous engine at $OLD_BIN (bench/build-previous-engine.sh builds it); without it"
    engines=${engines/old/}
fi

# One engine, one scenario: its own database, its own simulator; prints one JSON line of figures.
run_one() {
    local engine=$1 scenario=$2 dir=$OUT/$2-$1 bin=$BIN db="bench_$2_$1" engine_args=()
    [ "$engine" = old ] && bin=$OLD_BIN
    [ "$engine" = singles ] && engine_args=(--no-whole-batch)
    rm -rf "$dir" && mkdir -p "$dir"
    local history=0 sim_args=()
    case $scenario in
        faults) sim_args=(--fault-5xx-before 0.02 --fault-5xx-after-accept 0.02 --fault-drop 0.02 --fault-malformed 0.01)
                for c in $(seq 1 "$CAMPAIGNS"); do
                    r=$RATE; [ "$c" = 1 ] && r=$SLOW_RATE
                    sim_args+=(--background-rate "campaign-$c=$(python3 -c "print($r*0.03)")")
                done ;;
        history) history=$HISTORY ;;
        traffic) for c in $(seq 2 "$CAMPAIGNS"); do sim_args+=(--background-rate "campaign-$c=$(python3 -c "print($RATE*0.4)")"); done ;;
    esac
    "$BIN/postman-demo-data" --plain --campaigns "$CAMPAIGNS" --messages "$MESSAGES" --seed 5 --rate-limit "$RATE" \
        --stale-share "$STALE" --history "$history" --rows "$dir/rows.csv" --simulator-data "$dir/simulator.json" >/dev/null
    # The slow campaign's own limit, in Postman (the simulator) as in the job's settings.
    python3 - "$dir/simulator.json" "$SLOW_RATE" <<'PY'
import json, sys
path, slow = sys.argv[1], int(sys.argv[2])
data = json.load(open(path))
for c in data["campaigns"]:
    if c["id"] == "campaign-1": c["rate_limit"] = slow
json.dump(data, open(path, "w"))
PY
    psql -qX -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    PGDATABASE=$db psql -qX -v ON_ERROR_STOP=1 -f sql/reference-schema.sql -f sql/recommended-index.sql >/dev/null
    PGDATABASE=$db psql -qX -v ON_ERROR_STOP=1 \
        -c "\\copy outbound_messages ($(head -1 "$dir/rows.csv")) FROM '$dir/rows.csv' WITH (FORMAT csv, HEADER true)"
    "$BIN/postman-sim" --port 0 --data "$dir/simulator.json" --seed 5 --time-scale 1 --ledger "$dir/ledger.json" \
        "${sim_args[@]}" >"$dir/sim.out" 2>"$dir/sim.log" &
    local sim=$!
    for _ in $(seq 1 300); do grep -q "listening on" "$dir/sim.out" 2>/dev/null && break; sleep 0.1; done
    local url="http://$(sed -n 's/^listening on //p' "$dir/sim.out" | head -1)/api/v2"
    local keys=()
    for c in $(seq 1 "$CAMPAIGNS"); do keys+=("POSTMAN_API_KEY_CAMPAIGN_$c=key-campaign-$c"); done
    env PGDATABASE="$db" POSTMAN_API_URL="$url" "${keys[@]}" "$bin/postman-retry" migrate >/dev/null
    env PGDATABASE="$db" POSTMAN_API_URL="$url" "${keys[@]}" /usr/bin/time -f "%e %M %U %S" -o "$dir/time.txt" \
        "$bin/postman-retry" run --rate-limit "$RATE" --campaign-rate "campaign-1=$SLOW_RATE" --log-level error \
        --format json "${engine_args[@]}" >"$dir/summary.json" 2>"$dir/run.log" || echo "engine2: $engine $scenario exited $?" >&2
    PGDATABASE=$db psql -qXAt -c "SELECT message_id FROM postman_retry.journal WHERE outcome = 'retried'" >"$dir/retried.txt"
    kill $sim && wait $sim 2>/dev/null || true
    python3 - "$dir" "$engine" "$scenario" "$RATE" "$SLOW_RATE" <<'PY'
import json, sys, collections
d, engine, scenario, rate, slow = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ledger = json.load(open(f"{d}/ledger.json")); summary = json.load(open(f"{d}/summary.json"))
wall = float(open(f"{d}/time.txt").read().split()[-4])
retried_rows = set(l.strip() for l in open(f"{d}/retried.txt") if l.strip())
accepted = set(k for k, v in ledger["accepted_retries"].items() if v > 0)
by = collections.Counter(r["campaign_id"] for r in ledger["requests"])
per_campaign_retried = collections.Counter()
for m in accepted: per_campaign_retried[m.split("_")[1]] += 1
limits = {c: (slow if c == "campaign-1" else rate) for c in by}
floor = max(per_campaign_retried.get(c, 0) / limits[c] for c in by)
minimum = max(by[c] / limits[c] for c in by) + 1
calls = sum(1 for r in ledger["requests"])
c = summary["counts"]
print(json.dumps({
    "engine": engine, "scenario": scenario, "retried": c["retried"], "accepted_in_ledger": len(accepted),
    "wrong_rows": len(retried_rows - accepted), "lost_retries": len(accepted - retried_rows),
    "double": sum(1 for v in ledger["accepted_retries"].values() if v > 1),
    "calls": calls, "calls_per_retried": round(calls / max(1, len(accepted)), 3),
    "wall": round(wall, 1), "floor": round(floor, 1), "wall_over_floor": round(wall / max(floor, 1e-9), 3),
    "wall_over_minimum_for_calls": round(wall / minimum, 3), "rate_limited": ledger["rate_limited"],
    "rate_limited_share": round(ledger["rate_limited"] / max(1, calls), 4),
    "busiest": ledger["max_requests_in_1s"],
    "counts": {k: c[k] for k in ("selected", "retried", "exhausted", "not_found", "reconciled", "batch_not_retryable", "rejected", "conflict", "pending")},
}))
PY
}

for scenario in $SCENARIOS; do
    pids=()
    for engine in $engines; do
        run_one "$engine" "$scenario" >"$OUT/$scenario-$engine.json" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    for engine in $engines; do cat "$OUT/$scenario-$engine.json"; done
done
