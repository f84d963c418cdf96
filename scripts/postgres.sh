#!/usr/bin/env bash
# A throwaway Postgres for change data capture (issue #13): Debian's postgresql packages
# (installed when missing), a fresh cluster with wal_level=logical on a loopback port, run as a
# non-root user (initdb refuses root; as root the cluster belongs to the `postgres` user).
#
#   scripts/postgres.sh install          install the server packages if missing (apt-get)
#   scripts/postgres.sh start [PORT]     create and start a cluster on 127.0.0.1:PORT (default 15432),
#                                        print its URL: postgres://meshhost:meshhost@127.0.0.1:PORT/meshhost
#   scripts/postgres.sh restart [PORT]   restart it, keeping its data (tests of a server that goes away)
#   scripts/postgres.sh psql [PORT] ...  run psql against it (as meshhost), e.g. -c 'SELECT 1'
#   scripts/postgres.sh stop [PORT]      stop it and remove its data
#
# Data lives in $MESHHOST_POSTGRES_DIR (default /tmp/meshhost-postgres): a directory per port.
set -euo pipefail

STATE_DIR="${MESHHOST_POSTGRES_DIR:-/tmp/meshhost-postgres}"
PASSWORD=meshhost

bin_dir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

install() {
    if [ -n "$(bin_dir)" ] && [ -x "$(bin_dir)/initdb" ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "postgres: the server packages are missing; install them with: sudo apt-get install -y postgresql" >&2
        return 1
    fi
    echo "postgres: installing Debian's postgresql packages" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

# Run a command as the cluster's owner: ourselves, or `postgres` when we are root.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local port="${1:-15432}"
    install
    local bin data log
    bin="$(bin_dir)"
    data="$STATE_DIR/$port"
    log="$STATE_DIR/$port-initdb.log"
    mkdir -p "$STATE_DIR"
    chmod 0777 "$STATE_DIR"
    if [ -f "$data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        echo "postgres: already running on 127.0.0.1:$port" >&2
        echo "postgres://meshhost:$PASSWORD@127.0.0.1:$port/meshhost"
        return 0
    fi
    rm -rf "$data"
    local pwfile
    pwfile="$(mktemp "$STATE_DIR/pw.XXXXXX")"
    echo "$PASSWORD" >"$pwfile"
    chmod 0644 "$pwfile"
    as_owner "$bin/initdb" -D "$data" -U meshhost --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$log" 2>&1 || {
        rm -f "$pwfile"
        echo "postgres: initdb failed; its log:" >&2
        cat "$log" >&2
        return 1
    }
    rm -f "$pwfile"
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
fsync = off
CONF
    # The server's log is in the data directory: its owner writes it.
    log="$data/server.log"
    as_owner "$bin/pg_ctl" -D "$data" -l "$log" -w -t 30 start >/dev/null || {
        echo "postgres: the server did not start; its log:" >&2
        cat "$log" >&2
        return 1
    }
    as_owner "$bin/createdb" -h "$data" -p "$port" -U meshhost meshhost
    echo "postgres: $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (wal_level=logical, log $log)" >&2
    echo "postgres://meshhost:$PASSWORD@127.0.0.1:$port/meshhost"
}

stop() {
    local port="${1:-15432}"
    local bin data
    bin="$(bin_dir)"
    data="$STATE_DIR/$port"
    if [ -d "$data" ]; then
        as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$data" "$STATE_DIR/$port-initdb.log"
    fi
}

restart() {
    local port="${1:-15432}"
    as_owner "$(bin_dir)/pg_ctl" -D "$STATE_DIR/$port" -m fast -w -t 60 restart -l "$STATE_DIR/$port/server.log" >/dev/null
}

psql_to() {
    local port="${1:-15432}"
    shift || true
    PGPASSWORD="$PASSWORD" "$(bin_dir)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U meshhost meshhost "$@"
}

case "${1:-}" in
    install) install ;;
    start) start "${2:-}" ;;
    restart) restart "${2:-}" ;;
    psql) shift; psql_to "$@" ;;
    stop) stop "${2:-}" ;;
    *)
        echo "usage: scripts/postgres.sh install | start [PORT] | restart [PORT] | psql PORT [ARGS...] | stop [PORT]" >&2
        exit 2
        ;;
esac
