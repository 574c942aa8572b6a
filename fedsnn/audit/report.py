"""The audit's outputs: audit.json, pictures of originals next to reconstructions, the leakage plot,
and report.md / report.html (self-contained), for one run or several side by side."""

from __future__ import annotations

import base64
import html
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from fedsnn.judges.card import flag_asr, judge_sentence, stored_card  # noqa: E402
from fedsnn.pictures import show_image  # noqa: E402

LEAKAGE_KEYS = ("psnr", "ssim", "asr")


def save_pair_grid(path: Path, originals: torch.Tensor, reconstructions: torch.Tensor,
                   title: str, max_items: int = 8) -> None:
    """Originals (top row) above their matched reconstructions (bottom row), as a PNG."""
    count = min(len(originals), max_items)
    fig, axes = plt.subplots(2, max(count, 1), figsize=(max(1.4 * count + 0.6, 3.6), 3.4),
                             squeeze=False)
    for column in range(max(count, 1)):
        for row, images in enumerate((originals, reconstructions)):
            axis = axes[row][column]
            axis.axis("off")
            if column < count:
                show_image(axis, images[column])
    axes[0][0].set_title("original", fontsize=8, loc="left")
    axes[1][0].set_title("reconstruction", fontsize=8, loc="left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def per_round_leakage(rows: Sequence[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Mean PSNR / SSIM / ASR over the scored attacks of each round."""
    by_round: dict[int, dict[str, list[float]]] = {}
    for row in rows:
        if row.get("psnr") is None:  # not scored (failed, skipped)
            continue
        bucket = by_round.setdefault(int(row["round"]), {k: [] for k in LEAKAGE_KEYS})
        for key in LEAKAGE_KEYS:
            value = row.get(key)
            if value is not None and math.isfinite(value):
                bucket[key].append(float(value))
    return {r: {k: (sum(v) / len(v) if v else math.nan) for k, v in values.items()}
            for r, values in sorted(by_round.items())}


def save_leakage_plot(path: Path, audit: dict[str, Any], results: dict[str, Any]) -> None:
    """Leakage (PSNR, SSIM, ASR) per attacked round beside the global model's test accuracy."""
    leakage = per_round_leakage(audit["attacks"])
    accuracy = {r["round"]: r["central"]["accuracy"] for r in results.get("rounds", [])
                if "central" in r}
    fig, (ax_psnr, ax_rate) = plt.subplots(1, 2, figsize=(9, 3.2))
    rounds = list(leakage)
    ax_psnr.plot(rounds, [leakage[r]["psnr"] for r in rounds], "o-", label="PSNR (dB)")
    baseline = audit.get("baselines", {}).get("mean-image", {}).get("psnr")
    if baseline is not None:
        ax_psnr.axhline(baseline, ls="--", c="gray", label="mean-image guess")
    ax_psnr.set_xlabel("round")
    ax_psnr.set_ylabel("PSNR (dB)")
    ax_psnr.legend(fontsize=7)
    ax_rate.plot(rounds, [leakage[r]["ssim"] for r in rounds], "s-", label="SSIM")
    ax_rate.plot(rounds, [leakage[r]["asr"] for r in rounds], "^-",
                 label=flag_asr("judge ASR", judge_card(audit)))
    ax_rate.plot(list(accuracy), list(accuracy.values()), "-", c="k", alpha=0.6,
                 label="test accuracy")
    ax_rate.set_xlabel("round")
    ax_rate.set_ylim(-0.05, 1.05)
    ax_rate.legend(fontsize=7)
    fig.suptitle("What the curious server recovered, per round", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.1e}" if 0 < abs(value) < 10 ** -digits else f"{value:.{digits}f}"
    return str(value)


def _mean(values: Sequence[Any]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else math.nan


def judge_card(audit: dict[str, Any]) -> dict[str, Any]:
    """The judge's card in audit.json (`stored_card`)."""
    return stored_card(audit.get("judge"), audit.get("judge-test-accuracy"))


def _disjoint(card: dict[str, Any]) -> str:
    """Whether the judge saw the samples it scores (the attacked samples are clients' train
    samples)."""
    if card.get("trained-on") == "test split":
        return (" The attacked samples are clients' train samples: the judge, fit on the test "
                "split only, never saw them.")
    return (" The attacked samples are clients' train samples, which this judge was fit on: "
            "its ASR is optimistic.") if card else ""


def _summary(run_dir: Path) -> dict[str, Any]:
    audit = json.loads((run_dir / "audit.json").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    attacks = audit["attacks"]
    scored = [row for row in attacks if row.get("psnr") is not None]
    mean = {k: _mean([r.get(k) for r in scored])
            for k in ("mse", "psnr", "ssim", "asr", "label-accuracy")}
    rounds = [r for r in results.get("rounds", []) if "central" in r]
    return {"run": run_dir.name, "model": results["config"].get("model"),
            "dataset": results["config"].get("dataset"),
            "update-mode": results["config"].get("update-mode"),
            "attack": audit["plan"]["attack"], "attacked": len(attacks), "scored": len(scored),
            "skipped": len(audit.get("skipped", [])),
            "accuracy": rounds[-1]["central"]["accuracy"] if rounds else math.nan, **mean,
            "judge-accuracy": judge_card(audit).get("accuracy"),
            "majority-baseline": judge_card(audit).get("majority-baseline"),
            "judge": judge_card(audit)}


SUMMARY_COLUMNS = ("run", "model", "update-mode", "attack", "attacked", "scored", "accuracy",
                   "mse", "psnr", "ssim", "asr", "label-accuracy", "judge-accuracy",
                   "majority-baseline")


def _markdown_table(summaries: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |",
             "|" + "---|" * len(SUMMARY_COLUMNS)]
    for summary in summaries:
        cells = [_fmt(summary[c]) if c != "asr" else flag_asr(_fmt(summary[c]), summary["judge"])
                 for c in SUMMARY_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _privacy_section(results: dict[str, Any]) -> list[str]:
    """The last reported value of every ε of the run, with its unit, relation and coverage."""
    units = results.get("epsilon-units") or {}
    if not units:
        return []
    lines = ["## Privacy spent (as the defenses report it)", "",
             "| ε | value | unit | neighbouring relation | covers |", "|---|---|---|---|---|"]
    for key, unit in units.items():
        values = [r["train"][key] for r in results.get("rounds", []) if key in r.get("train", {})]
        lines.append(f"| `{key}` | {_fmt(values[-1] if values else None)} | {unit['unit']} | "
                     f"{unit['relation']} | {unit['covers']} |")
    return [*lines, ""]


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """(Re)build report.md and report.html of one run from its audit.json and results.json."""
    audit = json.loads((run_dir / "audit.json").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    save_leakage_plot(run_dir / "leakage.png", audit, results)
    summary = _summary(run_dir)
    card = judge_card(audit)
    baselines = audit.get("baselines", {})
    md = [f"# Privacy audit of run `{run_dir.name}`", "",
          f"Model `{summary['model']}` on `{summary['dataset']}`, update mode "
          f"`{summary['update-mode']}`. An honest-but-curious server ran `{summary['attack']}` on "
          f"{summary['attacked']} client updates ({summary['scored']} scored, "
          f"{summary['skipped']} skipped). Final test accuracy "
          f"{_fmt(summary['accuracy'])}.", "",
          "## How much leaked", "", *_markdown_table([summary]), "",
          "Scores are means over the attacked updates; each reconstruction is matched to the "
          "client's true samples (which the auditor knows outside the messages; no reply "
          "carries them) by an optimal assignment. ASR: fraction of reconstructions the judge "
          "model classifies as the true label.", "", judge_sentence(card) + _disjoint(card), "",
          *_privacy_section(results),
          "## What a guess without the update scores", "",
          "| guess | MSE | PSNR | SSIM | judge ASR |", "|---|---|---|---|---|"]
    for name, scores in baselines.items():
        md.append(f"| {name} | {_fmt(scores.get('mse'))} | {_fmt(scores.get('psnr'))} | "
                  f"{_fmt(scores.get('ssim'))} | {flag_asr(_fmt(scores.get('asr')), card)} |")
    md += ["", "## Per attacked update", "",
           "| round | partition | status | true labels | inferred | MSE | PSNR | SSIM | ASR | "
           "time (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in audit["attacks"]:
        md.append(f"| {row['round']} | {row['partition-id']} | {row['status']} | "
                  f"{_short(row.get('true-labels'))} | {_short(row.get('inferred-labels'))} | "
                  f"{_fmt(row.get('mse'))} | {_fmt(row.get('psnr'), 2)} | {_fmt(row.get('ssim'))} | "
                  f"{flag_asr(_fmt(row.get('asr')), card)} | {_fmt(row.get('seconds'), 1)} |")
    for skipped in audit.get("skipped", []):
        md.append(f"| {skipped['round']} | {skipped['partition-id']} | skipped: "
                  f"{skipped['reason']} | | | | | | | |")
    md += ["", "## Leakage per round", "", "![leakage per round](leakage.png)", "",
           "## Originals and reconstructions", ""]
    for row in audit["attacks"]:
        if row.get("image"):
            md += [f"Round {row['round']}, partition {row['partition-id']} ({row['status']}):", "",
                   f"![round {row['round']} partition {row['partition-id']}]({row['image']})", ""]
    md_path = run_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n")
    html_path = run_dir / "report.html"
    html_path.write_text(markdown_to_html("\n".join(md), run_dir, title=f"fedsnn audit {run_dir.name}"))
    return md_path, html_path


def _short(labels: Any, limit: int = 8) -> str:
    if not labels:
        return "–"
    text = ",".join(str(v) for v in labels[:limit])
    return text + ("…" if len(labels) > limit else "")


def write_comparison(run_dirs: Sequence[Path], out_dir: Path) -> tuple[Path, Path]:
    """Several runs side by side (e.g. ANN vs SNN, same data, same attack)."""
    summaries = [_summary(run_dir) for run_dir in run_dirs]
    md = ["# Audit comparison", "", *_markdown_table(summaries), ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    for run_dir, summary in zip(run_dirs, summaries, strict=True):
        audit = json.loads((run_dir / "audit.json").read_text())
        md += [f"## {summary['model']} (`{run_dir.name}`)", ""]
        for row in audit["attacks"]:
            if row.get("image"):  # copied, so the comparison folder stands on its own
                name = f"{run_dir.name}-{Path(row['image']).name}"
                shutil.copyfile(run_dir / row["image"], out_dir / name)
                md += [f"![{summary['model']} round {row['round']} partition "
                       f"{row['partition-id']}]({name})", ""]
    md_path = out_dir / "comparison.md"
    md_path.write_text("\n".join(md) + "\n")
    html_path = out_dir / "comparison.html"
    html_path.write_text(markdown_to_html("\n".join(md), out_dir, title="fedsnn audit comparison"))
    return md_path, html_path


def markdown_to_html(markdown: str, base: Path, *, title: str) -> str:
    """A small, self-contained HTML rendering of the report's Markdown (headings, paragraphs,
    tables, images inlined as base64)."""
    body: list[str] = []
    table: list[list[str]] = []

    def flush_table() -> None:
        if not table:
            return
        head, *rest = table
        body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>" +
                    "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
                            for row in rest) + "</table>")
        table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append(cells)
            continue
        flush_table()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("![") and "](" in line:
            alt, src = line[2:].split("](", 1)
            body.append(_inline_image(base / src.rstrip(")"), alt))
        elif line.strip():
            body.append(f"<p>{html.escape(line).replace('`', '')}</p>")
    flush_table()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
             "padding:3px 7px}th{background:#f3f3f3}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _inline_image(path: Path, alt: str) -> str:
    if path.is_file():
        data = base64.b64encode(path.read_bytes()).decode()
        return f"<p><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'></p>"
    return f"<p>[missing image {html.escape(str(path.name))}]</p>"
