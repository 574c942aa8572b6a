"""The demo's page (Gradio): attack playground, ANN beside SNN, runs.

The page only collects settings and draws: every attack runs through `engine.run` (the project's
client, defense, attack and auditor code). Attacks run in their own threads and stream their best
iterate; Stop ends them at their next step (the best iterate so far is scored). Each event may
run for several visitors at once (`CONCURRENCY`), so two tabs do not wait for each other. Bad
input is answered in the page and never stops the server.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image

from fedsnn.core.judges import flag_asr, judge_sentence
from fedsnn.core.protocol import TRAIN_METRICS
from fedsnn.tools.demo.engine import (ATTACKS, DEFENSES, IMAGE_SIZE, UPDATE_MODES,
                                      DemoError, Outcome, Scenario, Victims, live_images, run,
                                      stream, twins)
from fedsnn.tools.demo.headline import GLOSSARY, judge_words, stopped, verdict_html
from fedsnn.tools.demo.runs import comparison_html, list_runs, report_html
from fedsnn.tools.demo.uploads import load_upload

CONCURRENCY = 4      # attacks running at once (each on one thread); more visitors queue
SCALE = 6            # pixels per image pixel in the pictures
SOURCES = ("embedded digit", "upload")
START = Scenario()  # the settings the page opens with

# session -> the stop flag of its running attack (Stop sets it; the attack ends at its next step)
_STOPS: dict[str, threading.Event] = {}


def picture(*rows: torch.Tensor | None) -> np.ndarray:
    """Rows of [B, 1, H, W] images in [0, 1] as one uint8 picture (a missing row stays gray)."""
    present = [r for r in rows if r is not None]
    batch, _, height, width = present[0].shape
    gap = 2
    canvas = np.full((len(rows) * (height + gap) - gap, batch * (width + gap) - gap), 0.35,
                     dtype=np.float32)
    for row, images in enumerate(rows):
        if images is None:
            continue
        for column in range(min(batch, len(images))):
            top, left = row * (height + gap), column * (width + gap)
            canvas[top:top + height, left:left + width] = images[column, 0].clamp(0, 1).numpy()
    big = np.kron(canvas, np.ones((SCALE, SCALE), dtype=np.float32))
    return (big * 255).round().astype(np.uint8)


def figure(array: np.ndarray, caption: str) -> str:
    """A picture as self-contained HTML (an inline PNG: nothing to fetch, nothing cached on disk
    between the streamed updates)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    return (f"<figure style='margin:0'><img alt='{html.escape(caption)}' "
            f"src='data:image/png;base64,{data}' style='image-rendering:pixelated'>"
            f"<figcaption style='font-size:12px;color:#555'>{html.escape(caption)}</figcaption>"
            "</figure>")


