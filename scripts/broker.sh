#!/usr/bin/env bash
# The project's Kafka-compatible broker (Nisshi): install it if missing, start, stop, create topics.
#
#   scripts/broker.sh install            install nisshi (needs rustc >= 1.96; ~14 min the first time)
#   scripts/broker.sh start [PORT]       start on 127.0.0.1:PORT (default 19092) and wait until it answers
#   scripts/broker.sh stop [PORT]        stop the broker started on PORT
#   scripts/broker.sh topic NAME [PARTITIONS] [PORT]
#
# State lives in $MESHHOST_BROKER_DIR (default target/broker): pid file and log.
set -euo pipefail

NISSHI_VERSION=0.8.1
BROKER_TOOLCHAIN=1.96.0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${MESHHOST_BROKER_DIR:-$ROOT/target/broker}"
export PATH="$HOME/.cargo/bin:$PATH"

nisshi_bin() {
    command -v nisshi 2>/dev/null || true
}

install() {
    if [ -n "$(nisshi_bin)" ] && nisshi --version 2>/dev/null | grep -q "$NISSHI_VERSION"; then
        return 0
    fi
    echo "broker: installing nisshi $NISSHI_VERSION (first time only, ~15 minutes)" >&2
    rustup toolchain install "$BROKER_TOOLCHAIN" --profile minimal >&2
    cargo +"$BROKER_TOOLCHAIN" install nisshi --version "$NISSHI_VERSION" --locked >&2
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    local port="${1:-19092}"
    install
    mkdir -p "$STATE_DIR"
    local pidfile="$STATE_DIR/nisshi-$port.pid" log="$STATE_DIR/nisshi-$port.log"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "broker: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))" >&2
        return 0
    fi
    if port_open "$port"; then
        echo "broker: port $port is taken by another process" >&2
        return 1
    fi
    # MESHHOST_BROKER_STORAGE=sqlite://NAME.db keeps the data in $STATE_DIR/NAME.db across a
    # stop and a start (the fault tests restart the broker); the default keeps it in memory.
    (cd "$STATE_DIR" && exec nohup nisshi broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "${MESHHOST_BROKER_STORAGE:-memory://nisshi/}" \
        --group-initial-rebalance-delay 0s \
        >"$log" 2>&1) &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
        if port_open "$port"; then
            echo "broker: nisshi $NISSHI_VERSION on 127.0.0.1:$port (log $log)" >&2
            return 0
        fi
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "broker: nisshi exited; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "broker: nisshi did not answer on port $port within 10 s; its log:" >&2
    cat "$log" >&2
    return 1
}

stop() {
    local port="${1:-19092}"
    local pidfile="$STATE_DIR/nisshi-$port.pid"
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
}

topic() {
    local name="$1" partitions="${2:-1}" port="${3:-19092}"
    nisshi topic create "$name" --broker "tcp://127.0.0.1:$port" --partitions "$partitions" >/dev/null
}

case "${1:-}" in
    install) install ;;
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    topic) shift; topic "$@" ;;
    *) echo "usage: $0 install | start [PORT] | stop [PORT] | topic NAME [PARTITIONS] [PORT]" >&2; exit 2 ;;
esac
