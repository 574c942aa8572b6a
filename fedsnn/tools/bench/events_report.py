"""Outputs of the event benchmark: the per-row summary, guesses without the update, Tables V and VI
in the study's layout (table.md) and original vs reconstructed event frames (frames.png)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fedsnn.audit.baselines import score_guesses, spike_distances, spike_guesses  # noqa: E402
from fedsnn.core.data import ImageData  # noqa: E402
from fedsnn.core.judges import flag_asr, judge_sentence, stored_card  # noqa: E402
from fedsnn.core.metrics import (mean_stat, number_interval, percent_interval,  # noqa: E402
                            rate_stat)
from fedsnn.core.metrics.spikes import class_distance_stats  # noqa: E402
from fedsnn.tools.bench.events_config import RAW, EventBenchConfig  # noqa: E402

# The study's Table V (DVS128 Gesture): theta -> attack -> (post ASR %, post L1, in ASR %, in L1).
STUDY_TABLE_V: dict[float, dict[str, tuple[float, float, float, float]]] = {
    0.1: {"dlg": (9.41, 504.03, 9.60, 457.26), "idlg": (9.19, 508.09, 9.60, 457.28)},
    0.25: {"dlg": (7.67, 257.75, 7.10, 100.17), "idlg": (8.54, 270.65, 7.80, 100.19)},
    0.5: {"dlg": (8.04, 127.36, 8.50, 42.57), "idlg": (8.29, 130.44, 8.50, 42.57)},
    0.75: {"dlg": (9.41, 87.52, 8.50, 42.56), "idlg": (9.65, 85.45, 8.50, 42.56)},
    0.9: {"dlg": (8.54, 75.47, 8.50, 42.56), "idlg": (10.64, 72.33, 8.50, 42.56)},
    0.95: {"dlg": (8.42, 72.50, 8.50, 42.56), "idlg": (10.52, 69.21, 8.50, 42.56)},
}
# The study's Table VI (DVS128 Gesture): mean, std, min, max.
STUDY_TABLE_VI = {"intra": (60.34, 13.80, 0.00, 106.64), "inter": (60.80, 11.51, 14.93, 105.15)}
FRAME_SAMPLES = 3  # samples drawn in frames.png


def summarize_events(rows: Sequence[dict[str, Any]], config: EventBenchConfig) -> list[dict[str, Any]]:
    """Per (attack, mode, theta): n, ASR and label accuracy (Wilson), L1 and spike count (mean,
    normal interval, std), statuses and seconds per optimization."""
    summary = []
    for mode in config.modes:
        thresholds: list[Any] = ([RAW] if mode == "post" else []) + list(config.thresholds)
        for threshold in thresholds:
            for attack in config.attacks:
                mine = [r for r in rows if r["variant"] == f"{attack}/{mode}/{threshold}"]
                if not mine:
                    continue
                statuses: dict[str, int] = {}
                for r in mine:
                    statuses[r["status"]] = statuses.get(r["status"], 0) + 1
                summary.append({
                    "variant": f"{attack}/{mode}/{threshold}", "attack": attack, "mode": mode,
                    "threshold": threshold, "n": len(mine),
                    "asr": rate_stat(sum(r["success"] for r in mine), len(mine)),
                    "label-accuracy": rate_stat(sum(r["label-correct"] for r in mine), len(mine)),
                    "l1": mean_stat([r["l1"] for r in mine], std=True),
                    "spikes": mean_stat([r["spikes"] for r in mine], std=True),
                    "statuses": statuses,
                    "seconds": sum(r["seconds"] for r in mine) / len(mine)})
    return summary


def class_distances(data: ImageData) -> dict[str, Any]:
    """Table VI on the test split: L1 distances between samples of the same / different classes."""
    return {"split": "test", "samples": len(data.test_x),
            **class_distance_stats(data.test_x, data.test_y)}


def baselines(data: ImageData, ids: Sequence[int], judge: Any, config: EventBenchConfig
              ) -> dict[str, dict[str, Any]]:
    """Guesses made without the update, scored like reconstructions on the attack set: no spikes,
    the train split's mean frames binarized at 0.5, and random spikes at the train split's rate
    (`fedsnn.audit.baselines`)."""
    index = torch.tensor(list(ids))
    truth = data.test_x[index]
    return score_guesses(spike_guesses(data.train_x, truth, config.seed), truth,
                         data.test_y[index], distances=spike_distances, predict=judge.predict,
                         std=True)


def _l1(stat: dict[str, float]) -> str:
    return f"{stat['value']:.1f} ± {stat['std']:.1f}"


def _cells(summary: dict[str, dict[str, Any]], key: str, card: dict[str, Any]) -> tuple[str, str]:
    row = summary.get(key)
    return (flag_asr(percent_interval(row["asr"]), card), _l1(row["l1"])) if row else ("–", "–")


def table_v(results: dict[str, Any]) -> list[str]:
    """Table V: theta x attack, ASR (Wilson 95 %) and L1 (mean ± std) for both strategies, and the
    study's numbers (DVS128 Gesture) beside them."""
    config = results["config"]
    summary = {row["variant"]: row for row in results["summary"]}
    card = stored_card(results.get("judge"))
    lines = ["| θ | Attack | Post ASR (%) | Post L1 | In ASR (%) | In L1 | study: post ASR / L1 | "
             "study: in ASR / L1 |", "|---|---|---|---|---|---|---|---|"]
    for threshold in [RAW, *config["thresholds"]]:
        for attack in config["attacks"]:
            post = _cells(summary, f"{attack}/post/{threshold}", card)
            inside = (_cells(summary, f"{attack}/in/{threshold}", card) if threshold != RAW
                      else ("–", "–"))
            study = STUDY_TABLE_V.get(threshold, {}).get(attack)
            paper = (f"{study[0]:.2f} / {study[1]:.2f}", f"{study[2]:.2f} / {study[3]:.2f}") \
                if study else ("–", "–")
            label = "none (raw dummy)" if threshold == RAW else f"{threshold}"
            lines.append(f"| {label} | {attack.upper()} | {post[0]} | {post[1]} | {inside[0]} | "
                         f"{inside[1]} | {paper[0]} | {paper[1]} |")
    return lines