def scroll_js(*element_ids: str) -> str:
    """Browser code run when an attack's results are in: bring the first of the elements that
    shows something (its verdict, or the message that replaced it) to the top of the window."""
    return (f"() => {{ for (const id of {json.dumps(list(element_ids))}) {{ "
            "const element = document.getElementById(id); "
            "if (element && element.innerText.trim()) { "
            "element.scrollIntoView({block: 'start'}); return; } } }")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def metrics_markdown(outcome: Outcome) -> str:
    """The auditor's scores beside the guess baselines, the labels, the judge and the ε spent."""
    row, card = outcome.row, outcome.judge_card
    samples = len(row.get("true-labels") or [])
    lines = [f"**{outcome.attack}**: {row.get('status')} in {outcome.seconds:.1f} s "
             f"({html.escape(outcome.message[:160]) or 'no message'})", "",
             "| | PSNR (dB) | SSIM | MSE | judge ASR | identified |", "|---|---|---|---|---|---|",
             f"| **reconstruction** | {_fmt(row.get('psnr'), 1)} | {_fmt(row.get('ssim'))} | "
             f"{_fmt(row.get('mse'))} | {flag_asr(_fmt(row.get('asr'), 2), card)} | "
             f"{_fmt(row.get('identified'))} / {samples} |"]
    for name, scores in outcome.baselines.items():
        asr = flag_asr(_fmt(scores.get("asr"), 2), card)
        lines.append(f"| {name} guess | {_fmt(scores.get('psnr'), 1)} | {_fmt(scores.get('ssim'))}"
                     f" | {_fmt(scores.get('mse'))} | {asr} | {_fmt(scores.get('identified'))} / "
                     f"{_fmt(scores.get('samples'))} |")
    lines += ["", "*Identified*: the true image is the reconstruction's nearest neighbour among "
              "all the digits.", "",
              f"**Judge verdict**: {flag_asr(judge_words(outcome), card)}. "
              f"{judge_sentence(card)}", "",
              f"**Inferred label(s)**: {row.get('inferred-labels')} — true "
              f"{row.get('true-labels')} (label accuracy {_fmt(row.get('label-accuracy'), 2)})."]
    histogram, prior = row.get("histogram") or {}, row.get("prior-histogram") or {}
    if histogram or prior:
        lines += ["", "**Class histogram** (how many of each digit the client trained on): "
                  f"classes counted exactly {_fmt(histogram.get('classes-exact'), 2)}, "
                  f"total variation {_fmt(histogram.get('total-variation'), 2)}; the class-prior "
                  f"guess: {_fmt(prior.get('classes-exact'), 2)}, "
                  f"{_fmt(prior.get('total-variation'), 2)}."]
    if outcome.firewall:
        lines += ["", f"**The client's firewall** (`firewall = \"enforce\"`, docs/audit.md) would "
                  f"{outcome.firewall} this reply before sending it."]
    if outcome.epsilon:
        spent = "; ".join(f"`{key}` = {value:.4g} ({TRAIN_METRICS[key].meaning})"
                          for key, value in outcome.epsilon.items())
        caution = " A per-bit ε is not a per-sample guarantee." \
            if "spike-dp-bit-epsilon" in outcome.epsilon else ""
        lines += ["", f"**ε spent** (δ = 1e-5, one round): {spent}.{caution}"]
    else:
        lines += ["", "**ε spent**: none — no defense, no guarantee."]
    return "\n".join(lines)


def _victim(source: str, digit: int, upload: Any, label: Any, batch: int, victims: Victims
            ) -> tuple[torch.Tensor, torch.Tensor]:
    if source == "upload":
        if upload is None:
            raise DemoError("upload: choose an image file first (or pick an embedded digit)")
        path = upload if isinstance(upload, str) else getattr(upload, "name", str(upload))
        image = load_upload(path, IMAGE_SIZE)
        if label is None or str(label) == "":
            raise DemoError("upload: say which digit it shows (its label is the ground truth)")
        return victims.batch(image, int(label), int(batch))
    image, true_label = victims.digit(int(digit))
    return victims.batch(image, true_label, int(batch), after=int(digit))


def _scenario(model: str, steps: float, neuron: str, encoding: str, mode: str, epochs: float,
              batch: float, attack: str, iterations: float, defense: str, epsilon: Any) -> Scenario:
    try:
        epsilon = float(epsilon)
    except (TypeError, ValueError):
        raise DemoError(f"ε: expected a number, got {epsilon!r}") from None
    return Scenario(model=model, time_steps=int(steps), neuron=neuron, encoding=encoding,
                    update_mode=mode, local_epochs=int(epochs), batch_size=int(batch),
                    attack=attack, iterations=int(iterations), defense=defense, epsilon=epsilon)


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


def _attacks(works: dict[str, tuple[Scenario, torch.Tensor, torch.Tensor]], victims: Victims,
             request: gr.Request | None) -> Iterator[tuple[str, str, Any]]:
    """Stream the named attacks; registered so this session's Stop button can end them."""
    stop = threading.Event()
    _STOPS[_session(request)] = stop
    jobs = {name: (lambda listener, s=s, x=x, y=y: run(s, x, y, victims, listener=listener))
            for name, (s, x, y) in works.items()}
    try:
        yield from stream(jobs, stop=stop)
    finally:
        _STOPS.pop(_session(request), None)


