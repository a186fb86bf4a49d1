"""What a target supports, per cell: its declaration, its signature, then one tiny probe per feature
not declared (in the target's worker processes). numpy only.

Each cell is probed on its smallest case: every input form alone, without biases (b = c = None)
and without options; then, on the first form it takes, biases (b, c), each option and (the
Elman cell) each activation, one at a time. A feature is unsupported when the keyword is not in
the signature, or when its probe is answered "unsupported" (NotImplementedError, or a TypeError
naming the keyword; for a gated cell, any TypeError on every input form); any other outcome
counts as supported, so the sweep checks it (a probe in which the target misbehaved is kept,
and becomes a failing "probe" check). One exception: on a cell the user did not ask for by
name (``named`` False, as under the default "all"), an input form whose probe raises anything
is unsupported, shown with the exception, since a target for one cell commonly fails on another
cell's parameters (a GRUParams has no .b); a cell asked for by name is held to the rule above,
so that what it raises is a failure.
"""

from __future__ import annotations

import dataclasses

from manual_bptt.problems import RNNConfig

from ..errors import TargetError
from ..run.pool import WorkerPool
from ..run.protocol import Hello, Reply, Request
from .contract import ACTIVATIONS, BIAS, FORMS, OPTIONS, Capabilities, parse_declaration
from .replies import misbehaviour


def probe_configs(
    caps_forms: tuple[str, ...], activation: str | None = "tanh", cell: str = "rnn"
) -> dict[str, RNNConfig]:
    """Tiny configurations of ``cell``, one per feature: each input form (with ``activation``,
    the Elman cell only; no biases, no options), then, on the first of ``caps_forms``, biases,
    each option and (the Elman cell) each activation alone."""
    act = activation if cell == "rnn" else None
    base = dict(T=3, D=4, H=3, K=2, bias=False, activation=act, truncate=None, reduction="sum",
                use_mask=False, s0_kind=None, weight_scale=0.5, seed=12345, cell=cell)  # fmt: skip
    out: dict[str, RNNConfig] = {}
    for name, (tokens, batched) in FORMS.items():
        out[name] = RNNConfig(B=2 if batched else None, tokens=tokens, **base)
    if caps_forms:
        first = out[caps_forms[0]]
        r = dataclasses.replace
        out[BIAS] = r(first, bias=True)
        out["s0"] = r(first, s0_kind="shared")
        out["truncate"] = r(first, truncate=1)
        out["mask"] = r(first, use_mask=True)
        out["reduction=mean"] = r(first, reduction="mean")
        for a in ACTIVATIONS if cell == "rnn" else ():
            out[a] = r(first, activation=a)
    return out


