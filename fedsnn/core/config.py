"""The run configuration: one typed, validated, frozen view of `[tool.flwr.app.config]`.

Only the Flower entry points read the raw run config; everything below them takes plain
arguments or a `RunConfig`. Every invalid value stops the run before training with a
`ConfigError` whose message names the key and what it accepts.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A run-config value that cannot work; the message names the key and the accepted values."""


MODEL_NAMES = ("lenet", "lenet5", "mlp", "lenet-snn", "lenet5-snn", "mlp-snn")
NEURONS = ("if", "lif")
SURROGATES = ("atan", "sigmoid", "piecewise-quadratic", "soft-sign", "erf")
ENCODINGS = ("direct", "poisson", "frames")
PARTITIONERS = ("iid", "dirichlet")
OPTIMIZERS = ("adam", "sgd")
UPDATE_MODES = ("fedavg", "gradient")
GROUND_TRUTHS = ("partitions", "none")  # where the auditor gets it: fedsnn.audit.ground_truth
CLIENT_RANDOMNESS = ("derived", "secret")  # what clients seed their draws with: fedsnn.core.sampling


# old key -> its new name (a run config with the old one stops with this, not silently ignored)
RENAMED_KEYS = {"num-malicious": "assumed-byzantine (f, the Byzantine clients the aggregator "
                                 "tolerates; num-byzantine is how many misbehave)"}


@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    """The model's settings a run chooses, declared once: `RunConfig` has them as run-config keys
    (`time-steps`, ...) and `fedsnn.core.models.ModelSpec` as the model's public hyper-parameters.
    Keyword-only, so a subclass's own fields keep their positions."""

    time_steps: int = 4
    neuron: str = "if"
    surrogate: str = "atan"
    tau: float = 2.0
    v_threshold: float = 1.0
    detach_reset: bool = False
    encoding: str = "direct"
    mlp_hidden: int = 256


