#!/usr/bin/env bash
# Sets up apphub and runs the config center on the built-in default data folder
# ($APPHUB_DATA, else ~/.local/share/apphub; created on first start), with the quickstart demo:
# three small services under a real supervisord whose files and environment apphub writes (examples/quickstart/).
# Extra arguments go to `apphub serve` (e.g. --port 8090; then set QUICKSTART_API for the hints).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
DATA="${APPHUB_DATA:-${XDG_DATA_HOME:-$HOME/.local/share}/apphub}"  # as apphub.paths.default_data_dir()
examples/quickstart/start.sh "$DATA"
exec .venv/bin/apphub --data-dir "$DATA" serve "$@"
