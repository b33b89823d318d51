#!/usr/bin/env bash
# Install the system programs the UI tests need: Debian's chromium and the Playwright Python package
# that drives it (tests/ui), and Xvfb + xdotool for the Tkinter kiosk test (tests/capture). Idempotent: does nothing when both are already there.
# Playwright's own browser download (`playwright install`) is never used; the tests launch
# /usr/bin/chromium.
#
# Usage: scripts/install-browser-test-deps.sh [PYTHON]   (default: .venv/bin/python, else python3)
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${1:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
command -v xdotool >/dev/null 2>&1 || missing+=(xdotool)
if (( ${#missing[@]} )); then
    SUDO=""
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
            echo "install-browser-test-deps: ${missing[*]} missing and this is not root (no sudo); run: apt-get install -y ${missing[*]}" >&2
            exit 1
        fi
    fi
    echo "install-browser-test-deps: installing ${missing[*]} with apt-get"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! "$PYTHON" -c "import playwright.sync_api" >/dev/null 2>&1; then
    echo "install-browser-test-deps: installing playwright (Python package only; no browser download)"
    "$PYTHON" -m pip install --quiet "playwright>=1.40"
fi

echo "install-browser-test-deps: ok ($(command -v chromium), $("$PYTHON" -c 'import importlib.metadata as m; print("playwright", m.version("playwright"))'))"
