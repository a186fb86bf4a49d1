"""check-module's layer contract: what a module must be, the shape of the layer it is (its layers,
directions, projection, and how it takes a batch of variable lengths), what it may be that the
check does not cover, and the likely cause of a mismatch. No torch (the module is read by its
attributes): both the module's worker (bptt_report.module.worker) and the checker
(bptt_report.module.session) use it.

The contract: ``FACTORY(input_size=D, hidden_size=H, bias=..., batch_first=True)`` returns an
``nn.Module`` with ``forward(x, h0) -> (out, h_n)`` (``(h0, c0) -> (out, (h_n, c_n))`` for the
LSTM), as torch.nn.RNN, GRU and LSTM of any num_layers L, bidirectional or not (dirs = 2 or 1),
with or without the LSTM's projection (proj_size P; H_out = P or H): x (B, T, D), h0
(L*dirs, B, H_out), c0 (L*dirs, B, H), out (B, T, dirs*H_out), and torch's parameters
``weight_ih_l{l}[_reverse]`` (G*H, D_l), ``weight_hh_l{l}...`` (G*H, H_out), ``bias_ih_l{l}...``,
``bias_hh_l{l}...`` (G*H,), ``weight_hr_l{l}...`` (H_out, H) (G = 1, 3, 4 for rnn, gru, lstm;
D_0 = D, D_l = dirs*H_out above). A batch of variable lengths is fed as the module declares it
takes one (``declared_feed``): a PackedSequence, or x plus ``lengths=``.

    LayerConfig        the module's configuration, read from its attributes (num_layers,
                       bidirectional, proj_size, batch_first, bias, nonlinearity, dropout, as
                       torch's layers have them) or, where they are absent, from its parameter names
    Shape              what a case is drawn for: L, dirs, P, and how variable lengths are fed
                       (shape_of: from a LayerConfig)
    declared_feed      how a module declares that it takes variable lengths (FEEDS)
    NOT_CHECKED_YET    the configurations check-module does not check, each with the words that
                       say why (the one place to change when one becomes checkable)
    refusal            why a module cannot be checked as built (None: it can)
    factory_mismatch   why the factory cannot be called with the contract's keywords
    shape_hint         the likely cause of a parameter of the wrong shape ("did you mean --cell lstm?")
    missing_hint       what a module without the parameter names may be instead (a cell of one
                       step, fewer layers or directions than it says it has)
    extra_hint         parameters of layers or directions the configuration read does not have
    forward_mismatch   a forward that raised on the contract's call, recognised as a contract
                       mismatch (torch's "Expected hidden[0] size (2, B, H)"), with its likely cause
    declined_by_torch  torch's refusal of a size (proj_size >= hidden_size), a size declined
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
_LAYER = re.compile(r"^(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$")
#: The kinds of parameter, in torch's order within a direction, and our names for their gradients.
KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
GRAD_WORDS = {
    "weight_ih": "dU", "weight_hh": "dW", "bias_ih": "db_ih", "bias_hh": "db_hh", "weight_hr": "dW_hr"
}  # fmt: skip
#: How a batch of variable lengths is fed to a module: as a PackedSequence
#: (pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False), its out unpacked by
#: pad_packed_sequence(..., total_length=T)), or as x (B, T, D) plus lengths= (a CPU int64 tensor).
FEEDS = ("packed", "lengths")
#: The attribute, on the factory or the module, that declares it takes a PackedSequence.
PACKED_ATTRIBUTE = "takes_packed_sequence"


def parse_name(name: str) -> tuple[str, int, int] | None:
    """(kind, layer, direction) of torch's parameter name ("weight_hh_l1_reverse": ("weight_hh",
    1, 1)); None for any other name."""
    m = _LAYER.match(name)
    if m is None:
        return None
    return f"{m.group(1)}_{m.group(2)}", int(m.group(3)), 1 if m.group(4) else 0


def param_name(kind: str, layer: int, direction: int) -> str:
    """torch's name of one parameter: param_name("weight_hh", 1, 1) == "weight_hh_l1_reverse"."""
    return f"{kind}_l{layer}" + ("_reverse" if direction else "")


def direction_words(direction: int) -> str:
    return "reverse direction" if direction else "forward direction"


