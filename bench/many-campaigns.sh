#!/usr/bin/env bash
# The job's own cost per request with many campaigns on two cores (issue 17): a real `postman-retry run`
# (release build) against `postman-sim --time-scale 1`, CAMPAIGNS x MESSAGES failed rows at RATE requests/s
# per campaign, 30% of them from the stale mix of production tables (`postman-demo-data --stale-share`).
# For each case it prints, from the simulator's ledger, /usr/bin/time and /proc:
#   - the job's CPU per request (user+sys of the job process / HTTP requests that reached the simulator),
#     the simulator's and PostgreSQL's CPU per request beside it, and the load tool's (wrk, from
#     bench/sim-load.sh) when that ran before (out/bench-sim-load/wrk-cpu.txt);
#   - peak RSS of the job;
#   - wall time against the minimum: the busiest campaign's calls / rate + the 1 s lock wait, and the
#     messages of one campaign / rate + 1 s (one call per message);
#   - each campaign's budget use while active (its requests / (last request - first request) / rate), and
#     while retries remain (the least time its requests up to its last retry call need at the limit,
#     (ceil(n / rate) - 1) s, against the time they took);
#   - 429s and the busiest second of any campaign (must be <= RATE).
#
# Usage:  CASES="100x60 300x20 3x2000" bash bench/many-campaigns.sh     (the defaults; needs PG*)
# Env:    RATE=10  STALE=0.3  SEED=3  OUT=out/bench-many  BIN=.build/release  LOG_LEVEL=warning (the job's, to run.log)
#         TABLE_HISTORY=N   N rows the run must leave alone in the agency table, as an agency's table has
#                        them: a month old (out of --max-age), delivered or failed, in 1,000 other campaigns
#                        (so the run's own campaigns, and Postman's lists of them, are as without it): what
#                        the job's reads of the table cost as the table grows
#         JOURNAL_HISTORY=N   N journal entries of earlier, completed runs (6,000 a run, a year of nightly
#                        runs is about 2,000,000): what the job's own bookkeeping costs as it grows
#         PROFILE=perf   run the job under `perf record -g` (writes $OUT/<case>/perf.data, then
#                        `perf report -i ... --no-children` shows where its CPU goes)
#         PROFILE=callgrind   run it under valgrind --tool=callgrind (slow: for small cases only)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
CASES=${CASES:-"100x60 300x20 3x2000"}
RATE=${RATE:-10}
STALE=${STALE:-0.3}
SEED=${SEED:-3}
OUT=${OUT:-out/bench-many}
PROFILE=${PROFILE:-}
TABLE_HISTORY=${TABLE_HISTORY:-0}
JOURNAL_HISTORY=${JOURNAL_HISTORY:-0}
mkdir -p "$OUT"
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }

# user+sys CPU seconds of a process and its reaped children (clock ticks from /proc/PID/stat).
cpu_of() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13 + $14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}
# PostgreSQL's whole CPU: the postmaster (and the backends it reaped) plus every live backend.
pg_cpu() {
    local pm total=0
    pm=$(head -1 "${PG_THROWAWAY_DIR:-/nonexistent}/data/postmaster.pid" 2>/dev/null || true)
    [ -n "$pm" ] || { echo 0; return; }
    for p in $pm $(pgrep -P "$pm" || true); do total=$(python3 -c "print($total + $(cpu_of "$p"))"); done
    echo "$total"
}

