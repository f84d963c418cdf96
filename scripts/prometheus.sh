#!/usr/bin/env bash
# Prometheus (Debian's package) for the observability tests: install it when missing.
#
#   scripts/prometheus.sh install     apt-get install prometheus unless `prometheus` is on PATH
#
# The tests start their own server (a temporary config and data directory, a loopback port);
# the package's service is not used.
set -euo pipefail
case "${1:-install}" in
install)
    if command -v prometheus >/dev/null 2>&1; then
        exit 0
    fi
    echo "prometheus: installing Debian's prometheus package" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends prometheus >&2 \
        || { $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends prometheus >&2; }
    # The package starts its own service where systemd runs; the tests do not need it.
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: $0 install" >&2
    exit 2
    ;;
esac
