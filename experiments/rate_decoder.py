"""The rate-decoder attack across settings (docs/results.md, "The rate-decoder attack").

One global model per setting serves every victim (as in one round of an in-line audit, where all
clients of a round share the model the server sent), so one decoder per setting. Victims: the
bench's attack set (the first `--samples` of its order over the test split), in batches of B, each
batch the gradient of one client. Public data: the first `public_size` images of the train split
(disjoint from every victim), or another dataset (cross-domain). Trained settings train the global
model on the rest of the train split (TRAIN_FROM onward), so public images are never training
images. Identification: the original is the reconstruction's nearest neighbour among the first
`--pool` images of the attack-set order (they include the victims). Spike-DP settings privatize
the client's inputs through the client pipeline's own encode step (`clients.privacy`); FedAvg
settings train a copy of the global model for k local steps on the client's batch and give the
attacker what a server sees, (w_sent − w_returned) / (lr · k) (`fedsnn.audit.observe`).
Event settings (`dvs-*`) attack dvs-digits spike frames (the SNN reads them per step, the ANN twin
stacked into T·C channels) and score the decoded frames as T·C-channel images, plus Table V's L1.
FedAvg settings (`*-fedavg-R`) load the global model after R rounds of a real FedAvg run
(`fedavg_checkpoints.py`, `--checkpoints`).

Example:
    python -m experiments.rate_decoder run --setting snn --out runs/rate-decoder
    python -m experiments.rate_decoder table --out runs/rate-decoder
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from attacks import AttackSettings, Observation, PublicData, Reconstruction, invert
from attacks.rate_decoder import CACHE
from clients.ledgers import NodeLedgers
from clients.privacy import plan_round
from fedsnn.core.config import RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.data.sources import ImageData
from fedsnn.core.defense_config import SpikeDpConfig
from fedsnn.core.judges import Judge, load_judge
from fedsnn.core.metrics import identified, mean_interval, wilson_interval
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.privacy.dpsgd import DpSgdSettings, private_gradient
from fedsnn.core.privacy.spikes import build_mechanism, poisson_spikes
from fedsnn.audit.observe import gradient_from_update, parameter_names
from fedsnn.core.checkpoint import load_checkpoint
from experiments.fedavg_checkpoints import checkpoint_path
from fedsnn.audit.scoring import score_images
from fedsnn.tools.bench.run import draw_attack_set
from fedsnn.core.training import batch_gradient, evaluate, train_epochs

MNIST = "mnist:../shared/data/mnist"  # from the main checkout
SPIKE_DP_SEED = 7  # the attacker's own randomness for privatizing its public images
TRAIN_FROM = 3000  # trained settings: the global model trains on train[3000:], public is train[:3000]


@dataclass(frozen=True)
class Setting:
    """One row: the victim model, how it was trained, the attacker's public data, the batch, the
    client's local steps and the defense."""

    model: str = "lenet-snn"
    neuron: str = "if"
    surrogate: str = "atan"
    time_steps: int = 4
    encoding: str = "direct"
    trained_epochs: int = 0  # 0: DLG initialisation U(-0.5, 0.5)
    public_size: int = 8000
    public_dataset: str = ""  # "" : the victims' dataset (train split); else a dataset spec
    batch: int = 1
    dp_noise: float = 0.0  # > 0: DP-SGD gradient (clip dp_clip, noise multiplier dp_noise)
    dp_clip: float = 1.0
    spike_dp_bit: float = 0.0  # > 0: the client's inputs go through spike-DP (randomized response)
    local_steps: int = 0  # > 0: a FedAvg update of that many local steps (optimizer, local_lr)
    optimizer: str = "sgd"
    local_lr: float = 0.1
    dataset: str = ""  # "": --dataset (MNIST); "dvs-digits": event data (spike frames)
    fedavg_rounds: int = 0  # > 0: the global model after that many rounds of a real FedAvg run
    public_split: str = "train"  # or "test-rest": the test samples outside the identification pool
    spike_dp_aware: bool = False  # the decoder learns from public images privatized the same way

    def spec(self, data: ImageData) -> ModelSpec:
        channels, steps, encoding = data.in_channels, self.time_steps, self.encoding
        if is_event(data):  # frames [T, C, H, W]: the SNN reads them per step, the ANN stacked
            steps = int(data.train_x.shape[1])
            channels, encoding = ((channels, "frames") if self.model.endswith("-snn")
                                  else (steps * channels, "direct"))
        return ModelSpec(name=self.model, in_channels=channels,
                         num_classes=data.num_classes, image_size=data.image_size,
                         time_steps=steps, neuron=self.neuron, surrogate=self.surrogate,
                         encoding=encoding)

    def inputs(self, samples: torch.Tensor) -> torch.Tensor:
        """Samples as this setting's model takes them: event frames [N, T, C, H, W] stay frames
        for the SNN and become T·C channels for the ANN twin (the same bits, no time axis)."""
        return samples.flatten(1, 2) if samples.dim() == 5 and not self.model.endswith("-snn") \
            else samples


