#!/usr/bin/env bash
# apphub's quickstart: two demo services under a real supervisord, configured by apphub.
#
#   examples/quickstart/start.sh DATA_DIR
#
# On the first run (DATA_DIR has no services.yaml yet) it installs the example into DATA_DIR:
# schema.d/50-quickstart.yaml, services.yaml, templates/, `apphub init`, and system.ini [sync]
# (roots: the demo folder; supervisor_url: the socket below). Every run then starts supervisord
# unless it is running, and prints what to try. It does not start apphub: run
# `.venv/bin/apphub --data-dir DATA_DIR serve` next (./run.sh does both).
#
# Where things go:
#   DATA_DIR/supervisor/   supervisord's config, socket, pid file and logs
#   DATA_DIR-quickstart/   the services' own files (QUICKSTART_DIR): apphub writes files only under
#                          system.ini [sync] roots, and never inside its data folder
# Environment: QUICKSTART_JSON_PORT (8701), QUICKSTART_INI_PORT (8702), QUICKSTART_ENV_PORT (8703),
# used on the first run;
# QUICKSTART_DIR; APPHUB and PYTHON (default: the repository's .venv).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ] || [ "${1#-}" != "$1" ]; then
    echo "usage: $0 DATA_DIR" >&2
    exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DATA=$(realpath -m "$1")
DEMO=$(realpath -m "${QUICKSTART_DIR:-${DATA}-quickstart}")
APPHUB=${APPHUB:-$REPO/.venv/bin/apphub}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
SV="$DATA/supervisor"
CONF="$SV/supervisord.conf"
SOCK="$SV/supervisor.sock"

die() { echo "quickstart: $*" >&2; exit 1; }
say() { echo "quickstart: $*" >&2; }

[ -x "$APPHUB" ] || die "$APPHUB is missing: run scripts/setup.sh first"
[ -x "$PYTHON" ] || die "$PYTHON is missing: run scripts/setup.sh first"
command -v supervisord >/dev/null && command -v supervisorctl >/dev/null \
    || die "supervisord is not installed: apt-get install supervisor"
# A unix socket's path must fit in 108 bytes (sun_path).
[ ${#SOCK} -lt 108 ] || die "the socket path $SOCK is too long for a unix socket (${#SOCK} bytes, 107 at most): use a shorter DATA_DIR"
case "$DEMO/" in
    "$DATA"/*) die "QUICKSTART_DIR ($DEMO) must not lie inside the data folder $DATA (apphub does not write there)";;
esac

# Fills @@NAME@@ in a template file from the environment of this call.
fill() {
    "$PYTHON" - "$1" "$2" <<'PY'
import os, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
text = re.sub(r"@@([A-Z_]+)@@", lambda m: os.environ["QS_" + m.group(1)], text)
with open(sys.argv[2] + ".tmp", "w", encoding="utf-8") as out:
    out.write(text)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
}

hub() { "$APPHUB" --data-dir "$DATA" "$@"; }

if [ ! -f "$CONF" ]; then
    if [ -e "$DATA/services.yaml" ]; then
        say "$DATA already has a services.yaml of its own: the quickstart leaves that folder alone"
        exit 0
    fi
    say "installing the quickstart into $DATA (the services' files in $DEMO)"
    mkdir -p "$DATA/schema.d" "$DEMO/hello-json" "$DEMO/hello-ini" "$DEMO/hello-env" "$SV/logs"
    # Before `apphub init`: a new config.ini is written with these sections (and a fresh token);
    # an existing one gets their required keys added.
    cp "$HERE/schema.d/50-quickstart.yaml" "$DATA/schema.d/"
    hub init >/dev/null
    [ -z "${QUICKSTART_JSON_PORT:-}" ] || hub config set hello_json port "$QUICKSTART_JSON_PORT" >/dev/null
    [ -z "${QUICKSTART_INI_PORT:-}" ] || hub config set hello_ini port "$QUICKSTART_INI_PORT" >/dev/null
    [ -z "${QUICKSTART_ENV_PORT:-}" ] || hub config set hello_env port "$QUICKSTART_ENV_PORT" >/dev/null
    hub setsysconfig --section sync --key roots --value "$DEMO" >/dev/null
    hub setsysconfig --section sync --key supervisor_url --value "unix://$SOCK" >/dev/null
    mkdir -p "$DATA/templates"
    cp "$HERE/templates/"*.j2 "$DATA/templates/"
    # apphub merges its keys into this file and keeps the others (`log_requests` is yours).
    [ -e "$DEMO/hello-json/config.json" ] || printf '{\n  "log_requests": false\n}\n' >"$DEMO/hello-json/config.json"
    export QS_DEMO_DIR="$DEMO" QS_PYTHON="$PYTHON" QS_EXAMPLE_DIR="$HERE" QS_SUPERVISOR_DIR="$SV"
    fill "$HERE/services.yaml.in" "$DATA/services.yaml"
    fill "$HERE/supervisord.conf.in" "$CONF"
    # hello-env's program: apphub owns its environment= (the rest is yours)
    [ -e "$DEMO/hello-env/program.conf" ] || fill "$HERE/hello-env.conf.in" "$DEMO/hello-env/program.conf"
fi

if supervisorctl -c "$CONF" pid >/dev/null 2>&1; then
    say "supervisord is running ($SOCK)"
else
    rm -f "$SOCK"  # left by a supervisord that was killed
    # supervisord daemonizes; its own log is $SV/supervisord.log
    supervisord -c "$CONF" </dev/null >"$SV/supervisord.out" 2>&1 \
        || die "supervisord did not start: $(cat "$SV/supervisord.out")"
    for _ in $(seq 100); do
        supervisorctl -c "$CONF" pid >/dev/null 2>&1 && break
        sleep 0.1
    done
    supervisorctl -c "$CONF" pid >/dev/null 2>&1 \
        || die "supervisord did not answer on $SOCK within 10 s; see $SV/supervisord.log"
    say "started supervisord (hello-json and hello-ini wait for apphub to write their files)"
fi

read -r json_port ini_port env_port < <(hub config show --json | "$PYTHON" -c \
    'import json, sys; s = json.load(sys.stdin); print(s["hello_json"]["port"], s["hello_ini"]["port"], s["hello_env"]["port"])')
API=${QUICKSTART_API:-http://127.0.0.1:8080}
cat >&2 <<MSG

quickstart: ready. apphub must serve this folder: ./run.sh does, or
  $APPHUB --data-dir $DATA serve --port ${API##*:}
Then (examples/quickstart/README.md says more):
  curl -s http://127.0.0.1:$json_port/health; curl -s http://127.0.0.1:$ini_port/health
  curl -s http://127.0.0.1:$env_port/health
  KEY=\$(cat $DATA/.apphub/admin.key)
  curl -s -X PUT -H "x-api-key: \$KEY" -H 'content-type: application/json' \\
       -d '{"greeting": "Hi there"}' '$API/api/v1/settings/hello_json?wait=true'
  $APPHUB --data-dir $DATA config set hello_ini title 'Set from the CLI'
  $APPHUB --data-dir $DATA env set hello-env APP_MODE demo   # hello-env restarts with it
  \${EDITOR:-vi} $DATA/config.ini     # [hello_json] color = orange
  curl -s -H "x-api-key: \$KEY" $API/api/v1/sync/status
  cat $DEMO/hello-json/config.json $DEMO/hello-ini/config.ini
  supervisorctl -c $CONF status     # stop the demo: supervisorctl -c $CONF shutdown
MSG
