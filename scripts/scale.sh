#!/usr/bin/env bash
# Scale-out figures (README "Running on several machines"): throughput of 1, 2 and 3 instances
# and the failover time after a SIGKILL. Starts its own broker on port 19096, builds meshhost in
# release. About 3 minutes on 2 cores.
#   scripts/scale.sh [--records N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
PORT="${MESHHOST_SCALE_PORT:-19096}"
PYTHON="$(scripts/pyenv.sh)"
scripts/broker.sh start "$PORT"
trap 'scripts/broker.sh stop "$PORT"' EXIT
cargo build --release -p meshhost
TARGET="${CARGO_TARGET_DIR:-target}"
"$PYTHON" scripts/scale.py --broker "127.0.0.1:$PORT" --meshhost "$TARGET/release/meshhost" "$@"