def _inputs(models: tuple[str, ...], view: str) -> dict[str, gr.components.Component]:
    """The settings every view shares (model, spiking options, image, update, attack, defense);
    each component's elem_id is `<view>-<name>`."""
    def named(name: str) -> dict[str, str]:
        return {"elem_id": f"{view}-{name}"}

    with gr.Row():
        model = gr.Dropdown(list(models), value=models[0], label="model", **named("model"))
        steps = gr.Slider(1, 16, value=START.time_steps, step=1,
                          label="T (spiking: time steps)", **named("steps"))
        neuron = gr.Radio(["if", "lif"], value=START.neuron, label="neuron (spiking)",
                          **named("neuron"))
        encoding = gr.Radio(["direct", "poisson"], value=START.encoding,
                            label="encoding (spiking)", **named("encoding"))
    with gr.Row():
        source = gr.Radio(list(SOURCES), value=SOURCES[0], label="image", **named("source"))
        digit = gr.Slider(0, 359, value=0, step=1, label="embedded digit (test split)",
                          **named("digit"))
        upload = gr.File(label="or upload an image", type="filepath", **named("upload"))
        label = gr.Dropdown([str(d) for d in range(10)], value="0",
                            label="uploaded image shows the digit", **named("label"))
    with gr.Row():
        mode = gr.Radio(list(UPDATE_MODES), value=START.update_mode,
                        label="update (one gradient, or FedAvg)", **named("mode"))
        epochs = gr.Slider(1, 5, value=START.local_epochs, step=1,
                           label="E (FedAvg local epochs)", **named("epochs"))
        batch = gr.Slider(1, 8, value=START.batch_size, step=1,
                          label="samples on the client (= batch size)", **named("batch"))
    with gr.Row():
        attack = gr.Dropdown(list(ATTACKS), value=START.attack, label="attack",
                             **named("attack"))
        iterations = gr.Slider(5, 300, value=START.iterations, step=5,
                               label="attack iterations", **named("iterations"))
        defense = gr.Radio(list(DEFENSES), value=START.defense, label="defense",
                           **named("defense"))
        epsilon = gr.Number(value=START.epsilon, label="ε (spike-DP: ε per bit)",
                            **named("epsilon"))
    return dict(model=model, steps=steps, neuron=neuron, encoding=encoding, source=source,
                digit=digit, upload=upload, label=label, mode=mode, epochs=epochs, batch=batch,
                attack=attack, iterations=iterations, defense=defense, epsilon=epsilon)


def _parse(components: dict[str, Any], values: dict[Any, Any], victims: Victims
           ) -> tuple[Scenario, torch.Tensor, torch.Tensor]:
    """The scenario and the client's samples from the page's values ({component: value})."""
    v = {name: values[component] for name, component in components.items()}
    scenario = _scenario(v["model"], v["steps"], v["neuron"], v["encoding"], v["mode"],
                         v["epochs"], v["batch"], v["attack"], v["iterations"], v["defense"],
                         v["epsilon"])
    images, labels = _victim(v["source"], v["digit"], v["upload"], v["label"], v["batch"], victims)
    scenario.run_config()  # settings the model cannot take are refused before anything runs
    return scenario, images, labels


def _ended(outcome: Outcome) -> str:
    """'stopped' when the visitor stopped the attack (its best iterate is what is scored)."""
    return "stopped" if stopped(outcome) else "done"


def _error(message: str) -> str:
    return f"<div class='demo-error'>⚠️ {html.escape(message)}</div>"


