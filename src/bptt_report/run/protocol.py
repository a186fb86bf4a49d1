"""The messages between the checker and a worker process, for both products: the Program a worker
runs, a Request per piece of work, a Reply per request, and the worker's Hello. Frozen
dataclasses; the standard library only.

Requests travel to the worker pickled (the checker is trusted). A Hello or a Reply travels back
as a bptt_report.run.wire message (JSON and raw arrays, never a pickle, since the code under test
runs there): ``to_wire`` gives the plain dict that is sent, ``from_wire`` rebuilds the dataclass
from the dict that arrives, keeping the fields it knows, each checked against its annotation
(WireError for a field of the wrong type: a well-framed reply can still be garbage).

Kinds of request:
    "call"    the target on a configuration (RNNConfig), or on its first ``prefix`` steps
    "probe"   the same, where a TypeError for a gated params type means the cell is unsupported
    "fd"      the same, plus central differences of the target's own loss
    "run"     check-module: the module on a case (a dict of arrays)
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ..errors import WireError


@dataclass(frozen=True)
class Request:
    """One piece of work for a worker process.

    Attributes:
        kind: "call", "probe", "fd" (a target), "run" (check-module's module).
        config: what to run it on: an RNNConfig (a target), a case dict (a module).
        prefix: only the first ``prefix`` steps (a target's "call"), or None.
        id: the pool's sequence number, set as it is sent; its Reply carries it back.
    """

    kind: str
    config: Any
    prefix: int | None = None
    id: int = 0


@dataclass(frozen=True)
class Reply:
    """The answer to one Request: from the worker, or from the pool for a request whose worker
    was lost.

    Attributes:
        id: the request's id (0 in a reply made by the pool).
        status: "ok" (a result), else what happened instead. In the worker: "unsupported",
            "mutated", "bad_result", "raised", "exited", "usage" (check-module: the module does
            not follow the contract), "skipped" (a prefix that counts nothing). In the pool:
            "died", "garbled", "timeout", "not_run".
        seconds: wall time of the request.

        exception, message, traceback: the exception's type name, its message, its traceback
            ("raised"; the message also for "unsupported", "bad_result", "usage").
        exit_argument: the argument of sys.exit, as repr ("exited").
        exit_status: the worker process's exit status ("died", "timeout", "garbled").
        detail: what the pool or the target said more ("garbled", "died"; "unsupported").
        keywords: the keywords the target does not accept ("unsupported").
        mutated: the inputs the call changed (a target: "mutated"; a module: with "ok").

        fields: a target's result: loss, its parameters, ds0 (the LSTM's ds0.h, ds0.c), dxs;
            plain arrays, None where absent.
        notes: field -> why a target's value could not be read as an array.
        numeric: "fd": central differences of the target's own loss, by field.

        arrays: a module's result: out, h_n (c_n), the parameters' gradients, x, h0 (c0).
        remarks: what the module's call said (a gradient that is None, counted as zeros).
        repeat: array -> max|difference| of a second identical call (nondeterminism).
        nonlinearity: the Elman module's ``nonlinearity`` attribute, when it is a string.

        inputs: a target's inputs as its call left them (targets.contract.input_arrays), sent
            back whenever it was called, compared in the checker with its own.
        reread, reread_notes: a target's result read a second time (as fields, notes), compared
            in the checker with the first read.

        output: the last bytes (run.pool.OUTPUT_TAIL) of what the code under test printed
            (stdout and stderr) during the request, and output_bytes: how many it printed;
            set by the pool, whatever the worker sent.
    """

    id: int = 0
    status: str = ""
    seconds: float = 0.0
    exception: str = ""
    message: str = ""
    traceback: str = ""
    exit_argument: str = ""
    exit_status: int | None = None
    detail: str = ""
    keywords: tuple[str, ...] = ()
    mutated: tuple[str, ...] = ()
    fields: dict[str, np.ndarray | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    remarks: tuple[str, ...] = ()
    repeat: dict[str, float] = field(default_factory=dict)
    nonlinearity: str | None = None
    inputs: dict[str, np.ndarray | None] = field(default_factory=dict)
    reread: dict[str, np.ndarray | None] = field(default_factory=dict)
    reread_notes: dict[str, str] = field(default_factory=dict)
    output: str = ""
    output_bytes: int = 0


@dataclass(frozen=True)
class Hello:
    """A worker's first message, once it has loaded the code under test (or failed to).

    Attributes:
        status: "ready", or "error" (``message`` says why).
        signature: the target's ``name(signature)``.  keywords: the keywords it accepts
            (None: it takes ``**kwargs`` or has no signature).
        declared: its ``bptt_supports`` declaration as plain values (None: none), and
            declared_error: why it could not be read.
        modules: which of torch and the oracle (``reference``) the worker had imported after
            loading, and modules_before: before.
    """

    status: str = ""
    message: str = ""
    signature: str = ""
    keywords: tuple[str, ...] | None = None
    declared: Any = None
    declared_error: str = ""
    modules: tuple[str, ...] = ()
    modules_before: tuple[str, ...] = ()


@dataclass(frozen=True)
class Program:
    """What a worker process runs, and how messages name it.

    Attributes:
        main: a product's module-level ``main(argument)``, which serves requests
            (bptt_report.run.worker.serve).
        argument: what it is given: a target's "module:function" name, check-module's settings.
        label: how errors name it: "--target manual_bptt:bptt", or check-module's factory.
        noun: how notes name the code under test: "the target", "the module".
        check: ``check(request, reply) -> reply``, run by the pool on every reply of a worker,
            in the pool's process (never where the code under test runs): the product's
            judgment of what the worker sent back (a target's inputs, its two reads), which
            may turn the reply into a finding; None: the replies as they come.
    """

    main: Callable[[str], None]
    argument: str
    label: str
    noun: str = "the target"
    check: Callable[[Request, Reply], Reply] | None = None


Message = TypeVar("Message", Reply, Hello)


def to_wire(message: Reply | Hello) -> dict[str, Any]:
    """The fields of a Reply or Hello as a plain dict (no copy of the arrays)."""
    return {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}


def from_wire(cls: type[Message], data: Any) -> Message:
    """A Reply or Hello from the dict a worker sent: the fields ``cls`` knows, each checked
    against its annotation (a tuple field's list read back as a tuple, an int where a float
    belongs as that float); the others left out.

    Raises:
        WireError naming the first field of the wrong type (or a message that is not a dict).
    """
    if not isinstance(data, dict):
        raise WireError(f"a {cls.__name__} must be a dict, got {_kind(data)}")
    hints = _hints(cls)
    kept = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kept[f.name] = _conform(f.name, hints[f.name], data[f.name])
    return cls(**kept)


def _kind(value: Any) -> str:
    """How an error names what arrived: "a list", "an ndarray of shape (2, 3)", "None"."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _conform(name: str, hint: Any, value: Any) -> Any:
    """``value`` as the annotation ``hint`` wants it (see from_wire); WireError otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _conform(name, option, value)
            except WireError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise WireError(f"{name}: expected a list, got {_kind(value)}")
        return tuple(_conform(f"{name}[{i}]", args[0], v) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise WireError(f"{name}: expected a dict, got {_kind(value)}")
        return {str(k): _conform(f"{name}[{k!r}]", args[1], v) for k, v in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise WireError(f"{name}: expected an int, got a bool")
    if isinstance(value, hint):
        return value
    raise WireError(f"{name}: expected {_kind_of_type(hint)}, got {_kind(value)}")


def _kind_of_type(hint: Any) -> str:
    if hint is np.ndarray:
        return "an array"
    name = getattr(hint, "__name__", str(hint))
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a message class (read once)."""
    return typing.get_type_hints(cls)