def where_words(layer: int, direction: int, shape: Shape) -> str:
    """How a sentence names one layer and direction: "layer 1, reverse direction" ("layer 1" for
    a layer of one direction)."""
    return f"layer {layer}" + (f", {direction_words(direction)}" if shape.directions == 2 else "")


@dataclass(frozen=True)
class LayerConfig:
    """A recurrent module's configuration as read from outside.

    Attributes:
        num_layers, bidirectional, proj_size, batch_first, bias, nonlinearity, dropout: the values
            read (None: neither an attribute nor the parameter names say).
        source: attribute name -> where its value was read: "attribute" or "parameter names".
    """

    num_layers: int | None = None
    bidirectional: bool | None = None
    proj_size: int | None = None
    batch_first: bool | None = None
    bias: bool | None = None
    nonlinearity: str | None = None
    dropout: float | None = None
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
                       ("batch_first", bool), ("bias", bool), ("nonlinearity", str),
                       ("dropout", (int, float))):  # fmt: skip
        v = getattr(module, name, None)
        if isinstance(v, kind) and not (kind is not bool and isinstance(v, bool)):  # (True is an int)
            values[name], source[name] = (float(v) if name == "dropout" else v), "attribute"
    try:
        params = {n: tuple(p.shape) for n, p in module.named_parameters()}
    except Exception:  # not a module, or one whose parameters cannot be listed: the attributes only
        params = {}
    names = [n.rsplit(".", 1)[-1] for n in params]
    if "num_layers" not in values:
        layers = [parsed[1] for n in names if (parsed := parse_name(n))]
        if layers:
            values["num_layers"], source["num_layers"] = max(layers) + 1, "parameter names"
    if "bidirectional" not in values and any(n.endswith("_reverse") and parse_name(n) for n in names):
        values["bidirectional"], source["bidirectional"] = True, "parameter names"
    if "proj_size" not in values:
        hr = [shape for n, shape in params.items() if n.rsplit(".", 1)[-1].startswith("weight_hr_l")]
        if hr and len(hr[0]) == 2:
            values["proj_size"], source["proj_size"] = hr[0][0], "parameter names"
    return LayerConfig(**values, source=tuple(sorted(source.items())))


@dataclass(frozen=True)
class Shape:
    """The shape of the layer a case is drawn for.

    Attributes:
        num_layers: L >= 1.  directions: dirs, 1 or 2 (bidirectional).
        proj_size: the LSTM's P (0: no projection); H_out = P or H.
        feed: how a batch of variable lengths is fed ("packed" or "lengths", FEEDS), or None:
            every sequence has T steps.
    """

    num_layers: int = 1
    directions: int = 1
    proj_size: int = 0
    feed: str | None = None

    @property
    def one_layer(self) -> bool:
        """One layer, one direction, no projection: the layer of the contract before stacks."""
        return self.num_layers == 1 and self.directions == 1 and not self.proj_size

    @property
    def rows(self) -> int:
        """L * dirs: the first axis of h0, c0, h_n, c_n (row l*dirs + d is layer l, direction d)."""
        return self.num_layers * self.directions

    def out_size(self, H: int) -> int:
        """H_out: the size of h_t."""
        return self.proj_size or H

    def where(self, row: int) -> str:
        """The words of a state's row: "layer 1, reverse direction"."""
        return where_words(row // self.directions, row % self.directions, self)

    def param_shapes(self, cell: str, D: int, H: int, bias: bool) -> dict[str, tuple[int, ...]]:
        """torch's parameters of this shape by name, in torch's order (that of its state_dict)."""
        G, H_out, dirs = GATES[cell], self.out_size(H), self.directions
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            D_l = D if layer == 0 else dirs * H_out
            for d in range(dirs):
                want = {"weight_ih": (G * H, D_l), "weight_hh": (G * H, H_out), "bias_ih": (G * H,),
                        "bias_hh": (G * H,), "weight_hr": (H_out, H)}  # fmt: skip
                for kind in KINDS:
                    if (kind.startswith("bias") and not bias) or (kind == "weight_hr" and not self.proj_size):
                        continue
                    shapes[param_name(kind, layer, d)] = want[kind]
        return shapes

    def words(self) -> str:
        """"3 layers, bidirectional, proj_size 2, variable lengths as PackedSequences" ("" for the
        one-layer, fixed-length shape)."""
        parts = []
        if self.num_layers > 1:
            parts.append(f"{self.num_layers} layers")
        if self.directions == 2:
            parts.append("bidirectional")
        if self.proj_size:
            parts.append(f"proj_size {self.proj_size}")
        if self.feed is not None:
            parts.append(FEED_WORDS[self.feed])
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"num_layers": self.num_layers, "bidirectional": self.directions == 2,
                "proj_size": self.proj_size, "feed": self.feed}  # fmt: skip


