"""The generic drivers' own contracts (manual_bptt.drivers), beyond the gradients they give.

    backprop       ds_final is the gradient arriving at the final state: exactly an upstream
                   gradient added to ds_direct[T - 1]; refused (ValueError naming it) under
                   truncation; truncate >= T - 1 is full BPTT, bitwise
    stack_caches   T caches of B rows -> one cache of T*B rows, row t*B + b = step t, row b;
    cache_rows     a cache's tuple type is kept (a NamedTuple stays one, a plain tuple stays a
    repeat_rows    tuple), and a field that is None stays None

The gradients themselves are checked against the oracle elsewhere (test_elman_spec.py,
test_gated_cells.py, test_gated_decompose.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from manual_bptt import drivers, gated
from manual_bptt.gated_params import GRUParams, LSTMParams
from manual_bptt.kinds import kind_of


def gated_run(cls, *, T=5, B=3, D=2, H=4, seed=0):
    """(cell, weights, forward run, a random (T, B, S) upstream gradient) of a random problem."""
    rng = np.random.default_rng(seed)
    p = cls.init(D, H, 3, seed=seed)
    g = gated.prepare_gated(kind_of(p).cell, p, rng.standard_normal((B, T, D)), None, labels_required=False)
    w, r = gated.run_checked(g)
    dz = rng.standard_normal((T, B, g.cell.parts * H))
    return g.cell, w, r, dz


@pytest.mark.parametrize("cls", [GRUParams, LSTMParams])
def test_a_final_state_gradient_is_an_upstream_gradient_of_the_last_step(cls):
    cell, w, r, dz = gated_run(cls)
    d_final = np.random.default_rng(1).standard_normal(dz.shape[1:])
    before = d_final.copy()
    got = drivers.backprop(cell, w, r, dz, ds_final=d_final)
    added = dz.copy()
    added[-1] += d_final
    want = drivers.backprop(cell, w, r, added)
    for name, a, b in zip(("dgi", "dgh", "dz0"), got, want, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(d_final, before)  # the caller's array is not written
    plain = drivers.backprop(cell, w, r, dz)
    assert not np.array_equal(plain[2], got[2])  # and it did reach z0


def test_a_final_state_gradient_is_refused_under_truncation():
    cell, w, r, dz = gated_run(GRUParams)
    with pytest.raises(ValueError, match=r"^ds_final: only with full BPTT \(truncate=None\)$"):
        drivers.backprop(cell, w, r, dz, truncate=1, ds_final=np.zeros(dz.shape[1:]))


@pytest.mark.parametrize("cls", [GRUParams, LSTMParams])
def test_truncation_at_T_minus_1_or_more_is_full_backprop_bitwise(cls):
    cell, w, r, dz = gated_run(cls, T=6)
    full = drivers.backprop(cell, w, r, dz)
    for tau in (5, 6, 50):
        for name, a, b in zip(
            ("dgi", "dgh", "dz0"), drivers.backprop(cell, w, r, dz, truncate=tau), full, strict=True
        ):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b, err_msg=f"{name}, truncate={tau}")
    # tau = T - 2 drops the single term (T - 1, 0): not the full result any more
    assert not np.array_equal(drivers.backprop(cell, w, r, dz, truncate=4)[2], full[2])


class Triple(NamedTuple):
    a: np.ndarray
    gone: None
    minus: np.ndarray


def step_caches(T=3, B=2):
    """T arrays of B rows, 100 t + 10 b + (0, 1, 2) in each row."""
    return [np.array([[100 * t + 10 * b + j for j in range(3)] for b in range(B)]) for t in range(T)]


@pytest.mark.parametrize("kind", ["plain tuple", "NamedTuple"])
def test_stacked_caches_keep_their_type_their_none_fields_and_row_order(kind):
    T, B = 3, 2
    # fields: the array, None, then minus the array (a field after the None one)
    make = (lambda a: (a, None, -a)) if kind == "plain tuple" else (lambda a: Triple(a, None, -a))
    stacked = drivers.stack_caches([make(a) for a in step_caches(T, B)])
    assert type(stacked) is (tuple if kind == "plain tuple" else Triple)
    assert len(stacked) == 3 and stacked[1] is None
    rows = stacked[0]
    np.testing.assert_array_equal(stacked[2], -rows)
    assert rows.shape == (T * B, 3)
    for t in range(T):
        for b in range(B):
            np.testing.assert_array_equal(rows[t * B + b], [100 * t + 10 * b + j for j in range(3)])

    part = drivers.cache_rows(stacked, 2, 5)
    assert type(part) is type(stacked) and part[1] is None
    np.testing.assert_array_equal(part[0], rows[2:5])
    np.testing.assert_array_equal(part[2], -rows[2:5])
    assert np.shares_memory(part[0], rows)  # a view, no copy

    rep = drivers.repeat_rows(part, 3)
    assert type(rep) is type(stacked) and rep[1] is None
    np.testing.assert_array_equal(rep[0], np.repeat(rows[2:5], 3, axis=0))
    np.testing.assert_array_equal(rep[2], -rep[0])