def table_vi(results: dict[str, Any]) -> list[str]:
    """Table VI: intra- and inter-class L1 distances in the dataset, and the study's."""
    stats = results["table-vi"]
    lines = ["| Type | Mean | Std. | Min | Max | pairs | study (mean / std / min / max) |",
             "|---|---|---|---|---|---|---|"]
    for name, label in (("intra", "Intra-class"), ("inter", "Inter-class")):
        s = stats[name]
        paper = " / ".join(f"{v:.2f}" for v in STUDY_TABLE_VI[name])
        lines.append(f"| {label} | {s['mean']:.2f} | {s['std']:.2f} | {s['min']:.2f} | "
                     f"{s['max']:.2f} | {s['pairs']} | {paper} |")
    return lines


def _label_line(results: dict[str, Any]) -> str:
    """Labels the attacks inferred (DLG: argmax of its soft label; iDLG: from the gradient)."""
    parts = [f"{row['attack'].upper()} {percent_interval(row['label-accuracy'])}"
             for row in results["summary"] if row["mode"] == "post" and row["threshold"] == RAW]
    return ("Label accuracy of the attacks (one optimization per sample, post-mode runs): "
            + "; ".join(parts) + " %.") if parts else ""


def markdown(results: dict[str, Any]) -> str:
    """table.md: the setting, Table V, the guess baselines, Table VI."""
    config, judge = results["config"], results["judge"]
    n = len(results["attack-set"])
    lines = [
        f"Dataset: `{config['dataset']}` ({results['dataset-note']}). Victim: `lenet-snn` "
        f"({results['victim']['neuron'].upper()} neurons, T = {results['victim']['time_steps']}, "
        f"frames encoding), DLG-initialised and untrained, a fresh one per sample; {n} test "
        f"samples, batch size 1, seed {config['seed']}. Attacker: {config['optimizer']} "
        f"{config['iters']} steps, dummy [T, 1, 2, H, W] ~ N({config['init_mean']}, "
        f"{config['init_std']}), non-negative, no clamp. Judge: {judge['architecture']}, clean "
        f"test accuracy {100 * judge['test-accuracy']:.2f} %. ASR: judge accuracy on the "
        f"reconstructions, 95 % Wilson interval; L1: mean ± std over samples of the L1 distance "
        f"between the reconstructed and the original spike tensors.", "",
        judge_sentence(stored_card(judge)), "",
        "**Table V** (post- and in-optimization thresholding):", "", *table_v(results), "",
        _label_line(results), "",
        "Guesses without the update (same samples):", "",
        "| Guess | judge ASR (%) | L1 |", "|---|---|---|",
        *[f"| {name} | {flag_asr(percent_interval(b['asr']), stored_card(judge))} | "
          f"{_l1(b['l1'])} |"
          for name, b in results["baselines"].items()], "",
        f"**Table VI** (L1 distance between pairs of the {results['table-vi']['samples']} test "
        "samples):", "", *table_vi(results)]
    odd = {r["variant"]: r["statuses"] for r in results["summary"] if set(r["statuses"]) - {"ok"}}
    if odd:
        lines += ["", "Runs not ending `ok`: " + "; ".join(f"{k}: {v}" for k, v in odd.items())]
    return "\n".join(lines) + "\n"


