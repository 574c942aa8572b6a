"""A node's setup from its Flower context, and the reply it sends after local training."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import ArrayRecord, Context
from torch import nn

from fedsnn.core.config import RunConfig
from fedsnn.core.data import ClientData, dataset_spec, load_client_data, load_dataset, load_local_data
from fedsnn.core.models import ModelSpec, build_model, spec_for
from fedsnn.core.privacy.dpsgd import DpSgdRound, poisson_batch, private_epochs, private_gradient
from fedsnn.core.sampling import round_seed, training_indices
from fedsnn.core.training import TrainResult, batch_gradient, make_optimizer, train_epochs


class NodeSetupError(ValueError):
    """This node cannot take part with its config or data; the message says why, in one line."""


@dataclass(frozen=True)
class NodeSetup:
    """What a node knows: the run config, its partition, its data and the model spec.

    `secret` is the node-local seed of its random draws when `client-randomness = "secret"`
    (drawn once from `secrets`, kept with its ledgers); None: they derive from the run's
    public `seed` (`fedsnn.core.sampling`), reproducibly, and the server can derive them too.

    `public_examples` is n̂, the example count the federation knows for this node (its
    partition's size as assigned, or node config `public-examples`): a DP-protected reply's
    counts and DP-SGD's sampling rate come from it, never from the data (issue 27).
    """

    config: RunConfig
    partition_id: int
    num_partitions: int
    data: ClientData
    spec: ModelSpec
    secret: int | None = None
    public_examples: int = 0  # 0: the size of `data`'s train split when the setup is made

    def __post_init__(self) -> None:
        if self.public_examples <= 0:
            object.__setattr__(self, "public_examples", len(self.data.train_x))

    @classmethod
    def from_context(cls, context: Context, overrides: Mapping[str, Any] | None = None,
                     secret: Callable[[], int] | None = None) -> NodeSetup:
        """The node of a Flower `Context`; `secret` gives its secret seed (asked only under
        `client-randomness = "secret"`)."""
        config = RunConfig.from_mapping({**context.run_config, **(overrides or {})})
        node_config = context.node_config
        if "data-path" in node_config:
            node = cls.with_own_data(config, str(node_config["data-path"]),
                                     int(node_config.get("partition-id", -1)))
        elif "partition-id" not in node_config or "num-partitions" not in node_config:
            raise NodeSetupError("node config needs 'partition-id' and 'num-partitions' "
                             "(e.g. --node-config \"partition-id=0 num-partitions=2\")")
        else:
            node = cls.for_partition(config, int(node_config["partition-id"]),
                                     int(node_config["num-partitions"]))
        if config.client_randomness == "secret" and secret is not None:
            node = dataclasses.replace(node, secret=secret())
        if "public-examples" in node_config:
            declared = int(node_config["public-examples"])
            if declared < 1:
                raise NodeSetupError(f"node config public-examples: expected a positive count, "
                                     f"got {declared}")
            node = dataclasses.replace(node, public_examples=declared)
        return node

    @classmethod
    def for_partition(cls, config: RunConfig, partition_id: int, num_partitions: int) -> NodeSetup:
        """The setup of the node that holds `partition_id` (also how colluders stand in for a
        peer's side channel: see `clients.malicious`)."""
        dataset = load_dataset(config.dataset, config.image_size)
        try:
            data = load_client_data(config.dataset, config.image_size, partition_id,
                                    num_partitions, kind=config.partitioner,
                                    alpha=config.dirichlet_alpha, seed=config.seed,
                                    local_test_fraction=config.local_test_fraction)
        except ValueError as error:  # e.g. a partition-id outside [0, num-partitions)
            raise NodeSetupError(str(error)) from None
        except IndexError:  # Flower Datasets' IID partitioner: more partitions than samples
            data = None
        if data is None or len(data.train_x) == 0:
            raise NodeSetupError(
                f"partition {partition_id} of {num_partitions} holds no training sample: "
                f"{config.dataset!r} has {len(dataset.train_y)} training samples for "
                f"{num_partitions} partitions ({config.partitioner}); use fewer nodes"
                + (" or a larger dirichlet-alpha" if config.partitioner == "dirichlet" else ""))
        if config.max_train_samples:  # e.g. to audit clients with few images
            keep = slice(0, config.max_train_samples)
            data = dataclasses.replace(data, train_ids=data.train_ids[keep],
                                       train_x=data.train_x[keep], train_y=data.train_y[keep])
        spec = spec_for(config, dataset.in_channels, dataset.num_classes, dataset.image_size)
        return cls(config, partition_id, num_partitions, data, spec)

    @classmethod
    def with_own_data(cls, config: RunConfig, data_path: str, partition_id: int = -1) -> NodeSetup:
        """An edge node with its own dataset (node config `data-path`: a folder of MNIST IDX
        files, an .npz file or any dataset spec) instead of a partition of the run's `dataset`,
        which still fixes the model's shape. `partition-id` is only this node's label."""
        dataset = load_dataset(config.dataset, config.image_size)
        data = load_local_data(dataset_spec(data_path), config.image_size, seed=config.seed,
                               local_test_fraction=config.local_test_fraction)
        if data.train_x.shape[1:] != dataset.train_x.shape[1:]:
            raise NodeSetupError(
                f"data-path {data_path}: images of shape {tuple(data.train_x.shape[1:])} after "
                f"resizing to image-size={config.image_size} ({data.train_x.shape[1]} channel(s)), "
                f"but the run's model takes {tuple(dataset.train_x.shape[1:])}")
        if len(data.train_x) == 0:
            raise NodeSetupError(f"data-path {data_path}: no training sample left (local-test-"
                                 f"fraction={config.local_test_fraction})")
        if len(data.train_y) and int(data.train_y.max()) >= dataset.num_classes:
            raise NodeSetupError(f"data-path {data_path}: label {int(data.train_y.max())} is "
                                 f"outside the run's {dataset.num_classes} classes")
        spec = spec_for(config, dataset.in_channels, dataset.num_classes, dataset.image_size)
        return cls(config, partition_id, 1, data, spec)

    def round_seed(self, server_round: int) -> int:
        """This node's seed for a round: batches, shuffling and Poisson spikes derive from it
        (from the run's public seed, or from the node's secret)."""
        base = self.config.seed if self.secret is None else self.secret
        return round_seed(base, server_round, self.partition_id)

    def training_indices(self, server_round: int) -> torch.Tensor:
        """Which local train samples this node trains on in a round (the auditor recomputes the
        same in simulation: `fedsnn.audit.ground_truth`)."""
        return training_indices(self.config.update_mode, len(self.data.train_x),
                                self.config.batch_size, self.round_seed(server_round))

    def model_with(self, arrays: ArrayRecord, encoder_seed: int = 0) -> nn.Module:
        """The model with the global weights the server sent."""
        model = build_model(self.spec, encoder_seed=encoder_seed)
        state = {k: v.to(torch.float32) for k, v in arrays.to_torch_state_dict().items()}
        model.load_state_dict(state)
        return model


def training_batch(node: NodeSetup, server_round: int, dp_sgd: DpSgdRound | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The (x, y) a node trains on in a round: its partition's draw for the round
    (`NodeSetup.training_indices`), or under FedSGD with DP-SGD a Poisson batch at the public
    rate drawn with a secret generator, which nobody outside the node can know."""
    if dp_sgd is not None and node.config.update_mode == "gradient":
        indices = poisson_batch(len(node.data.train_x), batch_size=node.config.batch_size,
                                public_examples=dp_sgd.public_examples)
    else:
        indices = node.training_indices(server_round)
    return node.data.train_x[indices], node.data.train_y[indices]


def train(node: NodeSetup, model: nn.Module, x: torch.Tensor, y: torch.Tensor, server_round: int,
          dp_sgd: DpSgdRound | None = None) -> tuple[ArrayRecord, dict[str, Any]]:
    """Train per the run's update mode: the update and training's metrics, before the round's
    privacy plan privatizes them for the reply (`clients.privacy.RoundPrivacy.release`).

    - `fedavg`: E local epochs; the updated weights.
    - `gradient` (FedSGD): the gradient g of the batch, applied as one plain SGD step: w - lr * g
      in float64, so the server recovers g = (w - w') / lr to float64 precision while every
      aggregation strategy still sees weights.

    Under DP-SGD (`dp_sgd`) Opacus trains at the public rate for the public number of steps, and
    the node's DP-SGD ledger continues (`fedsnn.core.privacy.dpsgd`).

    Nothing returned tells which samples were used: the auditor recomputes that from the
    partition and the round seed (`NodeSetup.training_indices`, the same draw as here), except
    for DP-SGD's secret Poisson batch.
    """
    cfg = node.config
    if cfg.update_mode == "gradient":
        if dp_sgd is None:
            loss, gradients = batch_gradient(model, x, y)
            num_examples = len(x)
        else:
            gradients, outcome = private_gradient(
                model, x, y, settings=dp_sgd.settings, num_samples=dp_sgd.public_examples,
                batch_size=cfg.batch_size, history=dp_sgd.ledger.history)
            loss, num_examples = outcome.loss, outcome.num_examples
            dp_sgd.ledger.history = list(outcome.history)
        state_dict = model.state_dict()
        update = ArrayRecord({name: (value.double() - cfg.learning_rate * gradients[name].double())
                              if name in gradients else value
                              for name, value in state_dict.items()})
        metrics = {"train-loss": loss, "num-examples": num_examples, "local-steps": 1}
    else:
        if dp_sgd is None:
            result = train_epochs(model, x, y, epochs=cfg.local_epochs, batch_size=cfg.batch_size,
                                  lr=cfg.learning_rate, optimizer=cfg.optimizer,
                                  momentum=cfg.momentum, seed=node.round_seed(server_round))
        else:
            optimizer = make_optimizer(cfg.optimizer, model.parameters(), lr=cfg.learning_rate,
                                       momentum=cfg.momentum)
            outcome = private_epochs(model, x, y, optimizer=optimizer, settings=dp_sgd.settings,
                                     epochs=cfg.local_epochs, batch_size=cfg.batch_size,
                                     history=dp_sgd.ledger.history,
                                     public_examples=dp_sgd.public_examples)
            result = TrainResult(outcome.loss, outcome.num_examples, outcome.steps)
            dp_sgd.ledger.history = list(outcome.history)
        update = ArrayRecord(model.state_dict())
        metrics = {"train-loss": result.loss, "num-examples": result.num_examples,
                   "local-steps": result.steps}
    return update, {**metrics, "partition-id": node.partition_id}
