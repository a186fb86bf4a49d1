"""A character-level language model trained with the hand-written gradients (``manual-bptt train``).

Model: the package's Elman RNN on one-hot characters, D = K = vocabulary size,

    a_t = U x_t + W s_{t-1} + b      s_t = tanh(a_t)      o_t = V s_t + c
    y_hat_t = softmax(o_t)           E_t = -log y_hat_t[x_{t+1}]   (predict the next character)

Training: chunked truncated BPTT. The text is read in consecutive chunks of T = seq_len
characters; chunk n covers positions c..c+T-1 (c = nT) with targets c+1..c+T. Its forward
pass starts from s0 = the final state of chunk n-1 (the state is carried), but s0 enters
``bptt`` as a constant, so the gradient is cut there: for every target t of the chunk the
gradient keeps exactly the terms k = c..t of

    dE_t/dθ = sum_k dE_t/ds_t ds_t/ds_k ∂s_k/∂θ        (lags t - k = 0..t-c <= T-1)

and drops every k < c. Inside a chunk it is full BPTT (``truncate=None``). When fewer than
T + 1 characters remain, reading returns to the start of the text and the state to zeros.
With ``batch`` B > 1 the text is cut into B equal contiguous streams read side by side, one
row of the (B, T) chunk each, every stream carrying its own state.

The step loss is E = sum over the chunk's B * T targets; the gradient handed to the optimizer
is that of E / B (sum over time, mean over streams: for B = 1 exactly min-char-rnn's). The
loss reported is E / (B T), in nats per character, to compare with the uniform baseline log K.

Optimizers are frozen dataclasses whose ``update`` is a pure function (params, grads, state)
-> (new params, new state); gradient clipping by global norm is part of the update, never of
the gradient function (``bptt`` returns the exact gradient).

Default text: the documentation topics that Python's ``help()`` shows (``pydoc_data.topics``,
about 465,000 characters of English prose with grammar and code excerpts in Python 3.11). It
ships with CPython, so training runs on a fresh machine without a download. Where a build
lacks ``pydoc_data``, the source of a few pure-Python stdlib modules is used instead
(``DEFAULT_FALLBACK_MODULES``). ``default_text()`` says which one was used.

This module needs numpy only; matplotlib (the ``plot`` extra) is imported only when the
loss-curve PNG is written, and the plot is skipped with a message when it is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .core import bptt, forward
from .params import RNNParams

__all__ = [
    "ACTIVATION",
    "DEFAULT_FALLBACK_MODULES",
    "OPTIMIZERS",
    "SGD",
    "Adagrad",
    "AdagradState",
    "Progress",
    "SGDState",
    "TrainResult",
    "Update",
    "add_train_arguments",
    "clip_by_global_norm",
    "default_text",
    "encode",
    "global_norm",
    "make_optimizer",
    "run_train",
    "sample",
    "train_char_lm",
]

#: The activation f of the character model.
ACTIVATION = "tanh"
#: Used for the default text when ``pydoc_data`` is missing from the Python build.
DEFAULT_FALLBACK_MODULES: tuple[str, ...] = ("argparse", "textwrap", "string", "fnmatch", "shlex")
#: The --optimizer choices.
OPTIMIZERS: tuple[str, ...] = ("adagrad", "sgd")

# Defaults of the command. DEFAULT_STEPS, measured on 2 cores with the default text: 39.5 s of CPU
# time (90 s wall clock on a machine under load average 6), final smoothed loss 1.49 nats/char
# against log K = 4.63. INIT_SCALE 0.5 beat 1.0 and 0.1 over 10,000 steps (1.66, 1.73, 2.46).
DEFAULT_HIDDEN = 100
DEFAULT_STEPS = 50_000
DEFAULT_SEQ_LEN = 25
DEFAULT_LR = 0.1
DEFAULT_CLIP = 5.0
DEFAULT_SAMPLE_LEN = 600
DEFAULT_OUT = "train_out"
#: Weight scale of RNNParams.init: U, W, V ~ N(0, INIT_SCALE^2 / fan_in).
INIT_SCALE = 0.5
#: The smoothed loss is an exponential moving average with this factor (about the last 100 steps).
SMOOTHING = 0.99

PNG_NAME = "loss_curve.png"
JSON_NAME = "loss_curve.json"
SAMPLE_NAME = "sample.txt"


# ---------------------------------------------------------------------------------------------
# Gradient clipping and optimizers: pure functions over frozen dataclasses
# ---------------------------------------------------------------------------------------------
def global_norm(grads: RNNParams) -> float:
    """sqrt(sum over every array g of grads of sum g^2), without overflow for huge entries.

    Returns inf or nan when an entry is inf or nan.
    """
    arrays = [a.ravel() for a in grads.arrays()]
    with np.errstate(over="ignore"):  # fast path: sum of g^2 (not a BLAS dot: multithreaded
        sq = sum(float(np.square(a).sum()) for a in arrays)  # level-1 BLAS crawls on a busy machine)
    if math.isfinite(sq):
        return math.sqrt(sq)
    m = max(float(np.max(np.abs(a))) for a in arrays)  # inf or nan entries, or g^2 overflowed
    if not math.isfinite(m):
        return m
    return m * math.sqrt(sum(float(np.square(a / m).sum()) for a in arrays))  # ||g|| = m ||g / m||


def clip_by_global_norm(grads: RNNParams, max_norm: float | None) -> tuple[RNNParams, float]:
    """Rescale all gradients together so that their global norm is at most ``max_norm``.

        norm = sqrt(sum_i ||g_i||^2)
        g_i <- g_i * max_norm / norm      if norm > max_norm, else unchanged

    The direction of the whole gradient is kept (unlike elementwise clipping).

    Args:
        grads: gradients U (H, D), W (H, H), V (K, H), b (H,)|None, c (K,)|None.
        max_norm: positive float; None or inf for no clipping.
    Returns:
        (clipped grads, the global norm before clipping). When that norm is not finite (an
        inf or nan gradient) nothing is rescaled and the caller gets the non-finite norm.
    """
    if max_norm is not None and not (max_norm > 0):
        raise ValueError(f"max_norm: expected a positive number or None, got {max_norm!r}")
    norm = global_norm(grads)
    if max_norm is None or not math.isfinite(norm) or not norm > max_norm:
        return grads, norm
    scale = max_norm / norm
    return RNNParams(**{name: g * scale for name, g in grads.items()}), norm


def _check_same_structure(params: RNNParams, grads: RNNParams) -> None:
    pn = [(n, a.shape) for n, a in params.items()]
    gn = [(n, a.shape) for n, a in grads.items()]
    if pn != gn:
        raise ValueError(f"grads: arrays {gn} do not match the parameters {pn}")


def _check_hyper(lr: float, clip: float | None) -> None:
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a finite positive number, got {lr!r}")
    if clip is not None and not (isinstance(clip, (int, float)) and clip > 0):
        raise ValueError(f"clip: expected a positive number, inf or None, got {clip!r}")


@dataclass(frozen=True, eq=False)
class Update:
    """The result of one optimizer update.

    Attributes:
        params: the new parameters.
        state: the new optimizer state.
        grad_norm: global norm of the gradient before clipping.
        clipped: whether the gradient was rescaled.
    """

    params: RNNParams
    state: SGDState | AdagradState
    grad_norm: float
    clipped: bool


def _clip_checked(grads: RNNParams, clip: float | None, step: int) -> tuple[RNNParams, float]:
    g, norm = clip_by_global_norm(grads, clip)
    if not math.isfinite(norm):
        raise FloatingPointError(
            f"step {step}: the gradient norm is {norm}; lower the learning rate or the clip norm"
        )
    return g, norm


@dataclass(frozen=True, eq=False)
class SGDState:
    """SGD keeps no statistics; ``step`` counts the updates done."""

    step: int = 0


@dataclass(frozen=True)
class SGD:
    """Plain gradient descent with clipping by global norm.

        g  = clip_by_global_norm(grad, clip)
        θ' = θ - lr g

    Attributes:
        lr: learning rate, > 0.   clip: max global norm, or None / inf for none.
    """

    lr: float
    clip: float | None = None

    def __post_init__(self) -> None:
        _check_hyper(self.lr, self.clip)

    def init(self, params: RNNParams) -> SGDState:
        """The state before the first update."""
        return SGDState(step=0)

    def update(self, params: RNNParams, grads: RNNParams, state: SGDState) -> Update:
        """One step; pure: the arguments are not changed."""
        _check_same_structure(params, grads)
        g, norm = _clip_checked(grads, self.clip, state.step)
        new = {name: p - self.lr * g_ for (name, p), (_, g_) in zip(params.items(), g.items(), strict=True)}
        return Update(RNNParams(**new), SGDState(step=state.step + 1), norm, g is not grads)


@dataclass(frozen=True, eq=False)
class AdagradState:
    """Adagrad's per-parameter sum of squared (clipped) gradients.

    Attributes:
        step: the updates done.
        sum_sq: G = sum over past updates of g * g, the same arrays as the parameters.
    """

    step: int
    sum_sq: RNNParams


@dataclass(frozen=True)
class Adagrad:
    """Adagrad with clipping by global norm, as in min-char-rnn.

        g  = clip_by_global_norm(grad, clip)
        G' = G + g * g                       (elementwise, G = 0 before the first update)
        θ' = θ - lr g / sqrt(G' + eps)

    Attributes:
        lr: learning rate, > 0.   clip: max global norm, or None / inf for none.
        eps: added inside the square root, > 0.
    """

    lr: float
    clip: float | None = None
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _check_hyper(self.lr, self.clip)
        if not (isinstance(self.eps, (int, float)) and self.eps > 0):
            raise ValueError(f"eps: expected a positive number, got {self.eps!r}")

    def init(self, params: RNNParams) -> AdagradState:
        """The state before the first update: G = 0."""
        return AdagradState(step=0, sum_sq=RNNParams(**{n: np.zeros_like(a) for n, a in params.items()}))

    def update(self, params: RNNParams, grads: RNNParams, state: AdagradState) -> Update:
        """One step; pure: the arguments are not changed."""
        _check_same_structure(params, grads)
        _check_same_structure(params, state.sum_sq)
        g, norm = _clip_checked(grads, self.clip, state.step)
        new_G, new_p = {}, {}
        for (name, p), (_, g_), (_, G) in zip(params.items(), g.items(), state.sum_sq.items(), strict=True):
            G2 = np.multiply(g_, g_)
            G2 += G  # G' = G + g^2
            step = np.add(G2, self.eps)
            np.sqrt(step, out=step)
            np.divide(g_, step, out=step)
            step *= self.lr  # lr g / sqrt(G' + eps)
            new_G[name], new_p[name] = G2, np.subtract(p, step, out=step)  # θ' = θ - lr g / sqrt(G' + eps)
        new_state = AdagradState(step=state.step + 1, sum_sq=RNNParams(**new_G))
        return Update(RNNParams(**new_p), new_state, norm, g is not grads)


def make_optimizer(name: str, *, lr: float, clip: float | None) -> SGD | Adagrad:
    """The optimizer named ``name`` (one of OPTIMIZERS)."""
    if name == "adagrad":
        return Adagrad(lr=lr, clip=clip)
    if name == "sgd":
        return SGD(lr=lr, clip=clip)
    raise ValueError(f"optimizer: expected one of {list(OPTIMIZERS)}, got {name!r}")


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------
def default_text() -> tuple[str, str]:
    """(text, description) of the training text that ships with Python itself.

    The documentation topics of ``pydoc_data.topics`` (what ``help("assert")`` etc. print),
    joined in sorted topic order; if that module is missing, the source of the stdlib modules
    DEFAULT_FALLBACK_MODULES, concatenated.
    """
    version = ".".join(map(str, sys.version_info[:3]))
    try:
        from pydoc_data.topics import topics
    except ImportError:
        topics = None
    if isinstance(topics, dict) and topics and all(isinstance(v, str) for v in topics.values()):
        text = "\n\n".join(topics[k] for k in sorted(topics))
        return text, (
            f"pydoc_data.topics: the {len(topics)} documentation topics shown by help(), "
            f"from Python {version}"
        )
    parts, used = [], []
    for name in DEFAULT_FALLBACK_MODULES:
        spec = importlib.util.find_spec(name)
        loader = None if spec is None else spec.loader
        src = loader.get_source(name) if loader is not None and hasattr(loader, "get_source") else None
        if src:
            parts.append(src)
            used.append(name)
    if not parts:
        raise RuntimeError("no default text: neither pydoc_data nor the stdlib sources are available")
    return "\n\n".join(parts), f"source of the stdlib modules {', '.join(used)} of Python {version}"


def encode(text: str) -> tuple[str, np.ndarray]:
    """(vocab, ids): vocab is the sorted distinct characters of ``text`` (character i has id
    i), ids the (N,) int64 id of each character of ``text``."""
    if not isinstance(text, str) or not text:
        raise ValueError("text: expected a non-empty str")
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    vocab_codes = np.unique(codes)  # sorted
    ids = np.searchsorted(vocab_codes, codes).astype(np.int64)
    vocab = "".join(map(chr, vocab_codes.tolist()))
    return vocab, ids


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    """What the training callback receives after every step.

    Attributes:
        step: steps done (1..steps).  steps: steps in total.
        loss: this step's loss, nats per character.  smoothed: the smoothed loss.
        grad_norm: global gradient norm before clipping.  chars: characters trained on so far.
        elapsed: seconds since training started.
    """

    step: int
    steps: int
    loss: float
    smoothed: float
    grad_norm: float
    chars: int
    elapsed: float


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What ``train_char_lm`` returns.

    Attributes:
        params: trained parameters, U (H, K), W (H, H), V (K, H), b (H,), c (K,).
        vocab: the sorted distinct characters of the text; character i has id i (K = len(vocab)).
        losses: (steps,) loss of each step, nats per character (read-only).
        smoothed: (steps,) bias-corrected exponential moving average of ``losses`` with factor
            SMOOTHING, i.e. roughly the mean of the last 100 steps (read-only).
        baseline: log K, the loss per character of the uniform prediction.
        chars_per_step: B * T.
        elapsed: wall time of the training loop, seconds.
    """

    params: RNNParams
    vocab: str
    losses: np.ndarray
    smoothed: np.ndarray
    baseline: float
    chars_per_step: int
    elapsed: float

    @property
    def final_smoothed(self) -> float:
        """The smoothed loss after the last step."""
        return float(self.smoothed[-1])

    @property
    def tail_mean(self) -> float:
        """The mean loss over the last 10% of the steps (at least one): steadier than
        final_smoothed when the text mixes easy and hard passages."""
        return float(np.mean(self.losses[-max(1, len(self.losses) // 10) :]))


def _positive_int(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return int(v)


def train_char_lm(
    text: str,
    *,
    hidden: int = DEFAULT_HIDDEN,
    steps: int = DEFAULT_STEPS,
    seq_len: int = DEFAULT_SEQ_LEN,
    lr: float = DEFAULT_LR,
    clip: float | None = DEFAULT_CLIP,
    optimizer: str = "adagrad",
    seed: int | None = 0,
    batch: int = 1,
    params: RNNParams | None = None,
    init_scale: float = INIT_SCALE,
    callback: Callable[[Progress], None] | None = None,
) -> TrainResult:
    """Train the character model on ``text`` by chunked truncated BPTT (see the module doc).

    Args:
        text: the training text, at least batch * (seq_len + 1) characters.
        hidden: H.  steps: optimizer updates.  seq_len: T, characters per chunk.
        lr, clip, optimizer: see Adagrad / SGD; clip None or inf for no clipping.
        seed: seed of the initial parameters (ignored when ``params`` is given).
        batch: B, streams read side by side.
        params: start from these (U (H, K), W (H, H), V (K, H), b, c with K = the text's
            vocabulary size) instead of a random init.
        init_scale: weight_scale of RNNParams.init.
        callback: called with a Progress after every step.

    Raises:
        ValueError for bad arguments; FloatingPointError when the gradient becomes non-finite.
    """
    sizes = (("hidden", hidden), ("steps", steps), ("seq_len", seq_len), ("batch", batch))
    hidden, steps, T, B = (_positive_int(n, v) for n, v in sizes)
    opt = make_optimizer(optimizer, lr=lr, clip=clip)
    vocab, ids = encode(text)
    K = len(vocab)
    L = len(ids) // B  # characters per stream
    if L < T + 1:
        raise ValueError(
            f"text: {len(ids)} characters are too few for seq_len {T} and batch {B}; "
            f"need at least batch * (seq_len + 1) = {B * (T + 1)}"
        )
    streams = ids[: B * L].reshape(B, L)  # stream b = characters bL .. (b+1)L - 1
    if params is None:
        params = RNNParams.init(K, hidden, K, seed=seed, weight_scale=init_scale)
    elif params.input_size != K or params.output_size != K:
        raise ValueError(
            f"params: D = {params.input_size}, K = {params.output_size}, but the text has {K} characters"
        )
    state = opt.init(params)

    losses = np.empty(steps)
    smoothed = np.empty(steps)
    ema = 0.0
    s = None  # carried state, (H,) or (B, H); None = zeros
    pos = 0  # position of the chunk in every stream
    t0 = time.perf_counter()
    for n in range(steps):
        if pos + T + 1 > L:  # end of the text: back to the start, state to zeros
            pos, s = 0, None
        xs = streams[:, pos : pos + T]  # inputs x_c .. x_{c+T-1}, (B, T)
        ys = streams[:, pos + 1 : pos + T + 1]  # targets x_{c+1} .. x_{c+T}
        if B == 1:
            xs, ys = xs[0], ys[0]
        # s0 = carried state, a constant to bptt: the gradient is cut at the chunk start
        r = bptt(params, xs, ys, activation=ACTIVATION, s0=s)
        grads = r.grads if B == 1 else RNNParams(**{k: g / B for k, g in r.grads.items()})  # d(E/B)
        upd = opt.update(params, grads, state)
        params, state, s = upd.params, upd.state, r.final_state
        pos += T

        loss = r.loss / (B * T)  # nats per character
        if not math.isfinite(loss):
            raise FloatingPointError(f"step {n}: the loss is {loss}; lower the learning rate")
        ema = SMOOTHING * ema + (1 - SMOOTHING) * loss
        losses[n] = loss
        smoothed[n] = ema / (1 - SMOOTHING ** (n + 1))  # bias correction of the zero start
        if callback is not None:
            callback(
                Progress(
                    step=n + 1,
                    steps=steps,
                    loss=loss,
                    smoothed=float(smoothed[n]),
                    grad_norm=upd.grad_norm,
                    chars=(n + 1) * B * T,
                    elapsed=time.perf_counter() - t0,
                )
            )
    return TrainResult(
        params=params,
        vocab=vocab,
        losses=_frozen(losses),
        smoothed=_frozen(smoothed),
        baseline=math.log(K),
        chars_per_step=B * T,
        elapsed=time.perf_counter() - t0,
    )


def sample(
    params: RNNParams,
    vocab: str,
    seed_char: str,
    n: int,
    *,
    seed: int | None,
    s0: np.ndarray | None = None,
) -> str:
    """Sample ``n`` characters from the model, following ``seed_char``.

    x_0 = seed_char; for t = 0..n-1: s_t = f(U x_t + W s_{t-1} + b), x_{t+1} ~ softmax(V s_t + c).

    Args:
        params: U (H, K), W (H, H), V (K, H), b, c with K = len(vocab).
        vocab: character i has id i.   seed_char: one character of vocab.
        n: characters to sample, >= 0.   seed: seed of the numpy Generator.
        s0: (H,) state before seed_char; None for zeros.
    Returns:
        The n sampled characters (seed_char not included).
    """
    if params.input_size != len(vocab) or params.output_size != len(vocab):
        raise ValueError(
            f"vocab: {len(vocab)} characters, but params have D = {params.input_size}, "
            f"K = {params.output_size}"
        )
    if not isinstance(seed_char, str) or len(seed_char) != 1 or seed_char not in vocab:
        raise ValueError(f"seed_char: expected one character of the vocabulary, got {seed_char!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n: expected an integer >= 0, got {n!r}")
    rng = np.random.default_rng(seed)
    x, s, out = vocab.index(seed_char), s0, []
    for _ in range(n):
        fr = forward(params, np.array([x]), activation=ACTIVATION, s0=s)
        cdf = np.cumsum(fr.y_hat[0])
        x = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(vocab) - 1)
        s = fr.final_state
        out.append(vocab[x])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------
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
        _positive_int("--" + name.replace("_", "-"), getattr(args, name))
    if args.print_every is not None:
        _positive_int("--print-every", args.print_every)
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


def write_plot(path: Path, result: TrainResult, title: str) -> bool:
    """Write the loss curve PNG; False (with a message on stderr) when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure  # object API: no pyplot, no global backend change
    except ImportError:
        print(
            'matplotlib is not installed: loss-curve plot skipped (pip install "manual-bptt[plot]")',
            file=sys.stderr,
        )
        return False
    steps = np.arange(1, len(result.losses) + 1)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    ax.plot(steps, result.losses, lw=0.5, alpha=0.3, color="tab:blue", label="loss per step")
    ax.plot(steps, result.smoothed, lw=1.5, color="tab:blue", label="smoothed")
    ax.axhline(result.baseline, ls="--", color="gray", label=f"uniform log K = {result.baseline:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_ylim(0, max(result.baseline, float(np.max(result.smoothed))) * 1.1)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def run_train(args: argparse.Namespace) -> int:
    """Run ``manual-bptt train``; 0 on success, 2 for bad arguments, 1 if training diverged."""
    try:
        _check_args(args)
        text, source = _load_text(args.text)
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out: {out} exists and is not a directory")
        vocab, _ = encode(text)
        if len(text) // args.batch < args.seq_len + 1:
            raise ValueError(
                f"--text: {len(text)} characters are too few for --seq-len {args.seq_len} and "
                f"--batch {args.batch}; need at least {args.batch * (args.seq_len + 1)}"
            )
        out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:
        print(f"manual-bptt train: error: {exc}", file=sys.stderr)
        return 2

    K = len(vocab)
    clip = None if math.isinf(args.clip) else args.clip
    print_every = args.print_every or max(1, args.steps // 20)
    print(f"text: {source}: {len(text):,} characters, vocabulary K = {K}")
    print(
        f"model: H = {args.hidden}, tanh; chunked truncated BPTT, T = {args.seq_len}, batch {args.batch}; "
        f"{args.optimizer} lr {args.lr}, clip {args.clip}; {args.steps} steps, seed {args.seed}"
    )
    print(f"uniform baseline log(K) = {math.log(K):.4f} nats/char")
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
            callback=report,
        )
    except FloatingPointError as exc:
        print(f"manual-bptt train: training diverged: {exc}", file=sys.stderr)
        return 1

    seed_char = text[0]
    text_sample = seed_char + sample(result.params, result.vocab, seed_char, args.sample_len, seed=args.seed)
    (out / SAMPLE_NAME).write_text(text_sample, encoding="utf-8")
    curve = {
        "text": source,
        "text_chars": len(text),
        "vocab_size": K,
        "baseline_log_K": result.baseline,
        "config": {
            "hidden": args.hidden,
            "steps": args.steps,
            "seq_len": args.seq_len,
            "batch": args.batch,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "clip": clip,
            "seed": args.seed,
            "activation": ACTIVATION,
            "init_scale": INIT_SCALE,
        },
        "unit": "nats per character",
        "smoothing": SMOOTHING,
        "chars_per_step": result.chars_per_step,
        "wall_time_s": round(result.elapsed, 3),
        "final_smoothed_loss": result.final_smoothed,
        "mean_loss_last_10pct": result.tail_mean,
        "loss": [round(float(v), 5) for v in result.losses],
        "smoothed_loss": [round(float(v), 5) for v in result.smoothed],
    }
    (out / JSON_NAME).write_text(json.dumps(curve, indent=1) + "\n", encoding="utf-8")
    title = (
        f"char-RNN H={args.hidden}, T={args.seq_len}, {args.optimizer} lr {args.lr}, "
        f"clip {args.clip}: {Path(source).name if args.text else source.split(':')[0]}"
    )
    plotted = write_plot(out / PNG_NAME, result, title)

    print(f"\nsample (seed {args.seed}):\n{text_sample}\n")
    print(f"wrote {out / JSON_NAME}, {out / SAMPLE_NAME}" + (f", {out / PNG_NAME}" if plotted else ""))
    print(
        f"uniform baseline log(K) = {result.baseline:.4f} nats/char; final smoothed loss = "
        f"{result.final_smoothed:.4f} nats/char ({result.final_smoothed / result.baseline:.0%} of baseline)"
    )
    print(
        f"mean loss over the last 10% of steps {result.tail_mean:.4f} nats/char; "
        f"{args.steps} steps in {result.elapsed:.1f} s"
    )
    return 0