def _rgb(frames: np.ndarray) -> np.ndarray:
    """[2, H, W] (OFF, ON) -> an RGB picture: ON red, OFF blue, both magenta, black background."""
    off, on = np.clip(frames[0], 0, 1), np.clip(frames[1], 0, 1)
    return np.stack([on, np.zeros_like(on), off], axis=-1)


def save_frames_picture(path: Path, pictures_dir: Path, config: EventBenchConfig,
                        threshold: float = 0.5) -> bool:
    """Original vs reconstructed event frames over time for the first `FRAME_SAMPLES` samples: per
    sample a row for the truth, and per attack its raw dummy and its reconstruction thresholded
    after and during the optimization at `threshold`; one column per time step. False when there
    is nothing to draw."""
    files = sorted(pictures_dir.glob("*.npz"), key=lambda p: int(p.stem))[:FRAME_SAMPLES]
    if not files:
        return False
    rows: list[tuple[str, np.ndarray]] = []
    for file in files:
        saved = np.load(file)
        rows.append((f"#{file.stem} original", saved["truth"]))
        for attack in config.attacks:
            if f"{attack}_post" in saved:
                raw = saved[f"{attack}_post"]
                rows.append((f"{attack.upper()} raw", raw))
                rows.append((f"{attack.upper()} post θ={threshold}", (raw >= threshold) * 1.0))
            if f"{attack}_in_{threshold}" in saved:
                rows.append((f"{attack.upper()} in θ={threshold}", saved[f"{attack}_in_{threshold}"]))
    steps = rows[0][1].shape[0]
    fig, axes = plt.subplots(len(rows), steps, figsize=(1.2 * steps + 1.8, 1.2 * len(rows)),
                             squeeze=False)
    for r, (label, frames) in enumerate(rows):
        for t in range(steps):
            axis = axes[r][t]
            axis.imshow(_rgb(frames[t]), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(f"t = {t}", fontsize=8)
        axes[r][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(f"{config.dataset}: original vs reconstructed spike frames (red ON, blue OFF)",
                 fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.4 / len(rows)))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_outputs(out: Path, results: dict[str, Any], config: EventBenchConfig) -> None:
    """table.md and frames.png in `out`."""
    (out / "table.md").write_text(markdown(results))
    save_frames_picture(out / "frames.png", out / "reconstructions", config)
