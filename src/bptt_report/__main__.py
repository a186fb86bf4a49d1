"""``python -m bptt_report``: the same command line as ``manual-bptt``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m bptt_report"))
