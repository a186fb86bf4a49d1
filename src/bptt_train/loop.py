"""Training the character-level model by chunked truncated BPTT: train_char_lm, TrainResult, Progress.

Model: manual_bptt's Elman RNN on one-hot characters, D = K = vocabulary size,

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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from manual_bptt import RNNParams, bptt
from manual_bptt.errors import integer_arg

from .data import encode
from .optimizers import make_optimizer

__all__ = [
    "ACTIVATION",
    "DEFAULT_CLIP",
    "DEFAULT_HIDDEN",
    "DEFAULT_LR",
    "DEFAULT_SEQ_LEN",
    "DEFAULT_STEPS",
    "INIT_SCALE",
    "SMOOTHING",
    "Progress",
    "TrainResult",
    "TrainingInterrupted",
    "train_char_lm",
]

#: The activation f of the character model.
ACTIVATION = "tanh"

# Defaults of the command. DEFAULT_STEPS, measured on 2 cores with the default text: 39.5 s of CPU
# time (90 s wall clock on a machine under load average 6), final smoothed loss 1.49 nats/char
# against log K = 4.63. INIT_SCALE 0.5 beat 1.0 and 0.1 over 10,000 steps (1.66, 1.73, 2.46).
DEFAULT_HIDDEN = 100
DEFAULT_STEPS = 50_000
DEFAULT_SEQ_LEN = 25
DEFAULT_LR = 0.1
DEFAULT_CLIP = 5.0
#: Weight scale of RNNParams.init: U, W, V ~ N(0, INIT_SCALE^2 / fan_in).
INIT_SCALE = 0.5
#: The smoothed loss is an exponential moving average with this factor (about the last 100 steps).
SMOOTHING = 0.99


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
        interrupted: True when training was stopped (Ctrl-C) before ``steps``; then
            ``losses`` and ``smoothed`` hold the steps done and ``params`` are those after
            the last of them.
    """

    params: RNNParams
    vocab: str
    losses: np.ndarray
    smoothed: np.ndarray
    baseline: float
    chars_per_step: int
    elapsed: float
    interrupted: bool = False

    @property
    def steps_done(self) -> int:
        """The optimizer steps that were done."""
        return len(self.losses)

    @property
    def final_smoothed(self) -> float:
        """The smoothed loss after the last step."""
        return float(self.smoothed[-1])

    @property
    def tail_mean(self) -> float:
        """The mean loss over the last 10% of the steps (at least one): steadier than
        final_smoothed when the text mixes easy and hard passages."""
        return float(np.mean(self.losses[-max(1, len(self.losses) // 10) :]))


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C, or a KeyboardInterrupt raised by the callback).

    A KeyboardInterrupt, so that a caller who does not look for it stops as before; one who
    does finds what was done so far.

    Attributes:
        result: a TrainResult with ``interrupted=True`` over the steps done, or None when the
            interruption came before the first step was done.
        steps: the steps that were asked for.
    """

    def __init__(self, result: TrainResult | None, steps: int) -> None:
        done = 0 if result is None else result.steps_done
        super().__init__(f"training interrupted after {done} of {steps} steps")
        self.result = result
        self.steps = steps


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
        ValueError for bad arguments; FloatingPointError when the gradient becomes non-finite;
        TrainingInterrupted (a KeyboardInterrupt) on Ctrl-C or a KeyboardInterrupt from
        ``callback``, carrying the result of the steps done.
    """
    sizes = (("hidden", hidden), ("steps", steps), ("seq_len", seq_len), ("batch", batch))
    hidden, steps, T, B = (integer_arg(n, v, 1) for n, v in sizes)
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
    done = 0  # steps whose update and loss are both recorded
    try:
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
            loss = r.loss / (B * T)  # nats per character
            if not math.isfinite(loss):
                raise FloatingPointError(f"step {n}: the loss is {loss}; lower the learning rate")
            ema = SMOOTHING * ema + (1 - SMOOTHING) * loss
            losses[n] = loss
            smoothed[n] = ema / (1 - SMOOTHING ** (n + 1))  # bias correction of the zero start
            params, state, s, done = upd.params, upd.state, r.final_state, n + 1
            pos += T
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
    except KeyboardInterrupt as exc:
        partial = None
        if done:
            partial = TrainResult(
                params=params,
                vocab=vocab,
                losses=_frozen(losses[:done]),
                smoothed=_frozen(smoothed[:done]),
                baseline=math.log(K),
                chars_per_step=B * T,
                elapsed=time.perf_counter() - t0,
                interrupted=True,
            )
        raise TrainingInterrupted(partial, steps) from exc
    return TrainResult(
        params=params,
        vocab=vocab,
        losses=_frozen(losses),
        smoothed=_frozen(smoothed),
        baseline=math.log(K),
        chars_per_step=B * T,
        elapsed=time.perf_counter() - t0,
    )
