"""The `fedsnn bench` (images, Table IV) and `fedsnn bench-events` (spike frames, Tables V-VI)
commands, registered in fedsnn/tools/cli.py. Each has its own options; what they share (threads,
--out, error handling, the closing lines) is `_run`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from fedsnn.tools.bench.config import BenchConfig
from fedsnn.tools.bench.events_config import THRESHOLDS, EventBenchConfig
from fedsnn.tools.bench.run import BenchResumeError, run_bench


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'i/n' -> (i, n) with 0 <= i < n.

    Raises:
        ValueError: not of that form.
    """
    if text is None:
        return None
    index, _, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        shard = (-1, 0)
    if not 0 <= shard[0] < shard[1]:
        raise ValueError(f"--shard {text!r}: expected 'i/n' with 0 <= i < n, e.g. 0/2")
    return shard


def check_out(out: Path) -> None:
    """--out must be a folder (new or existing), never a file.

    Raises:
        ValueError: `out` is an existing file.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; expected a folder (new or from an earlier run)")


def _run(command: str, out: Path, threads: int, build: Callable[[], Any],
         run: Callable[[Any], dict[str, Any]], resumable: str,
         closing: Callable[[dict[str, Any]], str]) -> None:
    """Check the shared options and build the config (nothing is written before both pass), run,
    then print table.md and `closing(results)`. Bad input is one line on stderr, exit status 2."""
    import torch

    try:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        check_out(out)
        config = build()
        torch.set_num_threads(threads)
        results = run(config)
    except ValueError as error:  # BenchResumeError and EventBenchError are ValueErrors
        typer.echo(f"fedsnn {command}: {error}", err=True)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        typer.echo(f"fedsnn {command}: interrupted; finished rows are in {resumable} and a "
                   "re-run with the same --out resumes", err=True)
        raise typer.Exit(code=130) from None
    typer.echo((out / "table.md").read_text())
    typer.echo(closing(results))


# Options both commands take, with the same meaning.
SAMPLES = typer.Option(100, help="test samples attacked (each batch on a fresh model)")
SEED = typer.Option(0, help="seeds the attack set, the victims and the attacks")
THREADS = typer.Option(1, help="torch CPU threads (>= 1)")
OUT = typer.Option(Path("runs/bench"), help="output folder; re-running with the same folder "
                                           "resumes (finished rows are skipped)")


def bench(
    dataset: str = typer.Option(..., help="dataset spec: 'digits', 'mnist:<dir with IDX files>', "
                                          "'cifar100:<dir>', 'lfw:<dir>[,min=N]', … (event "
                                          "datasets: fedsnn bench-events)"),
    image_size: int = typer.Option(28, help="side the images are resized to (cifar100, lfw: 32 "
                                            "as in the study)"),
    attacks: str = typer.Option("dlg,idlg,grnn", help="comma-separated attacks"),
    models: str = typer.Option("lenet,lenet-snn", help="comma-separated models"),
    optimizers: str = typer.Option("lbfgs", help="optimizers of DLG/iDLG's dummy: lbfgs, adam "
                                                 "(GRNN always trains its generator with RMSprop)"),
    samples: int = SAMPLES,
    batch_size: int = typer.Option(1, help="client batch size"),
    iters: int = typer.Option(300, help="optimizer steps of DLG/iDLG (L-BFGS: up to "
                                        "--lbfgs-max-eval loss evaluations each)"),
    adam_iters: int | None = typer.Option(None, help="steps of DLG/iDLG with Adam (default: --iters)"),
    grnn_iters: int = typer.Option(1000, help="generator training steps of GRNN"),
    restarts: int = typer.Option(1, help="DLG/iDLG restarts per sample; the lowest matching loss "
                                         "is kept (GRNN trains its generator once, as in its code)"),
    accept_loss: float = typer.Option(1e-4, help="skip remaining restarts once the relative "
                                                 "matching loss is at or below this"),
    stop_loss: float = typer.Option(1e-7, help="end a run once its relative matching loss is at "
                                               "or below this (converged); 0 disables"),
    lbfgs_max_eval: int = typer.Option(20, help="loss evaluations per L-BFGS step"),
    adam_lr: float | None = typer.Option(None, help="Adam learning rate (default 0.1)"),
    lbfgs_projection: bool = typer.Option(False, help="clamp the dummy to [0, 1] between L-BFGS "
                                                      "steps too (ablation; off: clamp at the end)"),
    time_steps: int = typer.Option(4, help="T of the spiking models"),
    encoding: str = typer.Option("direct", help="input encoding of the spiking models: direct | "
                                                "poisson (the private spike draws are seeded per sample)"),
    seed: int = SEED,
    grid: int = typer.Option(8, help="samples drawn per attack in grid-<attack>.png"),
    threads: int = THREADS,
    out: Path = OUT,
    ray: bool = typer.Option(False, "--ray", help="run the batches as Ray tasks on a local Ray "
                                                  "instance (same rows as a local run)"),
    ray_address: str | None = typer.Option(None, help="run the batches as Ray tasks on this "
                                                      "existing Ray cluster (implies --ray)"),
    vectorize: int = typer.Option(0, help="DLG/iDLG/GRNN: attack this many batches at once through "
                                          "the vectorized engine (0 or 1: one at a time)"),
    shard: str | None = typer.Option(None, help="'i/n': attack only batches b with b % n == i, so n "
                                              "processes (or machines) can share one --out folder"),
) -> None:
    """Offline gradient-inversion benchmark on images (the study's Table IV): results.json,
    table.md and grid-<attack>.png in --out.

    Example: fedsnn bench --dataset mnist:../shared/data/mnist --samples 100 --out runs/table4
    """
    def build() -> tuple[BenchConfig, tuple[int, int] | None]:
        if vectorize < 0:
            raise ValueError(f"--vectorize must be >= 0 (0 or 1: one at a time), got {vectorize}")
        config = BenchConfig(dataset=dataset, attacks=_names(attacks), models=_names(models),
                             optimizers=_names(optimizers), samples=samples, batch_size=batch_size,
                             seed=seed, iters=iters, adam_iters=adam_iters, grnn_iters=grnn_iters,
                             restarts=restarts, accept_loss=accept_loss,
                             stop_loss=stop_loss or None,
                             lbfgs_max_eval=lbfgs_max_eval, adam_lr=adam_lr,
                             lbfgs_projection=lbfgs_projection,
                             time_steps=time_steps, encoding=encoding, image_size=image_size,
                             grid=grid)
        return config, parse_shard(shard)

    def run(built: tuple[BenchConfig, tuple[int, int] | None]) -> dict[str, Any]:
        config, parsed_shard = built
        return run_bench(config, out, ray_address=ray_address or ("local" if ray else None),
                         vectorize=vectorize, shard=parsed_shard)

    def closing(results: dict[str, Any]) -> str:
        session = results["sessions"][-1]
        return (f"results: {out.resolve()}/results.json (this session: "
                f"{session['wall-time-s']} s wall, {session['pending-batches']} batches)")

    _run("bench", out, threads, build, run, f"{out}/results.json", closing)


def bench_events(
    dataset: str = typer.Option(..., help="event dataset: 'dvs-digits[:frames=T]' or "
                                          "'dvsgesture:<dir>[,frames=T]'"),
    attacks: str = typer.Option("dlg,idlg", help="comma-separated attacks: dlg, idlg"),
    optimizer: str = typer.Option("lbfgs", help="optimizer of the dummy: lbfgs | adam"),
    samples: int = SAMPLES,
    iters: int = typer.Option(300, help="optimizer steps per attack"),
    lr: float | None = typer.Option(None, help="Adam learning rate (default 0.1)"),
    thresholds: str = typer.Option(",".join(map(str, THRESHOLDS)),
                                   help="spike binarization thresholds θ (Table V)"),
    threshold_modes: str = typer.Option("post,in", help="thresholding after (post) and/or during "
                                                        "(in) the optimization"),
    image_size: int = typer.Option(28, help="sensor side (dvsgesture: 128 downsampled to this)"),
    seed: int = SEED,
    pictures: int = typer.Option(8, help="samples whose frames are kept (frames.png draws 3)"),
    workers: int = typer.Option(1, help="attack processes"),
    threads: int = THREADS,
    out: Path = OUT,
) -> None:
    """Gradient inversion in the spike domain (the study's Tables V-VI): DLG / iDLG on a lenet-snn
    fed with event frames, post- and in-optimization thresholding; results.json, table.md and
    frames.png in --out (fedsnn/tools/bench/events.py).

    Example: fedsnn bench-events --dataset dvs-digits --samples 100 --out runs/events
    """
    from fedsnn.tools.bench.events import run_event_bench

    def build() -> EventBenchConfig:
        try:
            return EventBenchConfig(
                dataset=dataset, attacks=_names(attacks),
                thresholds=tuple(float(t) for t in _names(thresholds)),
                modes=_names(threshold_modes), samples=samples, seed=seed, iters=iters,
                optimizer=optimizer, lr=lr, image_size=image_size, pictures=pictures,
                workers=workers)
        except ValueError as error:
            if "could not convert" in str(error):
                raise ValueError(f"--thresholds {thresholds!r}: expected comma-separated numbers "
                                 "in (0, 1]") from None
            raise

    def closing(results: dict[str, Any]) -> str:
        return (f"results: {out.resolve()}/results.json ({results['sessions'][-1]['wall-time-s']} "
                f"s wall this session, {results['wall-time-s']} s in all; {results['status']})")

    _run("bench-events", out, threads, build, lambda config: run_event_bench(config, out),
         f"{out}/rows.jsonl", closing)
