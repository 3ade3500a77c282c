#!/usr/bin/env bash
# Write-back throughput: a batched compare-and-set UPDATE of N rows through the libpq wrapper, next to
# the same update done by psql (COPY into a temp table + UPDATE ... FROM), same data, same run.
# Needs PG* (run through `make bench` or scripts/pg-throwaway.sh run --).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
ROWS=${ROWS:-100000}

setup() {
    psql -qX -v ON_ERROR_STOP=1 <<SQL
DROP TABLE IF EXISTS $1;
CREATE TABLE $1 (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, message_id text NOT NULL UNIQUE,
    status text NOT NULL, retry_count int NOT NULL, error_code text, updated_at timestamptz NOT NULL);
INSERT INTO $1 (message_id, status, retry_count, error_code, updated_at)
    SELECT 'm' || lpad(g::text, 8, '0'), 'failure', 0, 'recipient_unavailable', now() - g * interval '1 ms'
    FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE $1;
SQL
}

echo "== write-back of $ROWS rows ($(nproc) cores, $(psql -XAtc 'SHOW server_version'))"
setup wb_wrapper
"$BIN/retry-bench" writeback --table wb_wrapper --chunk 10000

setup wb_psql
psql -XAtc "COPY (SELECT message_id, 'success', 1, NULL, updated_at FROM wb_psql ORDER BY message_id) TO STDOUT (FORMAT csv)" > /tmp/wb.csv
start=$(date +%s.%N)
psql -qX -v ON_ERROR_STOP=1 <<SQL
BEGIN;
CREATE TEMP TABLE wb_new (message_id text, status text, retry_count int, error_code text, snap timestamptz) ON COMMIT DROP;
\copy wb_new FROM '/tmp/wb.csv' WITH (FORMAT csv)
UPDATE wb_psql a SET status = n.status, retry_count = n.retry_count, error_code = n.error_code, updated_at = clock_timestamp()
FROM wb_new n WHERE a.message_id = n.message_id AND a.updated_at = n.snap;
COMMIT;
SQL
end=$(date +%s.%N)
updated=$(psql -XAtc "SELECT count(*) FROM wb_psql WHERE status = 'success'")
python3 -c "s=$end-$start; print(f'psql COPY + UPDATE FROM: {$updated} rows updated in {s:.3f} s = {$updated/s:.0f} rows/s')"
rm -f /tmp/wb.csv
