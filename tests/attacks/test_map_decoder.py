"""The conv decoder for head rows that are feature maps: which models' heads read a map, and that
it learns a local map -> image relation from few samples."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attacks import AttackSettings
from attacks.learned_inverter import image_decoder
from attacks.map_decoder import MapDecoder, readout_map_shape
from attacks.rate_decoder import Decoder, fit_mlp
from attacks.types import Observation
from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec, build_model


@pytest.mark.parametrize(("model", "expected"), [
    ("lenet", (12, 7, 7)), ("lenet-snn", (12, 7, 7)), ("lenet5", None), ("mlp", None)])
def test_the_map_shape_is_what_the_readout_reads(model: str, expected: object) -> None:
    # lenet5 flattens a 16x5x5 map too, but into hidden layers: its readout reads 84 features
    assert readout_map_shape(build_model(ModelSpec(model)), (1, 28, 28)) == expected


@pytest.mark.parametrize(("model", "kind"), [("lenet-snn", MapDecoder), ("lenet5", Decoder)])
def test_the_inverter_asks_for_the_conv_decoder_and_gets_the_mlp_where_no_map_is_read(
        model: str, kind: type) -> None:
    observation = Observation(target_id="c", model_spec=ModelSpec(model), global_state={},
                              gradients={}, batch_size=4)
    settings = AttackSettings(inverter_decoder="conv", inverter_hidden=16)
    decoder = image_decoder(observation, torch.zeros(600), torch.ones(600), settings, (1, 28, 28))
    assert isinstance(decoder, kind)


def test_it_learns_a_local_map_to_image_relation_from_few_samples() -> None:
    # rows = each digit's 4x4-pooled map, 12 noisy copies as channels, plus 21 extra features:
    # 600 training digits are enough for the conv decoder to beat the mean image by far
    torch.manual_seed(0)
    images = load_dataset("digits").train_x[:800].float()
    pooled = F.avg_pool2d(images, 4).repeat(1, 12, 1, 1)  # [B, 12, 7, 7]
    rows = torch.cat([(pooled + 0.05 * torch.randn_like(pooled)).flatten(1),
                      torch.randn(len(images), 21)], 1)
    train, test = slice(0, 600), slice(600, 800)
    decoder = MapDecoder(rows[train].mean(0), rows[train].std(0), (12, 7, 7), (1, 28, 28))
    fit_mlp(decoder, rows[train], images[train], 25, torch.Generator().manual_seed(0))
    with torch.no_grad():
        error = F.mse_loss(decoder.eval()(rows[test]), images[test])
    baseline = F.mse_loss(images[train].mean(0, keepdim=True).expand_as(images[test]),
                          images[test])
    assert error < 0.15 * baseline  # measured 0.04 (the 256-wide MLP: 0.10; collapsed: >= 1)
