"""A loop policy from a TOML file (``minder backtest --policy FILE``): its ``[loop]`` table,
checked exactly as ``minder.toml``'s is."""

from __future__ import annotations

import tomllib
from pathlib import Path

from modelminder.errors import ConfigError
from modelminder.project import LoopConfig


def read_policy(path: Path) -> LoopConfig:
    """The ``[loop]`` table of ``path``; errors name the file and the key."""
    if not path.exists():
        raise ConfigError(f"The policy file {path} does not exist.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from exc
    table = data.get("loop")
    if not isinstance(table, dict):
        raise ConfigError(f"{path} must have a [loop] table (the keys of minder.toml's [loop]).")
    unknown = set(table) - set(LoopConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(
            f"{path} has unknown key(s) {', '.join(f'[loop].{k}' for k in sorted(unknown))}. "
            f"[loop] takes {', '.join(LoopConfig.__dataclass_fields__)}."
        )
    try:
        return LoopConfig(**table)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
