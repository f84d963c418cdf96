#!/usr/bin/env bash
# Install what building and testing meshhost needs, when missing: the wasm32-wasip2 target
# (plugins are built for it), the broker (scripts/broker.sh install), and the build tools of the
# Python and JavaScript SDKs (sdk/install-tools.sh: componentize-py, componentize-js), Postgres
# and Prometheus (Debian's packages).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
scripts/broker.sh install
# The build tools of the Python and JavaScript SDKs (componentize-py, componentize-js).
sdk/install-tools.sh
# The Python venv of the Schema Registry interop tests (confluent-kafka, fastavro).
scripts/pyenv.sh >/dev/null
# Postgres (Debian's server packages), for the change data capture tests and demo.
scripts/postgres.sh install
# Prometheus, which the observability tests start to scrape a running pipeline.
scripts/prometheus.sh install
