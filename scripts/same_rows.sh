#!/usr/bin/env bash
# Behaviour check for refactors: the same small bench and the same one-round federation in two
# checkouts (e.g. a `git worktree` of the commit before and after), compared row by row.
# Usage: bash scripts/same_rows.sh BEFORE_DIR AFTER_DIR [OUT_DIR]   (both trees use this .venv)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
before="$(cd "$1" && pwd)"; after="$(cd "$2" && pwd)"; out="${3:-$(mktemp -d)}"
source "$here/scripts/env.sh"
for side in before after; do
    tree="${!side}"; mkdir -p "$out/$side"
    (cd "$tree" && PYTHONPATH="$tree" "$here/.venv/bin/python" -m fedsnn.tools.cli bench \
        --dataset digits --samples 4 --iters 20 --grnn-iters 30 --attacks dlg,idlg,grnn \
        --models lenet,lenet-snn --out "$out/$side/bench" > "$out/$side/bench.log" 2>&1)
    (cd "$tree" && PYTHONPATH="$tree" "$here/.venv/bin/python" -c '
import json, sys
from pathlib import Path
from tests.helpers import simulate
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
r = simulate(out, {"num-server-rounds": 1, "audit-workers": 0, "audit-unrolled-iterations": 5},
             nodes=3)
(out.parent / "sim.json").write_text(json.dumps(r["rounds"], default=str))
' "$out/$side/sim" > "$out/$side/sim.log" 2>&1)
done
"$here/.venv/bin/python" - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def rows(side):
    bench = json.loads((out / side / "bench" / "results.json").read_text())["rows"]
    return [{k: v for k, v in r.items() if not any(t in k for t in ("second", "time", "wall"))}
            for r in bench]
b, a = rows("before"), rows("after")
same = len(b) == len(a) and all({k: x[k] for k in x if k in y} == {k: y[k] for k in y if k in x}
                                 for x, y in zip(b, a))
print(f"bench: {len(b)} / {len(a)} rows, identical on their common keys: {same}")
sims = [json.loads((out / s / "sim.json").read_text()) for s in ("before", "after")]
keep = lambda rounds: [{k: v for k, v in r.items() if k != "participation"} for r in rounds]
print(f"one-round federation: train, client-eval and central rows identical: "
      f"{keep(sims[0]) == keep(sims[1])}")
if keep(sims[0]) != keep(sims[1]):
    for x, y in zip(keep(sims[0]), keep(sims[1])):
        print(" before", x); print(" after ", y)
PY