def is_event(data: ImageData) -> bool:
    return data.train_x.dim() == 5


SNN = Setting()
SETTINGS: dict[str, Setting] = {
    "snn": SNN, "ann": replace(SNN, model="lenet"),
    "snn-trained-2": replace(SNN, trained_epochs=2, public_size=3000),
    "ann-trained-2": replace(SNN, model="lenet", trained_epochs=2, public_size=3000),
    "snn-lif-sigmoid": replace(SNN, neuron="lif", surrogate="sigmoid"),
    **{f"snn-t{t}": replace(SNN, time_steps=t) for t in (2, 8, 16)},
    "snn-poisson": replace(SNN, encoding="poisson"),
    **{f"snn-public-{n}": replace(SNN, public_size=n) for n in (100, 1000)},
    **{f"ann-public-{n}": replace(SNN, model="lenet", public_size=n) for n in (100, 1000)},
    "snn-digits-public": replace(SNN, public_dataset="digits"),
    "ann-digits-public": replace(SNN, model="lenet", public_dataset="digits"),
    **{f"snn-b{b}": replace(SNN, batch=b) for b in (2, 4, 8, 16, 32)},
    **{f"ann-b{b}": replace(SNN, model="lenet", batch=b) for b in (2, 4, 8, 16, 32)},
    # encoding / neuron / T ablations on 1,000 public images (8x cheaper; compare snn-public-1000)
    **{f"{name}-p1000": replace(setting, public_size=1000) for name, setting in (
        ("snn-poisson", replace(SNN, encoding="poisson")),
        ("snn-lif-sigmoid", replace(SNN, neuron="lif", surrogate="sigmoid")),
        *((f"snn-t{t}", replace(SNN, time_steps=t)) for t in (2, 8, 16)))},
    **{f"snn-dp-{s}": replace(SNN, dp_noise=s) for s in (0.01, 0.1, 1.0)},
    **{f"{m}-dp-{s}-p1000": replace(SNN, model=model, dp_noise=s, public_size=1000)
       for m, model in (("snn", "lenet-snn"), ("ann", "lenet")) for s in (0.01, 0.1, 1.0)},
    **{f"ann-dp-{s}": replace(SNN, model="lenet", dp_noise=s) for s in (0.01, 0.1, 1.0)},
    # spike-DP (randomized response on Poisson spikes, clients.privacy) at two per-bit ε
    **{f"snn-spikedp-{e:g}-p1000": replace(SNN, spike_dp_bit=e, public_size=1000)
       for e in (1.0, 4.0)},
    # ... against a decoder trained on public images privatized by the same mechanism
    **{f"snn-spikedp-{e:g}-aware-p1000": replace(SNN, spike_dp_bit=e, spike_dp_aware=True,
                                                 public_size=1000) for e in (1.0, 4.0)},
    # trained victims: E epochs of centralised training (a stand-in for E FedAvg rounds)
    **{f"{m}-trained-{e}-p1000": replace(SNN, model=model, trained_epochs=e, public_size=1000)
       for m, model in (("snn", "lenet-snn"), ("ann", "lenet")) for e in (1, 5, 10)},
    # FedAvg replies of k local steps on the client's batch (SGD lr 0.1 unless stated)
    **{f"{m}-steps-{k}-p1000": replace(SNN, model=model, local_steps=k, public_size=1000)
       for m, model in (("snn", "lenet-snn"), ("ann", "lenet")) for k in (1, 5, 20)},
    **{f"{m}-steps-5-adam-p1000": replace(SNN, model=model, local_steps=5, optimizer="adam",
                                          local_lr=0.003, public_size=1000)
       for m, model in (("snn", "lenet-snn"), ("ann", "lenet"))},
    "snn-steps-20-lr1-p1000": replace(SNN, local_steps=20, local_lr=1.0, public_size=1000),
    "snn-trained-5-steps-20-p1000": replace(SNN, trained_epochs=5, local_steps=20,
                                            public_size=1000),
    # event data: dvs-digits spike frames; public = its whole train split (1,438 samples)
    "dvs-snn": replace(SNN, dataset="dvs-digits", encoding="frames", public_size=1438),
    "dvs-ann": replace(SNN, model="lenet", dataset="dvs-digits", public_size=1438),
    # the global model of a real FedAvg run after r rounds (fedavg_checkpoints.py); its clients
    # trained on the whole train split, so public = the 1,000 test images outside the pool
    **{f"{m}-fedavg-{r}": replace(SNN, model=model, fedavg_rounds=r, public_size=1000,
                                  public_split="test-rest")
       for m, model in (("snn", "lenet-snn"), ("ann", "lenet")) for r in (1, 5, 10)},
}


