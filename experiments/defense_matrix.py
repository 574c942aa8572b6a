"""Defense matrix: {none, central DP, local DP, DP-SGD, spike-level DP} × {lenet, lenet-snn}, and
accuracy / PSNR against ε for the ANN (seed 002's curves).

Every cell is two federations run in one process through the real ServerApp body and ClientApp
(`fedsnn/tools/local_grid.py`'s in-process grid; no Ray):

- *training*: FedAvg-mode rounds, no audit → final test accuracy, the ε the run reports (in the
  unit its defense claims) and the membership-inference audit of the final model (`fedsnn mia`);
- *leakage*: FedSGD, batch 1, one round, the curious server runs the in-line attack on every
  client's reply → PSNR / SSIM / judge ASR / label accuracy beside the mean-image guess. Under
  DP-SGD the batch is Poisson-sampled (expected size 1): a reply whose batch came out empty has
  nothing to score (`scored`).

Writes `matrix.json` (resumable: finished cells are kept), `table.md` and `curves.png` to --out.

Example (the committed matrix; ~25 min on 2 busy cores):

    .venv/bin/python -m experiments.defense_matrix --out docs/defenses
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]

import torch  # noqa: E402

from client_app import create_client_app  # noqa: E402
from fedsnn.audit.leakage import mean_leakage  # noqa: E402
from fedsnn.core.judges import flag_asr, judge_sentence  # noqa: E402
from fedsnn.core.privacy.mia_run import audit_run  # noqa: E402
from fedsnn.core.privacy.units import DEFENSE_UNITS  # noqa: E402
from experiments.figures import accuracy_psnr_panels, scored  # noqa: E402
from server_app import run  # noqa: E402
from fedsnn.tools.local_grid import federate_in_process  # noqa: E402

# defense -> (training overrides, leakage overrides); the documented settings
DEFENSES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "none": ({}, {}),
    "central-dp": ({"defenses": "central-dp", "central-dp-target-epsilon": 8.0},
                   {"defenses": "central-dp", "central-dp-target-epsilon": 8.0}),
    "local-dp": ({"defenses": "local-dp", "local-dp-target-epsilon": 8.0},
                 {"defenses": "local-dp", "local-dp-target-epsilon": 8.0,
                  "local-dp-clipping-norm": 0.1}),
    "dp-sgd": ({"defenses": "dp-sgd", "dp-sgd-target-epsilon": 8.0},
               {"defenses": "dp-sgd", "dp-sgd-target-epsilon": 8.0}),
    "spike-dp": ({"defenses": "spike-dp", "spike-dp-epsilon-bit": 1.0},
                 {"defenses": "spike-dp", "spike-dp-epsilon-bit": 1.0}),
}
# ε-curve points for the ANN: defense -> (key, values); the matrix's own point is added
CURVES: dict[str, tuple[str, list[float]]] = {
    "central-dp": ("central-dp-target-epsilon", [1.0, 64.0]),
    "local-dp": ("local-dp-target-epsilon", [1.0, 64.0]),
    "dp-sgd": ("dp-sgd-target-epsilon", [1.0, 64.0]),
    "spike-dp": ("spike-dp-epsilon-bit", [0.1, 3.0]),
}
# the ε each defense reports, by the unit it claims (train metrics of the last round)
EPSILON_KEYS = {"central-dp": "central-dp-client-epsilon", "local-dp": "local-dp-client-epsilon-max",
                "dp-sgd": "dp-sgd-sample-epsilon-max", "spike-dp": "spike-dp-sample-epsilon"}
UNITS = {"none": "—"} | {name: unit.label() for name, unit in DEFENSE_UNITS.items()}


def federation(run_config: dict[str, Any], nodes: int) -> Path:
    """Run the ServerApp body on `nodes` in-process ClientApps; the run folder."""
    return federate_in_process(run, create_client_app(run_config), run_config, nodes)


def model_overrides(model: str, defense: str) -> dict[str, Any]:
    """Spike-level DP privatizes binary input spikes: the spiking twin then uses Poisson coding."""
    return {"model": model, "encoding": "poisson" if model.endswith("-snn") and
            defense in ("spike-dp", "none-poisson") else "direct"}


def training(args: argparse.Namespace, model: str, defense: str, extra: dict[str, Any],
             scratch: Path) -> dict[str, Any]:
    """Accuracy, reported ε and membership inference of a FedAvg-mode run."""
    overrides = DEFENSES[defense.removesuffix("-poisson")][0] | extra
    run_dir = federation({"image-size": args.image_size, "num-server-rounds": args.rounds,
                          "local-epochs": 1, "audit-enabled": False, "seed": args.seed,
                          "min-available-nodes": args.nodes, "output-dir": str(scratch)}
                         | model_overrides(model, defense) | overrides, args.nodes)
    results = json.loads((run_dir / "results.json").read_text())
    last = results["rounds"][-1]
    mia = audit_run(run_dir, num_partitions=args.nodes) if (run_dir / "model.pt").is_file() else None
    key = EPSILON_KEYS.get(defense)
    train = last.get("train", {})
    return {"accuracy": last["central"]["accuracy"], "status": results["status"],
            "epsilon": train.get(key) if key else None,
            "epsilon-bit": train.get("spike-dp-bit-epsilon"),
            "mia": mia.to_dict() if mia else None}


def leakage(args: argparse.Namespace, model: str, defense: str, extra: dict[str, Any],
            scratch: Path) -> dict[str, Any]:
    """The in-line attack's scores on round 1 of a FedSGD, batch-1 run."""
    attack = ({"audit-optimizer": "adam", "audit-iterations": 60} if model.endswith("-snn")
              else {"audit-iterations": 100})
    overrides = DEFENSES[defense.removesuffix("-poisson")][1] | extra
    run_dir = federation({"image-size": args.image_size, "num-server-rounds": 1,
                          "update-mode": "gradient", "batch-size": 1, "learning-rate": 0.01,
                          "audit-rounds": "1", "audit-max-clients": args.nodes,
                          "audit-attack": "idlg", "audit-time-budget-s": 30.0, "audit-workers": 0,
                          "seed": args.seed, "min-available-nodes": args.nodes,
                          "output-dir": str(scratch)}
                         | model_overrides(model, defense) | attack | overrides, args.nodes)
    return mean_leakage(json.loads((run_dir / "audit.json").read_text()))


