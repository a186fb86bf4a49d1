"""The parameters of a stack of recurrent layers, in torch's exact names and layout. numpy only.

torch.nn.RNN / nn.GRU / nn.LSTM with any num_layers L >= 1, one or two directions, the LSTM's
projection (proj_size) and with or without biases. G gate blocks (1 Elman, 3 GRU r, z, n, 4 LSTM
i, f, g, o), H hidden units, H_out = proj_size or H (the size of h_t), dirs = 2 if bidirectional
else 1, D_0 = D (the input size), D_l = dirs * H_out above layer 0. Layer l, direction d (0
forward, 1 reverse, which appends "_reverse" to every name) has

    U    (G*H, D_l)     weight_ih_l{l}[_reverse]
    W    (G*H, H_out)   weight_hh_l{l}[_reverse]
    b_ih (G*H,)         bias_ih_l{l}[_reverse]        both None, or both arrays (torch's bias=)
    b_hh (G*H,)         bias_hh_l{l}[_reverse]
    W_hr (H_out, H)     weight_hr_l{l}[_reverse]      the LSTM's projection h_t = W_hr m_t, or None

and the stack may carry an output layer over the top layer's outputs (for bptt):

    V    (K, dirs * H_out)      o_t = V [h_t forward; h_t reverse] + c
    c    (K,) or None

The Elman layer keeps torch's two biases (its a_t = U x_t + b_ih + W h_{t-1} + b_hh): a round trip
to a state_dict is lossless. Today's one-layer types (RNNParams, GRUParams, LSTMParams) are the
case L = 1, one direction, no projection: from_params / to_params convert, exactly (the Elman
cell's b is b_ih + b_hh, the one sum).

    p = StackParams.from_state_dict("lstm", module.state_dict())    # np.asarray reads the tensors
    module.load_state_dict({k: torch.as_tensor(v) for k, v in p.to_state_dict().items()})
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from .errors import all_finite, integer_arg
from .gated_params import GRUParams, LSTMParams
from .params import _FLOAT_DTYPES, RNNParams, _float_dtype, _frozen_copy

#: The cells and their number of stacked gate blocks G (weight_ih has G*H rows).
GATES: dict[str, int] = {"rnn": 1, "gru": 3, "lstm": 4}
#: The Elman cell's nonlinearities, as nn.RNN names them.
NONLINEARITIES = ("tanh", "relu")
#: The kinds of torch's parameter names, in the order of a module's state_dict within a direction.
KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
_FIELDS = {"weight_ih": "U", "weight_hh": "W", "bias_ih": "b_ih", "bias_hh": "b_hh", "weight_hr": "W_hr"}
_NAME = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
#: Today's one-layer types and their cells (for from_params / to_params only).
_ONE_LAYER = {RNNParams: "rnn", GRUParams: "gru", LSTMParams: "lstm"}


def torch_name(kind: str, layer: int, direction: int) -> str:
    """torch's name of one parameter: kind (one of KINDS), layer l, direction 0 (forward) or 1
    (reverse), e.g. torch_name("weight_hh", 1, 1) == "weight_hh_l1_reverse"."""
    return f"{kind}_l{layer}" + ("_reverse" if direction == 1 else "")


def direction_name(direction: int) -> str:
    """'forward' (0) or 'reverse' (1), for messages."""
    return "reverse" if direction == 1 else "forward"


@dataclass(frozen=True, eq=False)
class LayerWeights:
    """One direction of one layer: torch's arrays (see the module docstring for the names).

    Attributes:
        U: (G*H, D_l) weight_ih.  W: (G*H, H_out) weight_hh.
        b_ih, b_hh: (G*H,) bias_ih, bias_hh, or both None.
        W_hr: (H_out, H) weight_hr, the LSTM's projection, or None.

    The arrays are read-only copies of what was passed in; their shapes are checked by the
    StackParams they belong to, which knows their torch names.
    """

    U: np.ndarray
    W: np.ndarray
    b_ih: np.ndarray | None = None
    b_hh: np.ndarray | None = None
    W_hr: np.ndarray | None = None

    def __post_init__(self) -> None:
        for field in ("U", "W", "b_ih", "b_hh", "W_hr"):
            value = getattr(self, field)
            if value is None:
                if field in ("U", "W"):
                    raise ValueError(f"{field}: required, got None")
                continue
            object.__setattr__(self, field, _frozen_copy(field, value))

    @classmethod
    def _adopt(cls, **arrays: np.ndarray | None) -> LayerWeights:
        """LayerWeights keeping freshly computed arrays (gradients) without a copy, made read-only."""
        self = cls.__new__(cls)
        for field in ("U", "W", "b_ih", "b_hh", "W_hr"):
            value = arrays.get(field)
            if value is not None:
                value.flags.writeable = False
            object.__setattr__(self, field, value)
        return self

    def arrays_by_kind(self) -> Iterator[tuple[str, np.ndarray]]:
        """(kind, array) in torch's order (weight_ih, weight_hh, bias_ih, bias_hh, weight_hr),
        the arrays that are not None."""
        for kind in KINDS:
            value = getattr(self, _FIELDS[kind])
            if value is not None:
                yield kind, value


@dataclass(frozen=True, eq=False)
class StackParams:
    """Parameters (or gradients, which live in the same space) of a stack of recurrent layers.

    Attributes:
        cell: "rnn" (nn.RNN), "gru" (nn.GRU) or "lstm" (nn.LSTM).
        layers: L tuples of dirs LayerWeights, layers[l][d] (d = 0 forward, 1 reverse).
        nonlinearity: the Elman cell's f, "tanh" or "relu" (None is "tanh"); None for the gated
            cells, which fix their own.
        V: (K, dirs * H_out) the output layer over the top layer's outputs, or None.
        c: (K,) its bias, or None.

    Every layer and direction has the same cell, H, H_out and bias presence; either every layer
    has a reverse direction or none; either every one has W_hr (the LSTM only, 0 < H_out < H) or
    none. Shapes are checked here, each message naming the array by its torch name; finiteness
    by the functions that compute with the parameters. The arrays are read-only copies.
    """

    cell: str
    layers: tuple[tuple[LayerWeights, ...], ...]
    nonlinearity: str | None = None
    V: np.ndarray | None = None
    c: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.cell not in GATES:
            raise ValueError(f"cell: expected one of {sorted(GATES)}, got {self.cell!r}")
        if self.cell == "rnn":
            f = "tanh" if self.nonlinearity is None else self.nonlinearity
            if f not in NONLINEARITIES:
                raise ValueError(f"nonlinearity: expected 'tanh' or 'relu' for the Elman cell, got {f!r}")
            object.__setattr__(self, "nonlinearity", f)
        elif self.nonlinearity is not None:
            raise ValueError(
                f"nonlinearity: the Elman cell's ('rnn'); the {self.cell.upper()} fixes its own, so pass "
                f"None, got {self.nonlinearity!r}"
            )
        object.__setattr__(self, "layers", _layer_tuple(self.layers))
        for field in ("V", "c"):
            value = getattr(self, field)
            if value is not None:
                object.__setattr__(self, field, _frozen_copy(field, value))
        self._check_shapes()

    # -- construction ------------------------------------------------------------------------
    def _check_shapes(self) -> None:
        G, dirs = GATES[self.cell], len(self.layers[0])
        first = self.layers[0][0]
        H, H_out = _sizes(self.cell, first)
        proj, bias = first.W_hr is not None, first.b_ih is not None
        if first.U.ndim != 2 or first.U.shape[1] == 0:
            raise ValueError(f"weight_ih_l0: expected shape (G*H, D) with D >= 1, got {first.U.shape}")
        detail = f"G = {G}, H = {H}" + (f", proj_size = {H_out}" if proj else "")
        for layer, directions in enumerate(self.layers):
            if len(directions) != dirs:
                raise ValueError(
                    f"layers[{layer}]: has {len(directions)} direction(s), layer 0 has {dirs}: every layer "
                    "has a reverse direction or none"
                )
            D_l = first.U.shape[1] if layer == 0 else dirs * H_out
            for d, lw in enumerate(directions):
                want = {"weight_ih": (G * H, D_l), "weight_hh": (G * H, H_out), "weight_hr": (H_out, H)}
                want.update(bias_ih=(G * H,), bias_hh=(G * H,))
                formula = {
                    "weight_ih": "(G*H, D)" if layer == 0 else "(G*H, dirs * H_out)",
                    "weight_hh": "(G*H, H_out)",
                    "bias_ih": "(G*H,)",
                    "bias_hh": "(G*H,)",
                    "weight_hr": "(H_out, H)",
                }
                for kind in KINDS:
                    name, value = torch_name(kind, layer, d), getattr(lw, _FIELDS[kind])
                    present = {"bias_ih": bias, "bias_hh": bias, "weight_hr": proj}.get(kind, True)
                    if (value is not None) != present:
                        raise ValueError(_presence_problem(name, kind, present, bias, proj))
                    if value is not None and value.shape != want[kind]:
                        raise ValueError(
                            f"{name}: expected shape {want[kind]} {formula[kind]} with {detail}, "
                            f"got {value.shape}"
                        )
        if self.V is None:
            if self.c is not None:
                raise ValueError("c: given without V (the output layer's bias needs its weights V)")
            return
        want_in = dirs * H_out
        if self.V.ndim != 2 or self.V.shape[1] != want_in or self.V.shape[0] == 0:
            raise ValueError(
                f"V: expected shape (K, dirs * H_out) with dirs * H_out = {dirs} x {H_out} = {want_in} (the "
                "top "
                f"layer's outputs) and K >= 1, got {self.V.shape}"
            )
        if self.c is not None and self.c.shape != (self.V.shape[0],):
            raise ValueError(f"c: expected shape (K,) = ({self.V.shape[0]},), got {self.c.shape}")

    @classmethod
    def _adopt(
        cls,
        cell: str,
        nonlinearity: str | None,
        layers: list[list[dict[str, np.ndarray | None]]],
        V: np.ndarray | None = None,
        c: np.ndarray | None = None,
    ) -> StackParams:
        """A StackParams keeping freshly computed arrays (gradients, in the parameters' shapes)
        without copies or checks; layers[l][d] maps the LayerWeights fields to arrays."""
        self = cls.__new__(cls)
        adopted = tuple(tuple(LayerWeights._adopt(**fields) for fields in row) for row in layers)
        for name, value in (("cell", cell), ("layers", adopted), ("nonlinearity", nonlinearity)):
            object.__setattr__(self, name, value)
        for name, value in (("V", V), ("c", c)):
            if value is not None:
                value.flags.writeable = False
            object.__setattr__(self, name, value)
        return self

    @classmethod
    def from_state_dict(
        cls,
        cell: str,
        mapping: Mapping[str, object],
        *,
        nonlinearity: str | None = None,
        V: object | None = None,
        c: object | None = None,
    ) -> StackParams:
        """The parameters of a torch module's state_dict (or any mapping from torch's names to arrays).

        num_layers, bidirectional, bias and the projection are read from the names, D, H and
        H_out from the shapes. A module's ``state_dict()`` can be passed as it is: np.asarray
        reads its CPU tensors. Copies are kept, in the arrays' own float dtype (float32 stays
        float32).

        Args:
            cell: "rnn", "gru" or "lstm".  mapping: torch's names -> arrays.
            nonlinearity: the Elman cell's ("tanh" or "relu"; None is "tanh"); None otherwise.
            V, c: an output layer over the top layer's outputs (for bptt), or None.

        Raises:
            ValueError for a missing name, an unexpected one (listed), a name of the wrong shape
            (naming the likely cause when the rows fit another cell), and the like.
        """
        if cell not in GATES:
            raise ValueError(f"cell: expected one of {sorted(GATES)}, got {cell!r}")
        if not isinstance(mapping, Mapping):
            raise ValueError(
                f"mapping: expected a dict from torch's parameter names to arrays (a module's state_dict()), "
                f"got {type(mapping).__name__}"
            )
        parsed: dict[tuple[int, int], dict[str, object]] = {}
        unexpected = []
        for name, value in mapping.items():
            match = _NAME.match(str(name))
            if match is None:
                unexpected.append(str(name))
                continue
            kind, layer, reverse = match.group(1), int(match.group(2)), match.group(3) is not None
            parsed.setdefault((layer, int(reverse)), {})[_FIELDS[kind]] = (name, value)
        if unexpected:
            raise ValueError(
                f"mapping: unexpected names {sorted(unexpected)}; torch's are weight_ih_l{{k}}, "
                "weight_hh_l{k}, "
                "bias_ih_l{k}, bias_hh_l{k}, weight_hr_l{k} (each with _reverse for the second direction)"
            )
        if (0, 0) not in parsed:
            raise ValueError(
                "mapping: no layer 0 (weight_ih_l0, weight_hh_l0, ...); the names must be torch's"
            )
        L = 1 + max(layer for layer, _ in parsed)
        dirs = 2 if (0, 1) in parsed else 1
        expected = [(layer, d) for layer in range(L) for d in range(dirs)]
        extra = sorted(set(parsed) - set(expected))
        if extra:
            layer, d = extra[0]
            raise ValueError(
                f"mapping: unexpected {direction_name(d)} direction of layer {layer} "
                + ("(layer 0 has no reverse direction)" if d == 1 else "")
            )
        layers = []
        for layer in range(L):
            row = []
            for d in range(dirs):
                fields = parsed.get((layer, d), {})
                for kind in ("weight_ih", "weight_hh"):
                    if _FIELDS[kind] not in fields:
                        raise ValueError(
                            f"mapping: missing {torch_name(kind, layer, d)!r} (layers 0..{L - 1} found)"
                        )
                # read under their torch names first, so that a message names them
                arrays = {field: _frozen_copy(str(name), value) for field, (name, value) in fields.items()}
                row.append(LayerWeights(**arrays))
            layers.append(tuple(row))
        return cls(cell, tuple(layers), nonlinearity=nonlinearity, V=V, c=c)

    @classmethod
    def from_params(cls, p: object, *, nonlinearity: str | None = None) -> StackParams:
        """Today's one-layer parameters as a stack of one layer and one direction, exactly.

        Args:
            p: RNNParams (its b becomes b_ih, with b_hh = 0), GRUParams or LSTMParams; V and c
                are kept as the stack's output layer.
            nonlinearity: the Elman cell's f ("tanh" or "relu"; None is "tanh"): RNNParams do not
                hold it (it is bptt's activation=). None for the gated cells.
        """
        cell = _one_layer_cell(p)
        if cell == "rnn":
            b_hh = None if p.b is None else np.zeros_like(p.b)
            lw = LayerWeights(U=p.U, W=p.W, b_ih=p.b, b_hh=b_hh)
        else:
            lw = LayerWeights(U=p.U, W=p.W, b_ih=p.b_ih, b_hh=p.b_hh)
        return cls(cell, ((lw,),), nonlinearity=nonlinearity, V=p.V, c=p.c)

    def to_params(self) -> RNNParams | GRUParams | LSTMParams:
        """This one-layer, one-direction, unprojected stack as today's type (with V, c), exactly;
        the Elman cell's b = b_ih + b_hh (the one sum). ValueError for any other stack, or
        without an output layer V (today's types need one)."""
        if self.V is None:
            raise ValueError(
                "V: to_params needs the output layer V (today's types hold one); build the stack with V="
            )
        return self._one_layer_params(self.V, self.c)

    def _one_layer_params(self, V: np.ndarray, c: np.ndarray | None) -> RNNParams | GRUParams | LSTMParams:
        if self.num_layers != 1 or self.bidirectional or self.proj_size:
            raise ValueError(
                f"p: only a stack of one layer, one direction and no projection converts to today's types, "
                f"got num_layers = {self.num_layers}, bidirectional = {self.bidirectional}, "
                f"proj_size = {self.proj_size}"
            )
        lw = self.layers[0][0]
        if self.cell == "rnn":
            b = None if lw.b_ih is None else lw.b_ih + lw.b_hh
            return RNNParams(U=lw.U, W=lw.W, V=V, b=b, c=c)
        cls = GRUParams if self.cell == "gru" else LSTMParams
        return cls(U=lw.U, W=lw.W, b_ih=lw.b_ih, b_hh=lw.b_hh, V=V, c=c)

    @classmethod
    def init(
        cls,
        cell: str,
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        proj_size: int = 0,
        bias: bool = True,
        nonlinearity: str | None = None,
        output_size: int | None = None,
        seed: int | None = None,
        dtype: np.dtype | type = np.float64,
    ) -> StackParams:
        """Random parameters as torch initializes its recurrent layers: every entry of every layer
        ~ U(-1/sqrt(H), 1/sqrt(H)); the output layer (when output_size K is given) ~ U(-k, k) with
        k = 1/sqrt(dirs * H_out), as nn.Linear's. Seeded by a numpy Generator (None: fresh entropy).

        Args:
            cell: "rnn", "gru" or "lstm".  input_size: D.  hidden_size: H.  num_layers: L >= 1.
            bidirectional, bias: as torch's.  proj_size: 0, or 0 < proj_size < H (LSTM only).
            nonlinearity: the Elman cell's ("tanh" or "relu"; None is "tanh").
            output_size: K >= 1 for an output layer V (K, dirs * H_out) and c (K,) (c only with
                bias), or None.
            dtype: float32 or float64.
        """
        if cell not in GATES:
            raise ValueError(f"cell: expected one of {sorted(GATES)}, got {cell!r}")
        D = integer_arg("input_size", input_size, 1)
        H = integer_arg("hidden_size", hidden_size, 1)
        L = integer_arg("num_layers", num_layers, 1)
        P = integer_arg("proj_size", proj_size, 0)
        for name, value in (("bidirectional", bidirectional), ("bias", bias)):
            if not isinstance(value, bool):
                raise ValueError(f"{name}: expected True or False, got {value!r}")
        if P and cell != "lstm":
            raise ValueError(f"proj_size: only the LSTM has a projection, got {P} for {cell!r}")
        if P >= H:
            raise ValueError(f"proj_size: expected 0 or 0 < proj_size < hidden_size = {H}, got {P}")
        K = None if output_size is None else integer_arg("output_size", output_size, 1)
        if seed is not None:
            seed = integer_arg("seed", seed, 0)
        dt = _float_dtype(dtype)
        rng = np.random.default_rng(seed)
        G, dirs, H_out = GATES[cell], 2 if bidirectional else 1, P or H
        k = 1.0 / np.sqrt(H)

        def uniform(scale: float, *shape: int) -> np.ndarray:
            return rng.uniform(-scale, scale, size=shape).astype(dt)

        layers = []
        for layer in range(L):
            row = []
            for _ in range(dirs):
                D_l = D if layer == 0 else dirs * H_out
                row.append(
                    LayerWeights(
                        U=uniform(k, G * H, D_l),
                        W=uniform(k, G * H, H_out),
                        b_ih=uniform(k, G * H) if bias else None,
                        b_hh=uniform(k, G * H) if bias else None,
                        W_hr=uniform(k, H_out, H) if P else None,
                    )
                )
            layers.append(tuple(row))
        V = c = None
        if K is not None:
            k_out = 1.0 / np.sqrt(dirs * H_out)
            V = uniform(k_out, K, dirs * H_out)
            c = uniform(k_out, K) if bias else None
        return cls(cell, tuple(layers), nonlinearity=nonlinearity, V=V, c=c)

    # -- reading -----------------------------------------------------------------------------
    def items(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) of every array that is not None: the layers' in the order of torch's
        state_dict (torch's names), then "V" and "c"."""
        out = []
        for layer, directions in enumerate(self.layers):
            for d, lw in enumerate(directions):
                out.extend((torch_name(kind, layer, d), a) for kind, a in lw.arrays_by_kind())
        out.extend((name, a) for name, a in (("V", self.V), ("c", self.c)) if a is not None)
        return out

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays of items(), in that order."""
        return tuple(a for _, a in self.items())

    def __getitem__(self, name: str) -> np.ndarray:
        """The array of a torch name ("weight_hh_l1_reverse"), or "V" / "c"; KeyError if absent."""
        for key, a in self.items():
            if key == name:
                return a
        raise KeyError(name)

    def to_state_dict(self) -> dict[str, np.ndarray]:
        """torch's names -> writable copies of the layers' arrays, in the order of a module's
        state_dict (V and c are not part of it). ``module.load_state_dict({k: torch.as_tensor(v)
        for k, v in d.items()})`` puts them into an nn.RNN / nn.GRU / nn.LSTM of the same shape."""
        return {name: a.copy() for name, a in self.items() if name not in ("V", "c")}

    def astype(self, dtype: np.dtype | type) -> StackParams:
        """A copy with every array cast to ``dtype`` (float32 or float64)."""
        dt = np.dtype(dtype)
        if dt not in _FLOAT_DTYPES:
            raise ValueError(f"dtype: expected float32 or float64, got {dt}")

        def cast(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a.astype(dt)

        layers = tuple(
            tuple(
                LayerWeights(**{f: cast(getattr(lw, f)) for f in ("U", "W", "b_ih", "b_hh", "W_hr")})
                for lw in row
            )
            for row in self.layers
        )
        return StackParams(self.cell, layers, nonlinearity=self.nonlinearity, V=cast(self.V), c=cast(self.c))

    def _nonfinite_names(self) -> list[str]:
        """The names of the arrays holding NaN or inf, in items() order; [] when all are finite."""
        with np.errstate(over="ignore", invalid="ignore"):
            if all_finite(*self.arrays()):
                return []
        return [name for name, a in self.items() if not np.isfinite(a).all()]

    # -- sizes -------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """L, the number of layers."""
        return len(self.layers)

    @property
    def directions(self) -> int:
        """dirs: 2 when bidirectional, else 1."""
        return len(self.layers[0])

    @property
    def bidirectional(self) -> bool:
        """Whether every layer has a reverse direction."""
        return self.directions == 2

    @property
    def gates(self) -> int:
        """G, the number of gate blocks: 1 (Elman), 3 (GRU), 4 (LSTM)."""
        return GATES[self.cell]

    @property
    def input_size(self) -> int:
        """D, layer 0's input size."""
        return int(self.layers[0][0].U.shape[1])

    @property
    def hidden_size(self) -> int:
        """H, the size of every gate block (and of the LSTM's c_t)."""
        return _sizes(self.cell, self.layers[0][0])[0]

    @property
    def proj_size(self) -> int:
        """The LSTM's projection size (W_hr's rows), or 0 without a projection."""
        W_hr = self.layers[0][0].W_hr
        return 0 if W_hr is None else int(W_hr.shape[0])

    @property
    def out_size(self) -> int:
        """H_out, the size of h_t: proj_size with a projection, else H."""
        return self.proj_size or self.hidden_size

    @property
    def bias(self) -> bool:
        """Whether every layer and direction has bias_ih and bias_hh."""
        return self.layers[0][0].b_ih is not None

    @property
    def bias_names(self) -> tuple[str, ...]:
        """The names of the biases' fields of every LayerWeights: ("b_ih", "b_hh"), or () without
        biases (as GRUParams and LSTMParams name theirs)."""
        return ("b_ih", "b_hh") if self.bias else ()

    @property
    def output_size(self) -> int | None:
        """K, the output layer's classes, or None without one."""
        return None if self.V is None else int(self.V.shape[0])

    @property
    def dtype(self) -> np.dtype:
        """The common floating dtype of the arrays (float32 only if all are float32)."""
        return np.result_type(*self.arrays())


def _layer_tuple(layers: object) -> tuple[tuple[LayerWeights, ...], ...]:
    """layers as a tuple of L >= 1 tuples of 1 or 2 LayerWeights; ValueError naming what is wrong."""
    if not isinstance(layers, (tuple, list)) or len(layers) == 0:
        raise ValueError(
            "layers: expected a tuple of L >= 1 layers, each a tuple of 1 or 2 LayerWeights (forward, "
            "reverse), "
            f"got {type(layers).__name__}" + (" of length 0" if isinstance(layers, (tuple, list)) else "")
        )
    out = []
    for layer, row in enumerate(layers):
        if isinstance(row, LayerWeights):
            row = (row,)
        if not isinstance(row, (tuple, list)) or len(row) not in (1, 2):
            raise ValueError(
                f"layers[{layer}]: expected a tuple of 1 or 2 LayerWeights (forward, reverse), got "
                f"{type(row).__name__}" + (f" of length {len(row)}" if isinstance(row, (tuple, list)) else "")
            )
        for d, lw in enumerate(row):
            if not isinstance(lw, LayerWeights):
                raise ValueError(f"layers[{layer}][{d}]: expected a LayerWeights, got {type(lw).__name__}")
        out.append(tuple(row))
    return tuple(out)


def _sizes(cell: str, first: LayerWeights) -> tuple[int, int]:
    """(H, H_out) from layer 0's forward direction (W_hr, or W's shape); ValueError naming
    weight_hh_l0 (or weight_hr_l0) when the shapes do not fit the cell."""
    G = GATES[cell]
    W, W_hr = first.W, first.W_hr
    if W.ndim != 2 or W.shape[1] == 0:
        raise ValueError(f"weight_hh_l0: expected shape (G*H, H_out) with G = {G}, got {W.shape}")
    if W_hr is not None:
        if cell != "lstm":
            raise ValueError(
                f"weight_hr_l0: only the LSTM has a projection (proj_size), got one for {cell!r}"
            )
        if W_hr.ndim != 2:
            raise ValueError(f"weight_hr_l0: expected shape (proj_size, H), got {W_hr.shape}")
        H_out, H = (int(n) for n in W_hr.shape)
        if not 0 < H_out < H:
            raise ValueError(
                f"weight_hr_l0: proj_size (its rows) must be 0 < proj_size < H (its columns), "
                f"got shape {W_hr.shape}"
            )
        return H, H_out
    H = int(W.shape[1])
    if W.shape[0] != G * H:
        hint = ""
        others = [other for other, g in GATES.items() if other != cell and W.shape[0] == g * H]
        if others:
            hint = f"; did you mean cell={others[0]!r}? (its G = {GATES[others[0]]} blocks fit)"
        elif cell == "lstm" and W.shape[0] % 4 == 0 and W.shape[0] // 4 > H:
            hint = "; a projected LSTM (proj_size) needs weight_hr_l0 too"
        raise ValueError(
            f"weight_hh_l0: expected shape (G*H, H) = ({G * H}, {H}) with G = {G} ({cell}), got {W.shape}: "
            f"{W.shape[0]} rows is not {G} blocks of H = {H}{hint}"
        )
    return H, H


def _presence_problem(name: str, kind: str, present: bool, bias: bool, proj: bool) -> str:
    """The message for an array present where layer 0's forward direction has none, or missing."""
    if kind.startswith("bias"):
        if present:
            return f"{name}: missing; layer 0 has biases, so every layer and direction has both"
        return f"{name}: given, but layer 0 has no biases (every layer and direction has both, or none)"
    if present:
        return (
            f"{name}: missing; layer 0 has a projection (weight_hr_l0), so every layer and direction has one"
        )
    return f"{name}: given, but layer 0 has no projection (every layer and direction has weight_hr, or none)"


def _one_layer_cell(p: object) -> str:
    """The cell of one of today's one-layer types; ValueError naming p otherwise."""
    for cls in type(p).__mro__:
        if cls in _ONE_LAYER:
            return _ONE_LAYER[cls]
    raise ValueError(f"p: expected manual_bptt.RNNParams, GRUParams or LSTMParams, got {type(p).__name__}")
