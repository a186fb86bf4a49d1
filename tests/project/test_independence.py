"""The packages' imports point one way: manual_bptt never imports torch, the oracle or anything
else of ours; the oracle never imports manual_bptt.

    manual_bptt_cli  ->  bptt_report  ->  manual_bptt, reference
                     ->  bptt_train   ->  manual_bptt

Dynamic check, in a fresh interpreter: a sys.meta_path finder installed before anything else
refuses the blocked packages (and their submodules) and records every attempt; then the
package and every submodule found by pkgutil.walk_packages are imported (for manual_bptt,
bptt and forward also run), and the check requires no attempt and no such module in
sys.modules. No module is exempt. ``manual_bptt.testing`` is imported like the rest (it needs
hypothesis, which is not blocked).

Static check, by ast over every source file in src: each package imports only the packages
of ours below it in the graph above, anywhere in the file (inside functions too); no module
loads one of our packages by ``importlib.import_module`` / ``__import__`` (relative names
included); and the module-level imports have no cycle.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from locations import SRC

#: Our packages, and the packages of ours each one may import (besides itself).
ALLOWED_IMPORTS: dict[str, set[str]] = {
    "manual_bptt": set(),
    "reference": set(),
    "bptt_report": {"manual_bptt", "reference"},
    "bptt_train": {"manual_bptt"},
    "manual_bptt_cli": {"manual_bptt", "reference", "bptt_report", "bptt_train"},
}

CHECK_SCRIPT = textwrap.dedent(
    '''
    import importlib
    import importlib.abc
    import pkgutil
    import sys

    pkg_name = sys.argv[1]
    BLOCKED = tuple(sys.argv[2].split(","))
    attempts = []

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ImportError(f"import of {name!r} blocked by test_independence")
            return None

    already = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    if already:
        sys.exit(f"FAIL: imported before the check started: {already}")
    sys.meta_path.insert(0, Block())

    pkg = importlib.import_module(pkg_name)
    imported = [pkg_name]
    for info in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
        importlib.import_module(info.name)
        imported.append(info.name)

    if hasattr(pkg, "bptt"):
        import numpy as np
        p = pkg.RNNParams.init(3, 4, 5, seed=0)
        rng = np.random.default_rng(0)
        pkg.bptt(p, rng.integers(0, 3, (2, 6)), rng.integers(0, 5, (2, 6)), s0=np.zeros(4), truncate=2)
        pkg.bptt(p, rng.standard_normal((6, 3)), rng.integers(0, 5, 6), activation="relu", reduction="mean")
        pkg.forward(p, rng.integers(0, 3, 6), activation="sigmoid")

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    if attempts or loaded:
        sys.exit(f"FAIL: attempted imports {{attempts}}, loaded {{loaded}}")
    print("OK", " ".join(imported))
    '''
)
CHECK_SCRIPT = CHECK_SCRIPT.replace("{{", "{").replace("}}", "}")
MANUAL_BPTT_BLOCKED = ("torch", "reference", "bptt_report", "bptt_train", "manual_bptt_cli")


def run_check(
    package: str, *extra_paths: Path, blocked: tuple[str, ...] = MANUAL_BPTT_BLOCKED
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in extra_paths), str(SRC)])
    return subprocess.run(
        [sys.executable, "-c", CHECK_SCRIPT, package, ",".join(blocked)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_manual_bptt_never_imports_torch_reference_or_any_package_above_it():
    proc = run_check("manual_bptt")
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    imported = proc.stdout.split()[1:]
    for module in ("elman", "fast.elman", "testing", "problems", "checking"):
        assert f"manual_bptt.{module}" in imported, imported
    assert not any(m.endswith(("__main__", ".cli", ".train")) for m in imported), imported


def test_bptt_train_never_imports_torch_the_oracle_or_the_checker():
    proc = run_check("bptt_train", blocked=("torch", "reference", "bptt_report", "manual_bptt_cli"))
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    imported = proc.stdout.split()[1:]
    for module in ("optimizers", "data", "loop", "sampling", "plotting", "cli"):
        assert f"bptt_train.{module}" in imported, imported


FAKE_PACKAGES = {
    "imports torch in a submodule": {
        "__init__.py": "from manual_bptt import RNNParams, bptt, forward\n",
        "helpers.py": "import torch\n",
    },
    "imports torch inside bptt": {
        "__init__.py": textwrap.dedent(
            """
            import manual_bptt
            from manual_bptt import RNNParams, forward

            def bptt(*args, **kwargs):
                import torch.nn  # noqa: F401
                return manual_bptt.bptt(*args, **kwargs)
            """
        ),
    },
    "swallows the ImportError of reference": {
        "__init__.py": textwrap.dedent(
            """
            from manual_bptt import RNNParams, bptt, forward
            try:
                import reference  # noqa: F401
            except ImportError:
                pass
            """
        ),
    },
}


@pytest.mark.parametrize("case", sorted(FAKE_PACKAGES))
def test_the_check_fails_for_a_package_that_imports_torch(case, tmp_path):
    """The dynamic check is not vacuous: packages that import torch / reference fail it."""
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    for name, text in FAKE_PACKAGES[case].items():
        (pkg / name).write_text(text)
    proc = run_check("fakepkg", tmp_path)
    assert proc.returncode != 0, proc.stdout
    assert "blocked" in proc.stderr or "FAIL" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------
# Static checks
# ---------------------------------------------------------------------------------------------
def imported_names(source: str) -> set[str]:
    """Absolute module names a source file imports (import / from-import, and
    importlib.import_module / __import__ calls with a literal name). Relative imports are
    left out: they stay inside the file's own package."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if fname in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def top_levels(path: Path) -> set[str]:
    return {n.split(".")[0] for n in imported_names(path.read_text())}


