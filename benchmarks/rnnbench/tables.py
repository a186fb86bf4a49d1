"""results.md: the header, then one Markdown table per part of the results."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .names import OURS, PRODUCTS

#: Cells of a group's rows after its size and dtype.
Cells = Callable[[dict], Iterable[list[str]]]


def fmt_ms(x: float) -> str:
    """Seconds as milliseconds, three significant digits below one second."""
    return f"{x * 1e3:.3g}" if x < 1 else f"{x * 1e3:.0f}"


def table(header: list[str], align: str, rows: Iterable[list[str]]) -> list[str]:
    """A Markdown table; align has one letter per column, 'l' (left) or 'r' (right)."""
    rule = ["---:" if a == "r" else "---" for a in align]
    return [f"| {' | '.join(cells)} |" for cells in (header, rule, *rows)]


def group_table(groups: list[dict], header: list[str], align: str, cells: Cells) -> list[str]:
    """A table with rows for every group, each row starting with the group's cell, size and dtype."""
    rows = ([g.get("cell", "rnn"), g["size"]["name"], g["dtype"], *c] for g in groups for c in cells(g))
    return table(["cell", "size", "dtype", *header], "lll" + align, rows)


def header(result: dict) -> list[str]:
    """Title, the environment and how to read the tables."""
    env = result["environment"]
    blas = "; ".join(_blas_pool(t) for t in env["threadpools"])
    return [
        "# Benchmark results",
        "",
        f"- date: {env['date']}; command: `{env['command']}`"
        + (" (QUICK: tiny sizes)" if result["quick"] else ""),
        f"- machine: {env['cpu']}, {env['logical_cpus']} logical CPUs; {env['platform']}",
        f"- python {env['python']}, numpy {env['numpy']}, torch {env['torch']} (MKL: {env['torch_mkl']}), "
        f"torch threads {env['torch_threads']}, jax {env.get('jax') or 'not installed or not loaded'}",
        f"- thread pools during the run (threadpoolctl): {blas}",
        "- environment: " + ", ".join(f"{k}={v}" for k, v in env["env"].items()),
        f"- load average (1, 5, 15 min) at start: {env['loadavg_start']}, at end: {result['loadavg_end']}",
        "",
        "Each round gives every contender one timed slot, in an order rotated every round; a slot",
        "makes `calls` back-to-back calls (calibrated to about "
        + f"{result['slot_ms']:g} ms, at least one) and records the",
        "mean time per call. Times are medians over the rounds; IQR = interquartile range. 'cold' =",
        "median time of the first call of a slot, made right after another contender ran.",
        "GFLOP/s counts the matrix products of forward and backward only; 'of peak' = that rate",
        "over the faster of the two GEMMs measured in the same round-robin. Ratios are ours / theirs",
        "(median over median); the spread is the IQR and range of the per-round ratios.",
        "The fastest peer of a group is the fastest of torch.nn.RNN / nn.GRU / nn.LSTM and JAX in",
        "that group. JAX is compiled ahead of time before the round-robin ('compile s', not timed).",
        *(["", "Not in this run:", *(f"- {n}" for n in result["notes"])] if result.get("notes") else []),
    ]


def _blas_pool(t: dict) -> str:
    return (
        f"{t['internal_api']} {t['version']} ({t['library']}, kernel {t['architecture']}, "
        f"{t['threading_layer'] or '-'}), {t['num_threads']} thread(s)"
    )


