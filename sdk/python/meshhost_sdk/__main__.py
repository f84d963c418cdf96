"""``python -m meshhost_sdk build app.py -o plugin.wasm``"""

import sys

from .build import main

if len(sys.argv) < 2 or sys.argv[1] != "build":
    sys.exit("usage: python -m meshhost_sdk build APP.py [-o plugin.wasm] [--class NAME] [--wit DIR]")
main(sys.argv[2:])
