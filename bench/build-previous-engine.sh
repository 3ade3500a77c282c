#!/usr/bin/env bash
# Builds the engine before Engine 2 (commit eefd688, the last main before issue 13) in a worktree under out/,
# so bench/engine2.sh can run both side by side. Takes a few minutes the first time; nothing is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${PREVIOUS_ENGINE:-eefd688}
DIR=out/engine1
if [ ! -d "$DIR" ]; then
    mkdir -p out
    git worktree add --detach "$DIR" "$REV" >/dev/null
fi
swift build -c release --package-path "$DIR" --product postman-retry 2>&1 | tail -1
