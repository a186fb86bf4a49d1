"""check-module's layer contract: what a module must be, what it may be that the check does not
cover yet, and the likely cause of a mismatch. No torch (the module is read by its attributes): both the
module's worker (bptt_report.module.worker) and the checker (bptt_report.module.session) use it.

The contract: ``FACTORY(input_size=D, hidden_size=H, bias=..., batch_first=True)`` returns an
``nn.Module`` with ``forward(x, h0) -> (out, h_n)`` (``(h0, c0) -> (out, (h_n, c_n))`` for the
LSTM), x (B, T, D), h0 and c0 (1, B, H), out (B, T, H), and the parameters ``weight_ih_l0``
(G*H, D), ``weight_hh_l0`` (G*H, H), ``bias_ih_l0``, ``bias_hh_l0`` (G*H,) (G = 1, 3, 4 for rnn,
gru, lstm). One layer, one direction, no projection.

    LayerConfig        the module's configuration, read from its attributes (num_layers,
                       bidirectional, proj_size, batch_first, bias, nonlinearity, as torch's
                       layers have them) or, where they are absent, from its parameter names
    NOT_CHECKED_YET    the configurations check-module does not check yet, each with the words
                       that name it (the one place to change when one becomes checkable)
    refusal            why a module cannot be checked as built (None: it can)
    factory_mismatch   why the factory cannot be called with the contract's keywords
    shape_hint         the likely cause of a parameter of the wrong shape ("did you mean --cell lstm?")
    missing_hint       what a module without the parameter names may be instead (a cell of one step)
    forward_mismatch   a forward that raised on the contract's call, recognised as a contract
                       mismatch (torch's "Expected hidden[0] size (2, B, H)"), with its likely cause
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..cells import GATES

#: A cell as a sentence names it.
CELL_WORDS = {"rnn": "an Elman RNN (torch.nn.RNN)", "gru": "a GRU", "lstm": "an LSTM"}
#: The keywords the factory is called with.
FACTORY_KEYWORDS = ("input_size", "hidden_size", "bias", "batch_first")

#: A parameter name of torch's recurrent layers: weight_ih_l0, bias_hh_l1_reverse, weight_hr_l0, ...
_LAYER = re.compile(r"^(?:weight|bias)_(?:ih|hh|hr)_l(\d+)(?:_reverse)?$")


@dataclass(frozen=True)
class LayerConfig:
    """A recurrent module's configuration as read from outside.

    Attributes:
        num_layers, bidirectional, proj_size, batch_first, bias, nonlinearity: the values read
            (None: neither an attribute nor the parameter names say).
        source: attribute name -> where its value was read: "attribute" or "parameter names".
    """

    num_layers: int | None = None
    bidirectional: bool | None = None
    proj_size: int | None = None
    batch_first: bool | None = None
    bias: bool | None = None
    nonlinearity: str | None = None
    source: tuple[tuple[str, str], ...] = ()

    def where(self, name: str) -> str:
        return dict(self.source).get(name, "")


def read_config(module: Any) -> LayerConfig:
    """The configuration of ``module``: its attributes where it has them (as torch.nn.RNN, GRU and
    LSTM do), else what its parameter names say (weight_ih_l1: two layers; ..._reverse: two
    directions; weight_hr_l0 of shape (P, H): proj_size P)."""
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name, kind in (("num_layers", int), ("bidirectional", bool), ("proj_size", int),
                       ("batch_first", bool), ("bias", bool), ("nonlinearity", str)):  # fmt: skip
        v = getattr(module, name, None)
        if isinstance(v, kind) and not (kind is int and isinstance(v, bool)):
            values[name], source[name] = v, "attribute"
    try:
        params = {n: tuple(p.shape) for n, p in module.named_parameters()}
    except Exception:  # not a module, or one whose parameters cannot be listed: the attributes only
        params = {}
    names = [n.rsplit(".", 1)[-1] for n in params]
    if "num_layers" not in values:
        layers = [int(m.group(1)) for n in names if (m := _LAYER.search(n))]
        if layers:
            values["num_layers"], source["num_layers"] = max(layers) + 1, "parameter names"
    if "bidirectional" not in values and any(n.endswith("_reverse") and _LAYER.match(n) for n in names):
        values["bidirectional"], source["bidirectional"] = True, "parameter names"
    if "proj_size" not in values:
        hr = [shape for n, shape in params.items() if n.rsplit(".", 1)[-1].startswith("weight_hr_l")]
        if hr and len(hr[0]) == 2:
            values["proj_size"], source["proj_size"] = hr[0][0], "parameter names"
    return LayerConfig(**values, source=tuple(sorted(source.items())))


@dataclass(frozen=True)
class NotYet:
    """A configuration check-module does not check yet: when ``applies``, the module is refused
    with ``feature`` named."""

    attribute: str
    applies: Callable[[LayerConfig], bool]
    feature: str


#: What check-module does not check yet (a usage error naming it, never a FAIL). To make one of
#: them checkable, remove it here and teach the cases, the reference and the worker its shape.
NOT_CHECKED_YET: tuple[NotYet, ...] = (
    NotYet("num_layers", lambda c: c.num_layers is not None and c.num_layers > 1, "stacked layers"),
    NotYet("bidirectional", lambda c: bool(c.bidirectional), "bidirectional layers"),
    NotYet("proj_size", lambda c: c.proj_size is not None and c.proj_size > 0, "projected LSTM layers"),
)
#: What one layer of the contract is, as the refusals say it.
CHECKED = "check-module checks one layer, one direction, no projection"


def type_name(module: Any) -> str:
    """``torch.nn.LSTM`` for torch's own layers, else ``module.Class``."""
    cls = type(module)
    where = cls.__module__
    if where.startswith("torch.nn.modules"):
        where = "torch.nn"
    return f"{where}.{cls.__qualname__}"


