#!/usr/bin/env bash
# Sets up apphub and runs the config center on the built-in default data folder
# (created on first start; APPHUB_DATA or --data-dir choose another). Extra arguments go to `apphub serve`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/apphub serve "$@"
