#!/usr/bin/env bash
# Installs puppeteer-core (the pinned version in package-lock.json) for check_report.mjs, once:
# `npm ci` when node_modules is missing or older than the lock file. puppeteer-core drives an
# installed browser (Debian's chromium) and downloads none. Run by tests/report_browser.rs and
# .ci/run.
set -euo pipefail
cd "$(dirname "$0")"
if [ -f node_modules/.package-lock.json ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm not found (apt install npm)" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
