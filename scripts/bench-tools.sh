#!/usr/bin/env bash
# Make sure the load tools of `make bench` are here: wrk (the load generator) and nginx (a
# baseline). Installs Debian's packages when either is missing (needs root, as on CI).
# nginx's package would start a system-wide server on port 80; the bench runs its own, so
# the package's service is kept from starting (policy-rc.d) while it installs.
set -euo pipefail

have_nginx() {
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]
}

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
have_nginx || missing+=(nginx)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "missing for make bench: ${missing[*]}; install Debian's packages: apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "installing ${missing[*]} from Debian's packages..." >&2
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
