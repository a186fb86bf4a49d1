"""Every code block of the README and of docs/*.md is run or checked, and the README's worked
examples run for real.

What each kind of block gets (a block is fenced, or indented by four spaces):

* ``>>>`` examples: doctest, page by page (NORMALIZE_WHITESPACE, ELLIPSIS).
* ```` ```python ```` without ``>>>``: compiled; a dict assigned to ``bptt_supports`` must be a
  declaration the checker accepts. A block marked ``<!-- file: NAME -->`` is a file the reader
  saves: it is written out and run by the ``run`` blocks of its page.
* shell commands (a block tagged sh, or one whose first word is a command: ``manual-bptt``,
  ``python``, ``pip``, ``tools/...``, ...): every command is checked without running it:
  ``manual-bptt ...`` is parsed by the command line's own parser (a synopsis with ``[--option]``
  must name options that exist), ``pip install`` may not install this project by name (no index
  serves it: a path or a checkout), its extras must exist, torch must be the pinned version;
  files and folders named must exist. An unknown command fails: add its rule here.
* ```` ```yaml ````: parsed (PyYAML, which the ``test`` extra brings with Dask), and each step's
  ``run:`` checked as a shell command.
* ``<!-- run -->`` shell blocks (``<!-- run: exit N -->``): run for real, in a folder holding the
  page's files, with this checkout's sources first on the path (``manual-bptt report`` and
  ``check-module`` with ``--no-plots`` added: drawing costs more than a quick run's checks, and
  the tests of the checker draw the plots). The ``<!-- output -->`` text block after one must be
  what it prints (whitespace aside; ``...`` stands for anything); an
  ``<!-- output: exit N; edit NAME: "OLD" -> "NEW" -->`` block is what the run prints on a copy
  of the files with that edit. A page's runs start together (each in a folder of its own); a
  ``python -m pytest FILE`` run calls FILE's tests in this process (see run_test_files_here).
* anything else (``text``, diagrams, equations, output) is prose.
"""

from __future__ import annotations

import ast
import doctest
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from locations import ROOT, SRC

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
#: The fewest doctest examples each page must hold (a page whose examples vanish fails).
MIN_EXAMPLES = {
    "README.md": 20,
    "math.md": 25,
    "library.md": 42,
    "layers.md": 10,
    "decomposition.md": 21,
    "report.md": 5,
    "training.md": 6,
}
#: The README is one page.
README_MAX_LINES = 300
LANGUAGES = {"", "python", "sh", "yaml", "text"}
#: Seconds a run block may take before it is ended (they take a few).
RUN_TIMEOUT = 300
_PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
#: pyproject.toml's [project.optional-dependencies] (read without tomllib, which Python 3.10 lacks).
_EXTRAS_TABLE = _PYPROJECT.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
EXTRAS = set(re.findall(r"^([A-Za-z][\w-]*)\s*=\s*\[", _EXTRAS_TABLE, flags=re.M))
TORCH_PIN = re.search(r'"torch(==[^";]+)"', _EXTRAS_TABLE).group(1)  # type: ignore[union-attr]

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"^<!--\s*(file|run|output)\s*(?::\s*(.*?))?\s*-->\s*$")
_EDIT = re.compile(r'^exit (\d+); edit ([\w./-]+): "(.*)" -> "(.*)"$')


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the block's first line (the fence, for fenced blocks)
    lang: str  # the fence's tag; "" for an untagged or indented block
    text: str
    mark: str = ""  # "file", "run" or "output" (the HTML comment on the line before the block)
    arg: str = ""  # what follows "file:", "run:" or "output:"

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The code blocks of a Markdown page: fenced ones, and runs of lines indented by four spaces
    after a blank line, each with the marker comment on the line before it, if any."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```"), None)
            assert end is not None, f"{page.name}:{i + 1}: a fence that is never closed"
            out.append(_block(page, lines, i, m.group(1), "\n".join(lines[i + 1 : end])))
            i = end + 1
            continue
        if lines[i].startswith("    ") and lines[i].strip() and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            text = "\n".join(line[4:] for line in lines[i:j]).strip("\n")
            out.append(_block(page, lines, i, "", text))
            i = j
            continue
        i += 1
    return out


def _block(page: Path, lines: list[str], start: int, lang: str, text: str) -> Block:
    before = lines[start - 1] if start else ""
    m = _MARK.match(before)
    return Block(page, start + 1, lang, text, *(m.groups(default="") if m else ("", "")))


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# ---------------------------------------------------------------------------------------------
# Shell commands, checked without running them
# ---------------------------------------------------------------------------------------------
_COMMAND_WORDS = {"manual-bptt", "python", "python3", "pip", "pip3", "mutmut", "ruff", "cd", "env", "nice"}


