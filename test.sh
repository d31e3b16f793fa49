#!/usr/bin/env bash
# Sets up apphub with its test tools and runs the whole test suite. Extra arguments go to pytest.
# The tests run in parallel, one pytest-xdist worker per CPU (PYTEST_XDIST_AUTO_NUM_WORKERS sets
# another number); `./test.sh -n 0` runs them one after the other in this process.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --test
exec .venv/bin/python -m pytest -n auto --dist loadgroup "$@"
