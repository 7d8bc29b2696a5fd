#!/usr/bin/env bash
# Install the Debian packages the project uses from the system, when they are missing:
#   promtool (package `prometheus`): checks the Prometheus config and unit-tests the alert rules.
#   chromium (package `chromium`): the headless browser the web-view tests drive through Playwright.
#   mosquitto (package `mosquitto`): the embedded MQTT broker (else amqtt, pure Python: 0.25 of a
#     core at the state messages of 10,000 packs, where mosquitto takes 0.02), and
#     mosquitto_sub (package `mosquitto-clients`), an independent MQTT client for the tests.
# Usage: infra/system-deps.sh [test|demo]
#   test (default): all of them; as root it installs them with apt-get, otherwise it prints the
#     one command to run and fails.
#   demo: mosquitto only, and optional: installed as root, otherwise one line says how and the
#     demo runs on amqtt.
set -euo pipefail

purpose="${1:-test}"
declare -A need=()   # package -> the command that proves it is installed
need[mosquitto]=mosquitto
if [ "$purpose" = test ]; then
  need[prometheus]=promtool
  need[chromium]=chromium
  need[mosquitto-clients]=mosquitto_sub
fi

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }   # mosquitto lives in /usr/sbin

missing=()
for pkg in "${!need[@]}"; do
  have "${need[$pkg]}" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

fail=1
[ "$purpose" = demo ] && fail=0
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: missing ${missing[*]}; run once:" \
       "sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit $fail
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${missing[*]} and no apt-get here; install them with your package manager" >&2
  exit $fail
fi
echo "system-deps: installing ${missing[*]} (Debian packages)…"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
for pkg in "${missing[@]}"; do
  have "${need[$pkg]}" || { echo "system-deps: $pkg installed but ${need[$pkg]} is not on PATH" >&2; exit 1; }
done
