#!/usr/bin/env bash
# Selection cost as the table grows: time and peak RSS of `postman-retry plan` (which streams every
# failed row in scope through the same keyset-paginated read as `run`) for 10k, 100k and 1M candidates.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
SIZES=${SIZES:-"10000 100000 1000000"}
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
for n in $SIZES; do
    psql -qX -v ON_ERROR_STOP=1 -c "DROP TABLE IF EXISTS outbound_messages CASCADE" -f sql/reference-schema.sql \
        -f sql/recommended-index.sql
    "$BIN/retry-bench" fill --rows "$n" >/dev/null
    psql -qX -c "VACUUM ANALYZE outbound_messages"
    /usr/bin/time -f "%e %M" -o /tmp/plan-time.txt "$BIN/postman-retry" plan --format json >/tmp/plan.json
    read -r secs kb </tmp/plan-time.txt
    selected=$(python3 -c "import json;p=json.load(open('/tmp/plan.json'));print(p['selected'], p['skipped'])")
    python3 -c "print(f'{$n:>8} candidate rows: plan took {$secs:6.2f} s, peak RSS {$kb/1024:6.1f} MiB (selected, skipped: $selected)')"
done