def machine(m: dict) -> list[str]:
    """The CPU, its vector extensions, numpy's and torch's BLAS, and the floor measured here."""
    ident, nb, tb = m["cpu_identity"], m["numpy_blas"], m["torch_blas"]
    ids = ", ".join(f"{k} {v}" for k, v in ident.items() if v is not None and k != "processor")
    forced = (
        f"; kernel forced by OPENBLAS_CORETYPE={nb['kernel_forced_by']}, not OpenBLAS's own choice"
        if nb["kernel_forced_by"]
        else ""
    )
    pools = "; ".join(_blas_pool(t) for t in nb["pools"]) or "none reported by threadpoolctl"
    mkl = f"MKL {tb['mkl_version']}" if tb["mkl_version"] else f"MKL available: {tb['mkl_available']}"

    def cells(r: dict) -> list[str]:
        num = lambda x, f: "-" if x is None else format(x, f)  # noqa: E731
        return [
            r["cell"],
            r["size"],
            r["dtype"],
            str(r["threads"]),
            fmt_ms(r["floor_ms"] / 1e3),
            f"{r['floor_gflops']:.3g}",
            num(r["bptt_over_floor"], ".3f"),
            num(r["floor_over_torch"], ".3f"),
            num(r["gemm_numpy_gflops"], ".3g"),
            num(r["gemm_torch_gflops"], ".3g"),
            num(r["gemm_numpy_over_torch"], ".3f"),
        ]

    head = ["cell", "size", "dtype", "threads", "floor ms", "floor GFLOP/s", "bptt / floor"]
    head += ["floor / torch layer", "GEMM numpy GFLOP/s", "GEMM torch GFLOP/s", "GEMM numpy / torch"]
    return [
        "## This machine",
        "",
        f"- CPU: {m['cpu']} ({ids}); widest vector unit: {m['widest_vector']}",
        f"- vector extensions ({m['vector_extensions']['source']}): "
        + " ".join(m["vector_extensions"]["extensions"]),
        f"- numpy's BLAS: {nb['build']}: {pools}{forced}",
        f"- torch's BLAS: {tb['blas_info']} ({mkl}); torch's own kernels: {tb['cpu_capability']}",
        "",
        m["depends"],
    ] + (
        [
            "",
            "The floor measured here (bptt's matrix products alone, see below) and the two GEMMs of the same",
            "round-robin (GEMM numpy / torch: time ratio, above 1 when numpy's BLAS is the slower here):",
            "",
            *table(head, "llll" + "r" * 7, (cells(r) for r in m["floor"])),
        ]
        if m["floor"]
        else []
    )


def times(groups: list[dict]) -> list[str]:
    def cells(g: dict) -> Iterable[list[str]]:
        for name, r in g["contenders"].items():
            yield [
                name,
                fmt_ms(r["median"]),
                f"{fmt_ms(r['q1'])}-{fmt_ms(r['q3'])}",
                f"{fmt_ms(r['min'])}-{fmt_ms(r['max'])}",
                str(r["n"]),
                str(r["calls_per_slot"]),
                fmt_ms(r["cold_median"]),
                f"{r['gflops']:.3g}",
                f"{r['fraction_of_gemm']:.2f}",
                "-" if r.get("compile_s") is None else f"{r['compile_s']:.2f}",
            ]

    head = ["contender", "median ms", "IQR ms", "min-max ms", "rounds", "calls", "cold ms"]
    head += ["GFLOP/s", "of peak", "compile s"]
    return ["### Times", "", *group_table(groups, head, "l" + "r" * 9, cells)]


def ratios(groups: list[dict]) -> list[str]:
    def cells(g: dict) -> Iterable[list[str]]:
        for other, r in g["ratios"].items():
            yield [
                other,
                f"{r['ratio']:.3f}",
                f"{r['round_q1']:.3f}-{r['round_q3']:.3f}",
                f"{r['round_min']:.3f}-{r['round_max']:.3f}",
                f"{1 / r['ratio']:.2f}x",
                f"{r['cold_ratio']:.3f}",
            ]

    head = ["theirs", "ratio", "per-round IQR", "per-round min-max", "speedup", "cold ratio"]
    return ["### Ratios (ours / theirs)", "", *group_table(groups, head, "l" + "r" * 5, cells)]


def fastest_peer(groups: list[dict]) -> list[str]:
    def cells(g: dict) -> Iterable[list[str]]:
        fp = g.get("fastest_peer")
        if fp is None:
            return
        ours = g["contenders"].get(OURS)
        has = "ratio" in fp
        yield [
            fp["name"],
            fmt_ms(fp["median"]),
            fmt_ms(ours["median"]) if ours else "-",
            f"{fp['ratio']:.3f}" if has else "-",
            f"{fp['round_q1']:.3f}-{fp['round_q3']:.3f}" if has else "-",
        ]

    head = ["fastest peer", "its median ms", "ours ms", "ours / fastest peer", "per-round IQR"]
    return ["### Ours against the fastest peer", "", *group_table(groups, head, "lrrrr", cells)]


