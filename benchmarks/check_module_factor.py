"""The measurements behind check_module's FACTOR: at a lower dtype, how far torch's own nn.RNN / nn.GRU /
nn.LSTM is from the float64 reference, and how far correct hand-written layers (tests/user_modules.py)
are from it relative to that baseline (the ratio the verdict bounds), beside a float16-accumulating one.

    python benchmarks/check_module_factor.py [--dtype float32] [--configs 200]

Runs in this process (no isolation: the modules are ours). Prints, per cell and array, the median and
the largest relative error of the baseline, and the largest ratio of each module.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import user_modules
from bptt_report.judge.compare import compare_module_arrays
from bptt_report.module import cases
from bptt_report.module import worker as mw


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--configs", type=int, default=200)
    args = ap.parse_args()
    modules = {
        "rnn": {
            "correct_rnn": user_modules.correct_rnn,
            "rnn_float16_accumulation": user_modules.rnn_float16_accumulation,
        },
        "gru": {"correct_gru": user_modules.correct_gru},
        "lstm": {"correct_lstm": user_modules.correct_lstm},
    }
    for cell, facts in modules.items():
        settings = {"cell": cell, "dtype": args.dtype, "device": "cpu"}
        rng = np.random.default_rng(0)
        base_rel: dict[str, list[float]] = {}
        ratios: dict[str, dict[str, list[float]]] = {name: {} for name in facts}
        for i in range(args.configs):
            case = cases.draw_case(rng, cell, args.dtype, quick=False, bias=(i % 4 != 3))
            case["repeat"] = False
            ref = cases.reference(cell, "tanh", case)
            base = cases.baseline(cell, "tanh", settings, case)
            for name, fact in facts.items():
                arrays, _, _ = mw.call(mw.build(fact, settings, case), settings, case)
                for e in compare_module_arrays(arrays, ref, base, args.dtype):
                    ratios[name].setdefault(e.name, []).append(e.ratio)
                    if name == next(iter(facts)):
                        base_rel.setdefault(e.name, []).append(e.baseline_rel_error)
        print(f"## {cell} at {args.dtype}, {args.configs} configurations")
        print(
            "| array | baseline rel. error median | max | "
            + " | ".join(f"{n} max ratio" for n in facts)
            + " |"
        )
        for a, v in base_rel.items():
            cols = " | ".join(f"{max(ratios[n][a]):.2f}" for n in facts)
            print(f"| {a} | {np.median(v):.2e} | {max(v):.2e} | {cols} |")


if __name__ == "__main__":
    main()
