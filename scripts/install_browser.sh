#!/usr/bin/env sh
# Give the browser tests a Chromium, the ecosystem's way: one already on the machine
# ($CHROMIUM or `chromium` on PATH), else Playwright's own download, else the system
# package manager's (Debian/Ubuntu `apt-get install chromium`, as root or with sudo).
# Usage: scripts/install_browser.sh VENV_BIN   (called by `make test`)
set -eu
BIN=${1:-.venv/bin}

if [ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ]; then
    echo "browser tests: Chromium at $CHROMIUM"; exit 0
fi
if command -v chromium >/dev/null 2>&1; then
    echo "browser tests: Chromium at $(command -v chromium)"; exit 0
fi
if "$BIN/python" - <<'PY' 2>/dev/null
from playwright.sync_api import sync_playwright
with sync_playwright() as playwright:
    playwright.chromium.launch().close()
PY
then
    echo "browser tests: Playwright's own Chromium"; exit 0
fi

echo "browser tests: installing Playwright's Chromium (needs to reach Playwright's download server)"
if [ "$(id -u)" = 0 ]; then deps="--with-deps"; else deps=""; fi
if timeout 600 "$BIN/playwright" install $deps chromium; then exit 0; fi

echo "browser tests: Playwright's download failed; installing Debian's chromium package instead"
if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null && exit 0
    elif sudo -n true 2>/dev/null; then
        sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null && exit 0
    fi
fi
echo "browser tests: no Chromium could be installed. Install one (e.g. 'sudo apt-get install" \
     "chromium', or '$BIN/playwright install chromium' where it can download) and run make test again," \
     "or point CHROMIUM at a Chromium binary." >&2
exit 1