def build(victims: Victims, runs_dir: Path) -> gr.Blocks:
    """The demo's page.

    Example:
        >>> build(Victims(), Path("runs")).launch(server_name="127.0.0.1")  # doctest: +SKIP
    """

    def play(values: dict[Any, Any], request: gr.Request) -> Iterator[tuple[str, str, str, str]]:
        try:
            scenario, images, labels = _parse(inputs, values, victims)
        except DemoError as error:
            yield "", _error(str(error)), "", ""
            return
        caption = "the client's images (top), what the server rebuilds (bottom)"
        yield (figure(picture(images, None), caption),
               "starting: the client trains, the server observes…", "", "")
        for _, kind, value in _attacks({"one": (scenario, images, labels)}, victims, request):
            if kind == "step":
                live = live_images(value)
                if live is not None and live.shape == images.shape:
                    yield (figure(picture(images, live), caption),
                           f"step {value.index + 1}: matching loss {value.loss:.3g}", "", "")
            elif kind == "error":
                yield figure(picture(images, None), caption), _error(value), "", ""
            else:
                yield (figure(picture(value.originals, value.reconstruction), caption),
                       f"{_ended(value)}: top row the client's images, bottom row what the "
                       "server rebuilt", verdict_html(value), metrics_markdown(value))

    def play_twins(values: dict[Any, Any], request: gr.Request
                   ) -> Iterator[tuple[str, ...]]:
        try:
            scenario, images, labels = _parse(twin_inputs, values, victims)
            ann, snn = twins(scenario)
            snn.run_config()
        except DemoError as error:
            yield "", "", _error(str(error)), "", "", "", ""
            return
        captions = {name: f"{twin.model}: the client's images (top), the reconstruction (bottom)"
                    for name, twin in (("ann", ann), ("snn", snn))}
        shown = {name: figure(picture(images, None), captions[name]) for name in captions}
        texts = {"ann": "", "snn": ""}
        verdicts = {"ann": "", "snn": ""}
        status = {"ann": "running", "snn": "running"}
        yield shown["ann"], shown["snn"], "both attacks running…", "", "", "", ""
        works = {"ann": (ann, images, labels), "snn": (snn, images, labels)}
        for name, kind, value in _attacks(works, victims, request):
            if kind == "step":
                live = live_images(value)
                if live is None or live.shape != images.shape:
                    continue
                shown[name] = figure(picture(images, live), captions[name])
                status[name] = f"step {value.index + 1}"
            elif kind == "error":
                status[name], texts[name] = "failed", _error(value)
            else:
                shown[name] = figure(picture(value.originals, value.reconstruction),
                                     captions[name])
                status[name], texts[name] = _ended(value), metrics_markdown(value)
                verdicts[name] = verdict_html(value, who=(ann if name == "ann" else snn).model)
            line = f"{ann.model} ({ann.attack_name()}): {status['ann']} · " \
                   f"{snn.model} ({snn.attack_name()}): {status['snn']}"
            yield (shown["ann"], shown["snn"], line, texts["ann"], texts["snn"],
                   verdicts["ann"], verdicts["snn"])

    def stop(request: gr.Request) -> str:
        event = _STOPS.get(_session(request))
        if event is not None:
            event.set()
        return "stopping: the attack ends at its next step and its best iterate is scored"

    def refresh(folder: str) -> tuple[Any, str]:
        try:
            runs = list_runs(folder, root=runs_dir)
        except DemoError as error:
            return gr.CheckboxGroup(choices=[], value=[]), _error(str(error))
        choices = [(run_dir.name, str(run_dir)) for run_dir in runs]
        return (gr.CheckboxGroup(choices=choices, value=[]),
                f"{len(runs)} run folder(s) in {html.escape(folder)}")

    def open_runs(selected: list[str]) -> tuple[str, str]:
        try:
            if not selected:
                raise DemoError("runs: select a run first")
            page = report_html(selected[0], root=runs_dir) if len(selected) == 1 else \
                comparison_html(selected, root=runs_dir)
        except DemoError as error:
            return "", _error(str(error))
        frame = (f"<iframe id='report-frame' srcdoc=\"{html.escape(page, quote=True)}\" "
                 "style='width:100%;height:900px;border:1px solid #ccc'></iframe>")
        what = "report" if len(selected) == 1 else f"{len(selected)} runs side by side"
        return frame, f"showing the {what}"

    with gr.Blocks(title="fedsnn demo", analytics_enabled=False) as page:
        gr.Markdown("# fedsnn: what a curious server rebuilds from one client's update\n"
                    "A client trains one round on its images (optionally under a defense) and "
                    "replies; the server attacks the reply. Scores come from the same auditor as "
                    "the in-line audit, beside what a guess without the update scores.")
        with gr.Tab("Attack playground", id="playground"):
            inputs = _inputs(("lenet", "lenet-snn", "mlp", "mlp-snn"), "play")
            with gr.Row():
                run_button = gr.Button("Run attack", variant="primary", elem_id="run")
                stop_button = gr.Button("Stop", elem_id="stop")
            status = gr.HTML(elem_id="status")
            verdict = gr.HTML(elem_id="verdict")
            with gr.Row():
                image = gr.HTML(elem_id="reconstruction")
                metrics = gr.Markdown(elem_id="metrics")
            run_button.click(play, set(inputs.values()), [image, status, verdict, metrics],
                             concurrency_limit=CONCURRENCY
                             ).then(None, js=scroll_js("verdict", "status"))
            stop_button.click(stop, None, status)
        with gr.Tab("ANN beside SNN", id="twins"):
            twin_inputs = _inputs(("lenet", "mlp"), "twins")
            with gr.Row():
                twin_button = gr.Button("Run on both twins", variant="primary", elem_id="run-twins")
                twin_stop = gr.Button("Stop", elem_id="stop-twins")
            twin_status = gr.HTML(elem_id="twin-status")
            with gr.Row():
                with gr.Column():
                    ann_verdict = gr.HTML(elem_id="ann-verdict")
                    ann_image = gr.HTML(elem_id="ann-image")
                    ann_metrics = gr.Markdown(elem_id="ann-metrics")
                with gr.Column():
                    snn_verdict = gr.HTML(elem_id="snn-verdict")
                    snn_image = gr.HTML(elem_id="snn-image")
                    snn_metrics = gr.Markdown(elem_id="snn-metrics")
            twin_button.click(
                play_twins, set(twin_inputs.values()),
                [ann_image, snn_image, twin_status, ann_metrics, snn_metrics, ann_verdict,
                 snn_verdict],
                concurrency_limit=CONCURRENCY
            ).then(None, js=scroll_js("twin-status"))
            twin_stop.click(stop, None, twin_status)
        with gr.Tab("Runs", id="runs"):
            with gr.Row():
                folder = gr.Textbox(str(runs_dir), elem_id="runs-folder",
                                    label="output folder (or one run folder) in the demo's "
                                    "runs folder (--runs-dir)")
                refresh_button = gr.Button("List runs", elem_id="list-runs")
            runs_status = gr.HTML(elem_id="runs-status")
            chosen = gr.CheckboxGroup([], label="runs (one: its report; several: side by side)",
                                      elem_id="runs-list")
            open_button = gr.Button("Open", variant="primary", elem_id="open-runs")
            report = gr.HTML(elem_id="report")
            refresh_button.click(refresh, folder, [chosen, runs_status])
            open_button.click(open_runs, chosen, [report, runs_status])
        gr.Markdown(GLOSSARY, elem_id="glossary")
        page.load(refresh, folder, [chosen, runs_status])
    return page


def launch(*, host: str = "127.0.0.1", port: int = 7860, runs_dir: Path, block: bool = True
           ) -> gr.Blocks:
    """Build the page and serve it on host:port (no share link, no analytics)."""
    torch.set_num_threads(1)
    victims = Victims()
    threading.Thread(target=victims.judge, daemon=True, name="fedsnn-demo-judge").start()
    page = build(victims, runs_dir)
    page.queue(default_concurrency_limit=CONCURRENCY)
    page.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block,
                show_error=True, quiet=False, max_file_size="64mb", footer_links=[],
                theme=gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                        font_mono=["ui-monospace", "monospace"]),
                css=".demo-error{color:#b00020;font-weight:600}")
    return page
