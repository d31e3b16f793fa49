#!/bin/sh
# init-config.sh: fetch a service's configuration from apphub, then start the service.
#
# A container's entrypoint runs this first. It waits for apphub, waits for the service's
# dependencies (the manifest's `depends_on`) to be healthy, writes the service's files from
# apphub into the container's file system (each one atomically, with its mode), exports the
# service's environment, and then `exec`s its arguments (the image's original entrypoint and
# command, unchanged). With no arguments it fetches, writes and exits 0.
#
# POSIX sh: runs under busybox sh and dash. Needs curl or wget (busybox's will do), tar, mkdir,
# cp, mv, rm, sed, grep, cut, tr, cat, date, sleep, mktemp, chmod, and stat and chown to keep
# an existing file's owner.
#
# Environment:
#   APPHUB_URL        required: apphub's address as the container reaches it, e.g. http://127.0.0.1:8080
#   APPHUB_SERVICE    required: the service's name in apphub's manifest (services.yaml)
#   APPHUB_KEY_FILE   a file holding the service's key (preferred: a Docker secret,
#                     /run/secrets/NAME); `apphub services key SERVICE` prints one
#   APPHUB_KEY        the key itself, when there is no file (taken out of the environment that
#                     the service gets)
#   APPHUB_WAIT       seconds to wait for apphub to answer GET /healthz (default 60)
#   APPHUB_DEPS_WAIT  seconds to wait for the dependencies to be healthy (default 120)
#   APPHUB_ROOT       a folder under which the files are written (default: empty, i.e. `/`)
#   TMPDIR            where the private temporary folder goes (default /tmp)
#
# Exit codes (sysexits.h), all with one line on stderr saying why:
#   69  apphub did not answer within APPHUB_WAIT (or neither curl nor wget is installed)
#   70  the configuration could not be fetched after a few tries, or apphub's answer is unusable
#   73  a file could not be written (read-only file system, permissions, a folder in the way)
#   75  the dependencies did not become healthy within APPHUB_DEPS_WAIT
#   77  apphub refused the key (401: not a valid key; 403: a key that may not read this service)
#   78  configuration: a variable missing or malformed, the key file unreadable, or no such
#       service in apphub's manifest (404)
# Otherwise the exit status is the service's own, since this script becomes the service.
# It prints neither the key nor the files' contents nor the environment's values.
#
# Example, docker compose (the script and the key mounted; `entrypoint:` also clears the image's
# default command, so give the image's CMD again as `command:`):
#
#   services:
#     git:
#       image: gitea/gitea:1.25.5
#       entrypoint: ["/apphub/init-config.sh", "/usr/bin/entrypoint"]
#       command: ["/usr/bin/s6-svscan", "/etc/s6"]
#       extra_hosts: ["host.docker.internal:host-gateway"]
#       environment:
#         APPHUB_URL: http://host.docker.internal:8080
#         APPHUB_SERVICE: gitea
#         APPHUB_KEY_FILE: /run/secrets/apphub_gitea_key
#       secrets: [apphub_gitea_key]
#       volumes:
#         - /usr/local/share/apphub/init-config.sh:/apphub/init-config.sh:ro
#   secrets:
#     apphub_gitea_key:
#       file: /etc/apphub/keys/gitea.key       # apphub services key gitea > /etc/apphub/keys/gitea.key
#
# (docs/init-config.md: apphub's side, and Websoft9's proxy, git and deployment containers.)
#
# Example, a Dockerfile of one's own (ENTRYPOINT resets CMD: give it again):
#
#   COPY init-config.sh /apphub/init-config.sh
#   ENTRYPOINT ["/apphub/init-config.sh", "/usr/bin/entrypoint"]
#   CMD ["/usr/bin/s6-svscan", "/etc/s6"]
#
# The files: apphub answers GET /api/v1/services/SERVICE/config?format=tar with members
# `files/PATH` (PATH: the file's absolute path inside the container without its leading slash)
# and `env` (lines `export NAME='value'`). Each file is extracted into a private folder (0700),
# copied next to its destination as DEST.init-config.tmp with its mode, then renamed onto DEST:
# a reader never sees half a file. A file that exists keeps its owner and group (as apphub's sync
# does: Gitea's app.ini stays git's); a new one is owned as the archive says when this runs as
# root, else by the user running it.

set -u

PROG=init-config

say() {
    printf '%s: %s\n' "$PROG" "$*" >&2
}

die() {
    d_code=$1
    shift
    say "$*"
    exit "$d_code"
}

