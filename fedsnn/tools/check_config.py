"""A pre-flight check of `flwr run --run-config` overrides, for scripts (`fedsnn check-config`).

Flower refuses an unknown key itself, before the app runs, as "Invalid run configuration"
without naming it; this check names it, with the closest known key, and checks every value the
way the ServerApp will. Given the federation it will run on (`flwr run --federation-config`, e.g.
"num-supernodes=5"), it also checks the settings that count nodes against it: a run that asks for
more nodes or replies than there are fails only after waiting, or after a full round.
"""

from __future__ import annotations

from fedsnn.core.config import ConfigError, RunConfig


def check_overrides(overrides: str, federation: str = "") -> str | None:
    """The problem with `overrides` ("key=value ..." in TOML, as `flwr run` takes them), in one
    line; None when the run config they give is valid, also on the federation `federation`
    describes (as `flwr run --federation-config` takes it; "": not known).

    Example:
        >>> check_overrides("num-server-round=3")
        "num-server-round: unknown run-config key; did you mean 'num-server-rounds'?"
        >>> check_overrides("num-server-rounds=3 model='lenet-snn'") is None
        True
        >>> check_overrides("min-train-replies=6", "num-supernodes=5")
        'min-train-replies: 6 replies asked for, but a round samples 5 of the 5 nodes'
    """
    from flwr.common.config import parse_config_args

    try:
        values = parse_config_args([overrides]) if overrides.strip() else {}
    except Exception as error:  # noqa: BLE001 - Flower's parser raises several kinds
        return f"cannot parse {overrides!r}: {str(error).splitlines()[0]}"
    try:
        config = RunConfig.from_mapping(values)
    except ConfigError as error:
        return str(error)
    if not federation.strip():
        return None
    try:
        nodes = parse_config_args([federation]).get("num-supernodes")
    except Exception as error:  # noqa: BLE001
        return f"cannot parse the federation config {federation!r}: {str(error).splitlines()[0]}"
    return None if nodes is None else federation_problem(config, int(nodes))


def federation_problem(config: RunConfig, nodes: int) -> str | None:
    """Why `config` cannot run on a federation of `nodes` nodes, in one line; None when it can.
    A round samples max(fraction-train x nodes, min-available-nodes) of them, as FedAvg does."""
    if nodes < 1:
        return f"num-supernodes: expected a positive integer, got {nodes}"
    if config.min_available_nodes > nodes:
        return (f"min-available-nodes: {config.min_available_nodes}, but the federation has "
                f"{nodes} nodes (the run would wait node-wait-timeout, then stop)")
    sampled = min(nodes, max(int(nodes * config.fraction_train), config.min_available_nodes))
    if config.min_train_replies > sampled:
        return (f"min-train-replies: {config.min_train_replies} replies asked for, but a round "
                f"samples {sampled} of the {nodes} nodes")
    if config.num_byzantine > nodes:
        return f"num-byzantine: {config.num_byzantine}, but the federation has {nodes} nodes"
    return None
