#!/usr/bin/env bash
# Mutation testing of src/manual_bptt with mutmut 3, one module at a time (on demand, not CI).
#
#   tools/mutation.sh MODULE...   MODULE: one of MODULES below (cells.gru for cells/gru.py), or all
#   tools/mutation.sh summary     print the per-module counts of the last runs (no run)
#
# The configuration is [tool.mutmut] in pyproject.toml; mutmut works in ./mutants (git-ignored;
# delete it to start from scratch). Hypothesis uses the "mutation" profile under mutmut (see
# tests/conftest.py). Environment: MUTMUT (the mutmut command, default: mutmut on PATH, e.g.
# .venv/bin/mutmut), MUTATION_CHILDREN (parallel workers, default 2), PYTHON (for the summary).
set -euo pipefail
cd "$(dirname "$0")/.."

# Every module of the gradient code (a dotted name for a subpackage: cells.gru is cells/gru.py).
# Not mutated: __init__, environment, problems, checking, testing (see [tool.mutmut]).
MODULES=(
    cells.base cells.elman cells.gru cells.lstm drivers fast.blocks fast.elman fast.gated gated
    gated_params elman output kinds layer errors decompose rtrl _inputs params activations
)
MUTMUT=${MUTMUT:-mutmut}
# the summary imports mutmut: use the Python next to the mutmut command unless PYTHON is set
PY=${PYTHON:-$(dirname "$(command -v "$MUTMUT" || echo ./mutmut)")/python}
[ -x "$PY" ] || PY=python3
CHILDREN=${MUTATION_CHILDREN:-2}

summary() {
    "$PY" - "$@" "--" "${MODULES[@]}" <<'PY'
import json, re, sys
from pathlib import Path

from mutmut.stats import status_by_exit_code

args = sys.argv[1:]
cut = args.index("--")
modules = args[:cut] or args[cut + 1 :]
cols = ["killed", "survived", "timeout", "no tests", "suspicious", "other"]
print(f"{'module':14s} {'total':>5s} " + " ".join(f"{c:>10s}" for c in cols) + f" {'pragma':>6s}")
grand = dict.fromkeys(["total", *cols], 0)
ran = 0
for m in modules:
    rel = m.replace(".", "/") + ".py"
    meta = Path("mutants/src/manual_bptt") / f"{rel}.meta"
    src = Path("src/manual_bptt") / rel
    pragmas = sum("pragma: no mutate" in line for line in src.read_text().splitlines())
    if not meta.exists():
        print(f"{m:14s} (not run)")
        continue
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    counts = dict.fromkeys(cols, 0)
    survivors = []
    for name, code in sorted(codes.items(), key=lambda kv: (kv[0].rsplit("_", 1)[0], int(kv[0].rsplit("_", 1)[1]))):
        status = status_by_exit_code[code]
        if status == "caught by type check":
            status = "killed"
        counts[status if status in counts else "other"] += 1
        if status == "survived":
            survivors.append(name)
    print(f"{m:14s} {len(codes):5d} " + " ".join(f"{counts[c]:10d}" for c in cols) + f" {pragmas:6d}")
    ran += 1
    grand["total"] += len(codes)
    for c in cols:
        grand[c] += counts[c]
    for name in survivors:
        print(f"    survived: {name}")
if ran > 1:
    print(f"{'all':14s} {grand['total']:5d} " + " ".join(f"{grand[c]:10d}" for c in cols))
PY
}

if [ $# -eq 0 ]; then
    sed -n '2,10p' "$0"
    exit 2
fi
if [ "$1" = summary ]; then
    shift
    summary "$@"
    exit 0
fi
if [ "$1" = all ]; then
    set -- "${MODULES[@]}"
fi
for m in "$@"; do
    case " ${MODULES[*]} " in
        *" $m "*) ;;
        *) echo "unknown module: $m (one of: ${MODULES[*]}, all)" >&2; exit 2 ;;
    esac
done
for m in "$@"; do
    echo "=== mutmut: src/manual_bptt/${m//.//}.py ==="
    start=$(date +%s)
    # Naming the module's mutants re-runs all of them (and only them), using the tests that
    # the stats run found to cover each mutated function.
    "$MUTMUT" run --max-children "$CHILDREN" "manual_bptt.$m.*"
    echo "=== $m: wall time $(( $(date +%s) - start )) s ==="
    summary "$m"
done
