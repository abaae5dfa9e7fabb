"""Every parameter default has one home: the config schema (simulation/config/schema.py).

* No shipped config file restates a value it would inherit anyway (from the file it extends,
  else from the schema): a restated default is a second home that silently disagrees once
  the first one moves.
* docs/parameters.md, which gives each default its source, shows the schema's value in its
  ``default`` column: a test, not a copy kept by hand, so the page cannot drift from the code.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from simulation.config import file_kind
from simulation.config.schema import ScenarioConfig
from simulation.config.yaml_reader import load_with_extends, read_yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
PARAMETERS_PAGE = ROOT / "docs" / "parameters.md"
#: labels, not parameters: a file may name itself like its parent
NOT_PARAMETERS = {"name", "description", "extends"}


def _submodel(annotation: typing.Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``Model`` or ``Model | None``), else None."""
    candidates = typing.get_args(annotation) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


_NO_DEFAULT = object()


def schema_default(path: tuple[str, ...], model: type[BaseModel] = ScenarioConfig) -> object:
    """The schema's default at a key path of mappings, or ``_NO_DEFAULT`` (required, inside a
    list, or in a block the schema builds on demand)."""
    field = model.model_fields.get(path[0])
    if field is None:
        return _NO_DEFAULT
    if len(path) == 1:
        return field.default if not field.is_required() else _NO_DEFAULT
    inner = _submodel(field.annotation)
    return _NO_DEFAULT if inner is None else schema_default(path[1:], inner)


def leaves(data: dict, prefix: tuple[str, ...] = ()):
    """(key path, value) of every scalar reached through mappings only (lists are whole)."""
    for key, value in data.items():
        if isinstance(value, dict):
            yield from leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def value_at(data: dict, path: tuple[str, ...]) -> object:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return _NO_DEFAULT
        data = data[key]
    return data


def scenario_files() -> list[Path]:
    """Every shipped scenario file (studies, sweeps, trials and fits name scenarios, and set
    study settings, not parameter defaults)."""
    return [path for path in sorted(CONFIGS.rglob("*.yaml"))
            if file_kind(read_yaml(path, str(path))) == "scenario"]


def restated(path: Path) -> list[str]:
    """The keys ``path`` sets to the value it would inherit without them."""
    own = read_yaml(path, str(path))
    parent_name = own.get("extends")
    inherited = load_with_extends(path.parent / parent_name) if parent_name else {}
    found = []
    for key_path, value in leaves(own):
        if key_path[-1] in NOT_PARAMETERS and len(key_path) == 1:
            continue
        before = value_at(inherited, key_path)
        if before is _NO_DEFAULT:
            before = schema_default(key_path)
        # a flag restates only a flag (False == 0, but a flag is no number)
        same_kind = isinstance(before, bool) == isinstance(value, bool)
        if before is not _NO_DEFAULT and same_kind and before == value:
            found.append(f"{'.'.join(key_path)}: {value!r}")
    return found


def test_the_check_finds_a_restated_default(tmp_path):
    """The check itself can fail: a file that restates the schema's kill rate and its
    parent's seed is caught, and a value that differs is not."""
    kill_rate = ScenarioConfig.model_fields["car_t"].default_factory().kill_rate_per_h
    (tmp_path / "parent.yaml").write_text("seed: 3\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: parent.yaml\nseed: 3\ncar_t: {{kill_rate_per_h: {kill_rate}, "
                     "max_kills: 4}\n")
    assert restated(child) == ["seed: 3", f"car_t.kill_rate_per_h: {kill_rate!r}"]


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_no_config_restates_an_inherited_value(path):
    assert restated(path) == [], (
        f"{path.relative_to(ROOT)} restates values it inherits (from the file it extends, else "
        "the schema's default): drop them, or change the default in one place")


# --- docs/parameters.md -----------------------------------------------------------------------

#: the page's section headings -> the schema key path their rows live under
SECTIONS = {"Top level": (), "lattice": ("lattice",), "time": ("time",), "tumor": ("tumor",),
            "tumor.antigen": ("tumor", "antigen"), "car_t": ("car_t",), "dosing": ("dosing",),
            "dosing.lymphodepletion": ("dosing", "lymphodepletion"), "blood": ("blood",),
            "tissue": ("tissue",), "microenvironment": ("microenvironment",),
            "clinical": ("clinical",)}


def page_defaults() -> list[tuple[tuple[str, ...], str]]:
    """(schema key path, text of the ``default`` cell) of every row of docs/parameters.md
    whose section maps onto the schema."""
    rows, section = [], None
    for line in PARAMETERS_PAGE.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#{3,4} (\S+)", line)
        if heading:
            name = heading.group(1)
            section = SECTIONS.get("Top level" if name == "Top" else name)
            continue
        cell = re.match(r"\| `([a-z0-9_.]+)` \| [^|]* \| ([^|]*) \|", line)
        if section is not None and cell:
            key_path = (*section, *cell.group(1).split("."))
            rows.append((key_path, cell.group(2).strip()))
    return rows


def _number(text: str) -> float | None:
    match = re.fullmatch(r"`?(-?[0-9][0-9,]*\.?[0-9]*(?:e-?[0-9]+)?)`?", text.strip())
    return float(match.group(1).replace(",", "")) if match else None


def test_the_parameters_page_shows_the_schema_defaults():
    rows = page_defaults()
    assert len(rows) > 80, "docs/parameters.md: the tables were not found"
    wrong, compared = [], 0
    for key_path, shown in rows:
        default = schema_default(key_path)
        if default is _NO_DEFAULT or default is None:
            continue
        if isinstance(default, bool):
            ok = shown.strip("`").lower() == str(default).lower()
        elif isinstance(default, (int, float)):
            ok = _number(shown) is not None and _number(shown) == pytest.approx(default)
        elif isinstance(default, str):
            ok = shown.strip("`").strip('"') == default
        else:
            continue  # lists and blocks are described in words
        compared += 1
        if not ok:
            wrong.append(f"{'.'.join(key_path)}: page {shown!r}, schema {default!r}")
    assert wrong == []
    assert compared > 80  # most rows hold a number, a flag or a word the schema also holds
