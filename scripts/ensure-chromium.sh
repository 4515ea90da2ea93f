#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser tests when it is missing. `npm test` calls
# it through tests/global-setup.ts; playwright-core drives this binary and never downloads a
# browser of its own. Needs root; elsewhere it says what to run and exits 0 (the browser tests
# are then reported as skipped with that command).
set -euo pipefail
CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
[ -x "$CHROMIUM_PATH" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-chromium: $CHROMIUM_PATH is missing; install it with: sudo apt-get install -y chromium" >&2
  exit 0
fi
echo "ensure-chromium: installing chromium with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# One retry each: a mirror hiccup should not fail a whole test run.
apt-get update -qq || { sleep 10; apt-get update -qq; }
apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
  { sleep 10; apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
