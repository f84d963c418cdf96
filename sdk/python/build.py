#!/usr/bin/env python3
"""Build a Python meshhost processor into a component:

    python3 sdk/python/build.py app.py -o plugin.wasm [--class NAME] [--wit DIR]

Any python3 works: componentize-py is taken from this Python, from the tools venv that
scripts/setup.sh installs (target/sdk-tools/venv), or from PATH.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from meshhost_sdk.build import main  # noqa: E402

main()