def public_data(setting: Setting, data: ImageData, pool_ids: list[int]) -> PublicData:
    if setting.public_dataset:
        other = load_dataset(setting.public_dataset, image_size=data.image_size)
        images = torch.cat([other.train_x, other.test_x])[:setting.public_size]
        return PublicData(images, f"{setting.public_dataset} ({len(images)} images, all splits)")
    if setting.public_split == "test-rest":  # the clients of a FedAvg run trained on all of train
        pool = set(pool_ids)
        rest = [i for i in range(len(data.test_x)) if i not in pool][:setting.public_size]
        images = data.test_x[torch.tensor(rest)]
        return PublicData(setting.inputs(images), f"{data.name} test split outside the "
                                                  f"identification pool ({len(images)} samples)")
    if setting.trained_epochs and setting.public_size > TRAIN_FROM:
        raise ValueError(f"trained settings take public images from train[:{TRAIN_FROM}]")
    images = data.train_x[:setting.public_size]
    source = f"{data.name} train split [:{len(images)}]"
    if setting.spike_dp_bit and setting.spike_dp_aware:
        # the server knows the mechanism and ε_bit (they are run config): it privatizes its public
        # images as a client would, with its own randomness, and learns features -> clean image
        generator = torch.Generator().manual_seed(SPIKE_DP_SEED)
        mechanism = build_mechanism("randomized-response", epsilon_bit=setting.spike_dp_bit)
        spikes = mechanism(poisson_spikes(images, time_steps=setting.time_steps,
                                          generator=generator), generator=generator)
        return PublicData(images, f"{source}, privatized as the clients' (ε_bit "
                                  f"{setting.spike_dp_bit:g})", inputs=spikes)
    return PublicData(setting.inputs(images), source)


