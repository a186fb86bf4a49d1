"""The command ``manual-bptt train``: its options, and the run that writes the loss curve and a sample.

``add_train_arguments(parser)`` adds the options; ``run_train(args)`` trains, prints progress
and writes ``loss_curve.json``, ``loss_curve.png`` (when matplotlib is installed) and
``sample.txt`` into ``--out``. Exit status: 0 done, 1 training diverged, 2 bad arguments,
130 interrupted (Ctrl-C; what was done so far is written, with ``"interrupted": true``).
Numpy only: torch is never imported.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from manual_bptt.errors import integer_arg

from .data import default_text, encode
from .loop import (
    ACTIVATION,
    DEFAULT_CLIP,
    DEFAULT_HIDDEN,
    DEFAULT_LR,
    DEFAULT_SEQ_LEN,
    DEFAULT_STEPS,
    INIT_SCALE,
    SMOOTHING,
    Progress,
    TrainingInterrupted,
    TrainResult,
    train_char_lm,
)
from .optimizers import OPTIMIZERS
from .plotting import write_plot
from .sampling import sample

__all__ = [
    "DEFAULT_OUT",
    "DEFAULT_SAMPLE_LEN",
    "DESCRIPTION",
    "EXIT_DIVERGED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "JSON_NAME",
    "PNG_NAME",
    "SAMPLE_NAME",
    "add_train_arguments",
    "run_train",
]

EXIT_OK, EXIT_DIVERGED, EXIT_USAGE = 0, 1, 2
#: Exit status after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130

DEFAULT_SAMPLE_LEN = 600
DEFAULT_OUT = "train_out"
PNG_NAME = "loss_curve.png"
JSON_NAME = "loss_curve.json"
SAMPLE_NAME = "sample.txt"

#: The plain-text description shown by ``manual-bptt train --help``.
DESCRIPTION = (
    "Train a character-level language model (an Elman RNN with tanh, one-hot characters) with the "
    "hand-written gradients of manual_bptt, by chunked truncated BPTT, and write its loss curve "
    f"({JSON_NAME}, {PNG_NAME}) and a sample of generated text ({SAMPLE_NAME}) into --out. Needs numpy "
    "only (matplotlib for the plot). Ctrl-C stops training and writes what was done so far. "
    "Exit status: 0 done, 1 training diverged, 2 bad arguments, 130 interrupted."
)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``manual-bptt train`` to ``parser``."""
    parser.add_argument(
        "--text",
        metavar="FILE",
        default=None,
        help="UTF-8 training text (default: Python's own help() documentation topics, "
        "pydoc_data.topics, so no download is needed)",
    )
    parser.add_argument(
        "--hidden",
        type=int,
        default=DEFAULT_HIDDEN,
        metavar="N",
        help=f"hidden units H (default {DEFAULT_HIDDEN})",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        metavar="N",
        help=f"optimizer steps (default {DEFAULT_STEPS}, about 30-60 s on 2 cores)",
    )
    parser.add_argument(
        "--seq-len",
        type=int,
        default=DEFAULT_SEQ_LEN,
        metavar="N",
        help=f"characters per truncated-BPTT chunk T (default {DEFAULT_SEQ_LEN})",
    )
    parser.add_argument(
        "--lr", type=float, default=DEFAULT_LR, metavar="X", help=f"learning rate (default {DEFAULT_LR})"
    )
    parser.add_argument(
        "--clip",
        type=float,
        default=DEFAULT_CLIP,
        metavar="X",
        help=f"max global gradient norm, 'inf' for none (default {DEFAULT_CLIP})",
    )
    parser.add_argument(
        "--optimizer", choices=OPTIMIZERS, default="adagrad", help="optimizer (default adagrad)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        metavar="B",
        help="streams of the text trained side by side (default 1); B > 1 runs (B, H) "
        "matrix products, which a multithreaded BLAS on a busy machine can slow down "
        "badly (then set OMP_NUM_THREADS=1)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the initial weights and of the sample (default 0)"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=DEFAULT_OUT,
        help=f"output directory for {PNG_NAME}, {JSON_NAME}, {SAMPLE_NAME} (default ./{DEFAULT_OUT})",
    )
    parser.add_argument(
        "--sample-len",
        type=int,
        default=DEFAULT_SAMPLE_LEN,
        metavar="N",
        help=f"characters to sample after training (default {DEFAULT_SAMPLE_LEN})",
    )
    parser.add_argument(
        "--print-every",
        type=int,
        default=None,
        metavar="N",
        help="print progress every N steps (default: steps / 20)",
    )


