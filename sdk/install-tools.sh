#!/usr/bin/env bash
# Install the build tools of the Python and JavaScript guest SDKs, when missing or outdated:
# - componentize-py (PyPI), in a virtual environment at target/sdk-tools/venv
#   (or $MESHHOST_SDK_TOOLS/venv);
# - componentize-js and rolldown (npm), in sdk/js/node_modules, as sdk/js/package-lock.json pins;
# - weval, which compiles JavaScript components ahead of time, into ~/.cargo/bin.
# Idempotent and quiet when everything is there. scripts/setup.sh runs it; so do the tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COMPONENTIZE_PY=0.25.1
TOOLS="${MESHHOST_SDK_TOOLS:-target/sdk-tools}"
VENV="$TOOLS/venv"
if [ "$("$VENV/bin/componentize-py" --version 2>/dev/null)" != "componentize-py $COMPONENTIZE_PY" ]; then
    echo "sdk: installing componentize-py $COMPONENTIZE_PY into $VENV"
    mkdir -p "$TOOLS"
    python3 -m venv --clear "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY"
fi

# node_modules is current when it was installed from the lock file as it is now.
STAMP=sdk/js/node_modules/.meshhost-lock.sha256
LOCK_SUM="$(sha256sum sdk/js/package-lock.json sdk/js/package.json | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$LOCK_SUM" ]; then
    echo "sdk: installing the JavaScript SDK's tools (npm ci in sdk/js)"
    (cd sdk/js && npm ci --no-audit --no-fund --loglevel=error)
    echo "$LOCK_SUM" > "$STAMP"
fi

# weval (the version componentize-js pins: host/src/authoring/tools.rs WEVAL). Its npm package
# would download it from GitHub on first use; built from crates.io instead, it needs only the
# registry (~6 minutes, once). `meshhost plugin build` finds it on PATH.
WEVAL=0.5.0
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(weval --version 2>/dev/null)" != "weval $WEVAL" ]; then
    echo "sdk: installing weval $WEVAL (cargo install, once)"
    cargo install weval --version "$WEVAL" --locked --quiet
fi
