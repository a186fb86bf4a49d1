"""The messages between the checker and a worker process, for both products: the Program a worker
runs, a Request per piece of work, a Reply per request, and the worker's Hello. Frozen
dataclasses; the standard library only.

Requests travel to the worker pickled (the checker is trusted). A Hello or a Reply travels back
as a bptt_report.run.wire message (JSON and raw arrays, never a pickle, since the code under test
runs there): ``to_wire`` gives the plain dict that is sent, ``from_wire`` rebuilds the dataclass
from the dict that arrives, keeping the fields it knows.

Kinds of request:
    "call"    the target on a configuration (RNNConfig), or on its first ``prefix`` steps
    "probe"   the same, where a TypeError for a gated params type means the cell is unsupported
    "fd"      the same, plus central differences of the target's own loss
    "run"     check-module: the module on a case (a dict of arrays)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar


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
    fields: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    numeric: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)
    remarks: tuple[str, ...] = ()
    repeat: dict[str, float] = field(default_factory=dict)
    nonlinearity: str | None = None


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
    """

    main: Callable[[str], None]
    argument: str
    label: str
    noun: str = "the target"


Message = TypeVar("Message", Reply, Hello)


def to_wire(message: Reply | Hello) -> dict[str, Any]:
    """The fields of a Reply or Hello as a plain dict (no copy of the arrays)."""
    return {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}


def from_wire(cls: type[Message], data: dict[str, Any]) -> Message:
    """A Reply or Hello from the dict a worker sent: the fields ``cls`` knows, the tuple fields'
    lists read back as tuples."""
    kept = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value = data[f.name]
            tuple_field = str(f.type).startswith("tuple")
            kept[f.name] = tuple(value) if tuple_field and isinstance(value, list) else value
    return cls(**kept)
