#!/usr/bin/env bash
# Incident mode (issue 15): a MEMBERS-member batch that failed with routing_error, plus a second batch of 10
# of which 2 are OTPs (must not be retried, so it never goes whole). Whole-batch retries on and off, side by
# side in one run, each with its own database and simulator (delivery 0.2-2 s, --time-scale 1), one campaign
# at RATE requests/s. Prints per side: batch calls, single retry calls, reads, wall time, and whether every
# member was retried exactly once. Needs PG* (run through `make bench` or scripts/pg-throwaway.sh run --).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
MEMBERS=${MEMBERS:-5000}
RATE=${RATE:-10}
OUT=${OUT:-out/bench-batch}
rm -rf "$OUT" && mkdir -p "$OUT"
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }

python3 - "$OUT" "$MEMBERS" "$RATE" <<'PY'
import json, sys, datetime
out, members, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
now = datetime.datetime.now(datetime.timezone.utc)
rows, messages = [], []
def add(i, batch, otp):
    created = (now - datetime.timedelta(hours=2, seconds=members - i)).isoformat()
    mid = f"msg_{batch}_{i}"
    rows.append([ "campaign-1", mid, batch, f"65{80000000 + i}", "t" if otp else "f", "failure", "0", "routing_error", created, created])
    messages.append({"id": mid, "campaign_id": "campaign-1", "batch_id": batch, "recipient": f"65{80000000 + i}",
                     "latest_status": "failure", "retries": 0, "created_at": created,
                     "attempts": [{"status": "failure", "error_type": "delivery_error", "error_code": "routing_error", "created_at": created}],
                     "outcomes": ["success"]})
for i in range(members): add(i, "incident", False)
for i in range(10): add(members + i, "mixed", i < 2)
with open(f"{out}/rows.csv", "w") as f:
    f.write("campaign_id,message_id,batch_id,recipient,is_otp,status,retry_count,error_code,created_at,updated_at\n")
    for r in rows: f.write(",".join(r) + "\n")
json.dump({"campaigns": [{"id": "campaign-1", "api_key": "key-campaign-1", "rate_limit": rate}],
           "batches": [{"id": "incident", "campaign_id": "campaign-1", "status": "messages_enqueued"},
                       {"id": "mixed", "campaign_id": "campaign-1", "status": "messages_enqueued"}],
           "messages": messages}, open(f"{out}/simulator.json", "w"))
PY

run_side() {
    local side=$1 dir=$OUT/$1 db="bench_batch_$1" extra=()
    [ "$side" = off ] && extra=(--no-whole-batch)
    mkdir -p "$dir"
    psql -qX -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1
    PGDATABASE=$db psql -qX -v ON_ERROR_STOP=1 -f sql/reference-schema.sql -f sql/recommended-index.sql >/dev/null
    PGDATABASE=$db psql -qX -v ON_ERROR_STOP=1 \
        -c "\\copy outbound_messages ($(head -1 "$OUT/rows.csv")) FROM '$OUT/rows.csv' WITH (FORMAT csv, HEADER true)"
    "$BIN/postman-sim" --port 0 --data "$OUT/simulator.json" --seed 9 --time-scale 1 --ledger "$dir/ledger.json" \
        >"$dir/sim.out" 2>"$dir/sim.log" &
    local sim=$!
    for _ in $(seq 1 300); do grep -q "listening on" "$dir/sim.out" 2>/dev/null && break; sleep 0.1; done
    local url="http://$(sed -n 's/^listening on //p' "$dir/sim.out" | head -1)/api/v2"
    env PGDATABASE="$db" POSTMAN_API_URL="$url" POSTMAN_API_KEY_CAMPAIGN_1=key-campaign-1 "$BIN/postman-retry" migrate >/dev/null
    env PGDATABASE="$db" POSTMAN_API_URL="$url" POSTMAN_API_KEY_CAMPAIGN_1=key-campaign-1 /usr/bin/time -f "%e %M %U %S" \
        -o "$dir/time.txt" "$BIN/postman-retry" run --rate-limit "$RATE" --log-level error --format json "${extra[@]}" \
        >"$dir/summary.json" 2>"$dir/run.log" || echo "batch: $side exited $?" >&2
    kill $sim && wait $sim 2>/dev/null || true
    python3 - "$dir" "$side" "$MEMBERS" <<'PY'
import json, sys
d, side, members = sys.argv[1], sys.argv[2], int(sys.argv[3])
ledger = json.load(open(f"{d}/ledger.json")); summary = json.load(open(f"{d}/summary.json"))
wall = float(open(f"{d}/time.txt").read().split()[-4])
posts = [r for r in ledger["requests"] if r["method"] == "POST"]
batch_calls = sum(1 for r in posts if "/batch/" in r["path"])
singles = len(posts) - batch_calls
reads = len(ledger["requests"]) - len(posts)
acc = ledger["accepted_retries"]
otp_retried = sum(1 for k in acc if k.startswith("msg_mixed_") and int(k.rsplit("_", 1)[1]) < members + 2)
print(json.dumps({"whole_batch": side, "members": members, "batch_calls": batch_calls, "single_retry_calls": singles,
                  "reads": reads, "requests": len(ledger["requests"]), "wall_seconds": wall,
                  "retried": summary["counts"]["retried"], "succeeded": summary["counts"]["succeeded"],
                  "every_member_once": all(acc.get(f"msg_incident_{i}") == 1 for i in range(members)),
                  "otps_retried": otp_retried, "max_requests_in_1s": ledger["max_requests_in_1s"],
                  "rate_limited": ledger["rate_limited"]}))
PY
}

run_side on >"$OUT/on.json" &
a=$!
run_side off >"$OUT/off.json" &
b=$!
wait $a $b
cat "$OUT/on.json" "$OUT/off.json"
