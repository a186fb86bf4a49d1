"""Reading a target's reply (bptt_report.run.protocol.Reply) in the checker: the arrays it returned,
or what it did instead of answering (raised, exited, modified its inputs, crashed, hung, ...).
numpy only.

What the target did to its inputs and whether its result stays what it was when read again are
judged here (``verified``, which the pool runs on every reply), on what its worker sent back,
never in the worker, where the target could change the judgment.
"""

from __future__ import annotations

import dataclasses
import signal
from typing import Any

import numpy as np

from ..run.protocol import Reply, Request
from .contract import PARAM_FIELDS, TargetOutput, problem_for, problem_inputs

#: Signal numbers -> names, for a worker killed by one.
_SIGNAL_NAMES = {s.value: s.name for s in signal.Signals}


def misbehaviour(reply: Reply, during: str) -> tuple[str, str, str, tuple[str, ...]] | None:
    """(status, message, traceback, unsupported keywords) when the reply is not a result, else None.

    ``during`` names the work, e.g. "configuration #12".
    """
    status = reply.status
    tb = reply.traceback
    if status == "ok":
        return None
    if status == "unsupported":
        return "unsupported", reply.message, "", reply.keywords
    if status == "raised":
        return "fail", f"the target raised {reply.exception}: {reply.message}", tb, ()
    if status == "bad_result":
        return "fail", reply.message, "", ()
    if status == "mutated":
        names = ", ".join(reply.mutated)
        return "fail", f"the target modified {names} (its input) during {during}", "", ()
    if status == "exited":
        return "fail", f"the target called sys.exit({reply.exit_argument}) during {during}", tb, ()
    if status == "died":
        code = reply.exit_status
        if isinstance(code, int) and code < 0:
            name = _SIGNAL_NAMES.get(-code, "?")
            text = f"the target's process was killed by signal {-code} ({name}) during {during}"
        elif code is None:
            text = f"the target's process stopped answering during {during}"
        else:
            text = f"the target exited with status {code} during {during}"
        return "fail", text, "", ()
    if status == "timeout":
        return "fail", f"the target ran past the timeout during {during}; its process was killed", "", ()
    if status == "garbled":
        text = f"the target's process sent a reply that cannot be read during {during} ({reply.detail})"
        return "fail", text, "", ()
    return "fail", f"no result for {during} ({status})", "", ()


def printed(reply: Reply) -> str:
    """What the target printed during the request (stdout and stderr), as the pool kept it: the
    last run.pool.OUTPUT_TAIL bytes, behind a line saying how much was left out; "" when it
    printed nothing."""
    if not reply.output_bytes:
        return ""
    kept = len(reply.output.encode("utf-8", "replace"))
    if kept >= reply.output_bytes:
        return reply.output
    return f"[{reply.output_bytes} bytes printed; the last {kept} follow]\n" + reply.output


def target_output(reply: Reply, cell: str = "rnn") -> tuple[TargetOutput, dict[str, str]]:
    """The target's arrays from a reply, and field -> note for values that could not be read
    (the LSTM's ds0 as the pair (ds0.h, ds0.c), None when neither was returned)."""
    f = reply.fields
    if cell == "lstm":
        h, c = f.get("ds0.h"), f.get("ds0.c")
        ds0 = None if h is None and c is None else (h, c)
    else:
        ds0 = f.get("ds0")
    out = TargetOutput(
        loss=f.get("loss"),
        grads={n: f.get(n) for n in PARAM_FIELDS[cell]},
        ds0=ds0,
        dxs=f.get("dxs"),
    )
    return out, dict(reply.notes)


#: The statuses of a reply to a call that reached the target (its inputs come back with it).
CALLED = ("ok", "raised", "exited", "bad_result")


def identical(a: Any, b: Any) -> bool:
    """Bitwise equality of two arrays (dtype, shape and every byte; NaN equals the same NaN);
    None only equals None."""
    if a is None or b is None:
        return a is None and b is None
    if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
        return False
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def verified(request: Request, reply: Reply) -> Reply:
    """A target's reply judged on what its worker sent back (run by the pool, in the checker):
    "mutated" when an input came back other than the checker's own array for it (rebuilt here
    from the configuration: targets.contract.problem_for), a changed input mattering more than
    what the call returned or raised; "bad_result" when the result read a second time differs
    from the first read (an array-like whose value changes when it is read); "garbled" when a
    call's reply does not carry its inputs back. Otherwise the reply as it came."""
    if request.kind not in ("call", "probe", "fd") or reply.status not in (*CALLED, "unsupported"):
        return reply
    if not reply.inputs:
        if reply.status in CALLED:
            detail = "the reply does not carry the inputs back"
            return dataclasses.replace(reply, status="garbled", detail=detail)
        return reply  # unsupported by the signature: the target was not called
    prob = problem_for(request.config, request.prefix)
    if prob is None:
        return reply
    own = problem_inputs(prob)
    changed = [n for n, a in own.items() if not identical(np.asarray(a) if a is not None else None,
                                                          reply.inputs.get(n))]  # fmt: skip
    if changed:
        return dataclasses.replace(reply, status="mutated", mutated=tuple(changed))
    if reply.status != "ok":
        return reply
    fields = set(reply.fields) | set(reply.reread)
    unstable = [n for n in fields if not identical(reply.fields.get(n), reply.reread.get(n))]
    unstable += [n for n in set(reply.notes) ^ set(reply.reread_notes) if n not in unstable]
    if unstable:
        order = ["loss", *PARAM_FIELDS[request.config.cell], "ds0", "ds0.h", "ds0.c", "dxs"]
        names = ", ".join(sorted(unstable, key=lambda n: order.index(n) if n in order else len(order)))
        message = (
            f"the target's result reads differently when it is read again ({names}): what it returns "
            "must be its values (arrays), not an object whose values change when read"
        )
        return dataclasses.replace(reply, status="bad_result", message=message)
    return reply

