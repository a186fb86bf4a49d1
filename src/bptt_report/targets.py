"""The implementation under test: loading it by name, calling it, reading its result.

A target is any callable with manual_bptt.bptt's signature,

    target(p, xs, ys, *, activation="tanh", s0=None, truncate=None, reduction="sum", mask=None)

returning an object with ``.loss`` and ``.grads`` (U, W, V, b, c as attributes or keys), and
optionally ``.ds0`` and ``.dxs``, which are checked when present. Only the keywords that
differ from their defaults are passed, so a target that lacks, say, ``mask`` is still checked
on every configuration without a mask; on the others its missing keyword is reported as
unsupported, not as a failure. numpy only.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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

_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


class TargetError(ValueError):
    """The target named on the command line cannot be loaded (a usage error)."""


class Unsupported(Exception):
    """The target does not accept these keywords (or raised NotImplementedError for them)."""

    def __init__(self, keywords: tuple[str, ...], detail: str = "") -> None:
        super().__init__(f"unsupported option(s): {', '.join(keywords)}" + (f" ({detail})" if detail else ""))
        self.keywords = keywords


@dataclass(frozen=True)
class TargetOutput:
    """What was read from one call of the target.

    Attributes:
        loss: the loss as returned (normally a float).
        grads: {"U", "W", "V", "b", "c"} -> array or None.
        ds0, dxs: the arrays, or None when the result has no such attribute (or it is None).
    """

    loss: Any
    grads: dict[str, Any]
    ds0: Any
    dxs: Any


def load_target(spec: str) -> Callable[..., Any]:
    """Import ``"module:function"`` (the function may be dotted, ``module:Class.method``).

    The current directory is importable, as with ``python -m``.

    Raises:
        TargetError naming what is wrong: the form, the module, the attribute, not callable.
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise TargetError(f"--target: expected MODULE:FUNCTION, e.g. manual_bptt:bptt, got {spec!r}")
    module_name, attr = spec.split(":")
    if not module_name or not attr:
        raise TargetError(f"--target: expected MODULE:FUNCTION, e.g. manual_bptt:bptt, got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
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
    """``"module:qualname"`` if that name loads ``fn`` again (so worker processes can), else None."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    spec = f"{module}:{qualname}"
    try:
        return spec if load_target(spec) is fn else None
    except TargetError:
        return None


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


def call_target(fn: Callable[..., Any], p: Any, xs: Any, ys: Any, kwargs: dict[str, Any]) -> TargetOutput:
    """Call ``fn(p, xs, ys, **non_default(kwargs))`` and read loss, grads, ds0, dxs.

    Raises:
        Unsupported when a passed keyword is not accepted (by signature, or a TypeError naming
        it, or NotImplementedError).
        AttributeError (with a clear message) when the result has no .loss or .grads.
        Anything else the target raises.
    """
    kw = non_default(kwargs)
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
        raise
    except NotImplementedError as exc:
        raise Unsupported(tuple(kw) or ("this configuration",), str(exc)) from exc
    for attr in ("loss", "grads"):
        if not (hasattr(r, attr) or (isinstance(r, dict) and attr in r)):
            raise AttributeError(f"the target's result ({type(r).__name__}) has no .{attr}")
    grads = _field(r, "grads")
    return TargetOutput(
        loss=_field(r, "loss"),
        grads={n: _field(grads, n) for n in ("U", "W", "V", "b", "c")},
        ds0=_field(r, "ds0"),
        dxs=_field(r, "dxs"),
    )
