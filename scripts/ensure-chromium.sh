#!/usr/bin/env bash
# The dashboard's browser tests drive Debian's Chromium (no browser downloads: the network is
# closed but for package registries). Installs it once if it is missing; quiet when present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
  echo "chromium is missing and we cannot install it (not root, no sudo): apt-get install chromium" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian's chromium for the browser tests (once; ~2 minutes)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null 2>&1
  $SUDO apt-get install -y -q chromium >/dev/null
}
command -v chromium >/dev/null