def capabilities(
    pool: WorkerPool, hello: Hello, cell: str = "rnn", *, named: bool = True
) -> tuple[Capabilities, list[tuple[str, RNNConfig, Reply]]]:
    """What the target supports for ``cell``: its declaration, its signature, then one probe
    per feature not declared. Also the probes in which the target misbehaved: (feature,
    config, reply). A cell it does not support (not declared in "cells", or every input form
    unsupported) has no forms, and ``unsupported`` = {cell: why}. ``named``: the user asked for
    the cell by name (see the module docstring: else a form whose probe raises is unsupported,
    and Capabilities.declined lists it).

    Raises:
        TargetError for an invalid declaration.
    """
    if hello.declared_error:
        raise TargetError(str(hello.declared_error))
    declared = hello.declared
    decl = parse_declaration(declared) if declared is not None else {}
    if "cells" in decl and cell not in decl["cells"]:
        return Capabilities((), (), (), unsupported={cell: "not declared in cells"}, cell=cell), []
    gated = cell != "rnn"
    keywords = None if hello.keywords is None else set(hello.keywords)
    unsupported: dict[str, str] = {}
    sources: dict[str, str] = {}
    bad: list[tuple[str, RNNConfig, Reply]] = []
    declined: list[str] = []  # forms unsupported only because their probe raised (not ``named``)

    def has_keyword(kw: str) -> bool:
        return keywords is None or kw in keywords

    def probe(features: list[str], cfgs: dict[str, RNNConfig], lenient: bool = False) -> list[str]:
        replies = pool.run([Request("probe", cfgs[f]) for f in features]) if features else []
        ok = []
        for f, reply in zip(features, replies, strict=True):
            status = reply.status
            if status == "not_run":
                unsupported[f] = "not probed: the target ended its worker processes"
                continue
            result = misbehaviour(reply, f"the probe of {f}")
            if result is not None and result[0] == "unsupported":
                unsupported[f] = "probed: " + str(reply.detail or result[1])
                continue
            if result is not None and lenient and status == "raised":
                unsupported[f] = "probed: " + result[1]
                declined.append(f)
                continue
            if result is not None and status not in ("raised", "bad_result"):
                bad.append((f, cfgs[f], reply))
            sources[f] = "probed" + (f" (the probe {result[1]}; checked in the sweep)" if result else "")
            ok.append(f)
        return ok

    def declared_part(key: str, names: tuple[str, ...]) -> list[str] | None:
        if key not in decl:
            return None
        for n in names:
            if n in decl[key]:
                sources[n] = "declared"
            else:
                unsupported[n] = f"not declared in {key}"
        return [n for n in names if n in decl[key]]

    acts_declared = [] if gated else declared_part("activations", ACTIVATIONS)
    if acts_declared and not has_keyword("activation"):
        for a in [a for a in acts_declared if a != "tanh"]:
            acts_declared.remove(a)
            unsupported[a] = "declared, but the signature has no activation keyword"
    base_act = acts_declared[0] if acts_declared else "tanh"
    cfgs = probe_configs((), base_act, cell)
    forms = declared_part("inputs", tuple(FORMS))
    if forms is None:
        forms = probe(list(FORMS), cfgs, lenient=not named)
    elif forms and "cells" not in decl:  # the forms are declared, the cell is not: probe it once
        cfgs[cell] = cfgs[forms[0]]
        if not probe([cell], cfgs, lenient=not named):
            caps = Capabilities((), (), (), unsupported={cell: unsupported[cell]}, cell=cell,
                                declined=tuple(declined))  # fmt: skip
            return caps, bad
        sources[cell] = sources.pop(cell) + f" (on {forms[0]})"
    if not forms and "inputs" not in decl:
        why = next((unsupported[f] for f in FORMS if f in unsupported), "no input form is supported")
        caps = Capabilities((), (), (), unsupported={cell: why}, sources=sources, cell=cell,
                            declined=tuple(declined))  # fmt: skip
        return caps, bad
    cfgs = probe_configs(tuple(forms), base_act, cell)
    options = declared_part("options", tuple(OPTIONS))
    to_probe: list[str] = []
    if options is None:
        options = []
        for opt, kw in OPTIONS.items():
            if not has_keyword(kw):
                unsupported[opt] = f"not in the signature: no {kw} keyword"
            elif forms:
                to_probe.append(opt)
    else:
        for opt in list(options):
            if not has_keyword(OPTIONS[opt]):
                options.remove(opt)
                unsupported[opt] = f"declared, but the signature has no {OPTIONS[opt]} keyword"
    acts = acts_declared
    act_probes: list[str] = []
    if acts is None and not gated:
        acts = ["tanh"] if forms else []
        for a in ACTIVATIONS[1:]:
            if not has_keyword("activation"):
                unsupported[a] = "not in the signature: no activation keyword"
            elif forms:
                act_probes.append(a)
        if forms:
            sources.setdefault("tanh", "probed (with the input forms)")
    ok = probe([BIAS, *to_probe, *act_probes], cfgs) if forms else []
    bias = BIAS in ok
    options = [o for o in OPTIONS if o in options or o in ok]
    acts = [a for a in ACTIVATIONS if a in (acts or ()) or a in ok]
    if not forms:
        for f in FORMS:
            unsupported.setdefault(f, "no input form is supported")
    dtypes = decl.get("dtypes", ("float64",))
    if "float64" not in dtypes:
        unsupported["float64"] = "not declared in dtypes (the checker compares float64 only)"
    caps = Capabilities(
        forms=tuple(f for f in FORMS if f in forms),
        options=tuple(options),
        activations=tuple(acts),
        dtypes=tuple(dtypes),
        unsupported=unsupported,
        sources=sources,
        cell=cell,
        bias=bias,
        declined=tuple(declined),
    )
    return caps, bad