def refusal(module: Any, config: LayerConfig, given: dict[str, Any]) -> str | None:
    """Why ``module``, built with the keywords ``given``, cannot be checked (None: it can): a
    configuration not checked yet (NOT_CHECKED_YET), or one that contradicts what it was given."""
    name = type_name(module)
    for rule in NOT_CHECKED_YET:
        if rule.applies(config):
            value = getattr(config, rule.attribute)
            read = config.where(rule.attribute)
            how = "" if read == "attribute" else f" (read from its {read})"
            return (
                f"{name} with {rule.attribute}={value!r}{how}: {CHECKED} ({rule.feature} are not "
                "supported yet)"
            )
    for key in ("batch_first", "bias"):
        value = getattr(config, key)
        if config.where(key) == "attribute" and value is not None and value != given[key]:
            return (
                f"the factory was given {key}={given[key]!r} but built {name} with {key}={value!r}: "
                "it must build the layer it is asked for"
            )
    return None


def factory_mismatch(factory: Callable[..., Any], given: dict[str, Any]) -> str | None:
    """Why ``factory`` cannot be called with the contract's keywords ``given`` (None: its signature
    takes them, or it has none that can be read)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(**given)
    except TypeError as exc:
        params = sig.parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            why = str(exc)
        else:
            positional = inspect.Parameter.POSITIONAL_ONLY
            refused = [k for k in given if k not in params or params[k].kind is positional]
            why = f"it takes no {', '.join(refused)}" if refused else str(exc)
        return _factory_words(given, f"{why} (its signature is {sig})")
    return None


def factory_type_error(exc: TypeError, given: dict[str, Any]) -> str | None:
    """A TypeError the factory raised when called, recognised as its refusal of the contract's
    keywords (None: another TypeError, the module's own)."""
    text = str(exc)
    if any(k in text for k in FACTORY_KEYWORDS) and ("keyword argument" in text or "positional" in text):
        return _factory_words(given, f"it raised TypeError: {text}")
    return None


def _factory_words(given: dict[str, Any], why: str) -> str:
    call = ", ".join(f"{k}={v!r}" for k, v in given.items())
    return (
        f"the factory does not take the contract's keywords: called as FACTORY({call}): {why}; "
        "check-module builds a layer as torch.nn.RNN/GRU/LSTM are built: write a factory function "
        "that takes input_size, hidden_size, bias and batch_first and returns the layer"
    )


def shape_hint(name: str, got: tuple[int, ...], want: tuple[int, ...], cell: str, D: int, H: int) -> str:
    """"weight_ih_l0 has shape (28, 2), expected (21, 2)" and, where it can be told, the likely
    cause: the rows of another cell ("4H rows, as an LSTM has: did you mean --cell lstm?"), a
    projection (weight_hh_l0 with P < H columns), an input size that was not used."""
    text = f"{name} has shape {got}, expected {want}"
    if not got or not want:
        return text
    if got[0] != want[0] and H > 0 and got[0] % H == 0:
        g = got[0] // H
        other = next((c for c, n in GATES.items() if n == g and c != cell), None)
        rows = "H" if g == 1 else f"{g}H"
        if other is not None:
            return f"{text}: {rows} rows, as {CELL_WORDS[other]} has: did you mean --cell {other}?"
        return f"{text}: {rows} rows, as no cell of check-module has (rnn H, gru 3H, lstm 4H)"
    if len(got) == 2 and len(want) == 2 and got[0] == want[0] and got[1] != want[1]:
        if name.startswith("weight_hh") and got[1] < H:
            return (
                f"{text}: {got[1]} columns where hidden_size is {H}, as an LSTM with proj_size={got[1]} "
                f"has: {CHECKED}"
            )
        if name.startswith("weight_ih"):
            return f"{text}: {got[1]} columns where the factory was given input_size={D}"
    return text


def missing_hint(names: list[str]) -> str:
    """What a module without torch's layer names may be instead (appended to the error): a cell of
    one step (torch.nn.LSTMCell's weight_ih, weight_hh)."""
    if "weight_ih" in names and "weight_hh" in names:
        return (
            "; its weight_ih and weight_hh are those of a cell of one step (as torch.nn.RNNCell, GRUCell, "
            "LSTMCell): check-module checks a layer over a sequence (as torch.nn.RNN, GRU, LSTM)"
        )
    return ""


_HIDDEN = re.compile(
    r"Expected hidden(?:\[(\d)\])? size \((\d+), (\d+), (\d+)\), got \[(\d+), (\d+), (\d+)\]"
)
_INPUT = re.compile(r"input\.size\(-1\) must be equal to input_size\. Expected (\d+), got (\d+)")


def forward_mismatch(message: str, case: dict[str, Any]) -> str | None:
    """The likely cause, when the forward's exception ``message`` on ``case`` is a contract
    mismatch seen in torch's own checks (the initial state of several layers or directions, a
    projection, batch_first not honoured, another input size); None otherwise (the module's own
    failure, a finding)."""
    B, T, D, H = case["B"], case["T"], case["D"], case["H"]
    m = _HIDDEN.search(message)
    if m is not None:
        want = tuple(int(v) for v in m.group(2, 3, 4))
        got = tuple(int(v) for v in m.group(5, 6, 7))
        if got != (1, B, H):
            return None  # not the initial state check-module gave it
        if want[0] != 1:
            return (
                f"the layer expects an initial state of {want[0]} layers x directions, as a stacked "
                f"(num_layers > 1) or bidirectional layer does: {CHECKED}"
            )
        if want[1] == T and T != B:
            return (
                f"the layer expects the state of a batch of {T} = T: it reads x as (T, B, D), "
                "so it ignored batch_first=True"
            )
        if want[2] != H:
            return (
                f"the layer expects a state of size {want[2]} where hidden_size is {H}, as an LSTM with "
                f"proj_size={want[2]} does: {CHECKED}"
            )
        return None
    m = _INPUT.search(message)
    if m is not None and int(m.group(2)) == D and int(m.group(1)) != D:
        return f"the layer was built for input_size={m.group(1)} where the factory was given input_size={D}"
    return None
