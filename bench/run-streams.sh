#!/usr/bin/env bash
# `run` streams (issue 17): peak RSS of a real `postman-retry run` (release build) with 10,000 and with
# 1,000,000 selected rows in one campaign, 30% from the stale mix, against `postman-sim --time-scale 1` at
# RATE requests/s. A run that has not ended after STOP_AFTER seconds gets SIGTERM (at 1,000/s a million rows
# take hours of retries; memory is at its plateau long before): it exits 75 and its peak RSS still counts.
# `--max-age 3650d`: the sample rows are 2 s apart, so 72 h would keep only the newest 129,600.
# Also printed: the most messages the campaign's worker held in memory (from the run's log) and the retries.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
SIZES=${SIZES:-"10000 1000000"}
RATE=${RATE:-1000}
STALE=${STALE:-0.3}
STOP_AFTER=${STOP_AFTER:-240}
SEED=${SEED:-17}
OUT=${OUT:-out/bench-streams}
mkdir -p "$OUT"
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }

for n in $SIZES; do
    dir=$OUT/$n db="bench_streams_$n"
    rm -rf "$dir" && mkdir -p "$dir"
    "$BIN/postman-demo-data" --plain --campaigns 1 --messages "$n" --seed "$SEED" --rate-limit "$RATE" \
        --stale-share "$STALE" --rows "$dir/rows.csv" --simulator-data "$dir/simulator.json" >/dev/null
    psql -qX -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    export PGDATABASE=$db
    psql -qX -v ON_ERROR_STOP=1 -f sql/reference-schema.sql -f sql/recommended-index.sql >/dev/null
    psql -qX -v ON_ERROR_STOP=1 \
        -c "\\copy outbound_messages ($(head -1 "$dir/rows.csv")) FROM '$dir/rows.csv' WITH (FORMAT csv, HEADER true)"
    psql -qX -c "VACUUM ANALYZE outbound_messages"

    "$BIN/postman-sim" --port 0 --data "$dir/simulator.json" --seed "$SEED" --time-scale 1 \
        >"$dir/sim.out" 2>"$dir/sim.log" &
    sim=$!
    trap "kill $sim 2>/dev/null || true" EXIT
    for _ in $(seq 1 600); do grep -q "listening on" "$dir/sim.out" 2>/dev/null && break; sleep 0.1; done
    export POSTMAN_API_URL="http://$(sed -n 's/^listening on //p' "$dir/sim.out" | head -1)/api/v2"
    export POSTMAN_API_KEY_CAMPAIGN_1=key-campaign-1

    "$BIN/postman-retry" migrate >/dev/null
    start=$(date +%s.%N)
    set +e
    # time(1) outside timeout(1): the peak RSS it reports is the largest of the processes it waited for.
    /usr/bin/time -f "%e %M %U %S" -o "$dir/time.txt" timeout -s TERM "$STOP_AFTER" "$BIN/postman-retry" run \
        --rate-limit "$RATE" --max-age 3650d --log-level info --format json >"$dir/summary.json" 2>"$dir/run.log"
    code=$?
    set -e
    kill $sim && wait $sim 2>/dev/null || true
    trap - EXIT
    read -r wall kb user sys < <(tail -1 "$dir/time.txt") || true
    peak=$(grep 'most messages one campaign held' "$dir/run.log" | grep -o 'messages[^0-9]*[0-9]*' | grep -o '[0-9]*$' | tail -1 || true)
    retried=$(python3 -c "import json;print(json.load(open('$dir/summary.json'))['counts']['retried'])" 2>/dev/null || echo "?")
    python3 -c "print(f'{$n:>8} selected rows: exit $code after {float(\"$wall\"):6.1f} s, peak RSS {$kb/1024:6.1f} MiB, '
                      f'most messages in memory: ${peak:-?}, retried ${retried}')"
    unset PGDATABASE
    psql -qX -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null
done
