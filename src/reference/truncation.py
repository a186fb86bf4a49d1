"""Truncated BPTT for the oracles, written once from its definition, in two plain forms.

The definition (window tau >= 0, T steps, sg = stop-gradient, the state entering step 0 the
initial state s_{-1} = s0):

    grad_tau = sum_t d/dθ E_t(s_t),   s_t recomputed through the steps max(0, t - tau) .. t only,
               from sg(s_{t-tau-1}) when t > tau, and from s0 itself when t <= tau

so the (t, k) terms kept are those with t - tau <= k <= t, and s0 receives only from the E_t with
t <= tau. A window tau >= T - 1 keeps every term: that is full BPTT (keeps_every_term; the oracles
run their full path for it, and truncated_windows is then its head alone).

truncated_per_step is the definition as it reads: one graph and one backward per E_t.
truncated_windows computes the same sum with two graphs and one backward:

    head:  E_t for t = 0 .. min(tau, T - 1): each window is 0 .. t, starting at s0, so one graph
           over the steps 0 .. min(tau, T - 1) with every E_t counted holds all of them;
    tail:  E_t for t = tau + 1 .. T - 1, n = T - tau - 1 windows of exactly tau + 1 steps each:
           window j (t = tau + 1 + j) runs the steps j + 1 .. j + 1 + tau from the constant state
           at step j. Stacked along the batch axis (row j * B + b = window j, sequence b), they are
           one run of the same step function over tau + 1 steps, E_t of every window summed.

Slicing the input and target tensors into the windows' rows is part of the graph, so autograd
itself scatters dxs back to the steps and sums the parameters' gradients over the windows.

Both take the cell as functions (any cell, any objective):

    step(x_t, state) -> state     x_t (R, ...) rows of inputs, state a tuple of parts (R, H_part)
    E(state, targets_t) -> Tensor  the scalar E_t, summed over the R rows, of the state at t and the
                                  targets at t (a tuple of (R, ...) tensors)
    final(state) -> Tensor        None, or an extra term of the state at T - 1 (B rows), part of E_{T-1}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

State = tuple[Tensor, ...]
Step = Callable[[Tensor, State], State]
Objective = Callable[[State, tuple[Tensor, ...]], Tensor]


def keeps_every_term(tau: int, T: int) -> bool:
    """Whether the window tau keeps every term of T steps: every t <= T - 1 <= tau reaches s0 (full BPTT)."""
    return tau >= T - 1


def window_rows(a: Tensor, first: int, n: int) -> Tensor:
    """Row j * B + b = a[b, first + j] for the n windows j = 0 .. n - 1: a (B, T, ...) -> (n * B, ...)."""
    return a[:, first : first + n].transpose(0, 1).flatten(0, 1)


def truncated_per_step(
    step: Step,
    start: Callable[[], State],
    states: Sequence[State],
    xs: Tensor,
    targets: tuple[Tensor, ...],
    tau: int,
    E: Objective,
    final: Callable[[State], Tensor] | None = None,
) -> float:
    """The truncated objective's gradient by the definition: for each t, a fresh graph over the steps
    max(0, t - tau) .. t and the backward of E_t. Accumulates into the .grad of every leaf.

    step, E, final: see the module docstring.  start(): the state before step 0, parts (B, H), in
    the graph of the s0 leaves.  states[t]: the state at step t, parts (B, H), without a graph.
    xs: (B, T, ...) inputs (in the graph of the xs leaf when dense).  targets: (B, T, ...) tensors.
    Returns the objective's value, sum_t E_t (+ final), as a Python float.
    """
    T = xs.shape[1]
    total = 0.0
    for t in range(T):
        first = max(0, t - tau)
        state = start() if first == 0 else tuple(part.detach() for part in states[first - 1])
        for k in range(first, t + 1):
            state = step(xs[:, k], state)  # the state at k
        E_t = E(state, tuple(a[:, t] for a in targets))
        if final is not None and t == T - 1:
            E_t = E_t + final(state)
        E_t.backward()  # accumulates dE_t/dθ into the .grad of every leaf
        total += E_t.item()
    return total


def truncated_windows(
    step: Step,
    start: Callable[[], State],
    states: Sequence[State],
    xs: Tensor,
    targets: tuple[Tensor, ...],
    tau: int,
    E: Objective,
    final: Callable[[State], Tensor] | None = None,
) -> float:
    """The same gradient as truncated_per_step (same arguments), from the head and the stacked tail
    windows of the module docstring: two graphs, one backward. Returns the objective's value."""
    # grad_tau = d/dθ [ sum_{t <= tau} E_t(s_t from s0)  +  sum_{t > tau} E_t(s_t from sg(s_{t-tau-1})) ]
    B, T = xs.shape[0], xs.shape[1]
    head = min(tau, T - 1) + 1  # E_0 .. E_{head-1}: their windows start at s0
    state = start()
    objective = 0.0
    for t in range(head):
        state = step(xs[:, t], state)  # the state at t, from s0
        objective = objective + E(state, tuple(a[:, t] for a in targets))  # + E_t
    n = T - head  # E_t for t = tau + 1 + j, j = 0 .. n - 1: window j enters at the constant state at j
    if n > 0:
        # the constant entering window j, for every part: rows j * B + b = the state at step j, (n * B, H)
        state = tuple(torch.cat([s[i] for s in states[:n]]).detach() for i in range(len(states[0])))
        for k in range(tau + 1):
            state = step(window_rows(xs, k + 1, n), state)  # window j's step j + 1 + k
        objective = objective + E(state, tuple(window_rows(a, tau + 1, n) for a in targets))  # + E_t
    if final is not None:
        objective = objective + final(tuple(part[-B:] for part in state))  # the last B rows: step T - 1
    objective.backward()
    return objective.item()
