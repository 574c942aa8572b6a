"""The benchmark's outputs: the per-row summary with 95 % intervals, the guess baselines, the
Markdown table in the layout of the study's Table IV, and a picture per attack (Figs. 3-4)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fedsnn.audit.baselines import (IMAGE_SCORE_KEYS, image_distances,  # noqa: E402
                                    image_guesses, score_guesses)
from fedsnn.core.data import ImageData  # noqa: E402
from fedsnn.core.judges import Judge, flag_asr, judge_sentence, stored_card  # noqa: E402
from fedsnn.core.metrics import (mean_stat, number_interval, percent_interval,  # noqa: E402
                            rate_stat)
from fedsnn.core.pictures import show_image  # noqa: E402
from fedsnn.tools.bench.config import Variant  # noqa: E402

MODEL_LABEL = {False: "ANN", True: "SNN"}


def baselines(data: ImageData, ids: Sequence[int], judge: Judge) -> dict[str, dict[str, Any]]:
    """Scores of guesses made without any update on the attacked samples: the train split's mean
    image, an all-black image and mid-gray 0.5 (`fedsnn.audit.baselines`)."""
    index = torch.tensor(list(ids))
    truth = data.test_x[index]
    return score_guesses(image_guesses(data.train_x, truth), truth, data.test_y[index],
                         distances=image_distances, predict=judge.predict)


def ceiling(data: ImageData, ids: Sequence[int], judge: Judge) -> dict[str, float]:
    """The judge's accuracy on the attacked originals: the highest ASR any attack can score."""
    index = torch.tensor(list(ids))
    return rate_stat(int((judge.predict(data.test_x[index]) == data.test_y[index]).sum()), len(ids))


def present_variants(rows: Sequence[dict[str, Any]]) -> list[Variant]:
    """The variants that have rows, in table order."""
    return sorted({Variant.from_key(r["variant"]) for r in rows}, key=Variant.sort_key)


def summarize_rows(rows: Sequence[dict[str, Any]], settings: dict[str, Any] | None = None
              ) -> list[dict[str, Any]]:
    """One entry per (attack, model, optimizer) with n, ASR, label accuracy (Wilson intervals),
    MSE / SSIM / PSNR means (normal intervals), statuses, time per batch and the row's attack
    settings (iterations, restarts, …) from `settings` (variant key -> settings)."""
    summary = []
    for variant in present_variants(rows):
        mine = [r for r in rows if r["variant"] == variant.key]
        statuses: dict[str, int] = {}
        for r in mine:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        per_batch = {r["batch"]: r["seconds"] for r in mine}
        attack = (settings or {}).get(variant.key, {})
        summary.append({
            "variant": variant.key, "attack": variant.attack, "model": variant.model,
            "optimizer": variant.optimizer, "n": len(mine),
            "asr": rate_stat(sum(r["success"] for r in mine), len(mine)),
            "label-accuracy": rate_stat(sum(r["label-correct"] for r in mine), len(mine)),
            **{k: mean_stat([r[k] for r in mine]) for k in IMAGE_SCORE_KEYS},
            "statuses": statuses,
            "seconds-per-batch": sum(per_batch.values()) / len(per_batch),
            "iterations": attack.get("iterations"), "restarts": attack.get("restarts"),
        })
    return summary


