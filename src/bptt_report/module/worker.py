"""check-module's side of a worker process, where a user's PyTorch recurrent layer runs.

It never imports the oracle (``reference``) nor the hand-written reference's results: it gets
plain float64 arrays (parameters, inputs, initial states, upstream gradients, already rounded
to the module's dtype), builds the module with the factory, calls it the way the case says,
and sends back float64 copies of what the module computed. The checker (bptt_report.module.session)
starts it through bptt_report.run.pool with ``program(settings)``: the worker loop of
bptt_report.run.worker, the settings one JSON argument ``{"factory": "MODULE:FACTORY", "cell":
..., "dtype": ..., "device": ...}``.

The contract of a module is bptt_report.module.contract's (torch's layers of any shape, torch's
parameter names). The adapter hook for modules named differently: a module that defines

    set_reference_params(self, params: dict[str, torch.Tensor]) -> None
    reference_grads(self) -> dict[str, torch.Tensor | None]

(both keyed by torch's names) is set and read through them instead.

How a case is called (its "call", PLAIN_CALL when it has none): in train() or eval() mode; with
h0 (``m(x, h0)``) or without (``m(x)``, compared with a zero initial state; a forward that
requires its state is given h0 then, and the reply's arrays hold dh0); with x requiring grad or
not (then no dx); on a fresh instance, or ("warmup": other parameters) on an instance first
called with other parameters, which are then changed in place to the case's, as an optimizer
does, and the gradients cleared. A case of variable lengths (its Shape's feed, its "lengths"
(B,)) gives the module ``pack_padded_sequence(x, lengths, batch_first=True,
enforce_sorted=False)`` in place of x, and unpacks the PackedSequence it returns with
``pad_packed_sequence(..., batch_first=True, total_length=T)``; or (feed "lengths") calls
``m(x, h0, lengths=lengths)``, lengths a CPU int64 tensor.

Kinds of request: "describe" (Request.config {"D", "H", "bias"}) builds the module and answers
with its configuration (Reply.fields: num_layers, bidirectional (0 or 1) and proj_size as 0-d
integer arrays; Reply.nonlinearity; Reply.detail: the feed it declares, contract.declared_feed,
or ""; Reply.notes: where each value was read); "run" (the case in Request.config) answers
with the module's outputs and gradients (Reply.arrays: out, h_n, c_n, weight_ih_l0, ..., x, h0,
c0), the inputs it modified, what the call noticed (Reply.remarks), and how far a second
identical call differs from the first. A factory that raises NotImplementedError for the case's
sizes (or that torch refuses to build, a proj_size >= hidden_size) is answered "unsupported";
one that cannot take the contract, "usage".
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import BrokenContract, Declined, TargetError
from ..run.protocol import Hello, Program, Reply, Request
from ..run.worker import Handle, serve
from ..targets.contract import load_target
from . import contract

#: How a case is called unless it says otherwise.
PLAIN_CALL: dict[str, Any] = {"mode": "train", "h0": True, "x_grad": True, "reused": False}


def call_of(case: dict[str, Any]) -> dict[str, Any]:
    """How ``case`` is called: PLAIN_CALL updated by its "call"."""
    return {**PLAIN_CALL, **case.get("call", {})}


def _np(t: Any) -> np.ndarray:
    """A float64 numpy copy of a tensor (any dtype, any device)."""
    import torch

    return t.detach().to(device="cpu", dtype=torch.float64).numpy().copy()


def _structure(result: Any, cell: str, packed: bool = False, T: int = 0) -> tuple[Any, Any, Any]:
    """(out, h_n, c_n or None) from the forward's return value, out (B, T, .) (unpacked by
    pad_packed_sequence(..., total_length=T) when the module was given a PackedSequence);
    BrokenContract naming what is wrong."""
    import torch
    from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

    want = "(out, (h_n, c_n))" if cell == "lstm" else "(out, h_n)"
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise BrokenContract(f"the forward must return {want}, got {_describe(result)}")
    out, state = result
    if packed:
        if not isinstance(out, PackedSequence):
            raise BrokenContract(
                f"the forward, given a PackedSequence, must return one as its out (as torch's layers do); "
                f"out is {_describe(out)}"
            )
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    if cell == "lstm":
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise BrokenContract(f"the forward must return {want}; its second item is {_describe(state)}")
        h_n, c_n = state
    else:
        h_n, c_n = state, None
    for name, t in (("out", out), ("h_n", h_n), ("c_n", c_n)):
        if name == "c_n" and cell != "lstm":
            continue
        if not isinstance(t, torch.Tensor):
            raise BrokenContract(f"the forward must return {want}; {name} is {_describe(t)}")
    return out, h_n, c_n


def _describe(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return f"a {type(v).__name__} of {len(v)} items"
    return f"a {type(v).__name__}"


def given(case: dict[str, Any]) -> dict[str, Any]:
    """The keywords the factory is called with for ``case``."""
    return {"input_size": case["D"], "hidden_size": case["H"], "bias": case["bias"], "batch_first": True}


def make(factory: Callable[..., Any], settings: dict[str, Any], case: dict[str, Any]) -> Any:
    """The module for ``case``'s sizes, made by the factory and moved to the device and dtype.

    Raises:
        BrokenContract when the factory or the module cannot take the contract (what was tried,
        what failed); Declined when the factory raises NotImplementedError for these sizes.
    """
    import torch

    kw = given(case)
    why = contract.factory_mismatch(factory, kw)
    if why is not None:
        raise BrokenContract(why)
    try:
        m = factory(**kw)
    except NotImplementedError as exc:
        sizes = ", ".join(f"{k}={v!r}" for k, v in kw.items() if k != "batch_first")
        raise Declined(f"NotImplementedError for {sizes}: {exc}") from None
    except TypeError as exc:
        why = contract.factory_type_error(exc, kw)
        if why is None:
            raise
        raise BrokenContract(why) from None
    except ValueError as exc:
        declined = contract.declined_by_torch(exc, kw)
        if declined is None:
            raise
        raise Declined(declined) from None
    if not isinstance(m, torch.nn.Module):
        raise BrokenContract(f"the factory must return a torch.nn.Module, got {_describe(m)}")
    why = contract.refusal(m, contract.read_config(m), kw, settings["cell"])
    if why is not None:
        raise BrokenContract(why)
    return m.to(device=torch.device(settings["device"]), dtype=getattr(torch, settings["dtype"]))


def set_params(m: Any, settings: dict[str, Any], case: dict[str, Any], params: dict[str, np.ndarray]) -> None:
    """The module's parameters set, in place, to ``params`` (through the adapter hook, when it has
    one); BrokenContract for a parameter it lacks, has in excess, or has in another shape."""
    import torch

    dtype, device = getattr(torch, settings["dtype"]), torch.device(settings["device"])
    values = {n: torch.tensor(a, dtype=dtype, device=device) for n, a in params.items()}
    if hasattr(m, "set_reference_params") and hasattr(m, "reference_grads"):
        m.set_reference_params(values)
        return
    own = dict(m.named_parameters())
    shape = contract.case_shape(case)
    missing = [n for n in values if n not in own]
    if missing:
        raise BrokenContract(
            f"the module has no parameter {', '.join(missing)} (it has {', '.join(own) or 'none'}); "
            "name them as torch.nn.RNN/GRU/LSTM do, or define set_reference_params and reference_grads"
            + contract.missing_hint(list(own), shape, contract.read_config(m))
        )
    extra = [n for n in own if n not in values and contract.parse_name(n) is not None]
    biases = [n for n in extra if n.startswith("bias_")]
    if biases and not case["bias"]:
        raise BrokenContract(f"the module was built with bias=False but has {', '.join(biases)}")
    if extra:
        raise BrokenContract(contract.extra_hint(extra, list(own), shape, contract.read_config(m)))
    for n, v in values.items():
        if tuple(own[n].shape) != tuple(v.shape):
            raise BrokenContract(contract.shape_hint(
                n, tuple(own[n].shape), tuple(v.shape), settings["cell"], case["D"], case["H"], shape
            ))  # fmt: skip
    with torch.no_grad():
        for n, v in values.items():
            own[n].copy_(v)


def build(factory: Callable[..., Any], settings: dict[str, Any], case: dict[str, Any]) -> Any:
    """The module for ``case``: made by the factory, moved to the device and dtype, parameters set."""
    m = make(factory, settings, case)
    set_params(m, settings, case, case["params"])
    return m


def clear_grads(m: Any) -> None:
    """Every parameter's gradient cleared (as optimizer.zero_grad(set_to_none=True) does)."""
    for p in m.parameters():
        p.grad = None