def floor(groups: list[dict]) -> list[str]:
    def cells(g: dict) -> Iterable[list[str]]:
        if g.get("floor_vs_nn_rnn") is None or PRODUCTS not in g["ratios"]:
            return
        fl, r, over = g["contenders"][PRODUCTS], g["floor_vs_nn_rnn"], g["ratios"][PRODUCTS]
        yield [
            fmt_ms(fl["median"]),
            f"{fl['gflops']:.3g}",
            f"{r['ratio']:.3f}",
            f"{r['round_q1']:.3f}-{r['round_q3']:.3f}",
            f"{over['ratio']:.3f}",
        ]

    head = ["floor ms", "floor GFLOP/s", "floor / torch layer", "per-round IQR", "bptt / floor"]
    return [
        "### The floor: bptt's matrix products alone",
        "",
        f"`{PRODUCTS}` makes the matrix products of one bptt call, at the same shapes and in the",
        "same blocks, and nothing else (see products_alone and gated_products_alone in",
        "benchmarks/rnnbench/floor.py). Its time is a floor for any bptt built on the same products",
        "with this BLAS; 'floor / torch layer' is the best ratio to the row's torch.nn.RNN, nn.GRU or",
        "nn.LSTM such a bptt could reach, and 'bptt / floor' is what the",
        "elementwise work, validation and copies of a real call add.",
        "",
        *group_table(groups, head, "r" * 5, cells),
    ]


def targets(result: dict) -> list[str]:
    rows = (
        [
            t["cell"],
            str(t["threads"]),
            t["size"],
            t["dtype"],
            t["target"],
            f"{t['value']:.2f}x" if "faster" in t["target"] else f"{t['value']:.3f}",
            "yes" if t["met"] else "NO",
        ]
        for t in result["targets"]
    )
    return [
        "## Targets",
        "",
        "The issue sets them for float64; float32 is shown against the same bounds.",
        "",
        *table(["cell", "threads", "size", "dtype", "target", "measured", "met"], "lrlllrl", rows),
    ]


def scaling(sc: dict) -> list[str]:
    d = sc["dims"]
    rows = (
        [
            m,
            ", ".join(map(str, r["T"])),
            ", ".join(fmt_ms(x) for x in r["median_s"]),
            f"{r['exponent']:.2f}",
            f"{r['fit_T'][0]}-{r['fit_T'][-1]}",
        ]
        for m, r in sc["methods"].items()
    )
    return [
        "## Scaling in T",
        "",
        f"float64, token inputs, B={d['B']}, vocabulary D={d['D']}, H={d['H']}, K={d['K']} "
        f"(rtrl: H={d['rtrl_H']}, its cost is O(T B H^4)); decompose = `decompose(...)` then "
        "`.norms()` of every (t, k) term. Exponent = least-squares slope of log(median time) on "
        "log T over the largest T (at small T a call is mostly fixed overhead).",
        "",
        *table(["method", "T", "median ms", "fitted exponent", "fit over T"], "lllrl", rows),
    ]


