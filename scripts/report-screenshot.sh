#!/usr/bin/env bash
# Screenshots of an HTML report in headless Chromium, at laptop and phone widths.
#   scripts/report-screenshot.sh REPORT.html OUTDIR
# Needs Debian's chromium (apt-get install -y chromium). The page loads nothing from the network.
set -euo pipefail
html=$(realpath "$1")
out=${2:-docs}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "report-screenshot: chromium not found (apt-get install -y chromium)" >&2; exit 69; }
mkdir -p "$out"
shoot() {  # width height file
    # A throwaway profile, no sandbox (root in CI), no GPU; the window height is the picture's height.
    local profile
    profile=$(mktemp -d)
    "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --user-data-dir="$profile" \
        --window-size="$1,$2" --screenshot="$3" "file://$html" >/dev/null 2>&1
    rm -rf "$profile"
    [ -s "$3" ] || { echo "report-screenshot: no picture written to $3" >&2; exit 1; }
    echo "$3"
}
# Headless Chromium photographs the window, not the page: the heights fit the demo's report (override them
# for a longer one).
shoot 1280 "${DESKTOP_HEIGHT:-2950}" "$out/report-screenshot.png"
shoot 412 "${PHONE_HEIGHT:-3950}" "$out/report-screenshot-phone.png"
