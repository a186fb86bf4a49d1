"""Pieces of the checker on their own: the worker's message format, the capability
declaration, the finite-difference criterion the plot draws, the mutation guard."""

from __future__ import annotations

import dataclasses
import struct
from types import SimpleNamespace

import numpy as np
import pytest

import manual_bptt as mb
from bptt_report.judge import compare
from bptt_report.run import wire
from bptt_report.run.protocol import Hello, Reply, Request, from_wire
from bptt_report.targets import contract, replies, worker
from bptt_report.targets.contract import problem_for
from bptt_report.targets.probe import probe_configs


def test_worker_messages_carry_numbers_and_arrays_and_nothing_else():
    value = {"loss": np.array(1.5), "W": np.arange(6.0).reshape(2, 3), "ids": np.arange(3),
             "ok": True, "none": None, "nan": float("nan"), "text": "x", "list": [1, 2.5]}  # fmt: skip
    back = wire.decode(wire.encode(value))
    assert back["loss"].shape == () and back["loss"] == 1.5
    assert back["W"].dtype == np.float64 and np.array_equal(back["W"], value["W"])
    assert back["ids"].dtype == value["ids"].dtype and np.isnan(back["nan"])
    assert {k: back[k] for k in ("ok", "none", "text", "list")} == {"ok": True, "none": None, "text": "x",
                                                                   "list": [1, 2.5]}  # fmt: skip
    with pytest.raises(wire.WireError):
        wire.encode({"obj": np.array([object()])})
    with pytest.raises(wire.WireError):
        wire.encode({"f": lambda: 0})
    header = b'{"a": {"__array__": ["|O", [1], 0]}}'
    with pytest.raises(wire.WireError, match="refused"):
        wire.decode(struct.pack(">I", len(header)) + header + b"\0" * 8)
    header = b'{"a": {"__array__": ["<f8", [100], 0]}}'
    with pytest.raises(wire.WireError, match="outside"):
        wire.decode(struct.pack(">I", len(header)) + header + b"\0" * 8)
    with pytest.raises(wire.WireError):
        wire.decode(b"\x80\x04garbage")


def test_a_reply_is_rebuilt_field_by_field_and_a_field_of_the_wrong_type_is_refused():
    sent = {"id": 3, "status": "ok", "seconds": 1, "fields": {"W": np.zeros((2, 3)), "b": None},
            "keywords": ["mask"], "exit_status": None, "repeat": {"out": 0}, "unknown": object()}  # fmt: skip
    reply = from_wire(Reply, wire.decode(wire.encode({k: v for k, v in sent.items() if k != "unknown"})))
    assert reply.id == 3 and reply.keywords == ("mask",) and reply.fields["b"] is None
    assert isinstance(reply.seconds, float) and reply.repeat == {"out": 0.0}
    assert from_wire(Reply, sent).status == "ok", "a field it does not know is left out"
    for bad, match in [
        ({"id": "3"}, "id: expected an int, got a str"),
        ({"id": True}, "id: expected an int, got a bool"),
        ({"status": 200}, "status: expected a str, got an int"),
        ({"fields": [1.0]}, "fields: expected a dict, got a list"),
        ({"fields": {"W": [1.0, 2.0]}}, r"fields\['W'\]: expected an array, got a list"),
        ({"keywords": "mask"}, "keywords: expected a list, got a str"),
        ({"exit_status": 1.5}, "exit_status: expected an int, got a float"),
        ({"notes": {"W": 1}}, r"notes\['W'\]: expected a str, got an int"),
    ]:
        with pytest.raises(wire.WireError, match=match):
            from_wire(Reply, bad)
    with pytest.raises(wire.WireError, match="must be a dict"):
        from_wire(Hello, [1])
    assert from_wire(Hello, {"status": "ready", "keywords": None}).keywords is None


