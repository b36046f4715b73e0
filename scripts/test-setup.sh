#!/usr/bin/env bash
# One-time set-up the test suite needs beyond the Python packages.
set -euo pipefail

# Browser tests (tests/browser, marked `browser`) drive Debian's Chromium through Playwright:
# Playwright's own browser download is not reachable from the build machine.
CHROMIUM=/usr/bin/chromium
if [[ ! -x "$CHROMIUM" ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        echo "installing chromium (for the admin browser tests)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        echo "installing chromium (for the admin browser tests)"
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
    else
        echo "chromium is missing: run 'sudo apt-get install -y chromium' (browser tests need it)" >&2
        exit 1
    fi
fi