#: How the report says each feed.
FEED_WORDS = {"packed": "variable lengths as PackedSequences", "lengths": "variable lengths as x and lengths"}


def shape_of(config: LayerConfig, feed: str | None = None) -> Shape:
    """The Shape of a module of ``config``, its variable lengths fed as ``feed``."""
    return Shape(
        num_layers=config.num_layers or 1,
        directions=2 if config.bidirectional else 1,
        proj_size=config.proj_size or 0,
        feed=feed,
    )


def declared_feed(factory: Any, module: Any) -> str | None:
    """How ``module`` (made by ``factory``) declares that it takes a batch of variable lengths:
    "lengths" when its forward has a parameter named ``lengths`` (called as ``m(x, h0,
    lengths=lengths)``); "packed" when the module or the factory has the attribute
    ``takes_packed_sequence = True``, or the forward's first parameter is annotated as a
    PackedSequence; None when it declares neither."""
    forward = getattr(module, "forward", None)
    try:
        params = list(inspect.signature(forward).parameters.values()) if forward is not None else []
    except (TypeError, ValueError):
        params = []
    if any(p.name == "lengths" for p in params):
        return "lengths"
    for holder in (module, factory):
        if getattr(holder, PACKED_ATTRIBUTE, False) is True:
            return "packed"
    if params and "PackedSequence" in str(params[0].annotation):
        return "packed"
    return None


@dataclass(frozen=True)
class NotYet:
    """A configuration check-module does not check: when ``applies``, the module is refused, and
    ``words`` say why and what to do instead."""

    attribute: str
    applies: Callable[[LayerConfig], bool]
    words: str


#: What check-module does not check (a usage error saying why, never a FAIL). To make one of them
#: checkable, remove it here and teach the cases, the reference and the worker its shape.
NOT_CHECKED_YET: tuple[NotYet, ...] = (
    NotYet(
        "dropout",
        lambda c: (c.dropout or 0.0) > 0 and (c.num_layers or 1) > 1,
        "in train() mode its layers' outputs pass through random dropout, which the reference does not "
        "have: build it with dropout=0 to check it (the dropout is not part of the gradient being checked)",
    ),
)


def type_name(module: Any) -> str:
    """``torch.nn.LSTM`` for torch's own layers, else ``module.Class``."""
    cls = type(module)
    where = cls.__module__
    if where.startswith("torch.nn.modules"):
        where = "torch.nn"
    return f"{where}.{cls.__qualname__}"