def global_model(setting: Setting, data: ImageData, seed: int, checkpoints: Path
                 ) -> tuple[torch.nn.Module, float]:
    """The model the server sent, and its test accuracy."""
    spec = setting.spec(data)
    model = build_model(spec, dlg_init=not setting.trained_epochs, seed=seed, encoder_seed=seed)
    if setting.fedavg_rounds:  # experiments/fedavg_checkpoints.py made it
        checkpoint = load_checkpoint(checkpoint_path(checkpoints, setting.model,
                                                     setting.fedavg_rounds))
        if checkpoint.results.get("model-spec") != spec.to_dict():
            raise ValueError(f"{checkpoint.path} holds {checkpoint.results.get('model-spec')}, "
                             f"not {spec.to_dict()}")
        model.load_state_dict(checkpoint.model_state)
    if setting.trained_epochs:
        train_epochs(model, setting.inputs(data.train_x[TRAIN_FROM:]),
                     data.train_y[TRAIN_FROM:],
                     epochs=setting.trained_epochs, batch_size=64, lr=1e-3, seed=seed)
    return model, evaluate(model, setting.inputs(data.test_x), data.test_y)[1]


def client_gradient(setting: Setting, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                    spec: ModelSpec) -> tuple[dict[str, torch.Tensor], float | None]:
    """The client's gradient (DP-SGD's when the setting has noise; on spike-DP inputs when it has
    ε_bit) and its per-sample ε (δ = 1e-5)."""
    if setting.spike_dp_bit:
        # the client pipeline's own encode step (clients.privacy): Poisson spikes, randomized
        # response, and the model reading them as frames (on a copy: the global model is shared)
        client = copy.deepcopy(model)
        config = SpikeDpConfig(mechanism="randomized-response", epsilon_bit=setting.spike_dp_bit,
                               keep_probability=0.5, time_steps=spec.time_steps, budget=0.0,
                               delta=1e-5, accountant="rdp").to_config()
        plan = plan_round(config, RunConfig(), spec, NodeLedgers(), public_examples=len(x))
        spikes = plan.encode(client, x)
        return batch_gradient(client, spikes, y)[1], plan.spike[0].epsilon()
    if setting.local_steps:
        # a FedAvg reply, seen as the server sees it: (w_sent - w_returned) / (lr * steps)
        client = copy.deepcopy(model)
        train_epochs(client, x, y, epochs=setting.local_steps, batch_size=len(x),
                     lr=setting.local_lr, optimizer=setting.optimizer)
        return gradient_from_update(model.state_dict(), client.state_dict(),
                                    parameter_names(spec), lr=setting.local_lr,
                                    steps=setting.local_steps), None
    if not setting.dp_noise:
        return batch_gradient(model, x, y)[1], None
    dp = DpSgdSettings(max_grad_norm=setting.dp_clip, delta=1e-5, noise_multiplier=setting.dp_noise,
                       batch_first=not model.is_spiking)
    model.train()  # Opacus wraps only a model in training mode (evaluate() left it in eval)
    gradients, outcome = private_gradient(model, x, y, settings=dp)
    return gradients, outcome.epsilon


def _scored(reconstruction: Reconstruction, ids: list[int], data: ImageData, judge: Judge,
            pool: torch.Tensor, pool_ids: list[int]) -> list[dict[str, Any]]:
    index = torch.tensor(ids)
    truth, predict = data.test_x[index], judge.predict
    if is_event(data):
        # frames [T, C, H, W] are scored as images of T·C channels (MSE, PSNR, SSIM, nearest
        # neighbour over all bits); the DVS judge reads the decoded spike probabilities as frames
        frames = tuple(truth.shape[1:])
        reconstruction = replace(reconstruction, inputs=_flat_frames(reconstruction.inputs))
        truth, pool = truth.flatten(1, 2), pool.flatten(1, 2)
        predict = lambda images: judge.predict(images.reshape(-1, *frames))  # noqa: E731
    rows, matched = score_images(reconstruction, truth, data.test_y[index], predict)
    hits = identified(matched, torch.tensor([pool_ids.index(i) for i in ids]), pool)
    for row, sample, hit in zip(rows, ids, hits.tolist(), strict=True):
        row.update(sample=sample, identified=hit)
    if is_event(data):  # Table V's distance: spikes binarized at 0.5 against the original's
        l1 = ((matched.clamp(0, 1) >= 0.5).float() - truth).abs().flatten(1).sum(1)
        for row, value in zip(rows, l1.tolist(), strict=True):
            row["l1"] = value
    return rows


