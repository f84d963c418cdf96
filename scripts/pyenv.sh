#!/usr/bin/env bash
# The Python venv for the Confluent interop tests (tests/interop/): confluent-kafka with its Avro and
# Schema Registry extras, every version pinned in tests/interop/requirements.txt.
#
#   scripts/pyenv.sh        create or repair the venv if needed, then print its python's path
#
# The venv lives at $MESHHOST_PYENV (default ~/.cache/meshhost/pyenv). A stamp file in it holds the
# hash of the requirements and of the Python version; when it matches and the venv's python runs,
# nothing is installed (a few milliseconds). Otherwise the venv is rebuilt from scratch. Concurrent
# callers (parallel tests) are serialised with flock. Python is $PYTHON (default python3, >= 3.10).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQS="$ROOT/tests/interop/requirements.txt"
VENV="${MESHHOST_PYENV:-$HOME/.cache/meshhost/pyenv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.meshhost-stamp"

want="$( { cat "$REQS"; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"

ready() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c '' 2>/dev/null
}

if ! ready; then
    mkdir -p "$(dirname "$VENV")"
    exec 9>"$VENV.lock"
    flock 9
    if ! ready; then # another caller may have built it while this one waited
        log="$(mktemp)"
        trap 'rm -f "$log"' EXIT
        if ! {
            rm -rf "$VENV" &&
                "$PY" -m venv "$VENV" &&
                "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQS" &&
                "$VENV/bin/python" -c 'from confluent_kafka.schema_registry.avro import AvroSerializer, AvroDeserializer'
        } >"$log" 2>&1; then
            cat "$log" >&2
            echo "pyenv: could not install $REQS into $VENV" >&2
            exit 1
        fi
        echo "$want" >"$STAMP"
    fi
fi
echo "$VENV/bin/python"
