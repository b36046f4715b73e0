#!/usr/bin/env bash
# One-time set-up the test suite needs beyond the Python packages.
set -euo pipefail
exit 0
