"""The implementation under test: its contract, loading it by name, what it supports, calling it.

A target is any callable with manual_bptt.bptt's signature,

    target(p, xs, ys, *, activation="tanh", s0=None, truncate=None, reduction="sum", mask=None)

returning an object with ``.loss`` and ``.grads`` (U, W, V, b, c as attributes or keys), and
optionally ``.ds0`` and ``.dxs``, which are checked when present. Only the keywords that
differ from their defaults are passed.

The cells. ``p`` is an RNNParams (the Elman cell), a GRUParams or an LSTMParams, as for
manual_bptt.bptt. For a gated cell the target never receives ``activation``, its grads are
U, W, b_ih, b_hh, V, c, and for the LSTM s0 is an LSTMState(h, c) and ds0 a pair (dh0, dc0)
(``.h`` / ``.c``, or a 2-tuple). A target that raises NotImplementedError (or TypeError) for
a params type does not support that cell: it is listed as unsupported, not failing.

What it supports. A target may declare it with a ``bptt_supports`` attribute (a dict; every
key optional):

    target.bptt_supports = {
        "inputs": ["tokens (T,)", "tokens (B, T)", "dense (T, D)", "dense (B, T, D)"],
        "options": ["s0", "truncate", "mask", "reduction=mean"],
        "activations": ["tanh", "sigmoid", "relu", "identity"],
        "dtypes": ["float64"],
        "cells": ["rnn", "gru", "lstm"],
    }

A declared key is taken as it is (validated: an unknown name is a usage error). Each feature
not declared is probed once on a tiny case before the sweep (bptt_report.targets.probe): each
input form on the cell's smallest case (no biases, no options), then biases (b, c: always
probed; a target may support only b = c = None), each option and each activation on the first
form it takes. A feature is unsupported when the keyword is not in the signature, or when the
call raises NotImplementedError (or a TypeError naming the keyword; for a cell, any TypeError
on every input form); any other outcome counts as supported, so the sweep checks it (an
exception there is a failure, with its traceback). On a cell not asked for by name (the
default, every cell) an input form whose probe raises anything is unsupported, shown with the
exception, unless the target then supports no cell at all. The sweep is then drawn inside what
is supported. The checker compares float64 only: a target without "float64" in its dtypes
cannot be checked.

The calls themselves run only in worker processes (bptt_report.targets.worker). numpy only.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from manual_bptt import ACTIVATIONS as _ACTIVATIONS
from manual_bptt.problems import Problem, RNNConfig, make_problem

from ..cells import CELLS, cell_of_params
from ..errors import BadResult, TargetError, Unsupported

#: The keywords of manual_bptt.bptt and their defaults.
DEFAULTS: dict[str, Any] = {
    "activation": "tanh",
    "s0": None,
    "truncate": None,
    "reduction": "sum",
    "mask": None,
}
#: The target checked when none is given.
DEFAULT_TARGET = "manual_bptt:bptt"
#: The attribute by which a target declares what it supports.
DECLARATION = "bptt_supports"

#: Input forms, as named in reports, and as (token ids, batched).
FORMS: dict[str, tuple[bool, bool]] = {
    "tokens (T,)": (True, False),
    "tokens (B, T)": (True, True),
    "dense (T, D)": (False, False),
    "dense (B, T, D)": (False, True),
}
#: Options and the keyword each needs.
OPTIONS: dict[str, str] = {"s0": "s0", "truncate": "truncate", "mask": "mask", "reduction=mean": "reduction"}
#: The feature of the parameters with biases (b, c; a gated cell's b_ih, b_hh, c), always
#: probed: a target may support only b = c = None.
BIAS = "bias"
#: The Elman cell's activations (manual_bptt's).
ACTIVATIONS: tuple[str, ...] = tuple(_ACTIVATIONS)
#: The dtypes a target may declare (the checker compares float64 only).
TARGET_DTYPES = ("float64", "float32")
#: The gradient fields of each cell's parameters, in report order.
PARAM_FIELDS: dict[str, tuple[str, ...]] = {
    "rnn": ("U", "W", "V", "b", "c"),
    "gru": ("U", "W", "b_ih", "b_hh", "V", "c"),
    "lstm": ("U", "W", "b_ih", "b_hh", "V", "c"),
}
#: Declaration key -> the names it may list.
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "inputs": tuple(FORMS),
    "options": tuple(OPTIONS),
    "activations": ACTIVATIONS,
    "dtypes": TARGET_DTYPES,
    "cells": CELLS,
}

_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


@dataclass(frozen=True)
class TargetOutput:
    """What was read from one call of the target.

    Attributes:
        loss: the loss as returned (normally a float).
        grads: the cell's parameter names (PARAM_FIELDS) -> array or None.
        ds0, dxs: the arrays, or None when the result has no such attribute (or it is None);
            for the LSTM ds0 is a pair (dh0, dc0).
    """

    loss: Any
    grads: dict[str, Any]
    ds0: Any
    dxs: Any


@dataclass(frozen=True)
class Capabilities:
    """What a target supports, and why each missing feature is missing.

    Attributes:
        forms: supported input forms (keys of FORMS).  options: supported options (keys of
            OPTIONS).  activations: supported activations.  dtypes: declared dtypes.
        unsupported: feature -> why it is not supported ("not in the signature", "declared",
            "raised NotImplementedError: ...").
        sources: feature -> how support was established ("declared", "probed", "signature").
        cell: the cell these capabilities are for ("rnn", "gru", "lstm"); a gated cell has no
            activations.
        bias: whether it takes parameters with biases (b and c, or b_ih, b_hh and c); without,
            only b = c = None (``unsupported["bias"]`` says why).
        declined: input forms unsupported only because their probe raised on a cell not asked
            for by name (targets.probe).
    """

    forms: tuple[str, ...]
    options: tuple[str, ...]
    activations: tuple[str, ...]
    dtypes: tuple[str, ...] = ("float64",)
    unsupported: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    cell: str = "rnn"
    bias: bool = True
    declined: tuple[str, ...] = ()

    @property
    def checkable(self) -> bool:
        """Whether anything can be checked: a form, an activation (the Elman cell), and float64."""
        acts = bool(self.activations) or self.cell != "rnn"
        return bool(self.forms) and acts and "float64" in self.dtypes

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "inputs": list(self.forms),
            "options": list(self.options),
            "activations": list(self.activations),
            "dtypes": list(self.dtypes),
            "bias": self.bias,
            "unsupported": dict(self.unsupported),
            "sources": dict(self.sources),
        }


#: Everything manual_bptt.bptt supports (the Elman cell).
FULL_SUPPORT = Capabilities(tuple(FORMS), tuple(OPTIONS), ACTIVATIONS)


def full_support(cell: str) -> Capabilities:
    """Everything manual_bptt.bptt supports for ``cell``."""
    if cell == "rnn":
        return FULL_SUPPORT
    return Capabilities(tuple(FORMS), tuple(OPTIONS), (), cell=cell)


def state_parts(value: Any) -> tuple[Any, Any] | None:
    """(h, c) of an LSTM state or its gradient: ``.h`` / ``.c``, or a 2-sequence; None otherwise."""
    if value is None:
        return None
    if hasattr(value, "h") and hasattr(value, "c"):
        return value.h, value.c
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return value[0], value[1]
    return None


def _squash(name: str) -> str:
    return re.sub(r"\s+", "", name).lower()


def parse_declaration(declared: Any) -> dict[str, tuple[str, ...]]:
    """Validate a ``bptt_supports`` declaration: key -> the canonical names it lists.

    Raises:
        TargetError naming the key or the value that is not understood.
    """
    if not isinstance(declared, Mapping):
        raise TargetError(
            f"{DECLARATION}: expected a dict with keys {', '.join(DIMENSIONS)}, got {type(declared).__name__}"
        )
    out: dict[str, tuple[str, ...]] = {}
    for key, values in declared.items():
        if key not in DIMENSIONS:
            raise TargetError(f"{DECLARATION}: unknown key {key!r}; expected one of {', '.join(DIMENSIONS)}")
        if isinstance(values, str) or not isinstance(values, (list, tuple, set, frozenset)):
            raise TargetError(f"{DECLARATION}[{key!r}]: expected a list of names, got {values!r}")
        known = {_squash(n): n for n in DIMENSIONS[key]}
        names = []
        for v in values:
            if not isinstance(v, str) or _squash(v) not in known:
                expected = ", ".join(DIMENSIONS[key])
                raise TargetError(f"{DECLARATION}[{key!r}]: unknown value {v!r}; expected some of {expected}")
            names.append(known[_squash(v)])
        out[key] = tuple(n for n in DIMENSIONS[key] if n in names)
    return out


def _import(module_name: str, *, cwd_fallback: bool) -> Any:
    """Import a module; the current directory is appended to sys.path (after the installed
    packages) only when the module cannot be found without it."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.split(".")[0]
        cwd = os.getcwd()
        if not cwd_fallback or exc.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(module_name)


