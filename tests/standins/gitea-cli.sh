#!/bin/sh
# `gitea` for a busybox test container: runs `gitea admin user create ...` against a Gitea stand-in.
#
# Install it as /usr/local/bin/gitea and set GITEA_STANDIN_URL (e.g. http://host.containers.internal:PORT).
# It posts its arguments to the stand-in's POST /__standin/admin-user-create, which parses them the way
# `gitea admin user create` does, prints what the real command prints and exits with its exit code.
# Needs only busybox sh, sed and wget. Arguments may hold letters, digits and punctuation, `"` and `\`
# included (they are JSON-escaped); control characters such as newlines are not supported.

if [ -z "$GITEA_STANDIN_URL" ]; then
    echo "gitea-cli.sh: GITEA_STANDIN_URL is not set" >&2
    exit 2
fi

json_string() {
    # Backslashes first, then double quotes, so the escapes of the quotes are not escaped again.
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

body='{"argv":['
separator=''
for word in "$@"; do
    body="$body$separator$(json_string "$word")"
    separator=','
done
body="$body]}"

# format=text: the first line is the exit code, the rest is the command's output.
if ! answer=$(wget -q -O - --header 'Content-Type: application/json' --post-data "$body" \
        "$GITEA_STANDIN_URL/__standin/admin-user-create?format=text"); then
    echo "gitea-cli.sh: the Gitea stand-in at $GITEA_STANDIN_URL did not answer" >&2
    exit 2
fi

code=$(printf '%s\n' "$answer" | head -n 1)
output=$(printf '%s\n' "$answer" | tail -n +2)
if [ -n "$output" ]; then
    printf '%s\n' "$output"
fi
exit "$code"
