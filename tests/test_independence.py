"""manual_bptt never imports torch (or the reference oracle); the oracle never imports manual_bptt.

Dynamic check, in a fresh interpreter: a sys.meta_path finder installed before anything else
refuses 'torch' and 'reference' (and their submodules) and records every attempt; then
manual_bptt and every submodule found by pkgutil.walk_packages are imported, bptt and forward
run, and the check requires no attempt and no such module in sys.modules. Modules named
``__main__`` or ``cli`` are skipped: by this project's convention those are command-line
dispatchers, which may import the oracle lazily to verify against it. ``manual_bptt.testing``
is imported like the rest (it needs hypothesis, which is not blocked).

Static check: the import statements (and import_module / __import__ calls with a literal
name) of every source file, by ast.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
CLI_MODULES = ("__main__", "cli")

CHECK_SCRIPT = textwrap.dedent(
    '''
    import importlib
    import importlib.abc
    import pkgutil
    import sys

    BLOCKED = ("torch", "reference")
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

    pkg_name = sys.argv[1]
    pkg = importlib.import_module(pkg_name)
    imported = [pkg_name]
    for info in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
        if info.name.rsplit(".", 1)[-1] in {CLI_MODULES!r}:
            continue
        importlib.import_module(info.name)
        imported.append(info.name)

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
).replace("{CLI_MODULES!r}", repr(set(CLI_MODULES)))
CHECK_SCRIPT = CHECK_SCRIPT.replace("{{", "{").replace("}}", "}")


def run_check(package: str, *extra_paths: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in extra_paths), str(SRC)])
    return subprocess.run(
        [sys.executable, "-c", CHECK_SCRIPT, package], env=env, capture_output=True, text=True, timeout=120
    )


def test_manual_bptt_never_imports_torch_or_reference():
    proc = run_check("manual_bptt")
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    imported = proc.stdout.split()[1:]
    assert "manual_bptt.core" in imported and "manual_bptt.testing" in imported, imported


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


def test_reference_does_not_import_manual_bptt():
    files = sorted((SRC / "reference").rglob("*.py"))
    assert files, "no reference sources found"
    offenders = {str(f.relative_to(SRC)): top_levels(f) & {"manual_bptt"} for f in files}
    assert not any(offenders.values()), offenders


def module_level_imports(path: Path) -> set[str]:
    """Top-level names imported by the statements at module level (not inside functions)."""
    tree = ast.parse(path.read_text())
    body = ast.Module(body=[n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                      ast.ClassDef))], type_ignores=[])
    return {n.split(".")[0] for n in imported_names(ast.unparse(body))}


def torch_users() -> set[str]:
    """torch, reference, and every other package in src/ (but manual_bptt) that imports either."""
    users = {"torch", "reference"}
    for d in SRC.iterdir():
        if d.is_dir() and d.name != "manual_bptt" and (d / "__init__.py").exists():
            if any(top_levels(f) & {"torch", "reference"} for f in d.rglob("*.py")):
                users.add(d.name)
    return users


def test_manual_bptt_sources_never_import_torch_users():
    """Statically, also in code paths the dynamic check does not run: no library module of
    manual_bptt imports torch, reference, or a src/ package that uses them (e.g. a report
    tool), anywhere in the file; a CLI dispatcher (``__main__`` / ``cli``) may do so lazily,
    inside a function, but not at module level. manual_bptt.testing imports nothing beyond
    the stdlib, numpy and hypothesis."""
    forbidden = torch_users()
    files = sorted((SRC / "manual_bptt").rglob("*.py"))
    assert any(f.name == "core.py" for f in files) and any(f.name == "testing.py" for f in files)
    for f in files:
        found = module_level_imports(f) if f.stem in CLI_MODULES else top_levels(f)
        bad = found & forbidden
        assert not bad, f"{f.relative_to(SRC)} imports {sorted(bad)}"
    allowed = set(sys.stdlib_module_names) | {"numpy", "hypothesis", "manual_bptt"}
    extra = top_levels(SRC / "manual_bptt" / "testing.py") - allowed
    assert not extra, f"manual_bptt/testing.py imports {sorted(extra)}"


def test_static_helpers_see_lazy_and_module_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\nimport torch as t\ndef g():\n    import reference\n")
    assert top_levels(f) == {"os", "torch", "reference"}
    assert module_level_imports(f) == {"os", "torch"}
