"""The positive control: an update the server makes itself, with the clients' settings, on images
it holds, so it knows the truth and can measure the attack's power in exactly this setting.

The canary is the current global model trained the way a client trains it (the ClientApp's own
`clients.reply.train_reply`: encode → train → privatize → reply), with the run config and the
round's train config (the defenses the clients are asked to apply), on N images drawn from the
public images (the test split, disjoint from every client). The curious server attacks it beside
the clients' replies; the verdict reads its score (`fedsnn.audit.decision`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord

from clients.node import NodeSetup
from clients.ledgers import NodeLedgers
from clients.reply import train_reply
from fedsnn.core.config import RunConfig
from fedsnn.core.data import ClientData
from fedsnn.core.models import ModelSpec

CANARY_PARTITION = -1  # the canary's partition id (no client has it)


@dataclass(frozen=True)
class Reply:
    """What the server holds of one reply: the arrays it sent and got back, and the metrics that
    say how they were made (`num-examples`, `local-steps`)."""

    server_round: int
    partition_id: int
    sent: Mapping[str, torch.Tensor]
    returned: Mapping[str, torch.Tensor]
    num_examples: int
    local_steps: int = 1


def client_reply(config: RunConfig, spec: ModelSpec, sent: Mapping[str, torch.Tensor],
                 images: torch.Tensor, labels: torch.Tensor, train_config: Mapping[str, Any],
                 *, server_round: int = 1, partition_id: int = 0
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[int]]:
    """What a client holding (images, labels) sends back, made as the ClientApp makes it: its
    arrays, its metrics, and (for the scorer only) which of the images it trained on."""
    ids = torch.arange(len(images))
    node = NodeSetup(config, partition_id, 1,
                     ClientData(ids, images, labels, ids[:0], images[:0], labels[:0]), spec)
    arrays, released = train_reply(node, ArrayRecord(dict(sent)), ConfigRecord(dict(train_config)),
                                   NodeLedgers(), server_round)
    return (arrays.to_torch_state_dict(), dict(released),
            node.training_indices(server_round).tolist())


def make_canary(config: RunConfig, spec: ModelSpec, sent: Mapping[str, torch.Tensor],
                train_config: Mapping[str, Any], public_x: torch.Tensor, public_y: torch.Tensor,
                *, images: int, server_round: int) -> tuple[Reply, list[int]]:
    """The canary of a round: `images` public images (a seeded draw) trained on as a client
    would; its reply and the public ids of the images it trained on.

    Raises:
        ValueError: fewer public images than asked for, or a client that cannot train.
    """
    if not 1 <= images <= len(public_x):
        raise ValueError(f"a canary of {images} images needs 1 to {len(public_x)} public images")
    generator = torch.Generator().manual_seed(zlib.crc32(f"canary/{config.seed}/{server_round}"
                                                         .encode()))
    ids = torch.randperm(len(public_x), generator=generator)[:images]
    returned, metrics, trained = client_reply(
        config, spec, sent, public_x[ids].float(), public_y[ids].long(), train_config,
        server_round=server_round, partition_id=CANARY_PARTITION)
    reply = Reply(server_round, CANARY_PARTITION, sent, returned, int(metrics["num-examples"]),
                  int(metrics.get("local-steps", 1)))
    return reply, ids[trained].tolist()