run_case() {
    local campaigns=${1%x*} messages=${1#*x} dir=$OUT/$1 db="bench_many_$1"
    rm -rf "$dir" && mkdir -p "$dir"
    "$BIN/postman-demo-data" --plain --campaigns "$campaigns" --messages "$messages" --seed "$SEED" --rate-limit "$RATE" \
        --stale-share "$STALE" --rows "$dir/rows.csv" --simulator-data "$dir/simulator.json" >/dev/null
    psql -qX -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    export PGDATABASE=$db
    psql -qX -v ON_ERROR_STOP=1 -f sql/reference-schema.sql -f sql/recommended-index.sql >/dev/null
    psql -qX -v ON_ERROR_STOP=1 \
        -c "\\copy outbound_messages ($(head -1 "$dir/rows.csv")) FROM '$dir/rows.csv' WITH (FORMAT csv, HEADER true)"
    if [ "$TABLE_HISTORY" -gt 0 ]; then
        psql -qX -v ON_ERROR_STOP=1 -c "INSERT INTO outbound_messages
            (campaign_id, message_id, batch_id, recipient, is_otp, status, retry_count, error_code, created_at, updated_at)
            SELECT 'older-' || (g % 1000), 'history_' || g, CASE WHEN g % 3 = 0 THEN 'batch-history-' || (g / 5000) END,
                   '6580000000',
                   g % 10 = 1, CASE WHEN g % 10 < 8 THEN 'success' ELSE 'failure' END, CASE WHEN g % 10 = 9 THEN 3 ELSE 0 END,
                   CASE WHEN g % 10 >= 8 THEN 'recipient_unavailable' END,
                   now() - interval '30 days' - g * interval '1 second', now() - interval '30 days'
            FROM generate_series(1, $TABLE_HISTORY) g" >/dev/null
    fi
    psql -qX -c "VACUUM ANALYZE outbound_messages"

    local sim_started job_started
    sim_started=$(date +%s.%N)
    "$BIN/postman-sim" --port 0 --data "$dir/simulator.json" --seed "$SEED" --time-scale 1 --ledger "$dir/ledger.json" \
        >"$dir/sim.out" 2>"$dir/sim.log" &
    local sim=$!
    trap "kill $sim 2>/dev/null || true" EXIT
    for _ in $(seq 1 300); do grep -q "listening on" "$dir/sim.out" 2>/dev/null && break; sleep 0.1; done
    export POSTMAN_API_URL="http://$(sed -n 's/^listening on //p' "$dir/sim.out" | head -1)/api/v2"
    for c in $(seq 1 "$campaigns"); do export "POSTMAN_API_KEY_CAMPAIGN_$c=key-campaign-$c"; done

    "$BIN/postman-retry" migrate >/dev/null
    if [ "$JOURNAL_HISTORY" -gt 0 ]; then
        # Earlier nightly runs, all completed: their messages succeeded or failed (nothing left to carry over).
        psql -qX -v ON_ERROR_STOP=1 -c "INSERT INTO postman_retry.runs (status, started_at, finished_at, scope, agency_table)
            SELECT 'completed', now() - (r || ' days')::interval, now() - (r || ' days')::interval + interval '1 minute',
                   '{}'::jsonb, 'outbound_messages'
            FROM generate_series(($JOURNAL_HISTORY + 5999) / 6000, 1, -1) r" \
            -c "INSERT INTO postman_retry.journal (run_id, message_id, campaign_id, batch_id, row_key, recipient_masked,
                   origin, state, outcome, result, write_state, snap_status, snap_retry_count, intent_at, accepted_at, final_at)
            SELECT 1 + g / 6000, 'old_' || g, 'campaign-' || (1 + g % $campaigns), NULL, g::text, '6580****00', 'selected',
                   'done', 'retried', CASE WHEN g % 4 = 0 THEN 'failed' ELSE 'succeeded' END, 'written', 'failure', 0,
                   now() - interval '1 day', now() - interval '1 day', now() - interval '1 day'
            FROM generate_series(0, $JOURNAL_HISTORY - 1) g" -c "ANALYZE postman_retry.journal" >/dev/null
    fi
    "$BIN/postman-retry" plan --rate-limit "$RATE" --format json >"$dir/plan.json"
    local wrap=()
    case $PROFILE in
        perf) wrap=(perf record -F 997 -g -o "$dir/perf.data" --) ;;
        callgrind) wrap=(valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" --) ;;
    esac
    local sim_cpu0 pg_cpu0 sim_cpu1 pg_cpu1
    sim_cpu0=$(cpu_of $sim)
    pg_cpu0=$(pg_cpu)
    job_started=$(date +%s.%N)
    "${wrap[@]}" /usr/bin/time -f "%e %M %U %S" -o "$dir/time.txt" "$BIN/postman-retry" run --rate-limit "$RATE" \
        --log-level "${LOG_LEVEL:-warning}" --format json >"$dir/summary.json" 2>"$dir/run.log" || echo "many-campaigns: $1 exited $?" >&2
    sim_cpu1=$(cpu_of $sim)
    pg_cpu1=$(pg_cpu)
    kill $sim && wait $sim 2>/dev/null || true
    trap - EXIT
    unset PGDATABASE
    local wrk=""
    [ -f out/bench-sim-load/wrk-cpu.txt ] && wrk=$(cat out/bench-sim-load/wrk-cpu.txt)

    STALE=$STALE python3 - "$dir" "$RATE" "$campaigns" "$messages" "$(python3 -c "print($sim_cpu1 - $sim_cpu0)")" \
        "$(python3 -c "print($pg_cpu1 - $pg_cpu0)")" "$wrk" "$PROFILE" \
        "$(python3 -c "print($job_started - $sim_started)")" <<'PY'
import json, math, os, sys, collections, statistics
d, rate, campaigns, messages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sim_cpu, pg_cpu, wrk, profile = float(sys.argv[5]), float(sys.argv[6]), sys.argv[7], sys.argv[8]
# The simulator's clock (its ledger's t) started about when it was launched: the job's start on that clock.
job_start = float(sys.argv[9])
ledger = json.load(open(f"{d}/ledger.json")); summary = json.load(open(f"{d}/summary.json"))
plan = json.load(open(f"{d}/plan.json"))
wall, rss_kb, user, system = open(f"{d}/time.txt").read().split()[-4:]
wall, cpu = float(wall), float(user) + float(system)
by = collections.defaultdict(list)
retries = collections.defaultdict(list)
for r in ledger["requests"]:
    by[r["campaign_id"]].append(r["t"])
    if r["method"] == "POST":
        retries[r["campaign_id"]].append(r["t"])
requests = len(ledger["requests"])
use = {}
for c, ts in by.items():
    ts.sort()
    span = ts[-1] - ts[0]
    use[c] = len(ts) / span / rate if span > 0 else 1.0
# While retries remain: the requests from a campaign's first one to its last retry call (after it, the campaign
# only waits for outcomes): the least time they need at the limit (the sliding window lets `rate` go at once, so
# (ceil(n / rate) - 1) s) against the time they took.
sending = {}
for c, ts in by.items():
    last = max(retries[c]) if retries[c] else ts[-1]
    n = sum(1 for t in ts if t <= last)
    need = math.ceil(n / rate) - 1
    sending[c] = min(1.0, need / (last - ts[0])) if need > 0 and last > ts[0] else 1.0
busiest = max(ledger["max_requests_in_1s"].values()) if ledger["max_requests_in_1s"] else 0
minimum_calls = max(len(ts) for ts in by.values()) / rate + 1
minimum_messages = messages / rate + 1
counts = summary["counts"]
print(f"== {campaigns} campaigns x {messages} messages at {rate} req/s each, stale share {os.environ.get('STALE', '0.3')}"
      f"{' [under ' + profile + ']' if profile else ''}")
print(f"  job CPU: {cpu:.2f} s user+sys for {requests} requests = {1e6*cpu/max(1,requests):.0f} us per request"
      f"  (simulator {1e6*sim_cpu/max(1,requests):.0f} us, PostgreSQL {1e6*pg_cpu/max(1,requests):.0f} us"
      + (f", load tool: {wrk}" if wrk else "") + ")")
print(f"  peak RSS of the job: {int(rss_kb)/1024:.1f} MiB")
print(f"  wall {wall:.1f} s; minimum for the calls made {minimum_calls:.1f} s: ratio {wall/minimum_calls:.3f}; "
      f"messages/rate + 1 s = {minimum_messages:.1f} s: ratio {wall/minimum_messages:.3f}; plan's minimum {plan['minimum_wall_seconds']:.1f} s")
first_request = min(r["t"] for r in ledger["requests"]) - job_start
last_request = max(r["t"] for r in ledger["requests"]) - job_start
last_retry = max((t for ts in retries.values() for t in ts), default=job_start) - job_start
print(f"  where the wall time went (about: the simulator's clock from its launch): first request {first_request:.1f} s "
      f"after the job started, last retry call {last_retry:.1f} s, last request {last_request:.1f} s, exit {wall:.1f} s")
u = sorted(use.values())
print(f"  budget use while active: min {100*u[0]:.1f}%  median {100*statistics.median(u):.1f}%  max {100*u[-1]:.1f}%; "
      f"campaigns under 95%: {sum(1 for x in u if x < 0.95)} of {len(u)}")
w = sorted(sending.values())
print(f"  budget use while retries remain: min {100*w[0]:.1f}%  median {100*statistics.median(w):.1f}%  max {100*w[-1]:.1f}%; "
      f"campaigns under 95%: {sum(1 for x in w if x < 0.95)} of {len(w)}")
print(f"  429s: {ledger['rate_limited']}; busiest second of any campaign: {busiest} (limit {rate})")
print(f"  API calls: {summary['api_calls']}; per retried message: "
      f"{(requests)/max(1,counts['retried']):.3f}; outcomes: selected {counts['selected']}, retried {counts['retried']}, "
      f"succeeded {counts['succeeded']}, failed {counts['failed']}, pending {counts['pending']}")
json.dump({"case": f"{campaigns}x{messages}", "cpu_us_per_request": round(1e6*cpu/max(1,requests)),
           "sim_cpu_us_per_request": round(1e6*sim_cpu/max(1,requests)), "pg_cpu_us_per_request": round(1e6*pg_cpu/max(1,requests)),
           "requests": requests, "peak_rss_mib": round(int(rss_kb)/1024, 1), "wall": wall,
           "wall_over_minimum_for_calls": round(wall/minimum_calls, 3), "first_request_s": round(first_request, 2),
           "last_retry_s": round(last_retry, 2), "last_request_s": round(last_request, 2), "wall_over_messages_minimum": round(wall/minimum_messages, 3),
           "budget_use_min": round(u[0], 3), "budget_use_median": round(statistics.median(u), 3),
           "campaigns_under_95": sum(1 for x in u if x < 0.95),
           "sending_use_min": round(w[0], 3), "sending_use_median": round(statistics.median(w), 3), "rate_limited": ledger["rate_limited"], "busiest": busiest},
          open(f"{d}/figures.json", "w"))
PY
}

for c in $CASES; do run_case "$c"; done
