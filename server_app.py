"""fedsnn ServerApp: builds the strategy stack from the run config, runs it, writes the results."""

from __future__ import annotations

import json
from collections.abc import Mapping
import shutil
from logging import ERROR, INFO, WARNING
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from fedsnn.core.training import evaluate
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.ground_truth import no_ground_truth, simulated_ground_truth
from fedsnn.core.checkpoint import Checkpoint, CheckpointError, load_checkpoint, resume_into, save_checkpoint
from fedsnn.core.config import ConfigError, RunConfig
from fedsnn.core.data import DatasetError, load_dataset
from fedsnn.core.judges import load_judge
from fedsnn.core.models import ModelSpec, build_model, spec_for
from fedsnn.core.privacy.ledger import LedgerError
from fedsnn.core.privacy.units import epsilon_units
from fedsnn.core.protocol import NODE_LEDGER_DIR, NODE_LEDGERS_COMPLETE
from fedsnn.core.results import (RunFailed, RunRecord, create_run_dir, record_failure,
                                 write_json_atomic)
from strategies.curious import attach_audit
from strategies.dp_audit import RunFacts, audit_dp_claims, audit_summary
from strategies.ledgers import restore_ledgers, save_ledgers
from strategies.rounds import RoundPolicy, RunStopped, run_rounds
from strategies.stack import build_strategy
from strategies.validation import validating


NODE_LEDGERS_FOLDER = "node-ledgers"  # under the run folder: each simulated node's ledger