@dataclass(frozen=True)
class RunConfig(ModelSettings):
    """Every knob of a run. Field names are the config keys with '-' replaced by '_' (the model's
    settings come from `ModelSettings`)."""

    seed: int = 0
    client_randomness: str = "derived"
    num_server_rounds: int = 10
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    min_available_nodes: int = 2
    # data
    dataset: str = "digits"
    image_size: int = 28
    partitioner: str = "iid"
    dirichlet_alpha: float = 0.5
    local_test_fraction: float = 0.2
    max_train_samples: int = 0
    # model
    model: str = "lenet"
    dlg_init: bool = True
    # local training
    update_mode: str = "fedavg"
    local_epochs: int = 2
    batch_size: int = 16
    optimizer: str = "adam"
    learning_rate: float = 0.003
    momentum: float = 0.0
    # outputs
    output_dir: str = "fedsnn-runs"
    run_name: str = ""
    # -- in-line audit (curious server) --
    audit_enabled: bool = True
    audit_attack: str = "auto"
    audit_rounds: str = "1"
    audit_max_clients: int = 2
    audit_max_batch: int = 512
    audit_iterations: int = 50
    audit_optimizer: str = "lbfgs"
    audit_restarts: int = 1
    audit_tv_weight: float = 0.0
    audit_time_budget_s: float = 120.0
    audit_workers: int = 1
    audit_public_data: str = "none"
    audit_ground_truth: str = "partitions"
    audit_unrolled_iterations: int = 100
    audit_withhold: str = ""
    audit_grant: str = ""
    audit_canary: bool = True
    audit_canary_defenses: str = ""
    # -- the client's privacy firewall (fedsnn.audit.firewall) --
    firewall: str = "off"
    firewall_action: str = "hold"
    firewall_every: int = 50
    firewall_time_budget_s: float = 3.0
    firewall_level: float = 0.05
    firewall_withhold: str = ""
    firewall_harden_steps: int = 4
    # -- defenses (DP) --
    defenses: str = ""
    dp_delta: float = 1e-5
    dp_accountant: str = "rdp"
    central_dp_clipping: str = "server-fixed"
    central_dp_clipping_norm: float = 1.0
    central_dp_noise_multiplier: float = 1.0
    central_dp_target_epsilon: float = 0.0
    local_dp_clipping_norm: float = 1.0
    local_dp_noise_multiplier: float = 1.0
    local_dp_target_epsilon: float = 0.0
    dp_sgd_max_grad_norm: float = 1.0
    dp_sgd_noise_multiplier: float = 1.0
    dp_sgd_target_epsilon: float = 0.0
    spike_dp_mechanism: str = "randomized-response"
    spike_dp_epsilon_bit: float = 1.0
    spike_dp_keep_probability: float = 0.5
    spike_dp_budget: float = 0.0
    dp_audit: bool = False
    dp_audit_canaries: int = 1000
    dp_audit_confidence: float = 0.95
    # -- robust aggregation / Byzantine clients --
    aggregator: str = "fedavg"
    assumed_byzantine: int = 0
    trimmed_beta: float = 0.2
    multikrum_select: int = 0
    norm_filter: float = 0.0
    byzantine_attack: str = "none"
    num_byzantine: int = 0
    byzantine_scale: float = 0.0
    # -- deployment (failures, checkpoints) --
    round_timeout: float = 600.0
    node_wait_timeout: float = 300.0
    min_train_replies: int = 1
    reject_norm_factor: float = 100.0
    max_num_examples: int = 0
    resume_from: str = ""

    @property
    def is_spiking(self) -> bool:
        """True for the spiking twins."""
        return self.model.endswith("-snn")

    def resolved_output_dir(self) -> Path:
        """The output folder as an absolute path (relative paths are taken from the home folder,
        because the Flower app runs from a copy of itself in an unrelated working directory)."""
        path = Path(self.output_dir).expanduser()
        return path if path.is_absolute() else Path.home() / path

    def to_dict(self) -> dict[str, Any]:
        """The config with its kebab-case keys, as written to results.json."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_mapping(cls, run_config: Mapping[str, Any]) -> RunConfig:
        """Build and validate from Flower's run config (kebab-case keys).

        Raises:
            ConfigError: a key is unknown (the message names the closest known key), a value
                has the wrong type or is out of range.

        Example:
            >>> RunConfig.from_mapping({"num-server-round": 3})
            Traceback (most recent call last):
            ...
            fedsnn.core.config.ConfigError: num-server-round: unknown run-config key; did you mean 'num-server-rounds'?
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        renamed = sorted(set(run_config) & set(RENAMED_KEYS))
        if renamed:
            raise ConfigError("; ".join(f"{key} is now called {RENAMED_KEYS[key]}"
                                        for key in renamed))
        for key, value in run_config.items():
            name = key.replace("-", "_")
            if name not in known or "_" in key:
                raise ConfigError(unknown_key_message(key))
            values[name] = _coerce(key, value, known[name].type)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Check every value; raise `ConfigError` on the first bad one."""
        _one_of("model", self.model, MODEL_NAMES)
        _one_of("neuron", self.neuron, NEURONS)
        _one_of("surrogate", self.surrogate, SURROGATES)
        _one_of("encoding", self.encoding, ENCODINGS)
        _one_of("partitioner", self.partitioner, PARTITIONERS)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("update-mode", self.update_mode, UPDATE_MODES)
        _one_of("audit-ground-truth", self.audit_ground_truth, GROUND_TRUTHS)
        _one_of("client-randomness", self.client_randomness, CLIENT_RANDOMNESS)
        _positive_int("num-server-rounds", self.num_server_rounds)
        _positive_int("time-steps", self.time_steps)
        _positive_int("mlp-hidden", self.mlp_hidden)
        _positive_int("local-epochs", self.local_epochs)
        _positive_int("batch-size", self.batch_size)
        _positive_int("min-available-nodes", self.min_available_nodes)
        if self.image_size < 8:
            raise ConfigError(f"image-size: expected an integer >= 8, got {self.image_size}")
        if self.max_train_samples < 0:
            raise ConfigError(f"max-train-samples: expected an integer >= 0 (0: all), got "
                              f"{self.max_train_samples}")
        _fraction("fraction-train", self.fraction_train)
        _fraction("fraction-evaluate", self.fraction_evaluate)
        if not 0.0 <= self.local_test_fraction < 1.0:
            raise ConfigError(
                f"local-test-fraction: expected a number in [0, 1), got {self.local_test_fraction}")
        _positive_float("learning-rate", self.learning_rate)
        _positive_float("dirichlet-alpha", self.dirichlet_alpha)
        _positive_float("tau", self.tau)
        _positive_float("v-threshold", self.v_threshold)
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum: expected a number in [0, 1), got {self.momentum}")
        if self.encoding != "direct" and not self.is_spiking:
            raise ConfigError(
                f"encoding: {self.encoding!r} needs a spiking model (*-snn); "
                f"the ANN {self.model!r} takes images directly (use 'direct')")
        if not self.dataset:
            raise ConfigError("dataset: expected 'digits', 'mnist:<dir>' or 'hf:<name>', got ''")
        _validate_event_data(self)
        _validate_robust(self)
        _validate_defenses(self)
        _validate_firewall(self)
        _validate_deployment(self)


def known_keys() -> list[str]:
    """Every run-config key, kebab-case."""
    return [f.name.replace("_", "-") for f in dataclasses.fields(RunConfig)]


def unknown_key_message(key: str) -> str:
    """One line naming an unknown key and the closest known one (difflib), if any is close."""
    close = difflib.get_close_matches(key.replace("_", "-"), known_keys(), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "see docs/configuration.md for every key"
    return f"{key}: unknown run-config key; {hint}"


def _validate_event_data(config: RunConfig) -> None:
    """Event datasets hold spike frames [T, 2, H, W]: they need a spiking model with the `frames`
    encoding and `time-steps` equal to their frame count; `frames` needs an event dataset."""
    from fedsnn.core.data.dvs import event_frames  # here: fedsnn.core.data imports torch

    try:
        frames = event_frames(config.dataset)
    except ValueError as error:
        raise ConfigError(f"dataset: {error}") from None
    if frames is None:
        if config.encoding == "frames":
            raise ConfigError("encoding: 'frames' needs an event dataset ('dvs-digits', "
                              "'dvsgesture:<dir>'); image datasets use 'direct' or 'poisson'")
        return
    if config.encoding != "frames":
        raise ConfigError(f"encoding: dataset {config.dataset!r} holds spike frames; use "
                          f"encoding='frames' with a spiking model (*-snn)")
    if config.time_steps != frames:
        raise ConfigError(f"time-steps: dataset {config.dataset!r} has {frames} frames per sample "
                          f"but time-steps={config.time_steps}; set time-steps={frames} (or "
                          f"frames=<T> in the dataset spec)")
    if config.audit_enabled:
        raise ConfigError("audit-enabled: the in-line audit scores image reconstructions; set "
                          "audit-enabled=false for event datasets (`fedsnn bench --dataset "
                          "dvs-digits` attacks them in the spike domain)")


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Convert a run-config scalar to the field's type, or say which key is wrong."""
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "str":
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {kind}, got {value!r}") from None
    return value


