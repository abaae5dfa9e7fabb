"""``--set key.path=value`` overrides of a config mapping (the value is YAML).

The one override syntax: dotted key paths, as ``--set`` takes them on the command line, or as a
mapping ``{"key.path": value}`` from Python (``override_list`` turns one into the other).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from .errors import ConfigError, printable
from .yaml_reader import parse_yaml


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'tumor.cycle_time_h=30'`` -> (['tumor', 'cycle_time_h'], 30); the value is YAML."""
    shown = _set_text(text)
    if "=" not in text:
        raise ConfigError(f"--set {shown}: expected key.path=value")
    key, _, raw = text.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"--set {shown}: empty key path")
    value = parse_yaml(raw, f"--set {shown}") if raw.strip() else ""
    return parts, value


def _set_text(text: str) -> str:
    return printable(text if len(text) <= 80 else text[:77] + "...")


def yaml_value(value: Any) -> str:
    """A value as YAML text that reads back exactly (JSON's ``1e-05`` would read back as text).

    Used to turn Python keyword overrides and sweep values into ``key.path=value`` strings.
    """
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30)
    return text.removesuffix("\n").removesuffix("\n...").strip()


#: what Python callers may pass as overrides
Overrides = Mapping[str, Any] | Sequence[str] | None


def override_list(overrides: Overrides) -> list[str]:
    """``key.path=value`` strings from a mapping ``{"key.path": value}`` (values as Python
    objects) or a list of such strings (values as YAML text)."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={yaml_value(value)}" for key, value in overrides.items()]
    if isinstance(overrides, str):
        raise ConfigError(f"overrides: give a mapping {{'key.path': value}} or a list of "
                          f"'key.path=value' strings, not the string {_set_text(overrides)!r}")
    return list(overrides)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return ``data`` with each ``key.path=value`` set (list items by index: ``doses.0.day``).

    A key path through an optional block that is missing or null (``car_t.composition``,
    ``car_t.armour.il12`` of a resolved config) starts that block as a new mapping."""
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = data
        for part in parts[:-1]:
            node = _child(node, part, text, create=True)
        last = parts[-1]
        if isinstance(node, list):
            node[_index(node, last, text)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {_set_text(text)}: {'.'.join(parts[:-1])} is not a mapping")
    return data


def _index(node: list, part: str, text: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {_set_text(text)}: {part!r} is not an index of a list of "
                          f"{len(node)}")
    return int(part)


def _child(node: Any, part: str, text: str, create: bool) -> Any:
    if isinstance(node, list):
        node = node[_index(node, part, text)]
        return node
    if not isinstance(node, dict):
        raise ConfigError(f"--set {_set_text(text)}: cannot descend into {part!r}")
    if create and node.get(part) is None:  # a missing or omitted (null) optional block
        node[part] = {}
    return node[part]


def _dotted(key_path: str) -> str:
    """A key path of a message (``dosing.doses[0].day``) in ``--set`` form (``dosing.doses.0.day``)."""
    return re.sub(r"\[(\d+)\]", r".\1", key_path)


def blame_overrides(message: str, source: str, overrides: Sequence[str]) -> str:
    """``message`` (lines ``source: key.path: problem``) with each line whose key path an
    override set (the path itself, or a key inside a block it set) blamed on that override
    instead of on the file: ``--set car_t.max_kill=5 (on configs/b_all_cd19.yaml):
    car_t.max_kill: unknown key``. The last override of a path wins, as in
    ``apply_overrides``."""
    set_paths = {".".join(parse_override(text)[0]): text for text in overrides}
    lines = []
    for line in message.splitlines():
        rest = line.removeprefix(f"{source}: ")
        key_path = _dotted(rest.partition(": ")[0])
        text = next((text for path, text in reversed(set_paths.items())
                     if key_path == path or key_path.startswith(f"{path}.")), None)
        lines.append(f"--set {_set_text(text)} (on {source}): {rest}"
                     if text is not None and rest != line else line)
    return "\n".join(lines)
