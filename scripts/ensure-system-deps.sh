#!/usr/bin/env bash
# Installs the Debian packages the test suite needs when they are missing: chromium for the
# dashboard's browser tests. Needs root (CI and the dev machines run as root); elsewhere it says
# what to install by hand.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-system-deps: missing ${missing[*]}; install them (sudo apt-get install -y ${missing[*]}) for the browser tests." >&2
  exit 0
fi
echo "ensure-system-deps: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