def _head(word: str) -> str:
    """A command's name without its folder (.venv/bin/pip -> pip); tools/x.sh stays."""
    return word if word.startswith("tools/") else word.rsplit("/", 1)[-1]


def is_shell(block: Block) -> bool:
    """A block of commands: tagged sh, or its first word is one of the commands we know."""
    if block.lang == "sh":
        return True
    if block.lang or not block.text.strip():
        return False
    words = _strip_prefixes(block.text.split())
    return bool(words) and (_head(words[0]) in _COMMAND_WORDS or words[0].startswith("tools/"))


def commands(text: str) -> list[list[str]]:
    """The commands of a shell block: lines joined at a trailing backslash, comments dropped, split
    at ``&&``, ``||``, ``;`` and ``|``."""
    out: list[list[str]] = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for w in words:
            if w in ("&&", "||", ";", "|"):
                out.append(current)
                current = []
            else:
                current.append(w)
        if current:
            out.append(current)
    return [c for c in out if c]


def _strip_prefixes(words: list[str]) -> list[str]:
    """The command without leading VAR=value, ``env [-u NAME]``, ``nice [-n N]``."""
    while words:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]
        elif words[0] == "env":
            words = words[1:]
            while words and words[0] == "-u":
                words = words[2:]
        elif words[0] == "nice":
            words = words[3:] if words[1:2] == ["-n"] else words[1:]
        else:
            return words
    return words


def check_manual_bptt(args: list[str], synopsis: bool) -> None:
    """``manual-bptt ARGS`` parses (a synopsis: every --option it names exists)."""
    import manual_bptt_cli

    parser = manual_bptt_cli.build_parser()
    if synopsis:
        sub = next(a for a in parser._actions if a.dest == "command").choices[args[0]]
        known = {s for a in sub._actions for s in a.option_strings}
        named = set(re.findall(r"--[a-z][a-z-]*", " ".join(args)))
        assert named <= known, f"manual-bptt {args[0]}: no options {sorted(named - known)}"
        return
    try:
        parser.parse_args(args)
    except SystemExit as exc:  # argparse: --help or --version (0), or a usage error (2)
        if exc.code != 0:
            said = f"`manual-bptt {shlex.join(args)}` does not parse (exit {exc.code})"
            raise AssertionError(said) from None


def check_pip(args: list[str]) -> None:
    """``pip install ...``: this project from a path or a checkout, known extras, torch pinned."""
    if args[:1] != ["install"]:
        return
    with_value = {"-i", "--index-url", "--extra-index-url", "-r", "-c", "-t", "--target"}
    with_value |= {"-f", "--find-links"}
    rest = args[1:]
    while rest:
        word, rest = rest[0], rest[1:]
        if word in with_value:
            rest = rest[1:]
            continue
        if word.startswith("-"):
            continue
        m = re.fullmatch(r"(?P<target>[^\[\]]+?)(?:\[(?P<extras>[^\]]*)\])?(?P<spec>[=<>!~].*)?", word)
        assert m, f"pip install: cannot read the requirement {word!r}"
        target, extras, spec = m.group("target"), m.group("extras"), m.group("spec") or ""
        is_path = target.startswith((".", "/", "~")) or "/" in target
        if not is_path:
            assert target.lower().replace("_", "-") != "manual-bptt", (
                f"pip install {word}: no package index serves manual-bptt; install it from a checkout "
                '(pip install -e ".[report]") or a path (pip install "/path/to/manual-bptt[report]")'
            )
            if target == "torch":
                assert spec == TORCH_PIN, f"pip install {word}: the project pins torch{TORCH_PIN}"
        if is_path and extras is not None:
            unknown = {e.strip() for e in extras.split(",")} - EXTRAS
            assert not unknown, f"pip install {word}: no extras {sorted(unknown)} in pyproject.toml"


def _exists(path: str) -> None:
    assert (ROOT / path).exists(), f"{path} does not exist"