def _flat_frames(inputs: torch.Tensor) -> torch.Tensor:
    """A reconstruction of frames as [B, T·C, H, W]: time-major sequences [T, B, C, H, W] (the
    SNN's) are made batch-first; the ANN twin's stacked channels are already."""
    inputs = inputs.detach().float()
    return inputs.transpose(0, 1).flatten(1, 2) if inputs.dim() == 5 else inputs


def run(args: argparse.Namespace) -> None:
    """Run each of the comma-separated settings in turn (in one process, so settings with the same
    global model and public data share one decoder)."""
    torch.set_num_threads(1)
    names = [n.strip() for n in args.setting.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or not names:
        raise SystemExit(f"--setting: unknown {unknown or 'empty list'}; expected names from "
                         f"{sorted(SETTINGS)}")
    for name in names:
        run_setting(argparse.Namespace(**{**vars(args), "setting": name}))


def run_setting(args: argparse.Namespace) -> None:
    """Attack the setting's victims; write <out>/<setting>.json (rows and summary)."""
    setting = SETTINGS[args.setting]
    data = load_dataset(setting.dataset or args.dataset)
    judge = load_judge(data, seed=0)
    samples = args.samples // setting.batch * setting.batch
    # its first `samples` are the victims (the pool is the whole test split when that is smaller)
    pool_ids = draw_attack_set(data, min(args.pool, len(data.test_x)), args.seed)
    ids = pool_ids[:samples]
    pool = data.test_x[torch.tensor(pool_ids)]
    model, accuracy = global_model(setting, data, args.seed, Path(args.checkpoints))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    public = public_data(setting, data, pool_ids)
    settings = AttackSettings(attack="rate-decoder", decoder_epochs=args.decoder_epochs,
                              seed=args.seed)
    rows, guess_rows, epsilon, started = [], [], None, time.monotonic()
    decoder_seconds = 0.0
    for begin in range(0, samples, setting.batch):
        batch_ids = ids[begin:begin + setting.batch]
        x = setting.inputs(data.test_x[torch.tensor(batch_ids)])
        y = data.test_y[torch.tensor(batch_ids)]
        gradients, epsilon = client_gradient(setting, model, x, y, setting.spec(data))
        observation = Observation(f"{args.setting}/{begin}", setting.spec(data), state, gradients,
                                  batch_size=len(x), learning_rate=setting.local_lr,
                                  local_steps=max(1, setting.local_steps),
                                  exact_gradient=setting.local_steps <= 1)
        trained_before = CACHE.trained
        reconstruction, = invert([observation], settings, public=public)
        if CACHE.trained > trained_before:  # this setting trained its decoder (not shared)
            decoder_seconds = reconstruction.seconds
        rows += _scored(reconstruction, batch_ids, data, judge, pool, pool_ids)
        mean = public.images.mean(0, keepdim=True).expand_as(x)
        mean = mean.transpose(0, 1) if mean.dim() == 5 else mean  # frames: time-major, as attacks
        guess = Reconstruction("guess", "mean-image", mean.clone(), torch.full_like(y, -1), 0.0)
        guess_rows += _scored(guess, batch_ids, data, judge, pool, pool_ids)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"setting": args.setting, **asdict(setting), "samples": samples, "pool": len(pool_ids),
              "seed": args.seed, "dataset": data.note, "public": public.source,
              "global-accuracy": accuracy, "dp-epsilon": epsilon,
              "decoder-epochs": args.decoder_epochs, "decoder-seconds": round(decoder_seconds, 1),
              "wall-seconds": round(time.monotonic() - started, 1),
              "summary": {"rate-decoder": summarize(rows), "mean-image guess": summarize(guess_rows)},
              "rows": rows}
    (out / f"{args.setting}.json").write_text(json.dumps(result, indent=1))
    print(markdown([result]))


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """n, ASR and identified fraction (Wilson 95 %), MSE/PSNR/SSIM means (95 %), median MSE."""
    n = len(rows)
    out: dict[str, Any] = {"n": n}
    for key, name in (("success", "asr"), ("identified", "identified")):
        hits = sum(bool(r[key]) for r in rows)
        out[name] = [hits / n, *wilson_interval(hits, n)]
    for key in ("mse", "psnr", "ssim"):
        out[key] = list(mean_interval([r[key] for r in rows]))
    out["median-mse"] = float(torch.tensor([r["mse"] for r in rows]).median())
    if "l1" in rows[0]:  # event data: binarized spikes against the original's
        out["l1"] = list(mean_interval([r["l1"] for r in rows]))
    return out


