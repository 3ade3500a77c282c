#!/usr/bin/env bash
# A throwaway PostgreSQL cluster in a temp dir, for tests, demos and benchmarks.
#
#   scripts/pg-throwaway.sh run -- CMD ARGS...   start a cluster, run CMD with PG* set, stop and remove it
#                                                 (also when CMD fails or is interrupted); exits with CMD's code
#   scripts/pg-throwaway.sh start [DIR]          start one and print `export PG…` lines (and write DIR/env)
#   scripts/pg-throwaway.sh stop DIR             stop it and remove DIR
#
# Unix socket in the cluster's own dir, no TCP, trust auth; runs the server as `postgres` when started by root.
# Fast and not crash-safe (fsync off) unless PG_THROWAWAY_DURABLE=1: then fsync and full-page writes are on,
# and synchronous_commit stays off as the server's default, as some agencies set it (the job must make
# its own commits durable).
# PG_THROWAWAY_OPTIONS adds server settings (e.g. "-c shared_preload_libraries=pg_stat_statements" for a profile).
set -euo pipefail

find_bin() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
        echo "pg-throwaway: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
        exit 69
    fi
    echo "$dir"
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir=${1:-}
    local bin
    bin=$(find_bin)
    [ -n "$dir" ] || dir=$(mktemp -d /tmp/postman-retry-pg.XXXXXX)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    # A port number is still needed for the socket file name; pick one from the pid to avoid clashes.
    local port=$((20000 + ($$ % 20000)))
    local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    [ "${PG_THROWAWAY_DURABLE:-0}" = 1 ] && durability="-c fsync=on -c synchronous_commit=off -c full_page_writes=on"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$dir' -p $port -c max_connections=200 $durability ${PG_THROWAWAY_OPTIONS:-}" \
        start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    cat >"$dir/env" <<ENV
export PGHOST='$dir'
export PGPORT='$port'
export PGUSER=postgres
export PGDATABASE=postgres
export PG_THROWAWAY_DIR='$dir'
export PG_BIN='$bin'
ENV
    cat "$dir/env"
}

stop() {
    local dir=$1
    [ -d "$dir" ] || return 0
    local bin
    bin=$(find_bin)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
start) shift; start "${1:-}" ;;
stop) shift; stop "$1" ;;
run)
    shift
    [ "${1:-}" = "--" ] && shift
    dir=$(mktemp -d /tmp/postman-retry-pg.XXXXXX)
    trap 'stop "$dir"' EXIT
    trap 'exit 130' INT TERM
    start "$dir" >/dev/null
    # shellcheck disable=SC1091
    . "$dir/env"
    echo "pg-throwaway: PostgreSQL running at $PGHOST (port $PGPORT)" >&2
    set +e
    "$@"
    code=$?
    exit $code
    ;;
*)
    sed -n '2,9p' "$0" >&2
    exit 64
    ;;
esac
