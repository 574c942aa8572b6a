"""fedsnn ServerApp: builds the strategy stack from the run config, runs it, writes the results."""

from __future__ import annotations

from collections.abc import Mapping
from logging import ERROR, INFO
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from clients.training import evaluate
from fedsnn.config import ConfigError, RunConfig
from fedsnn.data import DatasetError, load_dataset
from fedsnn.models import build_model, spec_for
from fedsnn.results import RunRecord, create_run_dir
from strategies.stack import build_strategy


def create_server_app(overrides: Mapping[str, Any] | None = None) -> ServerApp:
    """The ServerApp; `overrides` replace run-config values (tests use it with run_simulation)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        """Run the federation and write results.json under the configured output folder."""
        try:
            config = RunConfig.from_mapping({**context.run_config, **(overrides or {})})
            data = load_dataset(config.dataset, config.image_size)
        except (ConfigError, DatasetError) as error:
            log(ERROR, "fedsnn: %s", error)
            raise SystemExit(f"fedsnn: {error}") from None
        run(grid, config, data)

    return app


def run(grid: Grid, config: RunConfig, data: Any) -> RunRecord:
    """Train for `num-server-rounds` with central evaluation after every round."""
    spec = spec_for(config, data.in_channels, data.num_classes, data.image_size)
    run_dir = create_run_dir(config.resolved_output_dir(), config.run_name or config.model)
    record = RunRecord(run_dir, config.to_dict(), {"seed": config.seed, "model-spec": spec.to_dict(),
                                                   "dataset": data.note})
    log(INFO, "fedsnn: %s on %s; results -> %s", config.model, data.note, run_dir)

    model = build_model(spec, dlg_init=config.dlg_init, seed=config.seed)

    def central_evaluation(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict({k: v.float() for k, v in arrays.to_torch_state_dict().items()})
        loss, accuracy = evaluate(model, data.test_x, data.test_y)
        record.update_round(server_round, "central", {"loss": loss, "accuracy": accuracy})
        log(INFO, "fedsnn: round %d/%d  test accuracy %.4f  loss %.4f", server_round,
            config.num_server_rounds, accuracy, loss)
        return MetricRecord({"loss": loss, "accuracy": accuracy})

    strategy = build_strategy(config)
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(model.state_dict()),
        num_rounds=config.num_server_rounds,
        train_config=ConfigRecord({"lr": config.learning_rate}),
        evaluate_fn=central_evaluation,
    )
    for server_round, metrics in result.train_metrics_clientapp.items():
        record.update_round(server_round, "train", dict(metrics))
    for server_round, metrics in result.evaluate_metrics_clientapp.items():
        record.update_round(server_round, "client-eval", dict(metrics))
    torch.save(result.arrays.to_torch_state_dict(), run_dir / "model.pt")
    missing = [r for r in range(1, config.num_server_rounds + 1)
               if r not in result.train_metrics_clientapp]
    record.set("rounds-without-training", missing)
    record.finish("completed" if not missing else "completed-with-failed-rounds")
    log(INFO, "fedsnn: finished; final test accuracy %.4f; results in %s",
        record.data["rounds"][-1]["central"]["accuracy"], run_dir / "results.json")
    return record


app = create_server_app()