now() {
    date +%s
}

# nap MILLISECONDS: busybox and coreutils sleep take fractions; a sleep that does not sleeps 1 s.
nap() {
    sleep "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))" 2>/dev/null || sleep 1
}

is_count() {
    case $1 in '' | *[!0-9]*) return 1 ;; esac
}

# -- configuration ---------------------------------------------------------------------------

[ -n "${APPHUB_URL:-}" ] || die 78 "APPHUB_URL is not set (apphub's address as this container reaches it," \
    "e.g. http://host.docker.internal:8080)"
case $APPHUB_URL in
    http://?* | https://?*) ;;
    *) die 78 "APPHUB_URL '$APPHUB_URL' is not an http:// or https:// address" ;;
esac
while :; do
    case $APPHUB_URL in */) APPHUB_URL=${APPHUB_URL%/} ;; *) break ;; esac
done

[ -n "${APPHUB_SERVICE:-}" ] || die 78 "APPHUB_SERVICE is not set (the service's name in apphub's services.yaml)"
case $APPHUB_SERVICE in
    *[!A-Za-z0-9_.-]* | [!A-Za-z0-9]*)
        die 78 "APPHUB_SERVICE '$APPHUB_SERVICE' is not a service name (letters, digits, '_', '.', '-')" ;;
esac
service=$APPHUB_SERVICE

if [ -n "${APPHUB_KEY_FILE:-}" ]; then
    if [ ! -f "$APPHUB_KEY_FILE" ] || [ ! -r "$APPHUB_KEY_FILE" ]; then
        die 78 "APPHUB_KEY_FILE $APPHUB_KEY_FILE cannot be read (service $service)"
    fi
    key=$(sed -n '1{s/^[[:space:]]*//;s/[[:space:]]*$//;p;}' "$APPHUB_KEY_FILE") ||
        die 78 "APPHUB_KEY_FILE $APPHUB_KEY_FILE cannot be read (service $service)"
    key_from="APPHUB_KEY_FILE $APPHUB_KEY_FILE"
elif [ -n "${APPHUB_KEY:-}" ]; then
    key=$APPHUB_KEY
    key_from=APPHUB_KEY
else
    die 78 "no key for service $service: set APPHUB_KEY_FILE (a file, e.g. a Docker secret) or APPHUB_KEY"
fi
# The key is for this script only: the service does not get it in its environment.
unset APPHUB_KEY
[ -n "$key" ] || die 78 "the key in $key_from is empty (service $service)"
case $key in
    *[!A-Za-z0-9._~+/=-]*) die 78 "the key in $key_from holds characters a key cannot have (service $service)" ;;
esac

deps_wait=${APPHUB_DEPS_WAIT:-120}
apphub_wait=${APPHUB_WAIT:-60}
is_count "$apphub_wait" || die 78 "APPHUB_WAIT '$apphub_wait' is not a number of seconds"
is_count "$deps_wait" || die 78 "APPHUB_DEPS_WAIT '$deps_wait' is not a number of seconds"
root=${APPHUB_ROOT:-}
while :; do
    case $root in */) root=${root%/} ;; *) break ;; esac
done

if command -v curl >/dev/null 2>&1; then
    client=curl
elif command -v wget >/dev/null 2>&1; then
    client=wget
    # busybox builds without FEATURE_WGET_TIMEOUT lack -T (Debian's busybox-static 1.35 even
    # crashes on it), so ask the help text; without -T a watchdog bounds each request. GNU wget
    # retries a timed-out request 20 times by itself: once (-t 1), since this script retries.
    wget_help=$(wget --help 2>&1)
    case $wget_help in *-T[\ ,]*) wget_timeout=yes ;; *) wget_timeout=no ;; esac
    case $wget_help in *"GNU Wget"*) wget_gnu=yes ;; *) wget_gnu=no ;; esac
else
    die 69 "neither curl nor wget is installed in this container: init-config.sh needs one of them"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/init-config.XXXXXX") ||
    die 73 "cannot create a private temporary folder in ${TMPDIR:-/tmp} (set TMPDIR to a writable folder)"
chmod 700 "$work"
trap 'rm -rf "$work"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$client" = curl ]; then
    # In a config file rather than the command line, where any process could read it.
    printf 'header = "x-api-key: %s"\n' "$key" >"$work/curl.conf"
fi

# -- HTTP ------------------------------------------------------------------------------------

