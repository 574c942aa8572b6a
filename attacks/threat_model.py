"""What the curious server knows: a declared threat model, and the needs each attack declares.

A `ThreatModel` lists the server's capabilities (LeakPro style); every attack declares the
capabilities it needs (`NEEDS` in `attacks/__init__.py`, `Capability` names), and `refusal`
says in one line why an attack cannot run under a threat model (None when it can). The plan
refuses such an attack instead of running it on knowledge the server was not granted.

Example:
    >>> weak = ThreatModel().withhold("local-epochs")
    >>> refusal("unrolled", UNROLLED_NEEDS, weak)
    "attack 'unrolled' needs local-epochs, which the threat model withholds"
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

# Capability names, as they appear in NEEDS, the run config (`audit-withhold`) and audit.json.
GLOBAL_WEIGHTS = "global-weights"
REPLY_WEIGHTS = "reply-weights"
NUM_EXAMPLES = "num-examples"
UPDATE_MODE = "update-mode"
OPTIMIZER = "optimizer"
LOCAL_EPOCHS = "local-epochs"
BATCH_SIZE = "batch-size"
DATA_FORMAT = "data-format"
CLIENT_RANDOMNESS = "client-randomness"
PUBLIC_DATA = "public-data"


@dataclass(frozen=True)
class ThreatModel:
    """The honest-but-curious server's knowledge in one run. Defaults: what a Flower server that
    configured the clients' training knows; the two stronger capabilities are off."""

    global_weights: bool = True
    """The global weights the server sent this round (parameters and buffers)."""
    reply_weights: bool = True
    """The weights (or FedSGD step) the client replied with."""
    num_examples: bool = True
    """The reply's `num-examples` and `local-steps` metrics (Flower reports them)."""
    update_mode: bool = True
    """Whether the client ran one FedSGD step or FedAvg local epochs (the server sets it)."""
    optimizer: bool = True
    """The client's optimizer and its hyper-parameters: name, learning rate, momentum."""
    local_epochs: bool = True
    """The number of local epochs E (the server sent it in the train config)."""
    batch_size: bool = True
    """The client's local batch size (the server sent it in the train config)."""
    data_format: bool = True
    """The dataset's input format, from the dataset the run config names: the native resolution
    its images were made at before being resized to the model's input (digits: 8x8 upsampled to
    28x28; `fedsnn.core.image_format`). A prior on the data, not on the update: attacks that use it
    optimize images at that resolution (`Observation.native_size`); none needs it."""
    client_randomness: bool = False
    """The client's batch order and Poisson draws: today they follow from the run seed, the round
    and the partition id (`clients.node.NodeSetup.round_seed`), so a server that knows the seed
    can derive them. A stronger threat model; off unless granted."""
    public_data: bool = False
    """Public same-domain images ("surrogate data", e.g. a held-out split) to train decoders or
    priors on. Off unless granted."""

    @staticmethod
    def capability_names() -> tuple[str, ...]:
        """Every capability name, in declaration order ("global-weights", …)."""
        return tuple(f.name.replace("_", "-") for f in fields(ThreatModel))

    def granted(self) -> frozenset[str]:
        """The names of the granted capabilities."""
        return frozenset(name for name in self.capability_names()
                         if getattr(self, name.replace("-", "_")))

    def _set(self, names: Iterable[str], value: bool) -> ThreatModel:
        names = list(names)
        unknown = sorted(set(names) - set(self.capability_names()))
        if unknown:
            raise ValueError(f"unknown capability {unknown[0]!r}; expected one of "
                             f"{list(self.capability_names())}")
        return replace(self, **{name.replace("-", "_"): value for name in names})

    def withhold(self, *names: str) -> ThreatModel:
        """A copy without these capabilities (to audit a weaker server).

        Raises:
            ValueError: an unknown capability name.
        """
        return self._set(names, False)

    def grant(self, *names: str) -> ThreatModel:
        """A copy with these capabilities (to audit a stronger server).

        Raises:
            ValueError: an unknown capability name.
        """
        return self._set(names, True)

    def to_dict(self) -> dict[str, Any]:
        """{"granted": [...], "withheld": [...]} for audit.json."""
        granted = self.granted()
        return {"granted": [n for n in self.capability_names() if n in granted],
                "withheld": [n for n in self.capability_names() if n not in granted]}

    def describe(self) -> str:
        """One line for logs and reports."""
        table = self.to_dict()
        return (f"knows {', '.join(table['granted'])}; withheld: "
                f"{', '.join(table['withheld']) or 'nothing'}")


# What the gradient attacks of today need: the two weight sets, the learning rate (optimizer) and
# num-examples / local-steps to turn the update into a gradient estimate of the right batch size.
GRADIENT_NEEDS = frozenset({GLOBAL_WEIGHTS, REPLY_WEIGHTS, NUM_EXAMPLES, OPTIMIZER})
# The unrolled FedAvg attack also replays the client's local training.
UNROLLED_NEEDS = GRADIENT_NEEDS | {UPDATE_MODE, LOCAL_EPOCHS, BATCH_SIZE}
# ... and, in its stronger variant, replays the client's exact batch order.
UNROLLED_SHUFFLE_NEEDS = UNROLLED_NEEDS | {CLIENT_RANDOMNESS}


def refusal(attack: str, needs: Iterable[str], threat_model: ThreatModel) -> str | None:
    """Why `attack` cannot run under `threat_model` (one line), or None when every need is granted.

    Raises:
        ValueError: `needs` names an unknown capability (a programming error in a declaration).
    """
    needs = set(needs)
    unknown = sorted(needs - set(ThreatModel.capability_names()))
    if unknown:
        raise ValueError(f"attack {attack!r} declares unknown capability {unknown[0]!r}")
    missing = [n for n in ThreatModel.capability_names() if n in needs - threat_model.granted()]
    if not missing:
        return None
    return f"attack {attack!r} needs {', '.join(missing)}, which the threat model withholds"
