"""One client, one update, one curious server: the demo's attack on one image, end to end.

Every step is the project's own code, only wired here for a single reply:

- the settings: `RunConfig` (validated like a run's; a bad value gives its `ConfigError`);
- the defenses: the server's strategy stack (`strategies.dp_stack.wrap_defenses`) builds the
  round's train message, with ε turned into noise by the same calibration as a run;
- the client: `clients.reply.train_reply` (encode, train plain or with DP-SGD, spike-DP on the
  inputs; then local DP, central DP's clipping, the allow-listed metrics) — the ClientApp's own
  train reply;
- the curious server and the scores: the in-line audit's one path from a reply to a verdict
  (`fedsnn.audit.reply.audit_reply`: the client's local training as the threat model grants it,
  the attack the plan chooses, `attacks.invert` watched step by step (`attacks.progress`), the
  `Auditor`'s scores beside their nulls, and the verdict).

The attacker sees only the observation; the victim's images reach nothing but the client and the
auditor.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from attacks import AttackSettings, Status, invert
from attacks.progress import Step, watch
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.canary import Reply
from fedsnn.audit.canary import client_reply as audit_client_reply
from fedsnn.audit.decision import Verdict
from fedsnn.audit.firewall import Own, would_decide
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.reply import NotAttacked, audit_reply
from fedsnn.core.config import ConfigError, ModelSettings, RunConfig
from fedsnn.core.data import ImageData, load_dataset
from fedsnn.core.judges import Judge, load_judge
from fedsnn.core.metrics import to_images
from fedsnn.core.models import ModelSpec, build_model, spec_for
from fedsnn.core.protocol import TRAIN_METRICS
from fedsnn.tools.local_grid import LocalGrid, server_identity
from strategies.dp_stack import wrap_defenses

MODELS = ("lenet", "lenet-snn", "mlp", "mlp-snn")
UPDATE_MODES = ("gradient", "fedavg")
ATTACKS = ("auto", "unrolled", "idlg", "dlg", "smooth", "analytic", "strongest")
# "auto" is the audit's `audit-attack = "auto"` (`AuditPlan.choose`: the unrolled attack on FedAvg
# updates and FedSGD batches > 1, when the threat model grants it), except that a FedSGD batch of
# one gets the attack that recovers most on its model family (docs/results.md, "Adaptive attacks
# on spiking networks") instead of the audit's iDLG: the analytic recovery on fully connected
# models, iDLG on the ANN LeNet, the smooth-surrogate attack on the spiking LeNet.
AUTO_ATTACK = {"mlp": "analytic", "mlp-snn": "analytic", "lenet": "idlg", "lenet-snn": "smooth"}
# defense -> (the run-config `defenses` entry, the key that takes the demo's ε)
DEFENSES: dict[str, tuple[str, str] | None] = {
    "none": None,
    "local DP": ("local-dp", "local-dp-target-epsilon"),
    "DP-SGD": ("dp-sgd", "dp-sgd-target-epsilon"),
    "spike-DP": ("spike-dp", "spike-dp-epsilon-bit"),
}
# the reply metrics (fedsnn/core/protocol.py) that carry the ε a client spent so far
EPSILON_KEYS = tuple(key for key in TRAIN_METRICS if key.endswith("-epsilon"))
DATASET = "digits"
IMAGE_SIZE = 28
RUN_CONFIG_FIELDS = frozenset(field.name for field in fields(RunConfig))


class DemoError(ValueError):
    """Settings or inputs the demo cannot run; the message is shown in the page as is."""


@dataclass(frozen=True)
class Scenario(ModelSettings):
    """What the page lets a visitor choose (all public settings of a one-round federation), with
    the page's initial values. A field named like a `RunConfig` field is that run-config key (the
    model's settings: `ModelSettings`, declared once); the defaults are the demo's own (a FedSGD
    reply on one image, not a run's FedAvg)."""

    model: str = "lenet"
    update_mode: str = "gradient"
    local_epochs: int = 1
    batch_size: int = 1
    attack: str = "auto"
    iterations: int = 50
    time_budget_s: float = 20.0
    defense: str = "none"
    epsilon: float = 8.0
    seed: int = 0

    def attack_name(self) -> str:
        """The attack that runs on this scenario's reply ("auto" resolved as `plan` chooses)."""
        settings = self.plan().choose(self.update_mode, self.batch_size)
        return settings.attack if isinstance(settings, AttackSettings) else "none"

    def plan(self) -> AuditPlan:
        """The audit plan of `run_config` (with "auto": the demo's attack for FedSGD batches of
        one in place of the audit's iDLG; `AuditPlan.choose` picks the unrolled attack for the
        rest)."""
        plan = AuditPlan.from_config(self.run_config())
        if self.attack != "auto":
            return plan
        return replace(plan, settings=plan.settings.with_(
            attack=AUTO_ATTACK.get(self.model, plan.settings.attack)))

    def run_config(self) -> RunConfig:
        """The one-round run config of this scenario, validated like any run's.

        Raises:
            DemoError: a value the model or a defense cannot take (the config's own message).
        """
        if self.model not in MODELS:
            raise DemoError(f"model: expected one of {list(MODELS)}, got {self.model!r}")
        if self.attack not in ATTACKS:
            raise DemoError(f"attack: expected one of {list(ATTACKS)}, got {self.attack!r}")
        if self.defense not in DEFENSES:
            raise DemoError(f"defense: expected one of {list(DEFENSES)}, got {self.defense!r}")
        # a field named like a RunConfig field is that key (RunConfig checks it); the demo's
        # own choices are mapped onto the audit's keys here
        mapping: dict[str, Any] = {
            field.name.replace("_", "-"): getattr(self, field.name) for field in fields(self)
            if field.name in RUN_CONFIG_FIELDS}
        mapping |= {"num-server-rounds": 1, "dataset": DATASET, "image-size": IMAGE_SIZE,
                    "audit-attack": self.attack, "audit-iterations": self.iterations,
                    "audit-unrolled-iterations": self.iterations,
                    "audit-time-budget-s": self.time_budget_s}
        defense = DEFENSES[self.defense]
        if defense is not None:
            name, epsilon_key = defense
            if not self.epsilon > 0:
                raise DemoError(f"{self.defense}: ε must be > 0, got {self.epsilon}")
            mapping.update({"defenses": name, epsilon_key: float(self.epsilon)})
        try:
            config = RunConfig.from_mapping(mapping)
            AuditPlan.from_config(config)
        except (ConfigError, ValueError) as error:
            raise DemoError(str(error)) from None
        return config


@dataclass
class Outcome:
    """A finished demo attack: the auditor's row, the guess baselines and the privacy spent."""

    attack: str
    row: dict[str, Any]
    baselines: dict[str, dict[str, float | None]]
    epsilon: dict[str, float]
    judge_card: dict[str, Any]
    originals: torch.Tensor
    reconstruction: torch.Tensor | None
    message: str
    seconds: float
    verdict: Verdict | None = None
    firewall: str = ""  # what the client's firewall would do with this reply


class Victims:
    """The embedded digits a visitor picks from (the test split: the judge never saw them), the
    judge and the pool the auditor looks samples up in."""

    def __init__(self, judge: Judge | None = None) -> None:
        self.data: ImageData = load_dataset(DATASET, IMAGE_SIZE)
        self._judge = judge
        self._lock = threading.Lock()

    def judge(self) -> Judge:
        """The dataset's cached judge (trained on the train split on first use)."""
        with self._lock:
            if self._judge is None:
                self._judge = load_judge(self.data)
            return self._judge

    def __len__(self) -> int:
        return len(self.data.test_x)

    def digit(self, index: int) -> tuple[torch.Tensor, int]:
        """Test digit `index` as a [1, H, W] image and its label."""
        if not 0 <= index < len(self):
            raise DemoError(f"digit: expected an index in [0, {len(self) - 1}], got {index}")
        return self.data.test_x[index], int(self.data.test_y[index])

    def batch(self, image: torch.Tensor, label: int, size: int, after: int = -1
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The client's batch: `image` first, then the `size - 1` test digits after index
        `after` (an embedded digit's own index; -1 for an upload)."""
        others = [(after + step) % len(self) for step in range(1, size)]
        images = torch.stack([image, *(self.data.test_x[i] for i in others)])
        labels = torch.tensor([label, *(int(self.data.test_y[i]) for i in others)])
        return images, labels

    def auditor(self, images: torch.Tensor, labels: torch.Tensor, trained: list[int]
                ) -> tuple[Auditor, list[int]]:
        """The audit's auditor over the dataset plus the client's samples, whose ground truth is
        the `trained` ones (indices into `images`); and their ids in its pool.

        The client's images are in the pool once: a dataset image equal to one of them (an
        embedded digit is a test digit) is left out, or the nearest-neighbour look-up would tie
        between the two copies and an exact reconstruction could count as not identified."""
        dataset_x = torch.cat([self.data.train_x, self.data.test_x])
        dataset_y = torch.cat([self.data.train_y, self.data.test_y])
        keep = ~(dataset_x.flatten(1)[:, None] == images.float().flatten(1)[None]).all(-1).any(1)
        pool_x = torch.cat([dataset_x[keep], images.float()])
        pool_y = torch.cat([dataset_y[keep], labels.long()])
        ids = [len(pool_x) - len(images) + i for i in trained]
        auditor = Auditor(pool_x, pool_y, judge=self.judge().model,
                          ground_truth=lambda server_round, partition_id: ids)
        return auditor, ids


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Flower logs every round's sampling; the demo runs one round per click."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def client_train_config(config: RunConfig, sent: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The train config the server's strategy stack (with the scenario's defense wrappers) sends
    to the client in round 1, taken from the message it builds."""
    strategy = wrap_defenses(FedAvg(min_train_nodes=1, min_evaluate_nodes=1,
                                    min_available_nodes=1), config)
    with server_identity(), _quiet(logging.getLogger("flwr")):
        grid = LocalGrid([lambda message, context: message], [{}], run_config={})
        messages = list(strategy.configure_train(1, ArrayRecord(sent),
                                                 ConfigRecord({"server-round": 1}), grid))
    return dict(messages[0].content["config"])


def client_reply(config: RunConfig, spec: ModelSpec, sent: dict[str, torch.Tensor],
                 images: torch.Tensor, labels: torch.Tensor
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[int]]:
    """What the client sends back after round 1 on (images, labels), under the scenario's
    defenses (`fedsnn.audit.canary.client_reply` with the round's train config)."""
    return audit_client_reply(config, spec, sent, images, labels, client_train_config(config, sent))


Listener = Callable[[Step], bool | None]


def run(scenario: Scenario, images: torch.Tensor, labels: torch.Tensor, victims: Victims, *,
        listener: Listener | None = None) -> Outcome:
    """One round: the client trains on (images, labels) under the scenario's defense, the curious
    server attacks its reply, the auditor scores the reconstruction.

    Args:
        scenario: the visitor's settings.
        images: [B, 1, 28, 28] in [0, 1], the client's samples (the victim first).
        labels: [B].
        victims: the dataset, judge and auditor pool.
        listener: gets every attack step (`attacks.progress.Step`); returning False stops it.

    Raises:
        DemoError: settings the model or defense cannot take, or a client that fails.
    """
    config = scenario.run_config()
    data = victims.data
    spec = spec_for(config, data.in_channels, data.num_classes, data.image_size)
    if images.shape[1:] != data.train_x.shape[1:]:
        raise DemoError(f"images of shape {tuple(images.shape[1:])}; the model takes "
                        f"{tuple(data.train_x.shape[1:])}")
    model = build_model(spec, dlg_init=config.dlg_init, seed=config.seed)
    sent = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        returned, metrics, trained = client_reply(config, spec, sent, images, labels)
    except (ValueError, RuntimeError) as error:
        raise DemoError(f"the client could not train with these settings: {error}") from None
    # the curious server's path from a reply to a verdict, the in-line audit's own
    reply = Reply(1, 0, sent, returned, int(metrics["num-examples"]),
                  int(metrics["local-steps"]))
    auditor, ids = victims.auditor(images, labels, trained)
    try:
        with watch(listener or (lambda step: None)):
            audited = audit_reply(reply, plan=scenario.plan(), config=config, spec=spec,
                                  auditor=auditor, attack=lambda observations, settings, public:
                                  invert(observations, settings, public=public))
    except NotAttacked as error:
        raise DemoError(f"the server does not attack this reply: {error}") from None
    row, reconstruction = dict(audited.row), audited.reconstruction
    truth, matched = row.pop("_images", (images, to_images(reconstruction.inputs)))
    if reconstruction.status == Status.FAILED or matched.shape != truth.shape:
        matched = None  # a failed attack returns a placeholder, not a reconstruction
    epsilon = {key: float(metrics[key]) for key in EPSILON_KEYS if key in metrics}
    return Outcome(attack=audited.job.settings.attack, row=row, baselines=auditor.baselines(ids),
                   epsilon=epsilon, judge_card=victims.judge().card(),
                   originals=truth, reconstruction=matched,
                   message=reconstruction.message, seconds=reconstruction.seconds,
                   verdict=audited.verdict,
                   firewall=would_decide(reply, spec, Own(images, labels, trained),
                                         audited.verdict, config=config,
                                         train_config=client_train_config(config, sent)))


def twins(scenario: Scenario) -> tuple[Scenario, Scenario]:
    """The ANN and its spiking twin under the same settings ("auto" resolved for each)."""
    ann = scenario.model.removesuffix("-snn")
    return replace(scenario, model=ann), replace(scenario, model=f"{ann}-snn")


def live_images(step: Step) -> torch.Tensor | None:
    """The best iterate of a running attack as [B, C, H, W] images, when it is an image-shaped
    dummy (the input-optimizing attacks); None otherwise."""
    best = step.best[0] if isinstance(step.best, tuple) else step.best
    if not isinstance(best, torch.Tensor) or best.dim() not in (4, 5):
        return None
    return to_images(best).clamp(0, 1)


def stream(works: dict[str, Callable[[Listener], Outcome]], *, min_interval_s: float = 0.25,
           stop: threading.Event | None = None) -> Iterator[tuple[str, str, Any]]:
    """Run each work in its own thread; yield (name, "step", Step) as they go (at most one per
    work every `min_interval_s`), and (name, "done", Outcome) or (name, "error", message) when
    each ends. Closing the iterator (the page cancelled, or went away) stops every attack at its
    next step; so does setting `stop`."""
    events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
    stop = stop or threading.Event()

    def start(name: str, work: Callable[[Listener], Outcome]) -> None:
        last = [0.0]

        def listener(step: Step) -> bool:
            now = time.monotonic()
            if now - last[0] >= min_interval_s:
                last[0] = now
                events.put((name, "step", step))
            return not stop.is_set()

        def target() -> None:
            torch.set_num_threads(1)
            try:
                events.put((name, "done", work(listener)))
            except DemoError as error:
                events.put((name, "error", str(error)))
            except Exception as error:  # noqa: BLE001 - shown in the page; the server keeps running
                events.put((name, "error", f"{type(error).__name__}: {error}"))

        threading.Thread(target=target, daemon=True, name=f"fedsnn-demo-{name}").start()

    for name, work in works.items():
        start(name, work)
    running = len(works)
    try:
        while running:
            event = events.get()
            running -= event[1] != "step"
            yield event
    finally:
        stop.set()