def split_spec(spec: Any) -> tuple[str, str]:
    """(module, function) of a target's name "module:function".

    Raises:
        TargetError for anything else.
    """
    module_name, _, attr = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not isinstance(spec, str) or spec.count(":") != 1 or not module_name or not attr:
        raise TargetError(f"--target: expected MODULE:FUNCTION, e.g. manual_bptt:bptt, got {spec!r}")
    return module_name, attr


def load_target(spec: str) -> Callable[..., Any]:
    """Import ``"module:function"`` (the function may be dotted, ``module:Class.method``).

    A module that cannot be found on sys.path is looked for in the current directory (appended
    last, so it never shadows an installed package); never for the default target.

    Raises:
        TargetError naming what is wrong: the form, the module, the attribute, not callable.
    """
    module_name, attr = split_spec(spec)
    try:
        obj: Any = _import(module_name, cwd_fallback=spec != DEFAULT_TARGET)
    except ImportError as exc:
        raise TargetError(f"--target {spec}: cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:  # the module itself failed while importing
        raise TargetError(
            f"--target {spec}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError(f"--target {spec}: {getattr(obj, '__name__', obj)!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TargetError(f"--target {spec}: {attr} is a {type(obj).__name__}, not a callable")
    return obj


def spec_of(fn: Callable[..., Any]) -> str | None:
    """``"module:qualname"`` if that name finds ``fn`` again among the imported modules, else None.

    Only modules already imported are looked at (nothing is imported here).
    """
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__" or module not in sys.modules:
        return None
    obj: Any = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return f"{module}:{qualname}" if obj is fn else None


def accepted_keywords(fn: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword names ``fn`` accepts, or None when it takes ``**kwargs`` or has no signature."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = sig.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return frozenset(p.name for p in params if p.kind in kinds)


def signature_text(fn: Callable[..., Any]) -> str:
    """``name(signature)`` for messages, or the name alone."""
    name = getattr(fn, "__name__", type(fn).__name__)
    try:
        return f"{name}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return name


def non_default(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords whose value differs from manual_bptt.bptt's default (arrays always differ from None)."""
    out = {}
    for k, v in kwargs.items():
        default = DEFAULTS.get(k)
        if v is None or (default is not None and isinstance(v, str) and v == default):
            continue
        out[k] = v
    return out


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def read_output(r: Any, cell: str = "rnn") -> TargetOutput:
    """loss, grads (the cell's PARAM_FIELDS), ds0, dxs of a result.

    Raises:
        BadResult saying what was returned instead ("the target returned None, not an object
        with .loss and .grads").
    """
    for attr in ("loss", "grads"):
        if not (hasattr(r, attr) or (isinstance(r, dict) and attr in r)):
            what = "None" if r is None else f"a {type(r).__name__}"
            raise BadResult(f"the target returned {what}, not an object with .loss and .grads (no .{attr})")
    grads = _field(r, "grads")
    if grads is None:
        raise BadResult("the target's result has .grads = None")
    return TargetOutput(
        loss=_field(r, "loss"),
        grads={n: _field(grads, n) for n in PARAM_FIELDS[cell]},
        ds0=_field(r, "ds0"),
        dxs=_field(r, "dxs"),
    )


def problem_for(cfg: RNNConfig, prefix: int | None = None) -> Problem | None:
    """make_problem(cfg), cut to its first ``prefix`` steps when given (None when a "mean"
    mask would count nothing on the prefix). The worker and the checker both build the
    arrays this way, each on its own side."""
    prob = make_problem(cfg)
    if prefix is None:
        return prob
    n = prefix
    cut = (slice(None), slice(0, n)) if cfg.B is not None else (slice(0, n),)
    mask = None if prob.mask is None else prob.mask[cut]
    if mask is not None and cfg.reduction == "mean" and not mask.any():
        return None
    return Problem(
        cfg=dataclasses.replace(cfg, T=n),
        params=prob.params,
        xs=prob.xs[cut].copy(),
        ys=prob.ys[cut].copy(),
        s0=prob.s0,
        mask=None if mask is None else mask.copy(),
    )


def input_arrays(p: Any, xs: Any, ys: Any, s0: Any, mask: Any) -> dict[str, Any]:
    """The inputs of one call by name: the parameters (U, W, V, b, c; a gated cell's U, W,
    b_ih, b_hh, V, c), xs, ys, mask, s0 (the LSTM's as s0.h and s0.c). The worker sends them
    back as the call left them; the checker compares them with its own."""
    params = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
    parts = state_parts(s0) if isinstance(s0, tuple) else None
    state = {"s0": s0} if parts is None else {"s0.h": parts[0], "s0.c": parts[1]}
    return {**params, "xs": xs, "ys": ys, "mask": mask, **state}


def problem_inputs(prob: Problem) -> dict[str, Any]:
    """input_arrays of a problem."""
    return input_arrays(prob.params, prob.xs, prob.ys, prob.s0, prob.mask)


def call_target(
    fn: Callable[..., Any], p: Any, xs: Any, ys: Any, kwargs: dict[str, Any], *, probe: bool = False
) -> TargetOutput:
    """Call ``fn(p, xs, ys, **non_default(kwargs))`` and read loss, grads, ds0, dxs (invoke,
    then read_output).

    Raises:
        as invoke; BadResult when the result has no .loss or .grads.
    """
    return read_output(invoke(fn, p, xs, ys, kwargs, probe=probe), cell_of_params(p))


def invoke(
    fn: Callable[..., Any], p: Any, xs: Any, ys: Any, kwargs: dict[str, Any], *, probe: bool = False
) -> Any:
    """``fn(p, xs, ys, **non_default(kwargs))``: its result as returned.

    Raises:
        Unsupported when a passed keyword is not accepted (by signature, or a TypeError naming
        it, or NotImplementedError); in a ``probe`` of a gated cell, also on any other
        TypeError (the target does not take this params type; in the sweep it is a failure).
        Anything else the target raises.
    """
    kw = non_default(kwargs)
    cell = cell_of_params(p)
    accepted = accepted_keywords(fn)
    if accepted is not None:
        missing = tuple(k for k in kw if k not in accepted)
        if missing:
            raise Unsupported(missing, "not in the signature")
    try:
        r = fn(p, xs, ys, **kw)
    except TypeError as exc:
        m = _UNEXPECTED.search(str(exc))
        if m and m.group(1) in kw:
            raise Unsupported((m.group(1),), str(exc)) from exc
        if cell != "rnn" and probe:
            raise Unsupported((cell,), f"raised TypeError for {type(p).__name__}: {exc}") from exc
        raise
    except NotImplementedError as exc:
        if cell != "rnn" and not kw:
            raise Unsupported((cell,), f"raised NotImplementedError: {exc}") from exc
        raise Unsupported(tuple(kw) or ("this configuration",), f"raised NotImplementedError: {exc}") from exc
    return r
