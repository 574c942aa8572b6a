"""The speed benchmark of the unrolled attack (benchmarks/unrolled_speed.py): the pooled time to
today's identified count, the decoder's fit counted apart, and snapshots of a latent phase."""

import importlib.util
from pathlib import Path

# loaded from its file: an installed distribution also calls itself `benchmarks`
_SPEC = importlib.util.spec_from_file_location(
    "unrolled_speed", Path(__file__).parents[2] / "benchmarks" / "unrolled_speed.py")
speed = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(speed)
pooled_reach, read, run, table = speed.pooled_reach, speed.read, speed.run, speed.table


def _row(arm: str, client: int, snapshots: list, identified: int, seconds: float,
         fit: float = 0.0) -> dict:
    return {"client": client, "arm": arm, "images": 32, "snapshots": snapshots,
            "identified": identified, "seconds": seconds, "loop-s": seconds, "steps": 300,
            "matching-loss": 1e-4, "decoder-fit-s": fit}


def test_the_pooled_reach_stops_every_client_at_the_same_step():
    rows = [_row("a", 0, [[100, 1.0, 2], [200, 2.0, 5]], 5, 2.5),
            _row("a", 1, [[100, 1.5, 4], [200, 3.0, 4]], 6, 3.5)]
    assert pooled_reach(rows, 6) == (100, 2.5)
    assert pooled_reach(rows, 9) == (200, 5.0)
    assert pooled_reach(rows, 11) == (201, 6.0)  # past the snapshots: the final results
    assert pooled_reach(rows, 12) is None


def test_the_table_gives_the_ratio_with_and_without_the_decoders_fit():
    rows = [_row("today", 0, [[100, 10.0, 1], [200, 20.0, 3], [300, 30.0, 4]], 4, 33.0),
            _row("today", 1, [[100, 10.0, 2], [200, 20.0, 4], [300, 30.0, 4]], 4, 33.0),
            _row("fast", 0, [[100, 4.0, 4]], 4, 6.0, fit=4.0),
            _row("fast", 1, [[100, 6.0, 4]], 4, 7.0, fit=4.0)]  # one process: one fit
    for row in rows:
        row["process"] = "p1"
    line = next(l for l in table(rows).splitlines() if l.startswith("| fast "))
    # today reaches its pooled 8 at step 300 (60 s); "fast" at step 100 (10 s; 14 s with the fit)
    assert "| 100, 10 | 6.00x | 4 | 4.29x | 3.53x |" in line  # whole loop: 6 + 7 + 4 s


def test_a_public_prior_arm_is_scored_in_its_latent_phase_too(tmp_path: Path):
    from attacks.settings import unrolled_preset

    out = tmp_path / "speed.jsonl"
    # fixed labels: no refinement (after 8 steps it would replay hundreds of label moves)
    today = unrolled_preset(iterations=4, learn_labels=False)
    arm = today.with_(iterations=8, public_prior="decoder", prior_pixel_steps=4,
                      prior_latent_refine=False)
    run([0], {"today": today, "prior": arm}, every=2, out=out)
    rows = {r["arm"]: r for r in read(out)}
    assert [s for s, _, _ in rows["prior"]["snapshots"]] == [2, 4, 6, 8]
    assert rows["prior"]["decoder-fit-s"] > 0 and rows["today"]["decoder-fit-s"] == 0
    assert rows["prior"]["process"] == rows["today"]["process"]
    assert rows["prior"]["steps"] == 8