def markdown(results: dict[str, Any]) -> str:
    """The Table IV layout: attack x model with ASR, MSE, SSIM, PSNR and label accuracy, each with
    its 95 % interval; then the guess baselines and the settings."""
    config = results["config"]
    judge = results.get("judge", {})
    card = stored_card(judge)
    lines = [
        f"Dataset: `{config['dataset']}` ({results.get('dataset-note', '')}). Attack set: "
        f"{config['samples']} test images, batch size {config['batch_size']}, seed {config['seed']}, "
        f"T = {config['time_steps']};"
        f" every batch attacked on a fresh DLG-initialised (untrained) model. Judge: "
        f"{judge.get('architecture')} with clean test accuracy "
        f"{100 * judge.get('test-accuracy', math.nan):.2f} %"
        + (f"; on the attacked originals {percent_interval(judge['attack-set-accuracy'])} %, "
           "the ASR ceiling" if "attack-set-accuracy" in judge else "")
        + ". Intervals: 95 % (Wilson for rates, normal for means). PSNR is the mean of per-sample "
        "PSNR, capped at 100 dB.", "", judge_sentence(card),
        "",
        "| Attack | Model | Attacker (steps × restarts) | n | ASR (%) | MSE | SSIM | PSNR (dB) | "
        "Label acc. (%) | s/batch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results.get("summary", []):
        spiking = row["model"].endswith("-snn")
        attacker = {"lbfgs": "L-BFGS", "adam": "Adam", "rmsprop": "RMSprop (generator)"}.get(
            row["optimizer"], row["optimizer"])
        lines.append(
            f"| {row['attack'].upper()} | {row['model']} ({MODEL_LABEL[spiking]}) | {attacker} "
            f"({row.get('iterations')} × {row.get('restarts')}) | "
            f"{row['n']} | {flag_asr(percent_interval(row['asr']), card)} | "
            f"{number_interval(row['mse'], 3)} | {number_interval(row['ssim'], 3)} | "
            f"{number_interval(row['psnr'], 2)} | {percent_interval(row['label-accuracy'])} | "
            f"{row['seconds-per-batch']:.1f} |")
    lines += ["", "Guesses without the update (same attack set):", "",
              "| Guess | judge ASR (%) | MSE | SSIM | PSNR (dB) |", "|---|---|---|---|---|"]
    for name, scores in results.get("baselines", {}).items():
        lines.append(f"| {name} | {flag_asr(percent_interval(scores['asr']), card)} | "
                     f"{number_interval(scores['mse'], 3)} | {number_interval(scores['ssim'], 3)} | "
                     f"{number_interval(scores['psnr'], 2)} |")
    statuses = {r["variant"]: r["statuses"] for r in results.get("summary", [])}
    odd = {k: v for k, v in statuses.items() if set(v) - {"ok"}}
    if odd:
        lines += ["", "Runs not ending `ok`: " + "; ".join(f"{k}: {v}" for k, v in odd.items())]
    return "\n".join(lines) + "\n"


def save_grid(path: Path, data: ImageData, results: dict[str, Any], out: Path, attack: str,
              grid: int = 8) -> bool:
    """Ground truth (first row) above each model's reconstructions, for the first `grid` batches
    of the attack set; False when there is nothing to draw."""
    rows = [v for v in present_variants(results.get("rows", [])) if v.attack == attack]
    ids = results["attack-set"]
    batch_size = results["config"]["batch_size"]
    columns = min(grid * batch_size, len(ids))
    pictures: list[tuple[str, list[np.ndarray | None]]] = [
        ("ground truth", [data.test_x[i].numpy() for i in ids[:columns]])]
    for variant in rows:
        folder = out / "reconstructions" / variant.key.replace("/", "_")
        images: list[np.ndarray | None] = []
        for batch in range(grid):
            file = folder / f"{batch}.npy"
            images += list(np.load(file)) if file.is_file() else [None] * batch_size
        label = f"{MODEL_LABEL[variant.model.endswith('-snn')]} ({variant.model}, {variant.optimizer})"
        pictures.append((label, images[:columns]))
    if len(pictures) == 1 or columns == 0:
        return False
    fig, axes = plt.subplots(len(pictures), columns,
                             figsize=(1.1 * columns + 1.6, 1.2 * len(pictures)), squeeze=False)
    for r, (label, images) in enumerate(pictures):
        for c in range(columns):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            image = images[c] if c < len(images) else None
            if image is not None:
                show_image(axis, image)
        axes[r][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    dataset = results["config"]["dataset"].split(":")[0]
    fig.suptitle(f"{attack.upper()} on {dataset}: ground truth | ANN | SNN", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_outputs(out: Path, results: dict[str, Any], data: ImageData, grid: int = 8) -> None:
    """table.md and grid-<attack>.png in `out` (results.json is written by the run loop)."""
    (out / "table.md").write_text(markdown(results))
    for attack in sorted({v.attack for v in present_variants(results.get("rows", []))}):
        save_grid(out / f"grid-{attack}.png", data, results, out, attack, grid)