def _cell(values: list[float], digits: int, percent: bool = False) -> str:
    if percent:
        return f"{100 * values[0]:.0f} % [{100 * values[1]:.0f}, {100 * values[2]:.0f}]"
    return f"{values[0]:.{digits}f} [{values[1]:.{digits}f}, {values[2]:.{digits}f}]"


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| setting | global acc. | attacker | n | ASR | identified | MSE | median MSE | "
             "PSNR (dB) | SSIM | decoder s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        note = f" (ε={result['dp-epsilon']:.3g})" if result.get("dp-epsilon") else ""
        if result.get("spike_dp_bit"):  # per-bit ε is not a guarantee; say both
            note = (f" (ε_bit={result['spike_dp_bit']:g}, per-sample ε="
                    f"{result['dp-epsilon']:.3g})")
        for attacker, s in result["summary"].items():
            lines.append(
                f"| {result['setting']}{note} | {100 * result['global-accuracy']:.0f} % | {attacker} "
                f"| {s['n']} | {_cell(s['asr'], 0, True)} | {_cell(s['identified'], 0, True)} | "
                f"{_cell(s['mse'], 4)} | {s['median-mse']:.4f} | {_cell(s['psnr'], 1)} | "
                f"{_cell(s['ssim'], 2)} | "
                f"{result['decoder-seconds'] if attacker == 'rate-decoder' else ''} |")
    return "\n".join(lines)


def table(args: argparse.Namespace) -> None:
    out = Path(args.out)
    found = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    results = [found[name] for name in SETTINGS if name in found]
    missing = [name for name in SETTINGS if name not in found]
    text = markdown(results) + (f"\n\nNot run: {', '.join(missing)}" if missing else "")
    (out / "table.md").write_text(text + "\n")
    print(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    go = commands.add_parser("run", help="attack one setting's victims")
    go.add_argument("--setting", required=True,
                    help=f"comma-separated settings from {', '.join(SETTINGS)}")
    go.add_argument("--dataset", default=MNIST)
    go.add_argument("--samples", type=int, default=100)
    go.add_argument("--pool", type=int, default=1000)
    go.add_argument("--seed", type=int, default=0)
    go.add_argument("--decoder-epochs", type=int, default=40)
    go.add_argument("--out", default="runs/rate-decoder")
    go.add_argument("--checkpoints", default="runs/rate-decoder/fedavg",
                    help="fedavg_checkpoints.py's --out (the *-fedavg-* settings)")
    go.set_defaults(func=run)
    show = commands.add_parser("table", help="the table of every setting run into --out")
    show.add_argument("--out", default="runs/rate-decoder")
    show.set_defaults(func=table)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
