"""bptt_train: a character-level language model trained with manual_bptt's hand-written gradients.

A demonstration that the gradients train a real model, apart from the numpy core. Modules:

    optimizers   SGD and Adagrad as pure updates, clipping by global norm
    data         the default text (shipped with Python) and its encoding as character ids
    loop         train_char_lm (chunked truncated BPTT), TrainResult, Progress
    sampling     sample characters from a trained model
    plotting     the loss-curve PNG (matplotlib, imported only when a plot is written)
    cli          the options and the run of ``manual-bptt train``

Depends on numpy and manual_bptt only (matplotlib optionally); never imports torch.
"""

from .data import DEFAULT_FALLBACK_MODULES, default_text, encode
from .loop import ACTIVATION, INIT_SCALE, SMOOTHING, Progress, TrainingInterrupted, TrainResult, train_char_lm
from .optimizers import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    AdagradState,
    SGDState,
    Update,
    clip_by_global_norm,
    global_norm,
    make_optimizer,
)
from .plotting import write_plot
from .sampling import sample

__all__ = [
    "ACTIVATION",
    "DEFAULT_FALLBACK_MODULES",
    "INIT_SCALE",
    "OPTIMIZERS",
    "SGD",
    "SMOOTHING",
    "Adagrad",
    "AdagradState",
    "Progress",
    "SGDState",
    "TrainResult",
    "TrainingInterrupted",
    "Update",
    "clip_by_global_norm",
    "default_text",
    "encode",
    "global_norm",
    "make_optimizer",
    "sample",
    "train_char_lm",
    "write_plot",
]