def test_imported_names_sees_every_form():
    src = textwrap.dedent(
        """
        import os, numpy as np
        from manual_bptt.core import bptt
        from . import sibling
        def f():
            import torch.nn
            importlib.import_module("reference.autograd")
            __import__("scipy")
        """
    )
    assert {n.split(".")[0] for n in imported_names(src)} == {"os", "numpy", "manual_bptt", "torch",
                                                              "reference", "scipy"}


def our_packages() -> list[str]:
    return sorted(d.name for d in SRC.iterdir() if d.is_dir() and (d / "__init__.py").exists())


def test_every_package_in_src_has_its_place_in_the_graph():
    assert our_packages() == sorted(ALLOWED_IMPORTS)


@pytest.mark.parametrize("package", sorted(ALLOWED_IMPORTS))
def test_each_package_imports_only_the_packages_below_it(package):
    """Anywhere in a file, lazily inside a function too: manual_bptt and reference import
    nothing of ours, bptt_report only manual_bptt and reference, bptt_train only manual_bptt,
    the command-line package any of them."""
    ours = set(ALLOWED_IMPORTS)
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no sources in src/{package}"
    offenders = {}
    for f in files:
        bad = (top_levels(f) & ours) - ALLOWED_IMPORTS[package] - {package}
        if bad:
            offenders[str(f.relative_to(SRC))] = sorted(bad)
    assert not offenders, f"imports that run back up or sideways: {offenders}"


def test_manual_bptt_and_reference_never_import_each_other():
    for package, other in (("manual_bptt", "reference"), ("reference", "manual_bptt")):
        for f in sorted((SRC / package).rglob("*.py")):
            assert other not in top_levels(f), f"{f.relative_to(SRC)} imports {other}"