def _grads(m: Any, names: list[str]) -> dict[str, Any]:
    if hasattr(m, "set_reference_params") and hasattr(m, "reference_grads"):
        g = dict(m.reference_grads())
        return {n: g.get(n) for n in names}
    own = dict(m.named_parameters())
    return {n: own[n].grad for n in names}


def _takes(forward: Any, *args: Any, **kwargs: Any) -> str | None:
    """Why ``forward`` cannot be called with ``args`` and ``kwargs`` (None: it can, or its
    signature cannot be read)."""
    try:
        sig = inspect.signature(forward)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        return f"{exc} (its signature is {sig})"
    return None


def call(
    m: Any, settings: dict[str, Any], case: dict[str, Any]
) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """One forward and backward of ``m`` on ``case``, called as the case says (call_of), its
    variable lengths fed as its Shape says: (float64 arrays by name, the inputs it modified,
    notes). The upstream gradients are applied with torch.autograd.backward."""
    import torch

    dtype, device = getattr(torch, settings["dtype"]), torch.device(settings["device"])
    cell, how = settings["cell"], call_of(case)
    feed = contract.case_shape(case).feed
    notes: list[str] = []

    def leaf(a: np.ndarray, grad: bool = True) -> Any:
        return torch.tensor(a, dtype=dtype, device=device, requires_grad=grad)

    x = leaf(case["x"], how["x_grad"])
    lengths = None if feed is None else torch.tensor(case["lengths"], dtype=torch.int64)  # (B,), CPU
    if feed == "packed":
        from torch.nn.utils.rnn import pack_padded_sequence

        first: Any = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    else:
        first = x
    extra = {"lengths": lengths} if feed == "lengths" else {}
    with_h0 = how["h0"]
    if not with_h0 and _takes(m.forward, first, **extra) is not None:
        with_h0 = True  # its forward requires the state: it has no default to check
        notes.append("the forward requires its initial state: given h0 where m(x) was planned")
    h0 = leaf(case["h0"]) if with_h0 else None
    c0 = leaf(case["c0"]) if with_h0 and cell == "lstm" else None
    state = (h0, c0) if cell == "lstm" else h0
    args = (first, state) if with_h0 else (first,)
    why = _takes(m.forward, *args, **extra)
    if why is not None:
        form = "(x, (h0, c0)" if cell == "lstm" else "(x, h0"
        form = (form if with_h0 else "(x") + (", lengths=lengths)" if extra else ")")
        raise BrokenContract(f"the forward cannot be called as m{form}: {why}")
    ups = {
        k: torch.tensor(case[k], dtype=dtype, device=device) for k in ("dout", "dh_n", "dc_n") if k in case
    }
    own = dict(m.named_parameters())
    inputs = {"x": x, **({"h0": h0} if h0 is not None else {}), **({"c0": c0} if c0 is not None else {})}
    watched = {**inputs, **({"lengths": lengths} if lengths is not None else {}), **ups, **own}
    before = {k: v.detach().clone() for k, v in watched.items()}
    m.train(how["mode"] == "train")
    result = m(*args, **extra)
    out, h_n, c_n = _structure(result, cell, packed=feed == "packed", T=case["T"])
    want = {"out": tuple(case["dout"].shape), "h_n": tuple(case["dh_n"].shape)}
    if cell == "lstm":
        want["c_n"] = tuple(case["dc_n"].shape)
    for name, t in (("out", out), ("h_n", h_n), ("c_n", c_n)):
        if name in want and tuple(t.shape) != want[name]:
            raise BrokenContract(
                f"the forward returned {name} of shape {tuple(t.shape)}, expected {want[name]}"
            )
    outs = [out, h_n] + ([c_n] if cell == "lstm" else [])
    grads_in = [ups["dout"], ups["dh_n"]] + ([ups["dc_n"]] if cell == "lstm" else [])
    pairs = [(o, g) for o, g in zip(outs, grads_in, strict=True) if o.requires_grad]
    if pairs:
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
    else:
        notes.append("none of the outputs requires a gradient")
    arrays = {"out": _np(out), "h_n": _np(h_n)}
    if cell == "lstm":
        arrays["c_n"] = _np(c_n)
    grads = {**_grads(m, list(case["params"])), **{n: t.grad for n, t in inputs.items() if t.requires_grad}}
    for n, g in grads.items():
        shape = case["params"][n].shape if n in case["params"] else case[n].shape
        arrays[n] = np.zeros(shape) if g is None else _np(g)
    none = [f"{n}.grad" for n, g in grads.items() if g is None]
    if none:
        notes.append(f"{', '.join(none)} {'is' if len(none) == 1 else 'are'} None (counted as zeros)")
    mutated = [
        k for k, v in watched.items()
        if not (v.shape == before[k].shape and torch.equal(v.detach(), before[k]))
    ]  # fmt: skip
    return arrays, mutated, notes


