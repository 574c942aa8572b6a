"""A node's setup from its Flower context, and the reply it sends after local training."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, MetricRecord
from torch import nn

from clients.privacy import TrainingHooks
from fedsnn.config import RunConfig
from fedsnn.data import ClientData, dataset_spec, load_client_data, load_dataset, load_local_data
from fedsnn.models import ModelSpec, build_model, spec_for


@dataclass(frozen=True)
class NodeSetup:
    """What a node knows: the run config, its partition, its data and the model spec."""

    config: RunConfig
    partition_id: int
    num_partitions: int
    data: ClientData
    spec: ModelSpec

    @classmethod
    def from_context(cls, context: Context, overrides: Mapping[str, Any] | None = None) -> NodeSetup:
        config = RunConfig.from_mapping({**context.run_config, **(overrides or {})})
        node_config = context.node_config
        if "data-path" in node_config:
            return cls.with_own_data(config, str(node_config["data-path"]),
                                     int(node_config.get("partition-id", -1)))
        if "partition-id" not in node_config or "num-partitions" not in node_config:
            raise ValueError("node config needs 'partition-id' and 'num-partitions' "
                             "(e.g. --node-config \"partition-id=0 num-partitions=2\")")
        return cls.for_partition(config, int(node_config["partition-id"]),
                                 int(node_config["num-partitions"]))

    @classmethod
    def for_partition(cls, config: RunConfig, partition_id: int, num_partitions: int) -> NodeSetup:
        """The setup of the node that holds `partition_id` (also how colluders stand in for a
        peer's side channel: see `clients.malicious`)."""
        dataset = load_dataset(config.dataset, config.image_size)
        data = load_client_data(config.dataset, config.image_size, partition_id, num_partitions,
                                kind=config.partitioner, alpha=config.dirichlet_alpha,
                                seed=config.seed, local_test_fraction=config.local_test_fraction)
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
            raise ValueError(f"data-path {data_path}: images of shape {tuple(data.train_x.shape[1:])}"
                             f", but the run's model takes {tuple(dataset.train_x.shape[1:])}")
        if len(data.train_y) and int(data.train_y.max()) >= dataset.num_classes:
            raise ValueError(f"data-path {data_path}: label {int(data.train_y.max())} is outside "
                             f"the run's {dataset.num_classes} classes")
        spec = spec_for(config, dataset.in_channels, dataset.num_classes, dataset.image_size)
        return cls(config, partition_id, 1, data, spec)

    def round_seed(self, server_round: int) -> int:
        """This node's seed for a round: batches, shuffling and Poisson spikes derive from it."""
        return self.config.seed * 1_000_003 + server_round * 1009 + self.partition_id

    def model_with(self, arrays: ArrayRecord, encoder_seed: int = 0) -> nn.Module:
        """The model with the global weights the server sent."""
        model = build_model(self.spec, encoder_seed=encoder_seed)
        state = {k: v.to(torch.float32) for k, v in arrays.to_torch_state_dict().items()}
        model.load_state_dict(state)
        return model


def local_train_reply(node: NodeSetup, model: nn.Module, server_round: int,
                      hooks: TrainingHooks | None = None) -> tuple[ArrayRecord, MetricRecord]:
    """Train per the run's update mode and build the reply's arrays and metrics.

    - `fedavg`: E local epochs; reply with the updated weights.
    - `gradient` (FedSGD): the gradient g of one batch of `batch-size` samples (under DP-SGD a
      Poisson-sampled batch of that expected size), applied as one
      plain SGD step; reply with w - lr * g in float64, so the server recovers g = (w - w') / lr
      to float64 precision while every aggregation strategy still sees weights.

    The metrics carry `sample-ids` (dataset ids of the samples used, never pixels) so that the
    auditor can find the ground truth; attacks never read them.

    `hooks` (`clients.privacy`) run the inputs, gradient and training through the round's
    defenses (DP-SGD, spike-level DP); plain training without them.
    """
    hooks = hooks or TrainingHooks()
    cfg = node.config
    seed = node.round_seed(server_round)
    data = node.data
    if cfg.update_mode == "gradient":
        loss, gradients, batch, num_examples = hooks.gradient(
            model, data.train_x, data.train_y, batch_size=cfg.batch_size, seed=seed)
        state = model.state_dict()
        new_state = {name: (state[name].double() - cfg.learning_rate * gradients[name].double())
                     if name in gradients else state[name] for name in state}
        arrays = ArrayRecord(new_state)
        metrics = {"train-loss": loss, "num-examples": num_examples, "local-steps": 1,
                   "sample-ids": data.train_ids[batch].tolist() if data.shared_ids else []}
    else:
        result = hooks.train(model, hooks.inputs(model, data.train_x), data.train_y,
                             epochs=cfg.local_epochs, batch_size=cfg.batch_size, lr=cfg.learning_rate,
                              optimizer=cfg.optimizer, momentum=cfg.momentum, seed=seed)
        arrays = ArrayRecord(model.state_dict())
        metrics = {"train-loss": result.loss, "num-examples": result.num_examples,
                   "local-steps": result.steps,
                   "sample-ids": data.train_ids.tolist() if data.shared_ids else []}
    metrics["partition-id"] = node.partition_id
    metrics.update(hooks.metrics())
    return arrays, MetricRecord(metrics)