def _check_args(args: argparse.Namespace) -> None:
    for name in ("hidden", "steps", "seq_len", "batch", "sample_len"):
        integer_arg("--" + name.replace("_", "-"), getattr(args, name), 1)
    if args.print_every is not None:
        integer_arg("--print-every", args.print_every, 1)
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr: expected a finite positive number, got {args.lr}")
    if not args.clip > 0:
        raise ValueError(f"--clip: expected a positive number or inf, got {args.clip}")
    if args.optimizer not in OPTIMIZERS:
        raise ValueError(f"--optimizer: expected one of {list(OPTIMIZERS)}, got {args.optimizer!r}")


def _load_text(path: str | None) -> tuple[str, str]:
    if path is None:
        return default_text()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"--text: no such file: {path}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"--text: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ValueError(f"--text: cannot read {path}: {exc.strerror or exc}") from None
    if not text:
        raise ValueError(f"--text: {path} is empty")
    return text, str(path)


def _prepare(args: argparse.Namespace) -> tuple[str, str, Path]:
    """(text, its description, the output directory, created); ValueError / OSError for bad arguments."""
    _check_args(args)
    text, source = _load_text(args.text)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a directory")
    encode(text)
    if len(text) // args.batch < args.seq_len + 1:
        raise ValueError(
            f"--text: {len(text)} characters are too few for --seq-len {args.seq_len} and "
            f"--batch {args.batch}; need at least {args.batch * (args.seq_len + 1)}"
        )
    out.mkdir(parents=True, exist_ok=True)
    return text, source, out


def _progress_printer(print_every: int):
    """The training callback that prints one line every ``print_every`` steps and at the last."""
    last = [0, 0.0]  # chars, elapsed at the previous line

    def report(pr: Progress) -> None:
        if pr.step % print_every and pr.step != pr.steps:
            return
        rate = (pr.chars - last[0]) / max(pr.elapsed - last[1], 1e-9)
        last[:] = [pr.chars, pr.elapsed]
        print(
            f"step {pr.step:>{len(str(pr.steps))}}/{pr.steps}  loss/char {pr.loss:.4f}  "
            f"smoothed {pr.smoothed:.4f}  |grad| {pr.grad_norm:8.3f}  {rate:,.0f} chars/s",
            flush=True,
        )

    return report


def _curve(args: argparse.Namespace, result: TrainResult, text: str, source: str) -> dict:
    """The content of loss_curve.json."""
    return {
        "text": source,
        "text_chars": len(text),
        "vocab_size": len(result.vocab),
        "baseline_log_K": result.baseline,
        "config": {
            "hidden": args.hidden,
            "steps": args.steps,
            "seq_len": args.seq_len,
            "batch": args.batch,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "clip": None if math.isinf(args.clip) else args.clip,
            "seed": args.seed,
            "activation": ACTIVATION,
            "init_scale": INIT_SCALE,
        },
        "unit": "nats per character",
        "smoothing": SMOOTHING,
        "chars_per_step": result.chars_per_step,
        "steps_done": result.steps_done,
        "interrupted": result.interrupted,
        "wall_time_s": round(result.elapsed, 3),
        "final_smoothed_loss": result.final_smoothed,
        "mean_loss_last_10pct": result.tail_mean,
        "loss": [round(float(v), 5) for v in result.losses],
        "smoothed_loss": [round(float(v), 5) for v in result.smoothed],
    }