def check_command(words: list[str], synopsis: bool = False) -> None:
    """One shell command of the docs, checked without running it (see the module docstring)."""
    words = _strip_prefixes(words)
    head, args = _head(words[0]), words[1:]
    if head == "manual-bptt":
        check_manual_bptt(args, synopsis)
    elif head in ("pip", "pip3"):
        check_pip(args)
    elif re.fullmatch(r"python(3(\.\d+)?)?", head):
        if args[:2] == ["-m", "venv"]:
            return
        if args[:1] == ["-c"]:
            compile(args[1], "python -c", "exec")
        elif args[:2] == ["-m", "pip"]:
            check_pip(args[2:])
        elif args[:1] == ["-m"] and args[1] in ("manual_bptt_cli", "bptt_report"):
            check_manual_bptt(args[2:], synopsis)
        elif args[:2] == ["-m", "pytest"]:
            for a in args[2:]:
                if not a.startswith("-") and "/" in a:
                    _exists(a.split("::")[0])
        else:
            assert args and args[0].endswith(".py"), f"python {shlex.join(args)}: no rule for it here"
            _exists(args[0])
    elif head.startswith("tools/"):
        _exists(head)
    elif head == "mutmut":
        assert args[:1] in (["run"], ["results"], ["show"], ["browse"], ["apply"]), f"mutmut {args}"
    elif head == "ruff":
        assert args[:1] in (["check"], ["format"]), f"ruff {args}"
        for a in args[1:]:
            if not a.startswith("-"):
                _exists(a)
    elif head in ("cd", "echo"):
        pass
    else:
        raise AssertionError(f"no rule for the command {head!r}: add one to {Path(__file__).name}")


def check_shell_block(block: Block) -> None:
    synopsis = bool(re.search(r"\[--|\w\|\w", block.text))
    if synopsis:
        check_command(shlex.split(block.text.replace("[", " ").replace("]", " ").replace("|", " ")), True)
        return
    for words in commands(block.text):
        check_command(words)


def check_yaml_block(block: Block) -> None:
    import yaml  # the test extra's Dask depends on PyYAML

    def runs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["run"]] if isinstance(node.get("run"), str) else []
            return found + [r for v in node.values() for r in runs(v)]
        if isinstance(node, list):
            return [r for v in node for r in runs(v)]
        return []

    doc = yaml.safe_load(block.text)
    for script in runs(doc):
        for words in commands(script):
            check_command(words)


def check_python_block(block: Block) -> None:
    tree = compile(block.text, block.where, "exec", ast.PyCF_ONLY_AST)
    from bptt_report.targets.contract import parse_declaration

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == "bptt_supports" for t in node.targets
        ):
            parse_declaration(ast.literal_eval(node.value))


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_the_examples_of_each_page_print_what_it_shows(page: Path) -> None:
    flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    result = doctest.testfile(str(page), module_relative=False, optionflags=flags, verbose=False)
    assert result.failed == 0, f"{result.failed} examples of {page.name} printed something else"
    least = MIN_EXAMPLES.get(page.name, 0)
    assert result.attempted >= least, f"only {result.attempted} examples in {page.name} (at least {least})"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_code_block_of_each_page_is_checked(page: Path) -> None:
    for block in blocks(page):
        assert block.lang in LANGUAGES, f"{block.where}: a block of language {block.lang!r}"
        try:
            if ">>>" in block.text:
                assert block.lang in ("python", ""), f"a doctest in a {block.lang} block"
            elif block.lang == "python":
                check_python_block(block)
            elif block.lang == "yaml":
                check_yaml_block(block)
            elif is_shell(block):
                check_shell_block(block)
        except (AssertionError, SyntaxError, ValueError) as exc:
            raise AssertionError(f"{block.where}: {exc}") from exc


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_the_links_of_each_page_lead_somewhere(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name}: the link {target} leads nowhere"


def test_the_readme_is_one_page_with_the_two_set_up_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    names = ["<!-- main-command -->", "<!-- test-command -->"]
    marks = [i for i, line in enumerate(lines) if line.strip() in names]
    assert [lines[i].strip() for i in marks] == names
    for i, needle in zip(marks, ("manual-bptt report", "-m pytest"), strict=True):
        assert lines[i + 1] == "```" and needle in lines[i + 2] and lines[i + 3] == "```", lines[i : i + 4]


# ---------------------------------------------------------------------------------------------
# The run blocks: the worked examples, for real
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    block: Block
    command: list[str]
    exit: int
    expected: Block | None  # the output block
    proc: subprocess.Popen[str] | None = None


def _argv(words: list[str]) -> list[str]:
    head = _head(words[0])
    if head == "manual-bptt":
        plots = ["--no-plots"] if words[1:2] in (["report"], ["check-module"]) else []
        return [sys.executable, "-m", "manual_bptt_cli", *words[1:], *plots]
    if re.fullmatch(r"python(3(\.\d+)?)?", head):
        return [sys.executable, *words[1:]]
    raise AssertionError(f"a run block runs manual-bptt or python, not {words[0]}")


def _normal(text: str) -> str:
    return " ".join(text.split())


def shows(output: str, expected: str) -> bool:
    """Whether ``output`` prints ``expected``: a whole line of it, whitespace aside; with
    ``...``, its pieces in this order anywhere."""
    want = _normal(expected)
    if "..." not in want:
        return any(_normal(line) == want for line in output.splitlines())
    at = 0
    flat = _normal(output)
    for piece in (p.strip() for p in want.split("...")):
        found = flat.find(piece, at)
        if found < 0:
            return False
        at = found + len(piece)
    return True