def run(factory: Callable[..., Any], settings: dict[str, Any], case: dict[str, Any]) -> Reply:
    """Build and call the module on ``case`` (after a call with other parameters, when the case
    reuses an instance), then call it once more the same way; the reply (the worker loop adds id
    and timing)."""
    warmup = case.get("warmup")
    if warmup is None:
        m = build(factory, settings, case)
    else:  # one instance, called with other parameters first, which then change in place
        earlier = dict(case, params=warmup)
        m = build(factory, settings, earlier)
        call(m, settings, earlier)
        set_params(m, settings, case, case["params"])
        clear_grads(m)
    nonlinearity = getattr(m, "nonlinearity", None)
    arrays, mutated, notes = call(m, settings, case)
    repeat: dict[str, float] = {}
    if case.get("repeat", True):
        if warmup is None:
            again, _, _ = call(build(factory, settings, case), settings, case)
        else:  # the same instance again (a fresh one would differ from a module that caches)
            clear_grads(m)
            again, _, _ = call(m, settings, case)
        for k, a in arrays.items():
            b = again.get(k)
            if b is None or b.shape != a.shape:
                repeat[k] = float("inf")
            elif not np.array_equal(a, b, equal_nan=True):
                d = np.abs(a - b)
                repeat[k] = float(np.nanmax(d)) if np.isfinite(d).any() else float("inf")
    return Reply(
        status="ok",
        arrays=arrays,
        mutated=tuple(mutated),
        remarks=tuple(notes),
        repeat=repeat,
        nonlinearity=nonlinearity if isinstance(nonlinearity, str) else None,
    )