def memory(mem: dict) -> list[str]:
    d = mem["dims"]
    rows = (
        [
            str(r["T"]),
            f"{r['peak_bytes'] / 2**20:.2f}",
            f"{r['cached_bytes'] / 2**20:.2f}",
            f"{r['predicted_bytes'] / 2**20:.2f}",
            f"{r['peak_over_cached']:.2f}",
            f"{r['peak_over_predicted']:.2f}",
        ]
        for r in mem["rows"]
    )
    head = ["T", "peak MiB", "cached MiB", "predicted MiB", "peak / cached", "peak / predicted"]
    return [
        "## Peak memory of bptt",
        "",
        f"float64, dense, B={d['B']}, D={d['D']}, H={d['H']}, K={d['K']}; peak of one call traced by "
        "tracemalloc. cached = what the forward pass keeps for the backward pass: the states s "
        "(with s0), (T + 1)·H·B·8 bytes (f'(a) is computed from s; xs is read in place). "
        "predicted = cached + the returned dE/dxs (TBD); a, e, delta, dE/do, the time-major "
        "copies of xs and f'(a) exist one fixed-size block of steps at a time, a constant "
        "that matters only at small T. Fitted exponent of the peak against T (over "
        f"T = {mem['fit_T'][0]}-{mem['fit_T'][-1]}): {mem['exponent']:.2f}; below 1 only "
        "because of the fixed offset: a straight line through the same points, "
        f"peak = {mem['offset_bytes'] / 2**20:.2f} MiB + {mem['bytes_per_step']:.0f} bytes · T, "
        "costs per step "
        f"{mem['bytes_per_step'] / mem['predicted_bytes_per_step']:.3f}x what a step must hold "
        f"(its state and its dE/dx, (H + D)·B·8 = {mem['predicted_bytes_per_step']} bytes).",
        "",
        *table(head, "r" * 6, rows),
    ]


def by_threads(groups: list[dict]) -> list[list[str]]:
    """One section per thread count: its times, ratios, fastest peer and floor tables."""
    counts = sorted({g.get("threads", 1) for g in groups})
    out = []
    for n in counts:
        gs = [g for g in groups if g.get("threads", 1) == n]
        title = f"## {n} thread{'s' if n > 1 else ''} (numpy's BLAS, torch and XLA)"
        parts = [[title], times(gs), ratios(gs), fastest_peer(gs), floor(gs)]
        out.append(["\n\n".join("\n".join(p) for p in parts)])
    return out


def layer_tables(layer_rows: list[dict] | None, memory: dict | None) -> list[str]:
    """Markdown for the layer-backward rows and the per-cell memory."""
    lines: list[str] = []
    if layer_rows:
        lines += [
            "## The layer alone: mb.backward against the torch layer's backward",
            "",
            "Forward and the vector-Jacobian product of the recurrent layer with the same upstream",
            "gradients dL/dh_t, for every weight and bias, the inputs and the initial state.",
            "",
            "| cell | size | dtype | torch | ours ms | torch ms | ours / torch |",
            "| --- | --- | --- | --- | ---: | ---: | ---: |",
            *(
                f"| {r['cell']} | {r['size']} | {r['dtype']} | {r['torch']} | {r['ours_ms']:.1f} | "
                f"{r['torch_ms']:.1f} | {r['ratio']:.3f} |"
                for r in layer_rows
            ),
            "",
        ]
    if memory:
        lines += [
            "## Peak memory of bptt against T, every cell",
            "",
            "bytes per step: the slope of the peak over the largest T; kept per step: what the",
            "backward must keep (states, the gates it reads, dE/dx_t).",
            "",
            "| cell | T | peak MB | exponent | bytes per step | kept per step | per step / kept |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |",
            *(
                f"| {cell} | {m['T'][0]}..{m['T'][-1]} | {m['peak_bytes'][-1] / 1e6:.1f} | "
                f"{m['exponent']:.3f} | "
                f"{m['bytes_per_step']:.0f} | {m['kept_bytes_per_step']} | "
                f"{m['bytes_per_step'] / m['kept_bytes_per_step']:.3f} |"
                for cell, m in memory.items()
            ),
            "",
        ]
    return lines


def markdown(result: dict) -> str:
    """results.md of a run (result: what results.json holds)."""
    groups = result["groups"]
    sections = [header(result)] + ([machine(result["machine"])] if "machine" in result else [])
    sections += [*by_threads(groups), targets(result)]
    if result.get("scaling"):
        sections += [scaling(result["scaling"]), memory(result["memory"])]
    layer = layer_tables(result.get("layer_backward"), result.get("cell_memory"))
    if layer:
        sections.append(layer)
    return "\n\n".join("\n".join(section) for section in sections) + "\n"
