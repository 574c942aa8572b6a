"""The issue-17 grid's design (E and batch size per cell) and its table."""

import pytest
import torch

from attacks import PublicData, Status
from attacks.rate_decoder import CapabilityError
from attacks.unrolled import rounds_distance
from experiments.unrolled_grid import (DESIGNS, attack_settings, epochs_and_batch, jointly,
                                      settings_id, table)
from tests.attacks.test_joint_rounds import _rounds


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("images", [8, 32, 128])
@pytest.mark.parametrize("steps", [1, 4, 16])
def test_every_cell_gets_its_local_steps_in_whole_batches(design, images, steps):
    epochs, batch = epochs_and_batch(images, steps, design)
    assert images % batch == 0 and epochs * images // batch == steps


def test_mini_batches_take_one_epoch_where_the_images_allow_and_keep_the_n8_cells():
    assert epochs_and_batch(128, 16, "mini-batch") == (1, 8)
    assert epochs_and_batch(32, 16, "mini-batch") == (4, 8)  # no batch under 8 images
    for steps in (1, 4, 16):  # the cells measured full-batch before the design existed
        assert epochs_and_batch(8, steps, "mini-batch") == epochs_and_batch(8, steps, "full-batch")
    with pytest.raises(ValueError, match="whole batches"):
        epochs_and_batch(24, 16, "mini-batch")


def _row(client: int, identified: int, **design: int) -> dict:
    return {"model": "lenet", "images": 32, "steps": 4, "optimizer": "sgd", "client": client,
            "method": "unrolled", "batch-size": 32, "identified": identified, "asr": 0.5,
            "psnr": 15.0, "ssim": 0.5, **design}


def test_the_table_keeps_designs_apart_and_reads_older_rows_as_full_batch():
    rows = [_row(0, 10), _row(1, 6, epochs=4, **{"local-batch": 32}),
            _row(0, 8, epochs=1, **{"local-batch": 8})]
    lines = table(rows).splitlines()[2:]
    assert len(lines) == 2
    full, mini = sorted(lines, key=lambda line: "1 × 8" in line)
    assert "| 4 × 32 |" in full and "| 2 |" in full and "0.25 [" in full  # 16 of 64 pooled
    assert "| 1 × 8 |" in mini and "0.25 [" in mini  # 8 of 32


def test_rows_made_with_other_settings_are_neither_done_nor_pooled_together():
    """A resumed `--out` file that holds the same method under other settings (a consensus of
    restarts, another number of rounds) must not count those clients as done, nor pool them."""
    plain = attack_settings(iterations=3000, budget=600.0)["unrolled-rounds-public-prior"]
    consensus = attack_settings(iterations=3000, budget=600.0, consensus_restarts=2,
                                consensus_steps=500)["unrolled-rounds-public-prior"]
    method = "unrolled-rounds-public-prior"
    assert settings_id(plain, method, 3) != settings_id(consensus, method, 3)
    assert settings_id(plain, method, 3) != settings_id(plain, method, 5)
    assert settings_id(plain, "unrolled", 3) == settings_id(plain, "unrolled", 5)  # one round
    assert settings_id(plain, method, 3) == settings_id(plain.with_(time_budget_s=60.0), method, 3)
    rows = [_row(0, 10, settings=settings_id(plain, method, 3)),
            _row(1, 6, settings=settings_id(plain, method, 3)),
            _row(0, 20, settings=settings_id(consensus, method, 3))]
    lines = table(rows).splitlines()[2:]
    assert len(lines) == 2
    assert any(f"[settings {settings_id(consensus, method, 3)}]" in line and "| 1 |" in line
               for line in lines)


def test_the_rounds_method_with_the_decoder_prior_matches_every_round_and_needs_public_images():
    """"unrolled-rounds-public-prior": `jointly` hands the granted public images to the attack,
    whose latent and pixel phases both match rounds 1 and 2 at once."""
    first, second = _rounds(2)
    public = PublicData(torch.rand((24, 1, 28, 28), generator=torch.Generator().manual_seed(3)),
                        "test", labels=torch.arange(24) % 10)
    settings = attack_settings(iterations=30, budget=600.0, prior_pixel_steps=10,
                               learn_labels=False)["unrolled-rounds-public-prior"]
    (run,) = jointly([second], public)([first], settings)
    assert run.status == Status.OK and len(run.loss_history) == 30
    with torch.enable_grad():
        joint = float(rounds_distance([first, second], settings)(run.inputs, run.labels, False))
        alone = float(rounds_distance([first], settings)(run.inputs, run.labels, False))
    assert run.matching_loss == pytest.approx(joint, rel=1e-3) and joint != pytest.approx(alone)
    with pytest.raises(CapabilityError, match="public"):
        jointly([second])([first], settings)
