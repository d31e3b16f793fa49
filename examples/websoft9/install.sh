#!/bin/sh
# Installs the Websoft9 sync profile into an apphub data folder (see README.md):
#   schema.d/websoft9-sync.yaml -> DATA/schema.d/       the [gitea_app] section, stricter ssl_* / docker0_ip
#   templates/websoft9/         -> DATA/templates/websoft9/
#   system-sync.ini roots       -> system.ini [sync] roots (with `apphub setsysconfig`)
#   system-sync.ini enabled     -> system.ini [services] enabled: the products initialised and tested
#   services.yaml               -> DATA/services.yaml   (last: a running apphub acts on it at once)
# then runs `apphub check`. It touches nothing outside DATA.
#
# usage: install.sh DATA_DIR        APPHUB=/path/to/apphub to choose the command (default: apphub)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
data=${1:?usage: install.sh DATA_DIR}
apphub=${APPHUB:-apphub}

if [ ! -f "$data/config.ini" ]; then
    echo "$data is not an initialised apphub data folder (run: $apphub --data-dir $data init)" >&2
    exit 1
fi
if [ -e "$data/services.yaml" ] && ! cmp -s "$here/services.yaml" "$data/services.yaml"; then
    echo "$data/services.yaml exists and is not this profile's: merge its services by hand" >&2
    exit 1
fi

mkdir -p "$data/schema.d" "$data/templates"
cp "$here/schema.d/websoft9-sync.yaml" "$data/schema.d/websoft9-sync.yaml"
rm -rf "$data/templates/websoft9"
cp -R "$here/templates/websoft9" "$data/templates/websoft9"
roots=$(sed -n 's/^roots *= *//p' "$here/system-sync.ini")
"$apphub" --data-dir "$data" setsysconfig --section sync --key roots --value "$roots"
enabled=$(sed -n 's/^enabled *= *//p' "$here/system-sync.ini")
"$apphub" --data-dir "$data" setsysconfig --section services --key enabled --value "$enabled"
cp "$here/services.yaml" "$data/services.yaml"
"$apphub" --data-dir "$data" check