def describe(factory: Callable[..., Any], settings: dict[str, Any], sizes: dict[str, Any]) -> Reply:
    """The configuration of the module the factory builds for ``sizes`` {"D", "H", "bias"}
    (Reply.fields, plain values; see the module docstring)."""
    m = make(factory, settings, sizes)
    c = contract.read_config(m)
    nonlinearity = c.nonlinearity if isinstance(c.nonlinearity, str) else None
    fields = {  # 0-d integer arrays: the protocol's fields are arrays
        "num_layers": np.array(c.num_layers or 1), "bidirectional": np.array(int(bool(c.bidirectional))),
        "proj_size": np.array(c.proj_size or 0),
    }  # fmt: skip
    feed = contract.declared_feed(factory, m) or ""
    return Reply(status="ok", fields=fields, nonlinearity=nonlinearity, detail=feed, notes=dict(c.source))


def handle(factory: Callable[..., Any], settings: dict[str, Any], request: Request) -> Reply:
    """The reply to one request ("describe" or "run"): "usage" for a factory or module outside the
    contract, "unsupported" for sizes the factory declines; what the module raises otherwise is
    answered by the worker loop."""
    try:
        if request.kind == "describe":
            return describe(factory, settings, request.config)
        return run(factory, settings, request.config)
    except BrokenContract as exc:
        return Reply(status="usage", message=str(exc))
    except Declined as exc:
        return Reply(status="unsupported", exception="NotImplementedError", message=str(exc))


def load(settings: dict[str, Any]) -> tuple[Handle | None, Hello]:
    """Load the factory: (the handler, the hello) or (None, the error)."""
    spec = settings["factory"]
    try:
        factory = load_target(spec)
    except TargetError as exc:
        return None, Hello(status="error", message=str(exc).replace("--target", "MODULE:FACTORY", 1))
    except BaseException as exc:  # a module may even call sys.exit while importing
        return None, Hello(status="error", message=f"{spec}: importing it raised {exc!r}")
    return functools.partial(handle, factory, settings), Hello(status="ready")


def main(settings_json: str) -> None:
    """check-module's worker process (bptt_report.run.pool's BOOT): the worker loop on the
    settings (JSON)."""
    serve(lambda: load(json.loads(settings_json)))


def program(settings: dict[str, Any]) -> Program:
    """What a worker process of check-module runs, for ``settings`` {"factory", "cell", "dtype",
    "device"}."""
    return Program(main, json.dumps(settings), settings["factory"], "the module")
