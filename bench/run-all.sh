#!/usr/bin/env bash
# `make bench`: every benchmark, one after the other, on one throwaway PostgreSQL. Figures go to stdout;
# docs/benchmarks.md records them with the machine they ran on.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
# Engine 2 against the previous engine (issue 13), side by side in one run on the same data.
bash bench/build-previous-engine.sh
bash bench/engine2.sh
bash bench/batch.sh                                         # incident mode: a 5,000-member batch (issue 15)
bash bench/writeback.sh
bash bench/selection.sh
bash bench/engine-rate.sh                                   # 3 campaigns x 2,000 messages at 10/s (issue 5)
CAMPAIGNS=1 MESSAGES=1000 OUT=out/bench-rate-1 bash bench/engine-rate.sh
CAMPAIGNS=10 MESSAGES=300 OUT=out/bench-rate-10 bash bench/engine-rate.sh
CAMPAIGNS=100 MESSAGES=60 OUT=out/bench-rate-100 bash bench/engine-rate.sh
SCRATCH_PATH=${SCRATCH_PATH:-.build} bash bench/sim-load.sh
# The job's own CPU per request with many campaigns, next to the load tool's (issue 17): 100 x 60, 300 x 20
# and 3 x 2,000 at 10/s per campaign, 30% stale mix.
bash bench/many-campaigns.sh
# The same 100 x 60 against tables the size of an agency's: 2,000,000 older rows in the agency table, and a
# year of nightly runs in the journal (what the job's reads of both cost as they grow).
TABLE_HISTORY=2000000 JOURNAL_HISTORY=2000000 CASES=100x60 OUT=out/bench-many-history bash bench/many-campaigns.sh
bash bench/client-cost.sh                                   # the HTTP path alone: what a wake-up costs (issue 17)
# A campaign whose Postman holds 30% of its answers back 15 s: the pacer and the backoff under slow answers.
bash bench/slow-answers.sh