# bounded SECONDS COMMAND...: COMMAND, killed when it runs longer (then $work/timed-out exists).
# The watchdog naps in short steps and ends as soon as COMMAND has. (A watchdog trapping TERM to
# kill one long sleep raced with its own start: a TERM before `$!` was known left it sleeping on.
# Killed, it leaves its current nap behind, so the first naps are 10 ms: an orphan that this
# script, PID 1 of its container, has reaped before it execs a service that may not reap.)
bounded() {
    b_limit=$1
    shift
    rm -f "$work/timed-out"
    "$@" &
    b_job=$!
    (
        b_spent=0 b_end=$((b_limit * 100))  # hundredths of a second
        while [ "$b_spent" -lt "$b_end" ]; do
            if [ "$b_spent" -lt 10 ]; then b_tick=1; else b_tick=10; fi
            if sleep "0.$(printf '%02d' "$b_tick")" 2>/dev/null; then
                b_spent=$((b_spent + b_tick))
            else
                sleep 1
                b_spent=$((b_spent + 100))
            fi
            kill -0 "$b_job" 2>/dev/null || exit 0
        done
        : >"$work/timed-out"
        kill "$b_job" 2>/dev/null
    ) &
    b_dog=$!
    wait "$b_job"
    b_status=$?
    kill "$b_dog" 2>/dev/null
    wait "$b_dog" 2>/dev/null
    return "$b_status"
}

# http_get URL OUTPUT SECONDS KEYED(yes|no): sets http_status (three digits; 000: no answer)
# and http_why (one line: why it is not a 200). The body of a non-2xx answer is in OUTPUT with
# curl; busybox wget drops it.
http_get() {
    h_url=$1 h_out=$2 h_limit=$3 h_keyed=$4
    rm -f "$h_out" "$work/timed-out"
    : >"$work/stderr"
    if [ "$client" = curl ]; then
        set -- -q -sS -o "$h_out" -w '%{http_code}' --max-time "$h_limit"
        [ "$h_keyed" = yes ] && set -- "$@" -K "$work/curl.conf"
        http_status=$(curl "$@" "$h_url" 2>"$work/stderr")
        h_rc=$?
    else
        # -S: the status line goes to stderr, also for an error status (whose body is not kept)
        set -- -S -O "$h_out"
        [ "$wget_gnu" = yes ] && set -- "$@" -t 1
        [ "$h_keyed" = yes ] && set -- "$@" --header "x-api-key: $key"
        if [ "$wget_timeout" = yes ]; then
            wget "$@" -T "$h_limit" "$h_url" 2>"$work/stderr"
            h_rc=$?
        else
            bounded "$h_limit" wget "$@" "$h_url" 2>"$work/stderr"
            h_rc=$?
        fi
        http_status=$(sed -n -e '/^ *HTTP\/[0-9.]* [0-9][0-9][0-9]/h' \
            -e '${x;s/^ *HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p;}' "$work/stderr")
    fi
    case $http_status in [0-9][0-9][0-9]) ;; *) http_status=000 ;; esac
    if [ "$h_rc" -ne 0 ] && [ "$http_status" -lt 300 ]; then
        http_status=000  # a 2xx whose transfer failed is no answer
    fi
    if [ "$http_status" = 200 ]; then
        http_why=
    elif [ "$http_status" != 000 ]; then
        http_why="HTTP $http_status"
        h_detail=$(problem_detail "$h_out")
        [ -n "$h_detail" ] && http_why="$http_why: $h_detail"
    elif [ -e "$work/timed-out" ] || [ "$h_rc" = 28 ] || grep -qi 'timed out' "$work/stderr"; then
        http_why="no answer within $h_limit s"
    else
        # the last line that says something (GNU wget ends with "Giving up.")
        http_why=$(sed -n -e '/^Giving up/!{/[^[:space:]]/h;}' -e '${x;s/^curl: ([0-9]*) //;s/^wget: //;p;}' \
            "$work/stderr" | cut -c1-200)
        [ -n "$http_why" ] || http_why="$client failed with status $h_rc"
    fi
}

# problem_detail FILE: the `detail` of an RFC 9457 problem body (JSON), when there is one.
problem_detail() {
    [ -s "$1" ] || return 0
    tr '\n' ' ' <"$1" | sed -n 's/.*"detail"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' | cut -c1-300
}

refused() {
    case $http_status in
        401) die 77 "apphub refused the key for service $service (HTTP 401: not a valid key; check $key_from)" ;;
        *) die 77 "apphub refused the key for service $service (HTTP $http_status${http_detail:+: $http_detail});" \
            "a key for this service comes from \`apphub services key $service\`" ;;
    esac
}

