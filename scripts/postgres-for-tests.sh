#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the test suite, or stop it.
#
#   scripts/postgres-for-tests.sh start DIR   -> prints a SQLAlchemy URL on stdout
#   scripts/postgres-for-tests.sh stop DIR
#   scripts/postgres-for-tests.sh halt DIR    -> the server stops; its data stays
#   scripts/postgres-for-tests.sh resume DIR  -> it starts again, on the same port
#
# halt and resume are for tests of a database outage, on a server of their own.
# Installs Debian's postgresql package when no server binaries are present (needs root, as
# on CI). initdb refuses to run as root, so as root the cluster belongs to the postgres user.
set -euo pipefail

cmd=${1:?usage: $0 start|stop|halt|resume DIR}
dir=${2:?usage: $0 start|stop|halt|resume DIR}

find_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

run_server() {  # DIR PORT: start the cluster in DIR and wait until it accepts connections
    as_owner "$bin/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $2 -k $1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >/dev/null
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case "$cmd" in
start)
    bin=$(find_bin)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        if [ "$(id -u)" != 0 ]; then
            echo "PostgreSQL server binaries are missing; install Debian's postgresql package" >&2
            exit 1
        fi
        echo "installing PostgreSQL from Debian's packages..." >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends postgresql >&2
        # The package may start a cluster of its own; the tests use their own one.
        bin=$(find_bin)
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
    echo "$port" >"$dir/port"
    run_server "$dir" "$port"
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres vidgate_test
    echo "postgresql+asyncpg://postgres@127.0.0.1:$port/vidgate_test"
    ;;
stop)
    bin=$(find_bin)
    if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
halt)
    bin=$(find_bin)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
resume)
    bin=$(find_bin)
    run_server "$dir" "$(cat "$dir/port")"
    ;;
*)
    echo "usage: $0 start|stop|halt|resume DIR" >&2
    exit 2
    ;;
esac
