"""Do two `fedsnn bench` folders agree on the batches they share? Per variant: each folder's ASR
on the shared batches, how many batches get the same judge outcome and the same label outcome.

Used to check the vectorized engine against the one-at-a-time loop at scale: the 1,000-image
Table IV (DLG/iDLG vectorized) against the 100-image one (one at a time); both attack the same
victims on their first 100 batches (same attack set prefix, same model seeds).

Usage:
    .venv/bin/python -m experiments.agreement runs/table4 runs/table4-1000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

Rows = dict[tuple[str, int, int], dict[str, Any]]


def load_rows(folder: Path) -> Rows:
    """(variant, batch, position) -> row, from the folder's results.json."""
    results = json.loads((folder / "results.json").read_text())
    return {(r["variant"], r["batch"], r["position"]): r for r in results["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    first, second = load_rows(args.first), load_rows(args.second)
    shared = sorted(set(first) & set(second))
    print(f"| variant | ASR {args.first.name} | ASR {args.second.name} | same judge outcome | same label outcome |")
    print("|---|---|---|---|---|")
    for variant in sorted({key[0] for key in shared}):
        keys = [key for key in shared if key[0] == variant]
        n = len(keys)
        hits = [sum(rows[k]["success"] for k in keys) for rows in (first, second)]
        same = sum(first[k]["success"] == second[k]["success"] for k in keys)
        labels = sum(first[k]["label-correct"] == second[k]["label-correct"] for k in keys)
        print(f"| {variant} | {hits[0]}/{n} | {hits[1]}/{n} | {same}/{n} | {labels}/{n} |")


if __name__ == "__main__":
    main()
