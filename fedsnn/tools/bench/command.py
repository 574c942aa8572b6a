"""The `fedsnn bench` command (registered in fedsnn/tools/cli.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from fedsnn.tools.bench.config import BenchConfig
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


def bench(
    dataset: str = typer.Option(..., help="dataset spec: 'digits' or 'mnist:<dir with IDX files>'"),
    attacks: str = typer.Option("dlg,idlg,grnn", help="comma-separated attacks"),
    models: str = typer.Option("lenet,lenet-snn", help="comma-separated models"),
    optimizers: str = typer.Option("lbfgs", help="optimizers of DLG/iDLG's dummy: lbfgs, adam "
                                                 "(GRNN always trains its generator with RMSprop)"),
    samples: int = typer.Option(100, help="test images attacked (each on a fresh model)"),
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
    seed: int = typer.Option(0, help="seeds the attack set, the victims and the attacks"),
    grid: int = typer.Option(8, help="samples drawn per attack in grid-<attack>.png"),
    threads: int = typer.Option(1, help="torch CPU threads"),
    thresholds: str = typer.Option("0.1,0.25,0.5,0.75,0.9,0.95", help="event datasets: spike "
                                   "binarization thresholds θ (Table V)"),
    threshold_modes: str = typer.Option("post,in", help="event datasets: thresholding after "
                                        "(post) and/or during (in) the optimization"),
    image_size: int = typer.Option(28, help="event datasets: sensor side (dvsgesture: 128 "
                                            "downsampled to this)"),
    workers: int = typer.Option(1, help="event datasets: attack processes"),
    out: Path = typer.Option(Path("runs/bench"), help="output folder; re-running with the same "
                                                     "folder resumes (finished rows are skipped)"),
    ray: bool = typer.Option(False, "--ray", help="run the batches as Ray tasks on a local Ray "
                                                  "instance (same rows as a local run)"),
    ray_address: str | None = typer.Option(None, help="run the batches as Ray tasks on this "
                                                      "existing Ray cluster (implies --ray)"),
    vectorize: int = typer.Option(0, help="DLG/iDLG: attack this many batches at once through the "
                                          "vectorized engine (local runs; 0 or 1: one at a time)"),
    shard: str | None = typer.Option(None, help="'i/n': attack only batches b with b % n == i, so n "
                                              "processes (or machines) can share one --out folder"),
) -> None:
    """Offline gradient-inversion benchmark (the study's Table IV): results.json, table.md and
    grid-<attack>.png in --out. On an event dataset (dvs-digits, dvsgesture:<dir>): the spike
    modality's Tables V-VI and frames.png (fedsnn/tools/bench/events.py).

    Example: fedsnn bench --dataset mnist:../shared/data/mnist --samples 100 --out runs/table4
    """
    import torch

    torch.set_num_threads(threads)
    from fedsnn.data.dvs import parse_event_spec

    if parse_event_spec(dataset) is not None:  # the spike modality: Tables V-VI
        from fedsnn.tools.bench.events import cli_run

        cli_run(dataset=dataset, attacks=attacks, optimizers=optimizers, thresholds=thresholds,
                modes=threshold_modes, samples=samples, iters=iters, lr=adam_lr, seed=seed,
                image_size=image_size, workers=workers, pictures=grid, out=out)
        return
    try:
        config = BenchConfig(dataset=dataset, attacks=_names(attacks), models=_names(models),
                             optimizers=_names(optimizers), samples=samples, batch_size=batch_size,
                             seed=seed, iters=iters, adam_iters=adam_iters, grnn_iters=grnn_iters,
                             restarts=restarts, accept_loss=accept_loss,
                             stop_loss=stop_loss or None,
                             lbfgs_max_eval=lbfgs_max_eval, adam_lr=adam_lr,
                             lbfgs_projection=lbfgs_projection,
                             time_steps=time_steps, encoding=encoding, grid=grid)
        results = run_bench(config, out, ray_address=ray_address or ("local" if ray else None),
                            vectorize=vectorize, shard=parse_shard(shard))
    except (ValueError, BenchResumeError) as error:
        typer.echo(f"fedsnn bench: {error}", err=True)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        typer.echo(f"fedsnn bench: interrupted; finished rows are in {out}/results.json and a "
                   "re-run with the same --out resumes", err=True)
        raise typer.Exit(code=130) from None
    typer.echo((out / "table.md").read_text())
    session = results["sessions"][-1]
    typer.echo(f"results: {out.resolve()}/results.json (this session: "
               f"{session['wall-time-s']} s wall, {session['pending-batches']} batches)")
