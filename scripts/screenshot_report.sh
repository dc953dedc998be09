#!/usr/bin/env bash
# Render a report in headless Chromium and save a screenshot: scripts/screenshot_report.sh REPORT.html OUT.png [WIDTHxHEIGHT]
set -euo pipefail
report=$(realpath "$1"); out=$(realpath -m "$2"); size=${3:-1400,2000}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --disable-sync --no-first-run --user-data-dir="$profile" --hide-scrollbars \
  --screenshot="$out" --window-size="$size" "file://$report" 2>/dev/null
echo "screenshot: $out"