no_such_service() {
    die 78 "apphub has no service '$service' (HTTP 404 from $1): check APPHUB_SERVICE against apphub's services.yaml"
}

# -- waiting ---------------------------------------------------------------------------------

# poll SECONDS STATUS WHAT GAVE_UP STEP: run STEP until it succeeds; between tries sleep 0.1 s,
# doubling up to 2 s; a line on stderr at the first failure, when the reason changes and every
# 5 s. STEP sets `why` when it fails. After SECONDS: GAVE_UP and the last reason, exit STATUS.
poll() {
    p_limit=$1 p_status=$2 p_what=$3 p_gave_up=$4 p_step=$5
    p_start=$(now) p_attempt=0 p_delay=100 p_told_at='' p_told_why=''
    while :; do
        p_attempt=$((p_attempt + 1))
        why=
        "$p_step" && return 0
        p_now=$(now)
        p_spent=$((p_now - p_start))
        if [ "$p_spent" -ge "$p_limit" ]; then
            die "$p_status" "$p_gave_up within $p_limit s ($p_attempt attempts): $why"
        fi
        if [ -z "$p_told_at" ] || [ "$why" != "$p_told_why" ] || [ $((p_now - p_told_at)) -ge 5 ]; then
            say "waiting for $p_what (attempt $p_attempt): $why"
            p_told_at=$p_now p_told_why=$why
        fi
        p_left=$(((p_limit - p_spent) * 1000))
        if [ "$p_delay" -lt "$p_left" ]; then nap "$p_delay"; else nap "$p_left"; fi
        p_delay=$((p_delay * 2))
        [ "$p_delay" -le 2000 ] || p_delay=2000
    done
}

# A request may take at most what is left of its wait (and at least 1 s, at most `cap`).
request_limit() {
    r_left=$(($1 - ($(now) - p_start)))
    [ "$r_left" -ge 1 ] || r_left=1
    [ "$r_left" -le "$2" ] || r_left=$2
    echo "$r_left"
}

apphub_answers() {
    http_get "$APPHUB_URL/healthz" "$work/healthz" "$(request_limit "$apphub_wait" 5)" no
    [ "$http_status" = 200 ] && return 0
    why=$http_why
    return 1
}

dependencies_ready() {
    d_url="$APPHUB_URL/api/v1/services/$service/dependencies?format=text"
    http_get "$d_url" "$work/dependencies" "$(request_limit "$deps_wait" 10)" yes
    case $http_status in
        200) ;;
        401 | 403) http_detail=$(problem_detail "$work/dependencies"); refused ;;
        404) no_such_service "$APPHUB_URL/api/v1/services/$service/dependencies" ;;
        *) why="apphub: $http_why"; return 1 ;;
    esac
    d_state=$(sed -n '1{s/[[:space:]]*$//;p;}' "$work/dependencies")
    case $d_state in
        ready) return 0 ;;
        waiting) ;;
        *) why="apphub's answer does not begin with 'ready' or 'waiting' (GET $d_url)"; return 1 ;;
    esac
    why=
    {
        read -r _ || :
        while read -r d_name d_health d_reason; do
            d_reason=$(printf '%s' "$d_reason" | tr -d '\r')
            d_health=$(printf '%s' "$d_health" | tr -d '\r')
            if [ -z "$d_name" ] || [ "$d_health" = healthy ]; then continue; fi
            why="$why${why:+; }$d_name $d_health${d_reason:+ ($d_reason)}"
        done
    } <"$work/dependencies"
    [ -n "$why" ] || why="apphub says 'waiting' but names no dependency that is not healthy"
    why=$(printf '%s' "$why" | cut -c1-400)
    return 1
}

# -- fetching and writing --------------------------------------------------------------------

fetch_config() {
    f_url="$APPHUB_URL/api/v1/services/$service/config?format=tar"
    f_attempt=0 f_delay=200 f_tries=5
    while :; do
        f_attempt=$((f_attempt + 1))
        http_get "$f_url" "$work/config.tar" 30 yes
        case $http_status in
            200)
                if tar -tf "$work/config.tar" >"$work/members" 2>"$work/stderr"; then
                    return 0
                fi
                f_why="the answer is not a tar archive: $(sed -n '$p' "$work/stderr" | cut -c1-200)"
                ;;
            401 | 403) http_detail=$(problem_detail "$work/config.tar"); refused ;;
            404) no_such_service "$APPHUB_URL/api/v1/services/$service/config" ;;
            *) f_why=$http_why ;;
        esac
        if [ "$f_attempt" -ge "$f_tries" ]; then
            die 70 "cannot fetch the configuration of service $service from $f_url ($f_attempt attempts): $f_why"
        fi
        say "fetching the configuration of service $service (attempt $f_attempt): $f_why"
        nap "$f_delay"
        f_delay=$((f_delay * 2))
    done
}

