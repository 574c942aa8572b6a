#!/usr/bin/env bash
# Wall time of the default run with the in-line audit on vs off: same config, same machine, one
# script, runs interleaved (off, on, off, on) so background load hits both alike.
# Usage: bash scripts/audit_overhead.sh [MODEL] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
model="${1:-lenet}"
repeats="${2:-1}"
out="$PWD/runs/audit-overhead-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
for i in $(seq "$repeats"); do
    for audit in false true; do
        bash scripts/flwr_run.sh --stream \
            --run-config "model='$model' audit-enabled=$audit output-dir='$out' run-name='$model-audit-$audit-$i' ${RUN_CONFIG:-}" \
            --federation-config "num-supernodes=5 client-resources-num-cpus=1" > "$out/log-$audit-$i.txt" 2>&1
    done
done
.venv/bin/python - "$out" <<'PY'
import json, sys
from pathlib import Path
runs = {}
for path in sorted(Path(sys.argv[1]).glob("*/results.json")):
    data = json.loads(path.read_text())
    runs.setdefault(data["config"]["audit-enabled"], []).append((path.parent, data))
def mean(values): return sum(values) / len(values)
off = mean([d["wall-time-s"] for _, d in runs[False]])
on = mean([d["wall-time-s"] for _, d in runs[True]])
print(f"model {runs[True][0][1]['config']['model']}: wall time audit off {off:.1f} s, on {on:.1f} s, "
      f"ratio {on / off:.2f}x ({len(runs[True])} run(s) each)")
for run_dir, data in runs[True]:
    audit = json.loads((run_dir / "audit.json").read_text())
    seconds = [row["seconds"] for row in audit["attacks"]]
    print(f"  {run_dir.name}: {len(seconds)} attacks, attack time {sum(seconds):.1f} s "
          f"(per attack {', '.join(f'{s:.1f}' for s in seconds)}); statuses "
          f"{[row['status'] for row in audit['attacks']]}; final accuracy "
          f"{data['rounds'][-1]['central']['accuracy']:.3f}")
PY
