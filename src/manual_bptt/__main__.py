"""Program entry point of ``python -m manual_bptt``; not part of the library (never imported by it).

A tiny dispatcher:

    python -m manual_bptt train ...     the numpy-only training loop, manual_bptt.train
    python -m manual_bptt report ...    (and anything else) the command line of bptt_report,
                                        the same as ``manual-bptt ...``

bptt_report uses PyTorch, so it is imported only here, by name and only when needed: this
module imports nothing but the standard library when it is imported, and ``train`` never
loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

PROG = "python -m manual_bptt"


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default: sys.argv[1:]) to train or to bptt_report.cli; the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["train"]:
        train = importlib.import_module("manual_bptt.train")  # numpy only
        parser = argparse.ArgumentParser(prog=f"{PROG} train", description="Train an RNN with manual_bptt.")
        train.add_train_arguments(parser)
        try:
            ns = parser.parse_args(args[1:])
        except SystemExit as exc:  # --help (0) or a usage error (2)
            return exc.code if isinstance(exc.code, int) else 2
        return int(train.run_train(ns))
    cli = importlib.import_module("bptt_report.cli")
    return int(cli.main(args, prog=PROG))


if __name__ == "__main__":
    sys.exit(main())
