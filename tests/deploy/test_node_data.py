"""An edge node's own dataset (`data-path` in its node config) instead of a partition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Context, RecordDict

from clients.node import NodeSetup, NodeSetupError
from clients.ledgers import NodeLedgers
from clients.reply import train_reply
from fedsnn.core.config import RunConfig
from fedsnn.core.data import DatasetError, dataset_spec, load_dataset, load_local_data
from fedsnn.core.models import build_model


def write_npz(path: Path, n: int = 40, channels: int | None = None, **extra: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    shape = (n, 8, 8) if channels is None else (n, channels, 8, 8)
    np.savez(path, x=rng.integers(0, 256, shape, dtype=np.uint8), y=rng.integers(0, 10, n), **extra)
    return path


def context(node_config: dict) -> Context:
    return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(),
                   run_config={"model": "lenet", "image-size": 16, "local-epochs": 1})


def test_data_path_gives_the_node_all_of_its_own_samples(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "node.npz")
    node = NodeSetup.from_context(context({"data-path": str(path), "partition-id": 7}))
    assert node.partition_id == 7
    assert len(node.data.train_x) + len(node.data.test_x) == 40
    assert node.data.train_x.shape[1:] == (1, 16, 16) and float(node.data.train_x.max()) <= 1.0
    assert not node.data.shared_ids

    sent = ArrayRecord(build_model(node.spec).state_dict())
    arrays, metrics = train_reply(node, sent, {}, NodeLedgers(), 1)
    assert "sample-ids" not in metrics  # no reply carries ground truth
    assert metrics["num-examples"] == len(node.data.train_x) and "conv1.weight" in str(arrays.keys())


def test_a_folder_of_mnist_files_works_too(mnist_dir: Path) -> None:
    node = NodeSetup.from_context(context({"data-path": str(mnist_dir)}))
    assert node.partition_id == -1 and len(node.data.train_x) > 1000


def test_dataset_spec_reads_paths_and_specs() -> None:
    assert dataset_spec("/data/a.npz") == "npz:/data/a.npz"
    assert dataset_spec("/data/mnist") == "mnist:/data/mnist"
    assert dataset_spec("digits") == "digits"
    assert dataset_spec("mnist:/x") == "mnist:/x"


def test_npz_test_arrays_become_the_test_split(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", x_test=np.zeros((5, 8, 8), np.float32),
                     y_test=np.zeros(5, np.int64))
    data = load_dataset(f"npz:{path}", 8)
    assert (len(data.train_x), len(data.test_x)) == (40, 5)
    assert len(load_local_data(f"npz:{path}", 8).train_x) == 32  # 20% kept for local tests


def test_bad_local_data_is_refused_in_one_line(tmp_path: Path) -> None:
    np.savez(tmp_path / "wrong.npz", images=np.zeros((3, 8, 8)))
    with pytest.raises(DatasetError, match="expected 'x'"):
        load_dataset(f"npz:{tmp_path / 'wrong.npz'}", 8)
    rgb = write_npz(tmp_path / "rgb.npz", channels=3)
    with pytest.raises(ValueError, match="images of shape"):
        NodeSetup.with_own_data(RunConfig(image_size=16), str(rgb))
    with pytest.raises(DatasetError, match="does not exist"):
        NodeSetup.with_own_data(RunConfig(), str(tmp_path / "absent"))
    assert torch.get_num_threads() >= 1


def test_a_channels_last_npz_is_reported_with_its_real_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "hwc.npz", x=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
             y=rng.integers(0, 10, 40))
    with pytest.raises(DatasetError, match=r"\(40, 8, 8, 3\), which looks channels-last"):
        NodeSetup.with_own_data(RunConfig(image_size=16), str(tmp_path / "hwc.npz"))


def test_a_node_that_cannot_set_up_replies_with_a_one_line_error(tmp_path: Path) -> None:
    from flwr.app import ArrayRecord, ConfigRecord, Message

    from client_app import SETUP_ERROR_CODE, create_client_app
    from fedsnn.tools.local_grid import server_identity

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "hwc.npz", x=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
             y=rng.integers(0, 10, 40))
    app = create_client_app({"model": "lenet", "image-size": 16})
    with server_identity():
        message = Message(RecordDict({"arrays": ArrayRecord(), "config": ConfigRecord(
            {"server-round": 1})}), dst_node_id=1, message_type="train")
    message.metadata.__dict__["_message_id"] = message.object_id
    reply = app(message, context({"data-path": str(tmp_path / "hwc.npz")}))
    assert reply.has_error() and reply.error.code == SETUP_ERROR_CODE
    assert "channels-last" in reply.error.reason and "\n" not in reply.error.reason


def test_more_nodes_than_samples_is_a_clear_error_not_an_index_error() -> None:
    config = RunConfig(image_size=16)
    with pytest.raises(NodeSetupError, match="partition 1999 of 2000 holds no training sample"):
        NodeSetup.for_partition(config, 1999, 2000)