def test_a_declaration_is_validated_and_its_names_normalized():
    got = contract.parse_declaration({"inputs": ["tokens (B,T)", "tokens (T,)"], "options": ["s0"]})
    assert got == {"inputs": ("tokens (T,)", "tokens (B, T)"), "options": ("s0",)}
    for bad, match in [
        ({"input": []}, "unknown key 'input'"),
        ({"inputs": ["tokens"]}, "unknown value 'tokens'"),
        ({"options": "s0"}, "expected a list"),
        (["s0"], "expected a dict"),
    ]:
        with pytest.raises(contract.TargetError, match=match):
            contract.parse_declaration(bad)


def test_the_finite_difference_ratio_is_the_elementwise_criterion():
    a = np.array([1.0, 1e-3, 0.0])
    for n in (a + np.array([0.0, 2e-7, 0.0]), a + np.array([0.0, 0.0, 5e-8])):
        c = compare.compare_fd("b", a, n)
        tol = compare.FD_ATOL + compare.FD_RTOL * np.maximum(np.abs(a), np.abs(n))
        assert c.abs_error / c.tolerance == pytest.approx(np.max(np.abs(a - n) / tol))
        assert c.passed == (c.abs_error <= c.tolerance)


def test_a_changed_input_is_found_in_the_checker_and_named():
    """The worker sends the inputs back as the call left them; the checker compares them with
    its own arrays (a changed input matters more than what the target raised)."""
    request = Request("call", probe_configs(("tokens (T,)",))["mask"], id=7)

    def changes(p, xs, ys, **kw):
        ys[0] += 1
        kw["mask"][:] = False  # it has at least one True
        raise ValueError("after changing its inputs")

    reply = worker.handle(changes, request)
    assert reply.status == "raised" and not np.array_equal(reply.inputs["ys"], problem_for(request.config).ys)
    judged = replies.verified(request, reply)
    assert judged.status == "mutated" and judged.mutated == ("ys", "mask"), "and not what it raised"
    assert replies.verified(request, worker.handle(lambda *a, **k: None, request)).status == "bad_result"
    right = worker.handle(mb.bptt, request)
    assert right.status == "ok" and replies.verified(request, right) == right
    forged = dataclasses.replace(right, inputs={})
    assert replies.verified(request, forged).status == "garbled", "a call's reply must carry its inputs"


def test_a_result_is_read_twice_and_a_second_read_that_differs_is_a_finding():
    request = Request("call", probe_configs(("tokens (T,)",))["tokens (T,)"], id=3)

    class Drifts:
        def __init__(self, a):
            self.a, self.reads = np.asarray(a), 0

        def __array__(self, dtype=None, copy=None):
            self.reads += 1
            return self.a if self.reads == 1 else np.nextafter(self.a, np.inf)  # one ulp, read again

    def drifting(p, xs, ys, **kw):
        r = mb.bptt(p, xs, ys, **kw)
        grads = SimpleNamespace(**{**vars(r.grads), "W": Drifts(r.grads.W)})
        return SimpleNamespace(loss=r.loss, grads=grads)

    reply = worker.handle(drifting, request)
    assert reply.status == "ok", "the worker judges nothing"
    judged = replies.verified(request, reply)
    assert judged.status == "bad_result" and "reads differently when it is read again (W)" in judged.message


def test_the_worker_side_imports_neither_torch_nor_the_oracle():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['reference'] = None\n"
        "import bptt_report.targets.worker, bptt_report.run.pool, bptt_report.run.wire\n"
        "print('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_one_traceback_per_kind_of_exception():
    from bptt_report.judge.results import CheckResult, ConfigCheck
    from bptt_report.plan.sweep import QUICK

    cfg = probe_configs(("tokens (T,)",))["tokens (T,)"]
    checks = tuple(
        ConfigCheck(i, "oracle", cfg, "fail", (), msg, (), 0.0, f"Traceback {i}")
        for i, msg in enumerate([
            "the target called sys.exit(0) during configuration #0",
            "the target called sys.exit(0) during configuration #1",
            "the target raised ValueError: a",
            "the target raised ValueError: b",
            "the target raised KeyError: 'c'",
        ])
    )  # fmt: skip
    r = CheckResult("t:f", 0, QUICK, 1, checks, (), {}, 0.0)
    assert [(k, c.id) for k, c in r.tracebacks()] == [
        ("the target called sys.exit(0)", 0),
        ("the target raised ValueError", 2),
        ("the target raised KeyError", 4),
    ]