def dynamic_imports_of_our_packages(source: str, ours: set[str]) -> list[str]:
    """Calls of import_module / __import__ that load one of ``ours`` or a relative name: the
    literal name, or the source text of a relative (leading-dot) f-string or of a call that
    passes a ``package`` to resolve against. A non-literal absolute name (a user's module,
    given at run time) is not ours and is left out."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if fname not in ("import_module", "__import__"):
            continue
        first = node.args[0]
        text = ast.unparse(first)
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            if first.value.startswith(".") or first.value.split(".")[0] in ours:
                found.append(first.value)
        elif isinstance(first, ast.JoinedStr) and first.values and isinstance(first.values[0], ast.Constant):
            if str(first.values[0].value).startswith("."):
                found.append(text)
        elif fname == "import_module" and (
            len(node.args) > 1 or any(k.arg == "package" for k in node.keywords)
        ):
            found.append(text)
    return found


def test_dynamic_import_finder_sees_literal_relative_and_package_forms():
    src = textwrap.dedent(
        """
        import importlib
        importlib.import_module("bptt_report.cli")
        importlib.import_module(f".{name}", __name__)
        importlib.import_module(name, package="x")
        __import__("manual_bptt")
        importlib.import_module(user_module)
        importlib.import_module("json")
        """
    )
    found = dynamic_imports_of_our_packages(src, set(ALLOWED_IMPORTS))
    assert found == ["bptt_report.cli", "f'.{name}'", "name", "manual_bptt"]


#: Loads by name that are still to be replaced by plain imports: (file, the name loaded).
PENDING_DYNAMIC_IMPORTS: set[tuple[str, str]] = set()


def test_no_module_loads_our_packages_by_name():
    ours = set(ALLOWED_IMPORTS)
    found = set()
    for f in sorted(SRC.rglob("*.py")):
        rel = str(f.relative_to(SRC))
        found.update((rel, name) for name in dynamic_imports_of_our_packages(f.read_text(), ours))
    assert not found - PENDING_DYNAMIC_IMPORTS, sorted(found - PENDING_DYNAMIC_IMPORTS)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports at module level (relative imports resolved;
    ``from pkg import name`` counts as importing pkg.name when that is a module, else pkg)."""
    modules = {module_name(f): f for f in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, f in modules.items():
        is_pkg = f.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        edges: set[str] = set()
        tree = ast.parse(f.read_text())
        for node in tree.body:  # module level only: imports inside functions run later
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    mod = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_module_level_imports_have_no_cycle():
    graph = module_level_graph()
    # the graph sees every package and follows relative imports (else "no cycle" proves nothing)
    assert {"manual_bptt.elman", "bptt_report.runner", "reference.stack", "bptt_train.cli"} <= set(graph)
    assert graph["manual_bptt_cli.__main__"] == {"manual_bptt_cli"}
    assert graph["bptt_train.loop"] >= {"manual_bptt", "bptt_train.data", "bptt_train.optimizers"}
    assert find_cycle(graph) is None, find_cycle(graph)


def module_level_imports(path: Path) -> set[str]:
    """Top-level names imported by the statements at module level (not inside functions)."""
    tree = ast.parse(path.read_text())
    body = ast.Module(body=[n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                      ast.ClassDef))], type_ignores=[])
    return {n.split(".")[0] for n in imported_names(ast.unparse(body))}


def test_the_command_line_imports_its_commands_only_inside_functions():
    """So that ``manual-bptt train`` loads neither the checker nor torch."""
    for f in sorted((SRC / "manual_bptt_cli").rglob("*.py")):
        found = module_level_imports(f) & {"torch", "reference", "bptt_report", "bptt_train", "manual_bptt"}
        assert not found, f"{f.relative_to(SRC)} imports {sorted(found)} at module level"


def test_library_modules_import_only_what_they_need():
    """manual_bptt never imports torch anywhere; the problem model and the comparison need
    numpy only; only the strategies module imports hypothesis."""
    stdlib = set(sys.stdlib_module_names)
    for f in sorted((SRC / "manual_bptt").rglob("*.py")):
        assert "torch" not in top_levels(f), f"{f.relative_to(SRC)} imports torch"
        extra = top_levels(f) - stdlib - {"numpy", "manual_bptt"}
        if f.name == "testing.py":
            assert extra == {"hypothesis"}, f"manual_bptt/testing.py imports {sorted(extra)}"
        elif f.name == "environment.py":  # reports the BLAS through threadpoolctl when it is installed
            assert extra <= {"threadpoolctl"}, f"manual_bptt/environment.py imports {sorted(extra)}"
        else:
            assert not extra, f"{f.relative_to(SRC)} imports {sorted(extra)}"
    for f in sorted((SRC / "bptt_train").rglob("*.py")):
        extra = top_levels(f) - stdlib - {"numpy", "manual_bptt", "matplotlib"}
        assert not extra, f"{f.relative_to(SRC)} imports {sorted(extra)}"
        if f.name != "plotting.py":
            assert "matplotlib" not in top_levels(f), f"{f.relative_to(SRC)} imports matplotlib"


def test_static_helpers_see_lazy_and_module_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\nimport torch as t\ndef g():\n    import reference\n")
    assert top_levels(f) == {"os", "torch", "reference"}
    assert module_level_imports(f) == {"os", "torch"}
