"""`fedsnn bench`: the offline gradient-inversion benchmark (the study's Table IV and Figs. 3-4).

Each sample (or batch) of the attack set is attacked on a freshly initialised, untrained model,
for every (attack, model, optimizer) row. Rows are written to results.json as they finish; a
re-run with the same --out skips finished ones.
"""

from fedsnn.tools.bench.config import BenchConfig, Variant, variants
from fedsnn.tools.bench.run import run_bench

__all__ = ["BenchConfig", "Variant", "run_bench", "variants"]