def refusal(module: Any, config: LayerConfig, given: dict[str, Any], cell: str | None = None) -> str | None:
    """Why ``module``, built with the keywords ``given``, cannot be checked (None: it can): a
    configuration not checked (NOT_CHECKED_YET), a projection on another cell than ``cell``
    "lstm", or one that contradicts what it was given."""
    name = type_name(module)
    for rule in NOT_CHECKED_YET:
        if rule.applies(config):
            value = getattr(config, rule.attribute)
            read = config.where(rule.attribute)
            how = "" if read == "attribute" else f" (read from its {read})"
            return f"{name} with {rule.attribute}={value!r}{how}: {rule.words}"
    if cell is not None and cell != "lstm" and (config.proj_size or 0) > 0:
        how = "" if config.where("proj_size") == "attribute" else " (read from its parameter names)"
        return (
            f"{name} with proj_size={config.proj_size}{how}: a projection is the LSTM's (weight_hr_l0 "
            "maps o_t * tanh(c_t) to h_t): did you mean --cell lstm?"
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


def shape_hint(
    name: str,
    got: tuple[int, ...],
    want: tuple[int, ...],
    cell: str,
    D: int,
    H: int,
    shape: Shape | None = None,
) -> str:
    """"weight_ih_l0 has shape (28, 2), expected (21, 2)" and, where it can be told, the likely
    cause: the rows of another cell ("4H rows, as an LSTM has: did you mean --cell lstm?"), a
    projection not read (weight_hh_l0 with P < H columns) or one that is not there, a layer
    above one of another number of directions, an input size that was not used."""
    shape = shape or Shape()
    text = f"{name} has shape {got}, expected {want}"
    if not got or not want:
        return text
    if got[0] != want[0] and H > 0 and got[0] % H == 0 and not name.startswith("weight_hr"):
        g = got[0] // H
        other = next((c for c, n in GATES.items() if n == g and c != cell), None)
        rows = "H" if g == 1 else f"{g}H"
        if other is not None:
            return f"{text}: {rows} rows, as {CELL_WORDS[other]} has: did you mean --cell {other}?"
        return f"{text}: {rows} rows, as no cell of check-module has (rnn H, gru 3H, lstm 4H)"
    parsed = parse_name(name)
    layer = parsed[1] if parsed else 0
    H_out, dirs = shape.out_size(H), shape.directions
    if len(got) == 2 and len(want) == 2 and got[0] == want[0] and got[1] != want[1]:
        if name.startswith("weight_hh") and not shape.proj_size and got[1] < H:
            return (
                f"{text}: {got[1]} columns where hidden_size is {H}, as an LSTM with proj_size={got[1]} "
                "has: its projection was not read (neither a proj_size attribute nor a weight_hr_l0 says it)"
            )
        if name.startswith("weight_hh") and shape.proj_size and got[1] == H:
            return (
                f"{text}: {H} columns, hidden_size, where proj_size is {shape.proj_size}: with a projection "
                "h_{t-1} has proj_size entries (weight_hh takes the projected state)"
            )
        if name.startswith("weight_ih") and layer == 0:
            return f"{text}: {got[1]} columns where the factory was given input_size={D}"
        if name.startswith("weight_ih"):
            below = f"layer {layer - 1}'s output"
            if got[1] == (3 - dirs) * H_out:
                other = "one direction" if dirs == 2 else "two directions"
                return (
                    f"{text}: {got[1]} columns, {below} as a layer of {other} gives it, where "
                    f"{'bidirectional' if dirs == 2 else 'one direction'} was read"
                )
            if shape.proj_size and got[1] == dirs * H:
                return (
                    f"{text}: {got[1]} columns = {dirs} x hidden_size, where {below} is {dirs} x proj_size = "
                    f"{dirs * H_out}: the layer above a projection takes the projected h_t"
                )
    if name.startswith("weight_hr") and len(got) == 2 and got[1] == H and got[0] != want[0]:
        return f"{text}: a projection to {got[0]} entries, where proj_size={shape.proj_size} was read"
    return text


def _layers_and_directions(names: list[str]) -> tuple[int, int]:
    parsed = [p for n in names if (p := parse_name(n.rsplit(".", 1)[-1]))]
    if not parsed:
        return 0, 0
    return max(p[1] for p in parsed) + 1, max(p[2] for p in parsed) + 1


def missing_hint(names: list[str], shape: Shape | None = None, config: LayerConfig | None = None) -> str:
    """What a module without torch's layer names may be instead (appended to the error): a cell of
    one step (torch.nn.LSTMCell's weight_ih, weight_hh); fewer layers or directions than its
    configuration says (an attribute that does not match its parameters)."""
    if "weight_ih" in names and "weight_hh" in names:
        return (
            "; its weight_ih and weight_hh are those of a cell of one step (as torch.nn.RNNCell, GRUCell, "
            "LSTMCell): check-module checks a layer over a sequence (as torch.nn.RNN, GRU, LSTM)"
        )
    shape = shape or Shape()
    layers, dirs = _layers_and_directions(names)
    if layers and (layers, dirs) != (shape.num_layers, shape.directions):
        return "; " + _read_against(layers, dirs, shape, config)
    return ""


def extra_hint(extra: list[str], names: list[str], shape: Shape, config: LayerConfig | None = None) -> str:
    """Why a module has torch's names that its shape does not (``extra``): more layers or
    directions, or a projection, than its configuration says."""
    layers, dirs = _layers_and_directions(names)
    listed = ", ".join(extra[:6]) + (", ..." if len(extra) > 6 else "")
    if any(n.startswith("weight_hr") for n in extra) and not shape.proj_size:
        read = _source(config, "proj_size")
        return f"the module has {listed}, a projection, where proj_size=0 was read{read}"
    return f"the module has {listed}: {_read_against(layers, dirs, shape, config)}"


def _source(config: LayerConfig | None, name: str) -> str:
    where = config.where(name) if config is not None else ""
    return f" (from its {where})" if where else ""


def _read_against(layers: int, dirs: int, shape: Shape, config: LayerConfig | None) -> str:
    has = f"{layers} layer{'s' if layers > 1 else ''} of {dirs} direction{'s' if dirs > 1 else ''}"
    read = (
        f"num_layers={shape.num_layers}{_source(config, 'num_layers')} and "
        f"bidirectional={shape.directions == 2}{_source(config, 'bidirectional')}"
    )
    return (
        f"its parameters are those of {has}, where {read} was read: its attributes do not match its "
        "parameters"
    )


_HIDDEN = re.compile(
    r"Expected hidden(?:\[(\d)\])? size \((\d+), (\d+), (\d+)\), got \[(\d+), (\d+), (\d+)\]"
)
_INPUT = re.compile(r"input\.size\(-1\) must be equal to input_size\. Expected (\d+), got (\d+)")


def case_shape(case: dict[str, Any]) -> Shape:
    """The Shape a case was drawn for (the one-layer shape for a case without one)."""
    shape = case.get("shape")
    return shape if isinstance(shape, Shape) else Shape()


def forward_mismatch(message: str, case: dict[str, Any]) -> str | None:
    """The likely cause, when the forward's exception ``message`` on ``case`` is a contract
    mismatch seen in torch's own checks (the initial state of another number of layers or
    directions than was read, a projection not read, batch_first not honoured, another input
    size), or a forward given a PackedSequence that does not take one; None otherwise (the
    module's own failure, a finding)."""
    B, T, D, H = case["B"], case["T"], case["D"], case["H"]
    shape = case_shape(case)
    H_out = shape.out_size(H)
    not_packed = ("'PackedSequence' object", "tuple indices must be integers or slices, not tuple")
    if shape.feed == "packed" and any(words in message for words in not_packed):
        return (
            "a batch of variable lengths is fed as a PackedSequence to a layer whose forward has no lengths "
            "parameter, and this one does not take a PackedSequence: give its forward a lengths parameter "
            "(then it is called as m(x, h0, lengths=lengths)), or check it without --lengths"
        )
    m = _HIDDEN.search(message)
    if m is not None:
        want = tuple(int(v) for v in m.group(2, 3, 4))
        got = tuple(int(v) for v in m.group(5, 6, 7))
        if got[1:] != (B, H_out) or (got[0] != shape.rows):
            return None  # not the initial state check-module gave it
        if want[0] != shape.rows:
            read = "one layer, one direction" if shape.rows == 1 else f"{shape.rows}"
            return (
                f"the layer expects an initial state of {want[0]} layers x directions, as a stacked "
                f"(num_layers > 1) or bidirectional layer does, where {read} was read from its attributes "
                "and parameter names: give it num_layers and bidirectional attributes, or torch's parameter "
                "names"
            )
        if want[1] == T and T != B:
            return (
                f"the layer expects the state of a batch of {T} = T: it reads x as (T, B, D), "
                "so it ignored batch_first=True"
            )
        if want[2] != H_out:
            return (
                f"the layer expects a state of size {want[2]} where {H_out} was read (hidden_size {H}, "
                f"proj_size {shape.proj_size}), as an LSTM with proj_size={want[2]} does: give it a "
                "proj_size attribute, or torch's weight_hr_l0"
            )
        return None
    m = _INPUT.search(message)
    if m is not None and int(m.group(2)) == D and int(m.group(1)) != D:
        return f"the layer was built for input_size={m.group(1)} where the factory was given input_size={D}"
    return None


def declined_by_torch(exc: BaseException, given: dict[str, Any]) -> str | None:
    """The words of a size torch's own layers cannot be built with (a projection not smaller than
    hidden_size), which the factory declines as it would with NotImplementedError; None for
    anything else."""
    if isinstance(exc, ValueError) and "proj_size has to be smaller than hidden_size" in str(exc):
        return f"ValueError for hidden_size={given['hidden_size']}: {exc}"
    return None
