#!/usr/bin/env bash
# Install the Debian packages the test suite needs from the system, when they are missing:
#   promtool (package `prometheus`): checks the Prometheus config and unit-tests the alert rules.
#   chromium (package `chromium`): the headless browser the web-view tests drive through Playwright.
# As root it installs them with apt-get; otherwise it prints the one command to run and fails.
# Usage: infra/system-deps.sh [test]
set -euo pipefail

declare -A need=()   # package -> the command that proves it is installed
need[prometheus]=promtool
need[chromium]=chromium

missing=()
for pkg in "${!need[@]}"; do
  command -v "${need[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "system-deps: missing ${missing[*]} (for ${need[*]}); run once:" \
       "sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${missing[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]} (Debian packages)…"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for pkg in "${missing[@]}"; do
  command -v "${need[$pkg]}" >/dev/null 2>&1 || { echo "system-deps: $pkg installed but ${need[$pkg]} is not on PATH" >&2; exit 1; }
done
