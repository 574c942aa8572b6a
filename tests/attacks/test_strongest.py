"""The strongest-attack mode: every applicable attack, the best kept by the attacker's own
consistency loss, never by ground truth."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math

import pytest
import torch

from attacks import AttackSettings, Observation, Reconstruction, Status, invert
from attacks.idlg import infer_labels
from attacks.strongest_mode import Candidate, consistency_loss, run_candidates, select, strongest
from fedsnn.core.training import batch_gradient
from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec, build_model

strongest_module = importlib.import_module("attacks.strongest_mode")
GROUND_TRUTH_WORDS = ("truth", "target_x", "target_y", "x_true", "image", "sample", "label")


@pytest.fixture(scope="module")
def digit() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("digits")
    return data.test_x[:1], data.test_y[:1]


def observe(spec: ModelSpec, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> Observation:
    model = build_model(spec, dlg_init=True, seed=seed, encoder_seed=seed)
    _, gradients = batch_gradient(model, x, y)
    return Observation("client", spec, model.state_dict(), gradients, batch_size=len(x))


def test_nothing_in_the_signatures_can_carry_ground_truth() -> None:
    for function in (strongest, run_candidates, consistency_loss):
        names = list(inspect.signature(function).parameters)
        assert not [n for n in names if any(w in n for w in GROUND_TRUTH_WORDS)], (function, names)
    assert list(inspect.signature(strongest).parameters) == ["observation", "settings", "seed",
                                                              "deadline", "public"]
    fields = {f.name for f in dataclasses.fields(Observation)}
    assert not [n for n in fields if any(w in n for w in GROUND_TRUTH_WORDS)]


def test_exact_analytic_result_wins_and_ends_the_search(digit: tuple) -> None:
    x, y = digit
    reconstruction = invert([observe(ModelSpec("mlp-snn"), x, y)],
                            AttackSettings(attack="strongest", iterations=2))[0]
    assert reconstruction.attack == "strongest" and reconstruction.winner == "analytic"
    assert reconstruction.status == Status.OK
    assert float(((reconstruction.inputs - x) ** 2).mean()) < 1e-6
    assert "won by analytic" in reconstruction.message and "idlg" not in reconstruction.message


def _fixed(inputs: torch.Tensor, labels: torch.Tensor, name: str):  # noqa: ANN202
    def attack(observation: Observation, settings: AttackSettings, *, seed: int,
               deadline: float | None = None) -> Reconstruction:
        return Reconstruction(observation.target_id, name, inputs.clone(), labels.clone(), 0.0)
    return attack


def test_selection_follows_the_consistency_loss_not_closeness_to_the_truth(
        digit: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = digit
    observation = observe(ModelSpec("lenet-snn"), x, y, seed=0)
    wrong = (y + 1) % 10
    # "perfect-image" returns the client's very image (closest to the truth possible) with a wrong
    # label; "gray" returns mid-gray with the label read off the gradient. Both report loss 0.
    candidates = {
        "perfect-image": Candidate(_fixed(x, wrong, "perfect-image"), lambda s: True, lambda s, t: t),
        "gray": Candidate(_fixed(torch.full_like(x, 0.5), infer_labels(observation), "gray"),
                          lambda s: True, lambda s, t: t),
    }
    monkeypatch.setattr(strongest_module, "CANDIDATES", candidates)
    settings = AttackSettings(attack="strongest")
    losses = {name: consistency_loss(observation, c.attack(observation, settings, seed=0), settings)
              for name, c in candidates.items()}
    kept = strongest(observation, settings, seed=0)
    assert kept.winner == min(losses, key=losses.get)
    assert kept.matching_loss == pytest.approx(min(losses.values()))
    # the image equal to the ground truth loses: its gradient does not match what was observed
    assert kept.winner == "gray" and losses["perfect-image"] > losses["gray"]


def test_select_takes_the_lowest_loss_and_the_first_on_ties() -> None:
    dummy = Reconstruction("t", "a", torch.zeros(1), torch.zeros(1, dtype=torch.long), 0.0)
    assert select([("a", dummy, 2.0), ("b", dummy, 1.0), ("c", dummy, 1.0)])[0] == "b"
    assert select([("a", dummy, math.inf), ("b", dummy, 5.0)])[0] == "b"


def test_failed_candidates_are_listed_and_the_rest_still_compete(digit: tuple) -> None:
    x, y = digit
    observation = observe(ModelSpec("lenet-snn"), x, y)
    candidates = run_candidates(observation, AttackSettings(attack="strongest", iterations=2,
                                                            lbfgs_max_eval=3, smooth_stages=2),
                                seed=0, names=("analytic", "idlg", "smooth"))
    by_name = {name: (reconstruction, loss) for name, reconstruction, loss in candidates}
    assert by_name["analytic"][0].status == Status.FAILED and math.isinf(by_name["analytic"][1])
    assert math.isfinite(by_name["idlg"][1]) and math.isfinite(by_name["smooth"][1])
    assert select(candidates)[0] in ("idlg", "smooth")


def test_ann_victims_get_no_smooth_candidate(digit: tuple) -> None:
    x, y = digit
    names = [n for n, *_ in run_candidates(observe(ModelSpec("lenet"), x, y),
                                           AttackSettings(attack="strongest", iterations=1,
                                                          lbfgs_max_eval=2),
                                           seed=0, names=("idlg", "smooth"))]
    assert names == ["idlg"]


def test_the_audit_accepts_the_strongest_mode() -> None:
    from fedsnn.audit.plan import AuditPlan
    from fedsnn.core.config import RunConfig

    assert AuditPlan.from_config(RunConfig(audit_attack="strongest")).settings.attack == "strongest"


@pytest.mark.slow
def test_strongest_mode_in_line_in_a_flower_simulation(tmp_path) -> None:  # noqa: ANN001
    import json
    from pathlib import Path

    from tests.helpers import simulate

    results = simulate(tmp_path, {"num-server-rounds": 1, "update-mode": "gradient",
                                  "batch-size": 1, "learning-rate": 0.01, "model": "mlp-snn",
                                  "audit-attack": "strongest", "audit-max-clients": 1,
                                  "audit-time-budget-s": 120.0}, nodes=2)
    rows = json.loads((Path(results["run-dir"]) / "audit.json").read_text())["attacks"]
    assert rows and rows[0]["attack"] == "strongest" and "won by analytic" in rows[0]["message"]
    assert rows[0]["mse"] < 1e-6
