#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser tests (tests/web/) when /usr/bin/chromium
# is missing. playwright-core drives this binary; it never downloads a browser of its own.
# Needs root (CI and the dev machines run as root); elsewhere it says what to install by hand.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-chromium: /usr/bin/chromium is missing; install it with: sudo apt-get install -y chromium" >&2
  exit 0
fi
echo "ensure-chromium: installing chromium with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# One retry each: a mirror hiccup should not fail a whole CI run.
apt-get update -qq || { sleep 10; apt-get update -qq; }
apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
  { sleep 10; apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
