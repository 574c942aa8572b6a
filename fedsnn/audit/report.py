"""The audit's outputs: audit.json, pictures of originals next to reconstructions, the leakage plot,
and report.md / report.html (self-contained), for one run or several side by side."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fedsnn.audit.html import markdown_to_html  # noqa: E402
from fedsnn.audit.decision import LEVEL  # noqa: E402
from fedsnn.audit.verdict import leakage_summary, verdict  # noqa: E402

from fedsnn.core.judges.card import flag_asr, judge_sentence, stored_card  # noqa: E402
from fedsnn.core.pictures import show_image  # noqa: E402

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
    """Per attacked round: the fraction of images identified and the judge ASR (pooled over its
    replies), and the fraction of clients whose class histogram was read exactly."""
    by_round: dict[int, list[dict[str, Any]]] = {}
    for row in (r for r in rows if not r.get("canary")):
        by_round.setdefault(int(row["round"]), []).append(row)
    out = {}
    for server_round, group in sorted(by_round.items()):
        summary = leakage_summary({"attacks": group})
        histogram = summary["histogram"]
        out[server_round] = {  # no nulls in these rows (an older audit): nothing to plot
            "identified": (summary["identified"] or {}).get("value", math.nan),
            "asr": (summary["asr"] or {}).get("value", math.nan),
            "histogram": histogram["clients-exact"]["value"] if histogram else math.nan}
    return out


def save_leakage_plot(path: Path, audit: dict[str, Any], results: dict[str, Any]) -> None:
    """What leaked in each attacked round (bars when one round was attacked, lines otherwise)
    beside the global model's test accuracy per round; whole-number round axes."""
    leakage = per_round_leakage(audit["attacks"])
    accuracy = {r["round"]: r["central"]["accuracy"] for r in results.get("rounds", [])
                if "central" in r}
    fig, (ax_leak, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    labels = {"identified": "images identified",
              "asr": flag_asr("judge ASR", judge_card(audit)),
              "histogram": "class histogram exact"}
    rounds = list(leakage)
    if len(rounds) == 1:
        values = [leakage[rounds[0]][k] for k in labels]
        ax_leak.bar(list(labels.values()), [0 if math.isnan(v) else v for v in values],
                    color=["C0", "C1", "C2"])
        ax_leak.set_xlabel(f"round {rounds[0]}")
        ax_leak.tick_params(axis="x", labelsize=7)
    else:
        for key, label in labels.items():
            ax_leak.plot(rounds, [leakage[r][key] for r in rounds], "o-", label=label)
        ax_leak.set_xlabel("round")
        ax_leak.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_leak.legend(fontsize=7)
    ax_leak.set_ylim(0, 1.05)
    ax_leak.set_ylabel("fraction")
    ax_acc.plot(list(accuracy), list(accuracy.values()), "o-" if len(accuracy) < 20 else "-",
                c="k")
    ax_acc.set_xlabel("round")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_ylim(0, 1.05)
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("What the curious server recovered (left) while the model trained (right)",
                 fontsize=9)
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


def _rate(stat: dict[str, float] | None) -> str:
    if stat is None or not math.isfinite(stat.get("value", math.nan)):
        return "–"
    return f"{stat['value']:.2f} [{stat['low']:.2f}, {stat['high']:.2f}]"


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
    mean = {k: _mean([r.get(k) for r in scored]) for k in ("psnr", "ssim")}
    leakage = audit.get("summary") or leakage_summary(audit)
    histogram = leakage.get("histogram") or {}
    prior = leakage.get("prior-histogram") or {}
    guesses = leakage.get("identified-guesses") or {}
    best_guess = max(guesses.values(), key=lambda g: g["value"], default=None)
    rounds = [r for r in results.get("rounds", []) if "central" in r]
    return {"run": run_dir.name, "model": results["config"].get("model"),
            "dataset": results["config"].get("dataset"),
            "update-mode": results["config"].get("update-mode"),
            "attack": ", ".join(sorted({r.get("attack", "?") for r in attacks}))
            or audit["plan"]["attack"],
            "attacked": len(attacks), "scored": len(scored),
            "skipped": len(audit.get("skipped", [])),
            "accuracy": rounds[-1]["central"]["accuracy"] if rounds else math.nan, **mean,
            "identified": _rate(leakage.get("identified")),
            "guess identified": _rate(best_guess),
            "judge ASR": _rate(leakage.get("asr")),
            "histogram exact": _rate(histogram.get("clients-exact")),
            "prior exact": _rate(prior.get("clients-exact")),
            "judge-accuracy": judge_card(audit).get("accuracy"),
            "majority-baseline": judge_card(audit).get("majority-baseline"),
            "judge": judge_card(audit), "_leakage": leakage, "_audit": audit}


SUMMARY_COLUMNS = ("model", "update-mode", "attack", "attacked", "scored", "accuracy",
                   "identified", "guess identified", "judge ASR", "histogram exact",
                   "prior exact", "psnr", "ssim", "judge-accuracy", "majority-baseline")


def _markdown_table(summaries: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |",
             "|" + "---|" * len(SUMMARY_COLUMNS)]
    for summary in summaries:
        asr_row = {"tests": (summary["_leakage"].get("tests") or {})}
        cells = [_fmt(summary[c]) if c != "judge ASR" else
                 _asr_cell(summary[c], asr_row, summary["judge"]) for c in SUMMARY_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def firewall_section(audit: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Per round: how many replies the nodes' firewalls allowed, hardened and held (their
    decision codes, results.json), and the in-line audit's verdicts on the replies that were
    sent; nothing when no node ran one."""
    rounds = [(r["round"], r["participation"]["firewall"]) for r in results.get("rounds", [])
              if (r.get("participation") or {}).get("firewall")]
    if not any(counts.get(k) for _, counts in rounds for k in ("allowed", "hardened", "held")):
        return []
    lines = ["## The clients' firewalls", "",
             "| round | allowed | hardened | held | no firewall | in-line audit on what was sent |",
             "|---|---|---|---|---|---|"]
    for server_round, counts in rounds:
        outcomes = Counter((row.get("verdict") or {}).get("outcome", row.get("status", "?"))
                           for row in audit.get("attacks", [])
                           if row.get("round") == server_round and not row.get("canary"))
        audited = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())) or "–"
        lines.append(f"| {server_round} | {counts.get('allowed', 0)} | {counts.get('hardened', 0)} "
                     f"| {counts.get('held', 0)} | {counts.get('off', 0)} | {audited} |")
    return [*lines, "", "A held update never reached the server (its node replied with the "
            "firewall's reason code only); the audit ran on the allowed and hardened ones.", ""]


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
    return [*lines, "", *_dp_audit_section(results.get("dp-audit"))]


def _dp_audit_section(dp_audit: dict[str, Any] | None) -> list[str]:
    """The accounted ε beside the lower bound the canary attack proved (`dp-audit = true`)."""
    if not dp_audit:
        return []
    lines = ["## Empirical ε (canary audit, one-run lower bound)", "",
             "| mechanism | accounted ε | empirical lower bound | unit, relation | claim "
             "| attack |",
             "|---|---|---|---|---|---|"]
    for row in dp_audit["mechanisms"]:
        lines.append(f"| {row['mechanism']} | {_fmt(row['accounted-epsilon'])} | "
                     f"{_fmt(row['empirical-epsilon-lower-bound'])} at "
                     f"{row['bound']['confidence']:.0%} | {row['unit']}, {row['relation']} | "
                     f"{'holds' if row['claim'] == 'holds' else '**VIOLATED**'} | "
                     f"{row['attack']} |")
    return [*lines, "", "A lower bound from one attack: a bound above the accounted ε proves the "
            "claim wrong; a small bound proves nothing (docs/audit.md).", ""]


def _threat_lines(audit: dict[str, Any]) -> list[str]:
    threat = audit.get("threat-model")
    if not threat:
        return ["Threat model: not recorded (an audit from an older version)."]
    unused = threat.get("unused")
    return [f"The curious server knows: {', '.join(threat['granted'])}. Withheld: "
            f"{', '.join(threat['withheld']) or 'nothing'}. Attack plan: "
            f"`{audit['plan']['attack']}` (auto: iDLG on FedSGD batches of one, the unrolled "
            "attack on larger FedSGD batches and on FedAvg updates; with public data the "
            "strongest mode, rate decoder included, on FedSGD batches up to the class count and "
            "the learned inverter on FedAvg updates; each when the threat model grants what it "
            "needs)." + (f" Granted but read by no attack that ran: {', '.join(unused)}: a "
                         "stronger attack could use them." if unused else "")]


NULL_ORDER = ("matched-noise", "public-draws", "permutation", "largest-class")
METRIC_NAMES = {"identified": "identified", "asr": "judge ASR", "label-accuracy": "label accuracy",
                "psnr": "PSNR (dB)", "ssim": "SSIM"}
GLOSSARY = [
    "- **identified**: the client's true image is the reconstruction's nearest neighbour (pixel "
    "distance) among all training images, after an optimal assignment of reconstructions to the "
    "client's images. Higher is more leakage.",
    "- **judge ASR**: the share of reconstructions a separately trained classifier (the judge) "
    "labels with the true class. Its baseline is the largest class share of the scored images "
    "(always answering that class).",
    "- **PSNR / SSIM**: pixel similarity of a reconstruction to its matched original; higher is "
    "closer (PSNR in dB; SSIM 1 = identical).",
    "- **null**: images that carry no information about the update (matched noise at the "
    "dataset's native format, public test-split draws, the attack's reconstructions of another "
    "update), scored through exactly the same pipeline: the chance level a figure has to beat.",
    "- **p-value**: one-sided test that the attack beats its strongest null (Fisher's exact test "
    "for counts, Mann-Whitney U for PSNR/SSIM, Fisher's method to pool). *Leak* below the level.",
    "- **canary**: an update the server made itself (the global model trained with the clients' "
    "settings on test-split images) and attacked like the others: the attack's power here. A "
    "powerless canary makes a negative verdict *inconclusive*.",
    "- **FedAvg / FedSGD**: clients reply with weights after several local steps (FedAvg) or "
    "after one gradient step on one batch (FedSGD).",
]


def _count(counts: dict[str, Any], name: str) -> str:
    hit = counts.get(name)
    return f" ({hit[0]}/{hit[1]})" if hit else ""


def _value(metric: str, value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    if metric in ("psnr",):
        return f"{float(value):.1f}"
    if metric == "ssim":
        return f"{float(value):.3f}"
    return f"{100 * float(value):.1f} %"


def _interval(stat: dict[str, Any] | None) -> str:
    if not stat or not math.isfinite(stat.get("low", math.nan)):
        return ""
    return f" [{100 * stat['low']:.0f}, {100 * stat['high']:.0f}]"


def nulls_table(tests: dict[str, Any]) -> list[str]:
    """Each metric of the attack beside each null (counts, client-clustered 95 % intervals for
    rates), the one-sided p-value against the strongest null, and whether it beats it."""
    lines = ["| metric | attack | " + " | ".join(NULL_ORDER) + " | p (vs strongest) | beyond "
             "chance? |", "|---|---|" + "---|" * len(NULL_ORDER) + "---|---|"]
    for metric, test in tests.items():
        counts, intervals = test.get("counts", {}), test.get("intervals", {})
        cells = [_value(metric, test["nulls"].get(name)) + _count(counts, name)
                 + _interval(intervals.get(name)) if name in test["nulls"] else "–"
                 for name in NULL_ORDER]
        beyond = "**yes**" if test["p_value"] < LEVEL else "no"
        lines.append(f"| {METRIC_NAMES.get(metric, metric)} | "
                     f"{_value(metric, test['attack'])}{_count(counts, 'attack')}"
                     f"{_interval(intervals.get('attack'))} | " + " | ".join(cells) +
                     f" | {test['p_value']:.2g} | {beyond} |")
    return lines


def _canary_lines(leakage: dict[str, Any]) -> list[str]:
    canary = leakage.get("canary") or {}
    identified = canary.get("identified")
    if identified is None:
        return ["No canary was attacked (audit-canary = false, or no public images): the "
                "audit's power in this setting is unknown.", ""]
    counts = identified.get("counts", {})
    psnr = canary.get("psnr") or {}
    power = ("the attack has the power to find a leak here" if identified["p_value"] < LEVEL
             else "**the attack did not recover the canary beyond chance: this audit cannot "
                  "detect image leakage in this setting**")
    return [f"Canary (an update the server made itself with the clients' settings on "
            f"{leakage.get('canaries', 0) and identified['counts']['attack'][1]} test-split "
            f"images): identified {_value('identified', identified['attack'])}"
            f"{_count(counts, 'attack')} against chance {_value('identified', identified['chance'])}"
            f" (p = {identified['p_value']:.2g}), PSNR {_value('psnr', psnr.get('attack'))} dB "
            f"against {_value('psnr', psnr.get('chance'))}: {power}.", ""]


def cost_lines(audit: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """What the audit cost: the attacks' own time per attacked update (canaries included)
    beside the run's wall time."""
    rows = [r for r in [*audit.get("attacks", []), *audit.get("canaries", [])]
            if r.get("seconds") is not None]
    if not rows:
        return []
    seconds = [float(r["seconds"]) for r in rows]
    steps = [f"{r.get('steps-done', '?')}/{r.get('steps-planned', '?')}" for r in rows]
    wall = results.get("wall-time-s")
    return [f"Audit cost: {len(rows)} attacked updates (canaries included), "
            f"{sum(seconds) / len(seconds):.1f} s of attack per update ({sum(seconds):.0f} s in "
            f"all; steps done/planned {', '.join(steps)})"
            + (f"; the run's wall time {float(wall):.0f} s." if wall else "."), ""]


def what_to_change_lines(audit: dict[str, Any]) -> list[str]:
    """The canary attacked again under each `audit-canary-defenses` setting, beside the plain
    canary: which settings bring it to chance, and what each costs the canary's own update in
    test accuracy (measured in this run)."""
    rows = audit.get("what-to-change") or []
    if not rows:
        return []
    plain = (audit.get("canaries") or [{}])[0]
    lines = ["## What to change", "",
             "The canary attacked again, made under client-side defenses "
             "(`audit-canary-defenses`); accuracy: the canary's locally trained model on the "
             "test images it did not train on (one client's update, not the federated model).",
             "", "| canary made under | identified (chance) | p | beyond chance? | canary's "
             "accuracy |", "|---|---|---|---|---|"]
    at_chance = []
    for row in [plain, *rows] if plain else rows:
        test = (row.get("tests") or {}).get("identified")
        if not test:
            continue
        counts = test["counts"]
        beyond = test["p_value"] < LEVEL
        if row.get("defense") and not beyond:
            at_chance.append((row["defense"], row.get("canary-accuracy")))
        lines.append(f"| {row.get('defense') or 'the run as configured'} | "
                     f"{_value('identified', test['attack'])}{_count(counts, 'attack')} "
                     f"({_value('identified', test['chance'])}) | {test['p_value']:.2g} | "
                     f"{'**yes**' if beyond else 'no'} | {_fmt(row.get('canary-accuracy'))} |")
    best = max(at_chance, key=lambda item: item[1] or 0.0, default=None)
    lines += ["", (f"**{best[0]} brings the canary to chance** at a canary accuracy of "
                   f"{_fmt(best[1])} (the run as configured: {_fmt(plain.get('canary-accuracy'))})."
                   if best else "No setting tried brings the canary to chance."), ""]
    return lines


def _asr_cell(text: str, row: dict[str, Any], card: dict[str, Any]) -> str:
    """An ASR cell flagged by the judge's card and by its test against its nulls, whose
    `largest-class` is the judge's baseline on exactly these images (always answering the
    scored set's largest class)."""
    test = (row.get("tests") or {}).get("asr") or {}
    largest = (test.get("nulls") or {}).get("largest-class")
    if test and test["p_value"] >= LEVEL:
        text = (f"{text} (not beyond chance {100 * test['chance']:.0f} %, {test['strongest']}; "
                f"constant answer {100 * (largest or 0):.0f} %)")
    return flag_asr(text, card)



def write_report(run_dir: Path) -> tuple[Path, Path]:
    """(Re)build report.md and report.html of one run from its audit.json and results.json."""
    audit = json.loads((run_dir / "audit.json").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    save_leakage_plot(run_dir / "leakage.png", audit, results)
    summary = _summary(run_dir)
    card = judge_card(audit)
    baselines = audit.get("baselines", {})
    md = [f"# Privacy audit of run {run_dir.name}", "",
          "## Verdict", "", *[line + "\n" for line in verdict(summary["_leakage"],
                                                               str(summary["model"]))],
          f"Model `{summary['model']}` on `{summary['dataset']}`, update mode "
          f"`{summary['update-mode']}`: {summary['attacked']} client updates attacked "
          f"({summary['scored']} scored, {summary['skipped']} skipped). Final test accuracy "
          f"{_fmt(summary['accuracy'])}.", "",
          *_canary_lines(summary["_leakage"]),
          *cost_lines(audit, results),
          "## Threat model", "", *_threat_lines(audit), "",
          "## Each metric beside its chance level", "",
          *nulls_table(summary["_leakage"].get("tests") or {}), "",
          f"Counts in parentheses (hits/images), 95 % client-clustered intervals in brackets; "
          f"one-sided tests at level {LEVEL:g} against the strongest null. The nulls are scored "
          "through the identical pipeline (the same assignment, pool and judge) as the attack.",
          "",
          "## How much leaked", "", *_markdown_table([summary]), "",
          "Rates with their 95 % interval, pooled over the attacked clients' images "
          "(identified, judge ASR: client-clustered) or over the attacked clients (histogram "
          "exact: Wilson). Identified: "
          "the true image is the reconstruction's nearest neighbour (pixel L2) among all training "
          "images, after matching reconstructions to the client's images (which the auditor "
          "knows outside the messages) by an optimal assignment. Histogram exact: every class "
          "count of the client inferred exactly; prior: the dataset's class shares scaled to the "
          "client's count. ASR: the judge classifies the reconstruction as the true label.", "",
          judge_sentence(card) + _disjoint(card), "",
          *_privacy_section(results),
          *firewall_section(audit, results),
          "## What a guess without the update scores", "",
          "| guess | identified | MSE | PSNR | SSIM | judge ASR |", "|---|---|---|---|---|---|"]
    for name, scores in baselines.items():
        md.append(f"| {name} | {scores.get('identified', '–')} / {scores.get('samples', '–')} | "
                  f"{_fmt(scores.get('mse'))} | {_fmt(scores.get('psnr'))} | "
                  f"{_fmt(scores.get('ssim'))} | {flag_asr(_fmt(scores.get('asr')), card)} |")
    md += ["", "## Per attacked update", "",
           "| round | partition | attack | status | steps done / planned | final matching loss "
           "| images | identified (chance) | verdict | histogram TV (prior) | PSNR | SSIM | ASR "
           "| time (s) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in [*audit["attacks"], *audit.get("canaries", [])]:
        histogram, prior = row.get("histogram") or {}, row.get("prior-histogram") or {}
        identified = (row.get("tests") or {}).get("identified") or {}
        chance = identified.get("counts", {}).get(identified.get("strongest", ""))
        worse = " worse than the prior" if (row.get("histogram-test") or {}).get(
            "worse-than-prior") else ""
        md.append(f"| {row['round']} | {'canary' if row.get('canary') else row['partition-id']} | "
                  f"{row.get('attack', '?')} | {row['status']}"
                  f"{' (lower bound)' if row.get('lower-bound') else ''} | "
                  f"{row.get('steps-done', '–')} / {row.get('steps-planned', '–')} | "
                  f"{_fmt(row.get('matching-loss'))} | "
                  f"{row.get('images', row.get('batch-size', '–'))} | {_fmt(row.get('identified'))}"
                  f"{f' ({chance[0]}/{chance[1]})' if chance else ''} | "
                  f"{(row.get('verdict') or {}).get('outcome', '–')} | "
                  f"{_fmt(histogram.get('total-variation'), 2)} "
                  f"({_fmt(prior.get('total-variation'), 2)}){worse} | "
                  f"{_fmt(row.get('psnr'), 2)} | {_fmt(row.get('ssim'))} | "
                  f"{_asr_cell(_fmt(row.get('asr')), row, card)} | {_fmt(row.get('seconds'), 1)} |")
    for skipped in audit.get("skipped", []):
        md.append(f"| {skipped['round']} | {skipped['partition-id']} | – | skipped: "
                  f"{skipped['reason']} | | | | | | | | | | |")
    md += ["", "## Leakage and accuracy per round", "", "![leakage per round](leakage.png)", "",
           "## Originals and reconstructions", ""]
    for row in audit["attacks"]:
        if row.get("image"):
            md += [f"Round {row['round']}, partition {row['partition-id']} ({row['status']}):", "",
                   f"![round {row['round']} partition {row['partition-id']}]({row['image']})", ""]
    for row in audit.get("canaries", []):
        if row.get("image"):
            md += [f"Round {row['round']}, canary ({row['status']}):", "",
                   f"![round {row['round']} canary]({row['image']})", ""]
    md += [*what_to_change_lines(audit), "## Glossary", "", *GLOSSARY]
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
    md = ["# Audit comparison", "", "## Verdict", ""]
    for summary in summaries:
        md += [line + "\n" for line in verdict(summary["_leakage"], str(summary["model"]))]
    md += ["## Threat model", ""]
    for summary in summaries:
        md += [f"{summary['model']}: " + " ".join(_threat_lines(summary["_audit"])), ""]
    md += ["## How much leaked", "", *_markdown_table(summaries), ""]
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