def _one_of(key: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ConfigError(f"{key}: unknown value {value!r}; expected one of {', '.join(accepted)}")


def _positive_int(key: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{key}: expected a positive integer, got {value}")


def _positive_float(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{key}: expected a positive number, got {value}")


def _fraction(key: str, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{key}: expected a fraction in (0, 1], got {value}")



# -- defenses (DP) --
DEFENSES = ("central-dp", "local-dp", "dp-sgd", "spike-dp")
DP_ACCOUNTANTS = ("rdp", "pld")
CENTRAL_DP_CLIPPING = ("server-fixed", "client-fixed", "server-adaptive", "client-adaptive")
SPIKE_DP_MECHANISMS = ("randomized-response", "subsample")


def defense_names(config: RunConfig) -> tuple[str, ...]:
    """The defenses a run composes, from the comma-separated `defenses` key."""
    return tuple(name.strip() for name in config.defenses.split(",") if name.strip())


def _value(config: RunConfig, key: str) -> Any:
    return getattr(config, key.replace("-", "_"))


def _validate_defenses(config: RunConfig) -> None:
    """DP settings; central DP around anything but the plain mean stops the run here (its noise
    z*C/m bounds the sensitivity of a mean of m clipped updates, not of a median or Krum)."""
    names = defense_names(config)
    for name in names:
        _one_of("defenses", name, DEFENSES)
    if not 0.0 < config.dp_delta < 1.0:
        raise ConfigError(f"dp-delta: expected a number in (0, 1), got {config.dp_delta}")
    _one_of("dp-accountant", config.dp_accountant, DP_ACCOUNTANTS)
    _one_of("central-dp-clipping", config.central_dp_clipping, CENTRAL_DP_CLIPPING)
    _one_of("spike-dp-mechanism", config.spike_dp_mechanism, SPIKE_DP_MECHANISMS)
    for prefix, norm_key in (("central-dp", "central-dp-clipping-norm"),
                             ("local-dp", "local-dp-clipping-norm"),
                             ("dp-sgd", "dp-sgd-max-grad-norm")):
        _positive_float(norm_key, _value(config, norm_key))
        noise = _value(config, f"{prefix}-noise-multiplier")
        target = _value(config, f"{prefix}-target-epsilon")
        if target < 0 or (target == 0 and not noise > 0):
            raise ConfigError(f"{prefix}-noise-multiplier: expected a positive number (or a "
                              f"positive {prefix}-target-epsilon), got {noise}")
    _positive_float("spike-dp-epsilon-bit", config.spike_dp_epsilon_bit)
    if not 0.0 <= config.spike_dp_keep_probability < 1.0:
        raise ConfigError(f"spike-dp-keep-probability: expected a number in [0, 1), got "
                          f"{config.spike_dp_keep_probability}")
    if config.spike_dp_budget < 0:
        raise ConfigError(f"spike-dp-budget: expected 0 (none) or a positive epsilon, got "
                          f"{config.spike_dp_budget}")
    _positive_int("dp-audit-canaries", config.dp_audit_canaries)
    if not 0.0 < config.dp_audit_confidence < 1.0:
        raise ConfigError(f"dp-audit-confidence: expected a number in (0, 1), got "
                          f"{config.dp_audit_confidence}")
    if "central-dp" in names and (config.aggregator != "fedavg" or config.norm_filter):
        raise ConfigError(f"defenses: central-dp needs aggregator 'fedavg' without norm-filter "
                          f"(its noise z*C/m is sized for the mean of m clipped updates; "
                          f"{config.aggregator!r} has another sensitivity)")


# -- robust aggregation / Byzantine clients --
AGGREGATORS = ("fedavg", "median", "krum", "multikrum", "trimmed-mean", "bulyan")
BYZANTINE_ATTACKS = ("none", "sign-flip", "constant", "gaussian", "label-flip", "alie", "ipm",
                     "min-max", "min-sum", "gradient-suppression", "stealth-suppression")
# Fewest updates per round with which an aggregator tolerates f Byzantine ones.
MIN_UPDATES: dict[str, Callable[[int], int]] = {
    "fedavg": lambda f: 1,
    "median": lambda f: 2 * f + 1,
    "krum": lambda f: 2 * f + 3,
    "multikrum": lambda f: 2 * f + 3,
    "trimmed-mean": lambda f: 1,
    "bulyan": lambda f: 4 * f + 3,
}


def _validate_robust(config: RunConfig) -> None:
    """Aggregator and Byzantine settings; an aggregator that cannot tolerate `assumed-byzantine`
    with the fewest nodes a round can have (`min-available-nodes`) stops the run here."""
    _one_of("aggregator", config.aggregator, AGGREGATORS)
    _one_of("byzantine-attack", config.byzantine_attack, BYZANTINE_ATTACKS)
    for key, value in (("assumed-byzantine", config.assumed_byzantine),
                       ("num-byzantine", config.num_byzantine),
                       ("multikrum-select", config.multikrum_select)):
        if value < 0:
            raise ConfigError(f"{key}: expected an integer >= 0, got {value}")
    if not 0.0 <= config.trimmed_beta < 0.5:
        raise ConfigError(f"trimmed-beta: expected a number in [0, 0.5), got {config.trimmed_beta}")
    if config.norm_filter != 0.0 and not config.norm_filter >= 1.0:
        raise ConfigError(f"norm-filter: expected 0 (off) or a factor >= 1 over the other "
                          f"updates' median norm, got {config.norm_filter}")
    if not config.byzantine_scale >= 0.0:
        raise ConfigError(f"byzantine-scale: expected a number >= 0 (0: the attack's default), "
                          f"got {config.byzantine_scale}")
    n, f = config.min_available_nodes, config.assumed_byzantine
    needed = MIN_UPDATES[config.aggregator](f)
    if n < needed:
        raise ConfigError(f"aggregator: {config.aggregator!r} with assumed-byzantine={f} needs "
                          f"at least {needed} nodes per round, but min-available-nodes={n}; raise "
                          f"min-available-nodes to {needed} or lower assumed-byzantine")
    if config.aggregator == "trimmed-mean" and int(config.trimmed_beta * n) < f:
        trimmed = int(config.trimmed_beta * n)
        raise ConfigError(f"trimmed-beta: {config.trimmed_beta} trims {trimmed} of {n} updates "
                          f"per side, fewer than assumed-byzantine={f}; raise trimmed-beta to "
                          f"at least {f / n:.3g}")
    if config.aggregator == "multikrum" and config.multikrum_select > n - f:
        raise ConfigError(f"multikrum-select: {config.multikrum_select} exceeds "
                          f"min-available-nodes - assumed-byzantine = {n - f}; use 0 (n - f) or a "
                          f"smaller number")


# -- the client's privacy firewall --
FIREWALL_MODES = ("off", "report", "enforce")
FIREWALL_ACTIONS = ("hold", "harden", "allow")


def _validate_firewall(config: RunConfig) -> None:
    """The firewall's mode, action, cadence, budget and level (its withheld capabilities are
    checked where its threat model is built, `fedsnn.audit.firewall`)."""
    _one_of("firewall", config.firewall, FIREWALL_MODES)
    _one_of("firewall-action", config.firewall_action, FIREWALL_ACTIONS)
    _positive_int("firewall-every", config.firewall_every)
    _positive_int("firewall-harden-steps", config.firewall_harden_steps)
    _positive_float("firewall-time-budget-s", config.firewall_time_budget_s)
    if not 0.0 < config.firewall_level < 1.0:
        raise ConfigError(f"firewall-level: expected a number in (0, 1), got {config.firewall_level}")


# -- deployment (failures, checkpoints) --
def _validate_deployment(config: RunConfig) -> None:
    """Timeouts, the minimum of replies per round and the norm factor of reply validation.
    `resume-from` is checked by the ServerApp, the only one that reads it."""
    _positive_float("round-timeout", config.round_timeout)
    _positive_float("node-wait-timeout", config.node_wait_timeout)
    _positive_int("min-train-replies", config.min_train_replies)
    if config.reject_norm_factor != 0.0 and not config.reject_norm_factor > 1.0:
        raise ConfigError("reject-norm-factor: expected 0 (off) or a number > 1, "
                          f"got {config.reject_norm_factor}")
    if config.max_num_examples < 0:
        raise ConfigError("max-num-examples: expected 0 (derive from the dataset) or a positive "
                          f"integer, got {config.max_num_examples}")
