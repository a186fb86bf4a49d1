"""``python -m manual_bptt_cli``: the same command line as ``manual-bptt``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m manual_bptt_cli"))
