#!/usr/bin/env bash
# Sets up everything apphub needs on a Debian machine with Python 3.11+: the Debian packages it
# lacks (when run as root, or with sudo), a virtualenv in .venv, and apphub installed into it.
#   scripts/setup.sh          what `apphub serve` needs
#   scripts/setup.sh --test   plus what the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

python3 - <<'PY' || { echo "apphub needs Python 3.11 or newer (found $(python3 --version 2>&1))" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v git >/dev/null || missing+=(git)
command -v supervisord >/dev/null || missing+=(supervisor)  # the quickstart demo of ./run.sh
if [ -n "$extras" ]; then
    # The tests drive the real components: a Docker-compatible engine (Podman with runc), a
    # busybox image built from busybox-static, supervisord, and a browser.
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    [ -x /bin/busybox ] || missing+=(busybox-static)
    command -v curl >/dev/null || missing+=(curl)
    # The console's end-to-end tests drive Debian's Chromium with Playwright (never `playwright
    # install`: it downloads a browser of its own).
    command -v chromium >/dev/null || missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
        echo "apphub needs these Debian packages: ${missing[*]} (run as root, or install them)" >&2; exit 1
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".${extras}" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c 'import apphub' # fail here, not later, if the install did not work