def cells_to_run(args: argparse.Namespace) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(key, model, defense, extra overrides) for the matrix and the ANN's ε curves."""
    cells = [(f"{m}|{d}", m, d, {}) for m in args.models for d in DEFENSES]
    if "lenet-snn" in args.models:
        cells.append(("lenet-snn|none-poisson", "lenet-snn", "none-poisson", {}))
    for defense, (key, values) in (CURVES.items() if args.curves else ()):
        cells += [(f"lenet|{defense}|{key}={v:g}", "lenet", defense, {key: v}) for v in values]
    return cells


def run_matrix(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """Run every missing cell, saving the JSON after each one."""
    done = json.loads(path.read_text()) if path.is_file() else {}
    settings = {"rounds": args.rounds, "nodes": args.nodes, "image-size": args.image_size,
                "seed": args.seed}
    if done.get("settings", settings) != settings:
        raise SystemExit(f"{path} was made with other settings; pick another --out")
    cells: dict[str, Any] = done.get("cells", {})
    for key, model, defense, extra in cells_to_run(args):
        if key in cells:
            continue
        started = time.time()
        with tempfile.TemporaryDirectory() as scratch:
            cell = {"model": model, "defense": defense, "setting": extra,
                    "training": training(args, model, defense, extra, Path(scratch) / "train"),
                    "leakage": leakage(args, model, defense, extra, Path(scratch) / "leak")}
        cell["seconds"] = round(time.time() - started, 1)
        cells[key] = cell
        print(f"{key:45s} acc {cell['training']['accuracy']:.3f}  psnr "
              f"{cell['leakage']['psnr'] or math.nan:.1f}  eps {cell['training']['epsilon']}  "
              f"{cell['seconds']:.0f}s", flush=True)
        path.write_text(json.dumps({"settings": settings, "cells": cells}, indent=1))
    return {"settings": settings, "cells": cells}


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def markdown(cells: dict[str, Any]) -> str:
    """The matrix as one Markdown table (curve points are in matrix.json and the plot)."""
    lines = ["| model | defense | test acc. | ε (unit, relation) | ε per bit | PSNR dB (guess) | SSIM | "
             "judge ASR | labels | scored | MIA AUC | TPR@1%FPR | MIA bal. acc. |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, cell in cells.items():
        if key.count("|") > 1:
            continue
        train, leak, mia = cell["training"], cell["leakage"], cell["training"]["mia"] or {}
        unit = UNITS[cell["defense"].removesuffix("-poisson")]
        lines.append(
            f"| `{cell['model']}` | {cell['defense']} | {_fmt(100 * train['accuracy'], '{:.1f}%')}"
            f" | {_fmt(train['epsilon'], '{:.3g}')} ({unit}) | {_fmt(train['epsilon-bit'], '{:g}')}"
            f" | {_fmt(leak['psnr'], '{:.1f}')} ({_fmt(leak['guess-psnr'], '{:.1f}')}) | "
            f"{_fmt(leak['ssim'])} | {flag_asr(_fmt(leak['asr']), leak.get('judge'))} | "
            f"{_fmt(leak['label-accuracy'])} | {leak['scored']} | "
            f"{_fmt(mia.get('auc'))} | {_fmt(mia.get('tpr_at_1pct_fpr'))} | "
            f"{_fmt(mia.get('balanced_accuracy'))} |")
    judges = {json.dumps(c["leakage"].get("judge"), sort_keys=True): c["leakage"].get("judge")
              for k, c in cells.items() if k.count("|") == 1}
    lines += ["", *(judge_sentence(card or {}) for card in judges.values())]
    return "\n".join(lines)


def curves(cells: dict[str, Any], path: Path) -> None:
    """Accuracy and PSNR against the reported ε, one line per defense (lenet)."""
    with accuracy_psnr_panels(path, xlabel="ε reported for the run (δ = 1e-5; unit per legend), "
                              "log scale", title="lenet",
                              psnr_title="in-line iDLG PSNR (dB), round 1") as (left, right):
        none = cells.get("lenet|none")
        for defense in CURVES:
            points = sorted((c["training"]["epsilon"], c["training"]["accuracy"],
                             c["leakage"]["psnr"]) for k, c in cells.items()
                            if k.startswith(f"lenet|{defense}") and c["training"]["epsilon"])
            if not points:
                continue
            eps, acc, psnr = zip(*points, strict=True)
            label = f"{defense} (ε per {UNITS[defense]})"
            left.plot(eps, acc, "o-", label=label)
            right.plot(*scored(list(eps), list(psnr)), "o-", label=label)
        if none:
            left.axhline(none["training"]["accuracy"], color="gray", ls="--", label="no defense")
            right.axhline(none["leakage"]["psnr"], color="gray", ls="--", label="no defense")
            right.axhline(none["leakage"]["guess-psnr"], color="black", ls=":",
                          label="mean-image guess")
        right.legend(fontsize=8)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the missing cells, write the table and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "defenses")
    parser.add_argument("--models", nargs="+", default=["lenet", "lenet-snn"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--curves", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the ANN's ε-curve points")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    matrix = run_matrix(args, args.out / "matrix.json")
    (args.out / "table.md").write_text(markdown(matrix["cells"]) + "\n")
    curves(matrix["cells"], args.out / "curves.png")
    print(f"wrote {args.out / 'table.md'} and {args.out / 'curves.png'}")


if __name__ == "__main__":
    main()
