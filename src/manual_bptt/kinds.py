"""The one table from a parameters type to everything that depends on it. numpy only.

    params type   cell (its spec)     front (validation, sizes, the fast path, results)
    RNNParams     cells.ELMAN         manual_bptt.elman
    GRUParams     cells.GRU           manual_bptt.gated
    LSTMParams    cells.LSTM          manual_bptt.gated
    StackParams   its own p.cell      manual_bptt.stack (the loop in stack_loop; the one-layer case
                                      runs the row of the one-layer type it converts to)

Every function that takes any of them (bptt, forward and backward in manual_bptt.layer;
decompose, state_jacobian and rtrl over the generic drivers) finds its row once, by kind_of(p),
and calls what the row names; nothing else asks for the type of the parameters. A new cell is a
new row (see docs/architecture.md, "Where a new cell goes").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from . import elman, gated, stack
from .cells import ELMAN, GRU, LSTM, Cell
from .drivers import CellInputs
from .gated_params import GRUParams, LSTMParams
from .params import RNNParams
from .stack_params import StackParams


@dataclass(frozen=True)
class Kind:
    """One row of the table: a params type and what computes with it.

    Attributes:
        params: the parameters' type (RNNParams, GRUParams, LSTMParams, StackParams).
        cell: its cell, the spec the generic drivers run (cells.base.Cell); None for StackParams,
            whose cell is a field of the parameters (p.cell).
        bptt: (p, xs, ys, *, s0, truncate, reduction, mask, activation, max_bytes) -> the
            result, as manual_bptt.bptt documents it.
        forward: (p, xs, *, s0, activation, max_bytes) -> the forward result.
        backward: (p, xs, dhs, final_parts, s0, tau, activation, max_bytes) -> (grads, dxs,
            ds0, hs, final_state): the layer alone (manual_bptt.layer.backward checks dhs and
            splits d_final into final_parts first).
        driver_inputs: (p, xs, ys, *, activation, s0, reduction, mask, labels, owned, size_check)
            -> drivers.CellInputs: the validated inputs decompose, state_jacobian and rtrl run on
            (size_check(sizes, dtype) is called from the shapes, before any input is copied).
        result: the type of bptt's result (BPTTResult, GatedBPTTResult), which rtrl returns too.
        stacked: a stack of layers (StackParams): its bptt and forward also take ``lengths=``, and
            its backward takes manual_bptt.backward's own keyword arguments (p, xs, dhs, *, s0,
            d_final, lengths, truncate, activation, max_bytes) and checks them itself, in torch's
            (L * dirs, B, .) layout; its driver_inputs refuses p (decompose, state_jacobian and
            rtrl take one layer).
    """

    params: type
    cell: Cell | None
    bptt: Callable[..., Any]
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    driver_inputs: Callable[..., CellInputs]
    result: type
    stacked: bool = False


def _gated(params: type, cell: Cell) -> Kind:
    """The row of a gated cell: manual_bptt.gated's functions, given the cell."""
    return Kind(
        params=params,
        cell=cell,
        bptt=partial(gated.bptt, cell),
        forward=partial(gated.forward, cell),
        backward=partial(gated.backward, cell),
        driver_inputs=partial(gated.driver_inputs, cell),
        result=gated.GatedBPTTResult,
    )


def kind_of(p: object) -> Kind:
    """The row of ``p``'s type (or of the nearest of its base classes); ValueError naming p for
    anything else."""
    kind = KINDS.get(type(p))  # one lookup on every call: the type itself has a row
    if kind is not None:
        return kind
    for cls in type(p).__mro__[1:]:
        kind = KINDS.get(cls)
        if kind is not None:
            return kind
    raise ValueError(f"p: expected {_EXPECTED}, got {type(p).__name__}")


KINDS: dict[type, Kind] = {
    RNNParams: Kind(
        params=RNNParams,
        cell=ELMAN,
        bptt=elman.bptt,
        forward=elman.forward,
        backward=elman.backward,
        driver_inputs=elman.driver_inputs,
        result=elman.BPTTResult,
    ),
    GRUParams: _gated(GRUParams, GRU),
    LSTMParams: _gated(LSTMParams, LSTM),
    StackParams: Kind(
        params=StackParams,
        cell=None,
        bptt=partial(stack.bptt, kind_of),  # kind_of: the one-layer case runs its type's row
        forward=partial(stack.forward, kind_of),
        backward=partial(stack.backward, kind_of),
        driver_inputs=stack.driver_inputs,
        result=stack.StackBPTTResult,
        stacked=True,
    ),
}

_NAMES = [t.__name__ for t in KINDS]
_EXPECTED = "manual_bptt." + ", ".join(_NAMES[:-1]) + f" or {_NAMES[-1]}"  # the params types, for messages