def create_server_app(overrides: Mapping[str, Any] | None = None) -> ServerApp:
    """The ServerApp; `overrides` replace run-config values (tests use it with run_simulation)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        """Run the federation and write results.json under the configured output folder.
        A run that does not complete raises `RunFailed` after writing results.json (status
        `failed`), so that Flower reports the run as failed."""
        raw = {**context.run_config, **(overrides or {})}
        try:
            config = RunConfig.from_mapping(raw)
            data = load_dataset(config.dataset, config.image_size)
            resume = load_checkpoint(config.resume_from) if config.resume_from else None
        except (ConfigError, DatasetError, CheckpointError) as error:
            fallback = RunConfig(output_dir=str(raw.get("output-dir", RunConfig.output_dir)))
            path = record_failure(fallback.resolved_output_dir(),
                                  str(raw.get("run-name") or raw.get("model") or "run"), raw,
                                  str(error))
            log(ERROR, "fedsnn: %s (results: %s)", error, path or "none written")
            raise RunFailed(f"fedsnn: {error}") from None
        run(grid, config, data, resume)

    return app


def run(grid: Grid, config: RunConfig, data: Any, resume: Checkpoint | None = None) -> RunRecord:
    """Train for `num-server-rounds` with central evaluation and a checkpoint after every round
    (from `resume`'s next round when given); a run that cannot go on stops with its reason."""
    spec = spec_for(config, data.in_channels, data.num_classes, data.image_size)
    run_dir = create_run_dir(config.resolved_output_dir(), config.run_name or config.model)
    record = RunRecord(run_dir, config.to_dict(), {"seed": config.seed, "model-spec": spec.to_dict(),
                                                   "dataset": data.note})
    log(INFO, "fedsnn: %s on %s; results -> %s", config.model, data.note, run_dir)
    try:
        return _train(grid, config, data, resume, spec, record)
    except RunFailed:
        raise
    except Exception as error:  # a crash: say so in results.json, then let Flower see it
        record.fail(f"{type(error).__name__}: {error}")
        log(ERROR, "fedsnn: the run crashed (%s: %s); results -> %s", type(error).__name__,
            error, record.path)
        raise


def _train(grid: Grid, config: RunConfig, data: Any, resume: Checkpoint | None, spec: ModelSpec,
           record: RunRecord) -> RunRecord:
    """The rounds, the audit and the final model of `run`, written to `record`."""
    run_dir = record.run_dir
    model = build_model(spec, dlg_init=config.dlg_init, seed=config.seed)
    try:
        first_round = resume_into(resume, model, record) if resume else 1
    except CheckpointError as error:
        record.fail(str(error))
        log(ERROR, "fedsnn: %s", error)
        raise RunFailed(f"fedsnn: {error}") from None

    def central_evaluation(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict({k: v.float() for k, v in arrays.to_torch_state_dict().items()})
        loss, accuracy = evaluate(model, data.test_x, data.test_y)
        record.update_round(server_round, "central", {"loss": loss, "accuracy": accuracy})
        log(INFO, "fedsnn: round %d/%d  test accuracy %.4f  loss %.4f", server_round,
            config.num_server_rounds, accuracy, loss)
        return MetricRecord({"loss": loss, "accuracy": accuracy})

    node_ledgers = _node_ledger_folder(run_dir, resume)
    record.set("node-ledgers", node_ledgers)
    strategy = build_strategy(config)
    if resume:
        try:
            restored = restore_ledgers(strategy, resume.ledgers)
        except LedgerError as error:
            record.fail(f"resume-from: {error}")
            log(ERROR, "fedsnn: resume-from: %s", error)
            raise RunFailed(f"fedsnn: resume-from: {error}") from None
        record.set("resumed-ledgers", restored)
    curious = attach_audit(strategy, config, spec, data) if config.audit_enabled else None
    stopped: RunStopped | None = None
    try:  # bad replies are rejected before the curious server or any aggregator sees them
        result = run_rounds(
            validating(curious or strategy, config, data.train_y),
            grid, initial_arrays=ArrayRecord(model.state_dict()),
            num_rounds=config.num_server_rounds, first_round=first_round,
            policy=RoundPolicy(config.round_timeout, config.node_wait_timeout,
                               config.min_train_replies),
            train_config=ConfigRecord({"lr": config.learning_rate,
                                       NODE_LEDGER_DIR: node_ledgers["dir"],
                                       NODE_LEDGERS_COMPLETE: int(node_ledgers["complete"])}),
            evaluate_fn=central_evaluation, report=record.update_round,
            on_round_end=lambda server_round, arrays: save_checkpoint(
                run_dir, server_round=server_round, results=record.data,
                model_state=arrays.to_torch_state_dict(), ledgers=save_ledgers(strategy)))
    except RunStopped as error:
        stopped = error
    except Exception:
        if curious is not None:  # no attack outlives a crashed run
            curious.queue.close()
        raise
    record.set("epsilon-units", epsilon_units(record.data["rounds"]))
    dp_audit = _dp_audit(strategy, config, spec, model, record) if config.dp_audit else None
    if curious is not None:
        judge = load_judge(data, split="test")  # it scores clients' train samples: never saw them
        truth = (simulated_ground_truth(config, curious.nodes_seen)
                 if config.audit_ground_truth == "partitions" else no_ground_truth)
        auditor = Auditor(data.train_x, data.train_y, judge.model, ground_truth=truth,
                          public_x=data.test_x, public_y=data.test_y,
                          native_size=data.native_size)
        record.set("audit", curious.finish(run_dir, auditor, judge=judge.card()))
        log(INFO, "fedsnn: audit report -> %s", record.data["audit"]["report"])
    if dp_audit is not None:
        _merge_into_audit_json(run_dir / "audit.json", dp_audit)
    if dp_audit and dp_audit["claims"] == "violated":
        reason = "dp-audit: the attack proves more ε than accounted for " + ", ".join(
            dp_audit["violated"])
        record.fail(reason, **{"privacy-claim": "violated"})
        log(ERROR, "fedsnn: %s", reason)
        raise RunFailed(f"fedsnn: {reason}")
    if stopped is not None:
        record.fail(str(stopped), **{"stop-reason": str(stopped), "resumable": True})
        log(ERROR, "fedsnn: %s; resume with resume-from=%s", stopped, run_dir)
        raise RunFailed(f"fedsnn: {stopped} (resume with resume-from={run_dir})")
    torch.save(result.arrays.to_torch_state_dict(), run_dir / "model.pt")
    missing = [e["round"] for e in record.data["rounds"]
               if e["round"] > 0 and not e.get("participation", {}).get("aggregated", True)]
    record.set("rounds-without-training", missing)
    record.finish("completed" if not missing else "completed-with-failed-rounds")
    log(INFO, "fedsnn: finished; final test accuracy %.4f; results in %s",
        record.data["rounds"][-1]["central"]["accuracy"], run_dir / "results.json")
    return record


def _dp_audit(strategy: Any, config: RunConfig, spec: ModelSpec, model: torch.nn.Module,
              record: RunRecord) -> dict[str, Any]:
    """Audit every DP claim by attack (`strategies.dp_audit`); results.json's `dp-audit`."""
    rounds = [e for e in record.data["rounds"] if e["round"] > 0
              and e.get("participation", {}).get("aggregated", False)]
    facts = RunFacts(config, spec, model, len(rounds),
                     max((e["participation"]["sampled"] for e in rounds), default=1),
                     rounds[-1].get("train", {}) if rounds else {})
    summary = audit_summary(audit_dp_claims(strategy, facts))
    for entry in summary["mechanisms"]:
        log(INFO if entry["claim"] == "holds" else ERROR, "fedsnn: dp-audit %s", entry["summary"])
    record.set("dp-audit", summary)
    return summary


def _merge_into_audit_json(path: Path, dp_audit: dict[str, Any]) -> None:
    """audit.json's `dp-audit` entry (the file is created when no curious server wrote one)."""
    audit = json.loads(path.read_text()) if path.is_file() else {}
    write_json_atomic(path, {**audit, "dp-audit": dp_audit})


def _node_ledger_folder(run_dir: Path, resume: Checkpoint | None) -> dict[str, Any]:
    """The folder where nodes without their own `privacy-ledger` keep theirs (one file per
    partition, `clients.ledgers.NodeLedgers`); on resume, the resumed run's ledgers are copied in
    first. `complete`: it holds every ledger since round 1, so a node with no file there has
    spent nothing (else such a node marks its ε understated)."""
    folder = run_dir / NODE_LEDGERS_FOLDER
    folder.mkdir(exist_ok=True)
    if resume is None:
        return {"dir": str(folder), "complete": True}
    earlier = resume.path.parent / NODE_LEDGERS_FOLDER
    for path in sorted(earlier.glob("partition-*.json")):
        shutil.copy2(path, folder / path.name)
    complete = earlier.is_dir() and bool(resume.results.get("node-ledgers", {}).get("complete"))
    if not complete:
        log(WARNING, "fedsnn: the resumed run kept no node ledgers; client-side ε will be marked "
            "understated on nodes without their own privacy-ledger")
    return {"dir": str(folder), "complete": complete}


app = create_server_app()