# Each member must be `env`, `files/` or under `files/`: nothing absolute, nothing with `..`.
check_members() {
    while IFS= read -r c_name; do
        c_name=${c_name#./}
        case $c_name in
            /* | .. | ../* | */../* | */..) die 70 "apphub's archive for service $service holds '$c_name'," \
                "a path that would leave its folder: refused" ;;
            env | files | files/ | files/*) ;;
            *) die 70 "apphub's archive for service $service holds '$c_name', which is neither env nor under files/" ;;
        esac
    done <"$work/members"
}

write_files() {
    mkdir "$work/x" || die 73 "cannot create a folder in $work"
    # umask 0: a non-root tar applies the umask to the modes it restores. -m: the files get the
    # time they are written (a service that watches modification times sees them change).
    (umask 0 && tar -xmf "$work/config.tar" -C "$work/x") 2>"$work/stderr" ||
        die 70 "cannot extract apphub's archive for service $service: $(sed -n '$p' "$work/stderr" | cut -c1-200)"
    written=0
    while IFS= read -r w_name; do
        w_name=${w_name#./}
        case $w_name in files/?*) ;; *) continue ;; esac
        w_source="$work/x/$w_name"
        [ -d "$w_source" ] && [ ! -L "$w_source" ] && continue
        if [ -L "$w_source" ] || [ ! -f "$w_source" ]; then
            die 70 "apphub's archive for service $service holds $w_name, which is not a regular file: refused"
        fi
        w_dest="$root/${w_name#files/}"
        while :; do  # a member `files/a//b/` or `files/a/`
            case $w_dest in */) w_dest=${w_dest%/} ;; *) break ;; esac
        done
        w_folder=${w_dest%/*}
        [ -n "$w_folder" ] || w_folder=/
        mkdir -p "$w_folder" 2>"$work/stderr" ||
            die 73 "cannot create the folder $w_folder for $w_dest: $(sed -n '$p' "$work/stderr")"
        if [ -d "$w_dest" ] && [ ! -L "$w_dest" ]; then
            die 73 "cannot write $w_dest: a folder is in the way"
        fi
        w_staged="$w_dest.init-config.tmp"
        rm -f "$w_staged"
        if ! cp -p "$w_source" "$w_staged" 2>"$work/stderr"; then
            rm -f "$w_staged"
            die 73 "cannot write $w_staged: $(sed -n '$p' "$work/stderr")"
        fi
        # A file that exists keeps its owner (Gitea's app.ini is git's), as apphub's own sync does;
        # a new one is owned as the archive says (when root) or by whoever runs this.
        if [ -e "$w_dest" ] && w_owner=$(stat -c '%u:%g' "$w_dest" 2>/dev/null); then
            chown "$w_owner" "$w_staged" 2>/dev/null || :
        fi
        if ! mv -f "$w_staged" "$w_dest" 2>"$work/stderr"; then
            rm -f "$w_staged"
            die 73 "cannot rename $w_staged onto $w_dest: $(sed -n '$p' "$work/stderr")"
        fi
        written=$((written + 1))
    done <"$work/members"
}

# -- main ------------------------------------------------------------------------------------

poll "$apphub_wait" 69 "apphub at $APPHUB_URL" "apphub did not come up at $APPHUB_URL" apphub_answers
poll "$deps_wait" 75 "the dependencies of service $service" \
    "the dependencies of service $service did not become healthy" dependencies_ready
fetch_config
check_members
write_files

variables=0
environment=
if [ -f "$work/x/env" ]; then
    variables=$(grep -c '^export ' "$work/x/env")
    environment=$(cat "$work/x/env") || die 70 "cannot read the environment of service $service"
fi
if [ $# -gt 0 ]; then
    say "service $service: $written file(s) and $variables variable(s) from apphub; starting $1"
else
    say "service $service: $written file(s) and $variables variable(s) from apphub"
fi
rm -rf "$work"
trap - EXIT HUP INT TERM
# The environment last: its names may be any (even this script's own variables).
eval "$environment" || die 70 "the environment of service $service from apphub cannot be read"
[ $# -gt 0 ] || exit 0
exec "$@"
