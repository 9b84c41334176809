"""python -m tools.host.backend: the command line (cli.py)."""

import sys

from tools.host.backend.cli import main

sys.exit(main(sys.argv[1:]))