def test_findings_that_differ_only_in_shapes_or_configuration_numbers_are_one():
    from bptt_report.judge.results import CheckResult, ConfigCheck, finding_key
    from bptt_report.plan.sweep import QUICK

    cfg = probe_configs(("tokens (T,)",))["tokens (T,)"]
    messages = [
        "the target raised ValueError: shapes (3, 4) and (5,) not aligned during configuration #0",
        "the target raised ValueError: shapes (2, 7) and (1,) not aligned during configuration #4",
        "the target raised ValueError: operands could not be broadcast during configuration #5",
        "disagrees with the oracle in W, U: W: max|actual - expected| = 1.0e-01 at index (0, 1): ...",
        "disagrees with the oracle in U, W: U: max|actual - expected| = 2.0e-03 at index (2, 0): ...",
        "disagrees with the oracle in W: W: max|actual - expected| = 2.0e-03 at index (2, 0): ...",
    ]
    checks = tuple(ConfigCheck(i, "oracle", cfg, "fail", (), m) for i, m in enumerate(messages))
    r = CheckResult("t:f", 0, QUICK, 1, checks, (), {}, 0.0)
    assert [(c.id, n) for c, n in r.findings()] == [(0, 2), (2, 1), (3, 2), (5, 1)]
    assert finding_key(messages[0]) == finding_key(messages[1]) != finding_key(messages[2])
    assert "(and 1 more like it)" in r.summary() and "4 distinct findings" in r.summary()


def test_a_constant_factor_is_found_and_named_only_when_every_failing_array_has_it():
    from bptt_report.judge.checks import compare_output, constant_scale
    from bptt_report.judge.references import oracle_reference
    from bptt_report.targets.contract import TargetOutput

    cfg = dataclasses.replace(probe_configs(("tokens (B, T)",))["tokens (B, T)"], B=3, bias=True)
    ref = oracle_reference(problem_for(cfg))

    def scaled(factors):
        grads = {n: None if a is None else a * factors.get(n, 1.0) for n, a in ref.grads.items()}
        loss, ds0 = ref.loss * factors.get("loss", 1.0), ref.ds0 * factors.get("ds0", 1.0)
        return TargetOutput(loss, grads, ds0, None)

    def scale_of(factors):
        out = scaled(factors)
        return constant_scale(out, ref, compare_output(out, ref), cfg)[0]

    every = {n: 1 / 3 for n in ("loss", "U", "W", "V", "b", "c", "ds0")}
    assert scale_of(every) == "1/B"
    assert scale_of({"W": 1.5}) == "3/2"
    assert scale_of({"W": 1.5, "U": 2.0}) == "", "two factors"
    assert scale_of({}) == "", "nothing fails"
    out = scaled({"W": 1.5})
    out.grads["W"][0, 0] += 1e-3  # not a multiple of the reference any more
    assert constant_scale(out, ref, compare_output(out, ref), cfg)[0] == ""


def test_an_all_zero_reference_is_judged_by_the_absolute_tolerance_and_said_so():
    zero = np.zeros((2, 3))
    near = compare.compare_array("W", zero + 5e-13, zero)
    far = compare.compare_array("W", zero + np.array([[0.0, 0.0, 0.25], [0.0, 0.0, 0.0]]), zero)
    assert near.passed and not far.passed and near.zero_reference
    ratio = compare.RTOL / compare.ATOL
    assert near.rel_error == pytest.approx(5e-13 * ratio) and near.rel_error <= compare.RTOL
    assert far.rel_error == pytest.approx(0.25 * ratio) and far.rel_error < 1e100
    assert far.describe().startswith("W: expected exactly 0, got max |x| = 2.500e-01 at index (0, 2)")
    assert "relative error" not in far.describe()
    fd = compare.compare_fd("W", zero + 1e-3, zero)
    assert not fd.passed and fd.zero_reference and fd.rel_error < 1e100
    assert "expected exactly 0" in fd.describe()
