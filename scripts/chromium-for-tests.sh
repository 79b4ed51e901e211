#!/usr/bin/env bash
# Make sure Debian's chromium is on PATH for the dashboard's browser test (Playwright drives
# it by its path: no browser is ever downloaded). Installs the chromium package when it is
# missing (needs root, as on CI); without root it says so and leaves the test to skip.
#
#   scripts/chromium-for-tests.sh   -> prints the path of the chromium binary
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "chromium is missing and this is not root: install Debian's chromium package;" \
            "the browser test skips until then" >&2
        exit 0
    fi
    echo "installing Chromium from Debian's packages..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends chromium >&2
fi
command -v chromium