def _write_outputs(
    args: argparse.Namespace, result: TrainResult, text: str, source: str, out: Path
) -> tuple[str, list[Path]]:
    """Write the sample, the JSON curve and the plot; (the sample text, the files written)."""
    seed_char = text[0]
    text_sample = seed_char + sample(result.params, result.vocab, seed_char, args.sample_len, seed=args.seed)
    (out / SAMPLE_NAME).write_text(text_sample, encoding="utf-8")
    curve = _curve(args, result, text, source)
    (out / JSON_NAME).write_text(json.dumps(curve, indent=1) + "\n", encoding="utf-8")
    title = (
        f"char-RNN H={args.hidden}, T={args.seq_len}, {args.optimizer} lr {args.lr}, "
        f"clip {args.clip}: {Path(source).name if args.text else source.split(':')[0]}"
    )
    if result.interrupted:
        title += f" (interrupted at step {result.steps_done})"
    written = [out / JSON_NAME, out / SAMPLE_NAME]
    if write_plot(out / PNG_NAME, result, title):
        written.append(out / PNG_NAME)
    return text_sample, written


def run_train(args: argparse.Namespace) -> int:
    """Run ``manual-bptt train``: EXIT_OK, EXIT_DIVERGED, EXIT_USAGE or EXIT_INTERRUPTED.

    On Ctrl-C during training, one line on stderr says so and the steps done so far are
    written like a finished run (with ``"interrupted": true`` in the JSON); on Ctrl-C before
    the first step or while writing, one line and no traceback.
    """
    try:
        try:
            text, source, out = _prepare(args)
        except (ValueError, OSError) as exc:
            print(f"manual-bptt train: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return _train_and_write(args, text, source, out)
    except KeyboardInterrupt:
        print("manual-bptt train: interrupted; nothing more written", file=sys.stderr)
        return EXIT_INTERRUPTED


def _train_and_write(args: argparse.Namespace, text: str, source: str, out: Path) -> int:
    K = len(encode(text)[0])
    clip = None if math.isinf(args.clip) else args.clip
    print(f"text: {source}: {len(text):,} characters, vocabulary K = {K}")
    print(
        f"model: H = {args.hidden}, tanh; chunked truncated BPTT, T = {args.seq_len}, batch {args.batch}; "
        f"{args.optimizer} lr {args.lr}, clip {args.clip}; {args.steps} steps, seed {args.seed}"
    )
    print(f"uniform baseline log(K) = {math.log(K):.4f} nats/char")
    try:
        result = train_char_lm(
            text,
            hidden=args.hidden,
            steps=args.steps,
            seq_len=args.seq_len,
            lr=args.lr,
            clip=clip,
            optimizer=args.optimizer,
            seed=args.seed,
            batch=args.batch,
            callback=_progress_printer(args.print_every or max(1, args.steps // 20)),
        )
    except FloatingPointError as exc:
        print(f"manual-bptt train: training diverged: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as exc:
        if exc.result is None:
            print("manual-bptt train: interrupted before the first step; nothing written", file=sys.stderr)
            return EXIT_INTERRUPTED
        result = exc.result
        print(
            f"manual-bptt train: interrupted at step {result.steps_done} of {args.steps}; "
            f"writing the results so far",
            file=sys.stderr,
        )

    text_sample, written = _write_outputs(args, result, text, source, out)
    print(f"\nsample (seed {args.seed}):\n{text_sample}\n")
    print("wrote " + ", ".join(str(p) for p in written))
    print(
        f"uniform baseline log(K) = {result.baseline:.4f} nats/char; final smoothed loss = "
        f"{result.final_smoothed:.4f} nats/char ({result.final_smoothed / result.baseline:.0%} of baseline)"
    )
    print(
        f"mean loss over the last 10% of steps {result.tail_mean:.4f} nats/char; "
        f"{result.steps_done} steps in {result.elapsed:.1f} s"
    )
    return EXIT_INTERRUPTED if result.interrupted else EXIT_OK
