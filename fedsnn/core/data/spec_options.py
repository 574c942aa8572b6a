"""`<dir>[,key=value…][,flag…]` arguments of folder-based dataset specs (`cifar100:`, `lfw:`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fedsnn.core.data.base import DatasetError


def parse_folder_options(kind: str, argument: str, options: Mapping[str, Callable[[str], object]],
                         usage: str) -> tuple[str, dict[str, object]]:
    """The folder and the options of `argument`; `options` maps each accepted key to its parser.

    Raises:
        DatasetError: no folder, an unknown key or a value its parser rejects (one line).

    Example:
        >>> parse_folder_options("cifar100", "/data/c,labels=coarse", {"labels": str}, "…")
        ('/data/c', {'labels': 'coarse'})
    """
    folder, *parts = [part.strip() for part in argument.split(",")]
    if not folder or "=" in folder:
        raise DatasetError(f"{kind}: expected {usage}, got {kind}:{argument!r}")
    values: dict[str, object] = {}
    for part in parts:
        key, _, value = part.partition("=")
        if key not in options or not value:
            raise DatasetError(f"{kind}: unknown option {part!r}; expected {usage}")
        try:
            values[key] = options[key](value)
        except ValueError as error:
            raise DatasetError(f"{kind}: option {key}={value!r}: {error}") from None
    return folder, values


def positive_int(text: str) -> int:
    """An integer >= 1 (ValueError otherwise)."""
    value = int(text)
    if value < 1:
        raise ValueError("expected an integer >= 1")
    return value


def one_of(*accepted: str) -> Callable[[str], str]:
    """A parser that accepts only `accepted` values."""
    def parse(text: str) -> str:
        if text not in accepted:
            raise ValueError(f"expected one of {list(accepted)}")
        return text
    return parse
