#!/usr/bin/env bash
# Two builds of the job side by side (issue 17): bench/many-campaigns.sh case by case, the builds alternating
# (before, after, after, before, ...), on one throwaway PostgreSQL. On these 2-core machines one build's figures
# move by up to 25% from one run to the next, so only runs made together compare. For each run it prints the
# job's CPU per request and its ratio to the simulator's CPU in the same run (the simulator's work per request
# is the same for both builds, so the ratio takes out part of the machine's drift), then the mean of each side.
#
# Usage:  BEFORE=<git rev> scripts/pg-throwaway.sh run -- bash bench/side-by-side.sh
# Env:    BEFORE_BIN=dir   a release build of the "before" side (else one is built from BEFORE in a worktree
#                          under out/, about 6 minutes the first time)
#         AFTER_BIN=.build/release   CASES="3x2000"   ROUNDS=2 (pairs per case)   OUT=out/bench-side
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${CASES:-3x2000}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-out/bench-side}
AFTER_BIN=${AFTER_BIN:-.build/release}
if [ -z "${BEFORE_BIN:-}" ]; then
    : "${BEFORE:?set BEFORE (a git revision) or BEFORE_BIN (a release build)}"
    tree=out/side-before-$(git rev-parse --short "$BEFORE")
    [ -d "$tree" ] || git worktree add --detach "$tree" "$BEFORE" >/dev/null
    (cd "$tree" && swift build -c release >&2)
    BEFORE_BIN=$tree/.build/release
fi
[ -x "$AFTER_BIN/postman-retry" ] || swift build -c release >&2
mkdir -p "$OUT"
results=$OUT/results.txt
: >"$results"
for c in $CASES; do
    for round in $(seq 1 "$ROUNDS"); do
        # Alternate which side goes first, so a machine that drifts during a round favours neither.
        if [ $((round % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
        for side in $order; do
            if [ "$side" = before ]; then bin=$BEFORE_BIN; else bin=$AFTER_BIN; fi
            BIN=$bin CASES=$c OUT=$OUT/$side bash bench/many-campaigns.sh >"$OUT/$side-$c-$round.log" 2>&1 \
                || { echo "side-by-side: $side $c round $round failed (see $OUT/$side-$c-$round.log)" >&2; exit 1; }
            python3 - "$OUT/$side/$c/figures.json" "$side" "$c" "$round" >>"$results" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
print(sys.argv[3], sys.argv[2], sys.argv[4], f["cpu_us_per_request"], f["sim_cpu_us_per_request"], f["rate_limited"], f["busiest"])
PY
            tail -1 "$results" | awk '{printf "%-9s %-6s round %s: job %s us per request, simulator %s us, ratio %.2f, 429s %s, busiest second %s\n", $1, $2, $3, $4, $5, $4 / $5, $6, $7}'
        done
    done
done
python3 - "$results" <<'PY'
import collections, sys
rows = [line.split() for line in open(sys.argv[1])]
by = collections.defaultdict(list)
for case, side, _, job, sim, _, _ in rows:
    by[(case, side)].append((int(job), int(sim)))
for case in dict.fromkeys(r[0] for r in rows):
    means = {}
    for side in ("before", "after"):
        runs = by[(case, side)]
        means[side] = (sum(j for j, _ in runs) / len(runs), sum(j / s for j, s in runs) / len(runs))
    b, a = means["before"], means["after"]
    print(f"{case}: job CPU per request {b[0]:.0f} -> {a[0]:.0f} us ({100 * (a[0] / b[0] - 1):+.0f}%), "
          f"against the simulator's {b[1]:.2f} -> {a[1]:.2f} ({100 * (a[1] / b[1] - 1):+.0f}%)")
PY
