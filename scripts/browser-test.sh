#!/usr/bin/env bash
# The chat example in a real browser (tests/browser/chat.test.mjs).
# Installs what is missing first: Debian's Chromium (apt) and the test's
# node packages (npm ci). Ends with one line "browser: N passed, M failed";
# exits non-zero on failure. Needs build/turbo_ws.so (make build).
set -uo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
export CHROMIUM

setup_failed() {
  echo "browser-test: $*" >&2
  echo "browser: 0 passed, 1 failed"
  exit 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else return 1
  fi
}

apt_install() {
  echo "browser-test: installing $* (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -q >/dev/null &&
    as_root env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q "$@" >/dev/null
}

if [ ! -x "$CHROMIUM" ]; then
  apt_install chromium || setup_failed "could not install chromium"
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm || setup_failed "could not install node and npm"
fi
[ -f build/turbo_ws.so ] || setup_failed "build/turbo_ws.so is missing: run make build"

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "browser-test: npm ci in tests/browser"
  (cd tests/browser && timeout 300 npm ci --no-audit --no-fund --loglevel=error) ||
    setup_failed "npm ci failed in tests/browser"
fi

timeout 300 node tests/browser/chat.test.mjs
rc=$?
if [ "$rc" -eq 124 ]; then echo "browser: 0 passed, 1 failed (timed out)"; fi
exit "$rc"
