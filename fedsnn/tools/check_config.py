"""A pre-flight check of `flwr run --run-config` overrides, for scripts (`fedsnn check-config`).

Flower refuses an unknown key itself, before the app runs, as "Invalid run configuration"
without naming it; this check names it, with the closest known key, and checks every value the
way the ServerApp will.
"""

from __future__ import annotations

from fedsnn.core.config import ConfigError, RunConfig


def check_overrides(overrides: str) -> str | None:
    """The problem with `overrides` ("key=value ..." in TOML, as `flwr run` takes them), in one
    line; None when the run config they give is valid.

    Example:
        >>> check_overrides("num-server-round=3")
        "num-server-round: unknown run-config key; did you mean 'num-server-rounds'?"
        >>> check_overrides("num-server-rounds=3 model='lenet-snn'") is None
        True
    """
    from flwr.common.config import parse_config_args

    try:
        values = parse_config_args([overrides]) if overrides.strip() else {}
    except Exception as error:  # noqa: BLE001 - Flower's parser raises several kinds
        return f"cannot parse {overrides!r}: {str(error).splitlines()[0]}"
    try:
        RunConfig.from_mapping(values)
    except ConfigError as error:
        return str(error)
    return None
