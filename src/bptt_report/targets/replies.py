"""Reading a target's reply (bptt_report.run.protocol.Reply) in the checker: the arrays it returned,
or what it did instead of answering (raised, exited, modified its inputs, crashed, hung, ...).
numpy only.
"""

from __future__ import annotations

import signal

from ..run.protocol import Reply
from .contract import PARAM_FIELDS, TargetOutput

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