def plan_runs(page: Path, folder: Path) -> list[tuple[Run, Path]]:
    """The page's runs, each with the folder it runs in (the page's files, edited as asked)."""
    page_blocks = blocks(page)
    files = {b.arg: b.text + "\n" for b in page_blocks if b.mark == "file"}
    runs: list[tuple[Run, Path]] = []
    last: Run | None = None
    for b in page_blocks:
        if b.mark == "run":
            (words,) = commands(b.text)
            code = int(b.arg.removeprefix("exit ").strip()) if b.arg else 0
            last = Run(b, _argv(words), code, None)
            runs.append((last, folder / f"run{len(runs)}"))
        elif b.mark == "output":
            assert last is not None, f"{b.where}: an output block before any run block"
            if not b.arg:
                last.expected = b
                continue
            m = _EDIT.match(b.arg)
            assert m, f'{b.where}: expected <!-- output: exit N; edit NAME: "OLD" -> "NEW" -->'
            name, old, new = m.group(2), m.group(3), m.group(4)
            assert files[name].count(old) == 1, f"{b.where}: {old!r} is not once in {name}"
            edited = Run(last.block, last.command, int(m.group(1)), b)
            where = folder / f"run{len(runs)}"
            runs.append((edited, where))
            where.mkdir(parents=True)
            (where / name).write_text(files[name].replace(old, new), encoding="utf-8")
    for _, where in runs:
        where.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            if not (where / name).exists():
                (where / name).write_text(text, encoding="utf-8")
    return runs


def pages_with_runs() -> list[Path]:
    return [p for p in PAGES if any(b.mark == "run" for b in blocks(p))]


@pytest.mark.parametrize("page", pages_with_runs(), ids=page_id)
def test_the_run_blocks_of_each_page_run_and_print_what_it_shows(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("MPLBACKEND", None)
    runs = plan_runs(page, tmp_path)
    try:
        for run, where in runs:
            if run.command[1:3] != ["-m", "pytest"]:
                run.proc = subprocess.Popen(
                    run.command, cwd=where, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
        for run, where in runs:  # meanwhile
            if run.proc is None:
                run_test_files_here(run, where, monkeypatch)
        for run, _ in runs:
            if run.proc is None:
                continue
            out, err = run.proc.communicate(timeout=RUN_TIMEOUT)
            said = f"{run.block.where}: `{run.block.text}`"
            assert run.proc.returncode == run.exit, f"{said} exited {run.proc.returncode}:\n{out}\n{err}"
            if run.expected is not None:
                assert shows(out, run.expected.text), f"{run.expected.where}: {said} printed\n{out}"
    finally:
        for run, _ in runs:
            if run.proc is not None and run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
    shutil.rmtree(tmp_path, ignore_errors=True)


def run_test_files_here(run: Run, where: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m pytest [options] FILE ...``, run in this process (a pytest inside this one
    would start torch and pytest again): each file imported from its folder, as pytest's default
    import mode does (the folder first on sys.path, so its worker processes find the modules
    beside it), and each of its ``test_*`` functions called."""
    assert run.exit == 0 and run.expected is None, f"{run.block.where}: a test run passes and shows nothing"
    files = [a for a in run.command[3:] if not a.startswith("-")]
    assert files, f"{run.block.where}: no test file"
    monkeypatch.syspath_prepend(str(where))
    monkeypatch.chdir(where)
    for name in files:
        spec = importlib.util.spec_from_file_location(Path(name).stem, where / name)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        tests = [f for n, f in vars(module).items() if n.startswith("test_") and callable(f)]
        assert tests, f"{name} holds no test"
        for test in tests:
            test()
    for name in [m for m, mod in sys.modules.items() if str(where) in str(getattr(mod, "__file__", ""))]:
        monkeypatch.delitem(sys.modules, name)


def test_the_readme_has_its_worked_examples() -> None:
    """The README's target file and layer file are run (a run block uses each), the target's
    verdict line and the broken variant's FAIL are shown."""
    page_blocks = blocks(README)
    files = {b.arg for b in page_blocks if b.mark == "file"}
    assert {"my_rnn.py", "my_layer.py", "test_my_layer.py"} <= files, files
    run_text = " ".join(b.text for b in page_blocks if b.mark == "run")
    assert "--target my_rnn:bptt" in run_text and "check-module my_layer:" in run_text
    assert "test_my_layer.py" in run_text
    outputs = [b for b in page_blocks if b.mark == "output"]
    assert any(b.text.startswith("PASS: my_rnn:bptt") for b in outputs)
    assert any(b.text.startswith("FAIL: my_rnn:bptt") and "edit my_rnn.py" in b.arg for b in outputs)
