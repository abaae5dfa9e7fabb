"""Fuzzing the config front door: malformed files never crash ``cartsim run`` or leave output.

Every example starts from a valid small scenario (``conftest.TINY_SCENARIO``, as written or with
every default filled in) and breaks it in one way: a wrong type, a value outside its range
(negative or zero rates, NaN, infinity), an unknown key, a missing required key, a unit suffix
that does not exist (``cycle_time_days`` for ``cycle_time_h``), a non-text or duplicated key, a
dose after the end of the run, a timer too long for the time step, a lattice too large for the
machine, or a broken file (empty, not UTF-8, a list or a scalar, YAML syntax errors, deep
nesting, alias bombs, ``!!python/...`` tags that would run a shell command). Each is run through
``simulation.cli.main(["run", ...])`` in-process, and must give exit code 2 and one
``cartsim: error: FILE: KEY.PATH: ...`` line per problem, with no traceback, no output folder
and no ``PWNED`` file. Reaching the simulation at all counts as a failure: ``CarTModel`` is
patched to raise, so an accepted bad config fails fast instead of running.

Run with ``-s`` to see how many inputs were tried, by kind.
"""

from __future__ import annotations

import collections
import copy
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO_ROOT, TINY_SCENARIO
from simulation import cli
from simulation import model
from simulation.config import ConfigError, ScenarioConfig, checks
from simulation.biology.scenario import build_lattice

settings.register_profile(
    "bad_configs", parent=settings.get_profile("cartsim"), max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much])

#: the valid scenario as written (sparse) and with every key present (defaults filled in)
SPARSE = copy.deepcopy(TINY_SCENARIO)
FULL = ScenarioConfig.model_validate(SPARSE).model_dump(mode="json")
SCHEMA = ScenarioConfig.model_json_schema()
PWNED_TAG = '!!python/object/apply:os.system ["echo hacked > PWNED"]'
EVIL_TAGS = [
    PWNED_TAG,
    '!!python/object/new:os.system ["echo hacked > PWNED"]',
    "!!python/name:os.system",
    "!!python/module:os",
    '!!python/object/apply:subprocess.check_output [["touch", "PWNED"]]',
]
UNIT_SUFFIXES = ("_h", "_min", "_days", "_s", "_um", "_per_day", "_per_h", "_per_min",
                 "_um_per_min", "_um_per_s", "_molecules_per_cell", "_hours", "_day")
LINE = re.compile(r"^cartsim: error: (?P<file>[^:]+\.yaml): (?P<rest>.+)$")

TRIED: collections.Counter = collections.Counter()


@dataclass
class Case:
    """One malformed input: files to write, the one to run, what the message must name."""

    kind: str
    files: dict[str, bytes]
    main: str = "bad.yaml"
    #: at least one error line must contain one of these (key paths, or a file-level problem)
    names: tuple[str, ...] = ()
    #: every line of the message must come from one of these files
    error_files: tuple[str, ...] = ("bad.yaml",)
    notes: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# the schema, walked by key path
# ---------------------------------------------------------------------------------------------
def _resolve(node: dict) -> dict:
    while True:
        if "$ref" in node:
            node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        elif "anyOf" in node:
            (node,) = [o for o in node["anyOf"] if o.get("type") != "null"]
        else:
            return node


def _nullable(node: dict) -> bool:
    return any(o.get("type") == "null" for o in node.get("anyOf", ()))


def schema_at(path: tuple) -> tuple[dict, bool]:
    """(schema node, accepts null) of the key at ``path``."""
    node = SCHEMA
    for part in path:
        node = _resolve(node)
        node = node["items"] if isinstance(part, int) else node["properties"][part]
    return _resolve(node), _nullable(node)


def shown(path: tuple) -> str:
    """A key path as the error messages print it: ``dosing.doses[0].day``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + part
    return text


def walk(data, path=()):
    """Every (path, value) in ``data``, containers included, depth first."""
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from walk(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from walk(value, (*path, i))


LEAVES = [p for p, v in walk(FULL) if p and not isinstance(v, (dict, list))]
MAPPINGS = [p for p, v in walk(FULL) if isinstance(v, dict)]
CONTAINERS = [p for p, v in walk(FULL) if p and isinstance(v, (dict, list))]
REQUIRED = [(*p, key) for p in MAPPINGS for key in schema_at(p)[0].get("required", ())]
UNIT_KEYS = [p for p in LEAVES if isinstance(p[-1], str)
             and any(p[-1].endswith(s) for s in UNIT_SUFFIXES)]


def get(data, path):
    for part in path:
        data = data[part]
    return data


def mapping_at(data, path) -> dict:
    """The mapping at ``path`` in ``data``, created (empty) where the sparse scenario has none."""
    for part in path:
        data = data.setdefault(part, {}) if isinstance(data, dict) else data[part]
    return data


def put(data, path, value):
    mapping_at(data, path[:-1])[path[-1]] = value


def dump(data) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------
finite = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(max_size=12)
plain_scalars = st.one_of(st.integers(-5, 5), finite, text, st.booleans())
bases = st.sampled_from(["sparse", "full"]).map(
    lambda name: copy.deepcopy(SPARSE if name == "sparse" else FULL))


def out_of_range(node: dict) -> list[st.SearchStrategy]:
    """Values that break the numeric bounds of ``node`` (negative or zero rates and the like)."""
    is_int = node.get("type") == "integer"
    numbers = st.integers if is_int else (lambda **kw: st.floats(allow_nan=False, **kw))
    options = []
    if "minimum" in node:
        low = node["minimum"]
        options.append(numbers(max_value=low - 1) if is_int
                       else numbers(max_value=low, exclude_max=True))
    if "exclusiveMinimum" in node:
        low = node["exclusiveMinimum"]
        options.append(numbers(max_value=low))
        options.append(st.just(low))  # zero for a rate
    if "maximum" in node:
        high = node["maximum"]
        options.append(numbers(min_value=high + 1) if is_int
                       else numbers(min_value=high, exclude_min=True))
    if "exclusiveMaximum" in node:
        options.append(numbers(min_value=node["exclusiveMaximum"]))
    return options


def invalid_values(node: dict, nullable: bool) -> st.SearchStrategy:
    """Values the key described by ``node`` must refuse."""
    kind = node.get("type")
    lists = st.lists(plain_scalars, max_size=3)
    dicts = st.dictionaries(st.sampled_from(["a", "b", "value"]), plain_scalars, max_size=2)
    wrong_type = {
        "number": [text, st.booleans(), lists, dicts],
        "integer": [finite, text, st.booleans(), lists],
        "string": [st.integers(), finite, st.booleans(), lists, dicts],
        "boolean": [text, st.integers(), finite, lists],
        "array": [text, st.integers(), dicts],
        "object": [text, st.integers(), finite, lists],
    }[kind]
    options = list(wrong_type)
    if not nullable:
        options.append(st.none())
    if kind == "number":
        options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    options += out_of_range(node)
    if "enum" in node:
        options.append(text.filter(lambda s: s not in node["enum"]))
    if "pattern" in node:
        options.append(text.filter(lambda s: not re.fullmatch(node["pattern"], s)))
    if node.get("minItems"):
        options.append(st.just([]))
    return st.one_of(options)


@st.composite
def wrong_value(draw) -> Case:
    """A wrong type or out-of-range value (NaN, inf, <= 0 rates, ...) at any key."""
    data = draw(bases)
    path = draw(st.sampled_from(LEAVES + CONTAINERS))
    node, nullable = schema_at(path)
    value = draw(invalid_values(node, nullable))
    put(data, path, value)
    return Case("wrong value", {"bad.yaml": dump(data)}, names=(shown(path),),
                notes={"value": value})


@st.composite
def unknown_key(draw) -> Case:
    data = draw(bases)
    parent = draw(st.sampled_from(MAPPINGS))
    holder = mapping_at(data, parent)
    known = set(schema_at(parent)[0].get("properties", ())) | ({"extends"} if not parent else set())
    plain = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
    key = draw(st.one_of(plain, st.text(min_size=1, max_size=12)).filter(
        lambda k: k not in known and k not in holder))
    holder[key] = draw(plain_scalars)
    # keys that are not plain words (spaces, newlines, ...) may be quoted in the message
    names = (shown((*parent, key)),) if re.fullmatch(r"\w+", key) else (shown(parent) or "",)
    return Case("unknown key", {"bad.yaml": dump(data)}, names=names)


@st.composite
def wrong_unit_suffix(draw) -> Case:
    """``cycle_time_h`` written as ``cycle_time_days``: a key with a unit that does not exist."""
    data = draw(bases)
    path = draw(st.sampled_from(UNIT_KEYS))
    holder = mapping_at(data, path[:-1])
    key = path[-1]
    stem = next(key[: -len(s)] for s in sorted(UNIT_SUFFIXES, key=len, reverse=True)
                if key.endswith(s))
    new_key = stem + draw(st.sampled_from([s for s in UNIT_SUFFIXES if stem + s != key]))
    known = set(schema_at(path[:-1])[0]["properties"])
    if new_key in known:  # e.g. a rename onto a sibling that exists: make it unknown
        new_key += "_x"
    value = holder.pop(key, get(FULL, path))
    holder[new_key] = value
    return Case("wrong unit suffix", {"bad.yaml": dump(data)},
                names=(shown((*path[:-1], new_key)),))


@st.composite
def missing_key(draw) -> Case:
    data = copy.deepcopy(FULL)
    path = draw(st.sampled_from(REQUIRED))
    del get(data, path[:-1])[path[-1]]
    return Case("missing required key", {"bad.yaml": dump(data)}, names=(shown(path),))


@st.composite
def non_text_key(draw) -> Case:
    data = draw(bases)
    parent = draw(st.sampled_from(MAPPINGS))
    key = draw(st.one_of(st.integers(-3, 3), st.booleans(), st.none(), finite))
    mapping_at(data, parent)[key] = draw(plain_scalars)
    return Case("non-text key", {"bad.yaml": dump(data)}, names=(shown(parent) or "keys",))


@st.composite
def duplicate_key(draw) -> Case:
    """The same key twice in one mapping: plain YAML would silently keep the last one."""
    data = draw(bases)
    path = draw(st.sampled_from([p for p in LEAVES if isinstance(p[-1], str)]))
    put(data, path, get(FULL, path))
    put(data, (*path[:-1], "__DUPLICATE__"), get(FULL, path))
    content = dump(data).replace(b"__DUPLICATE__", path[-1].encode())
    return Case("duplicate key", {"bad.yaml": content}, names=(shown(path),))


@st.composite
def evil_tag(draw) -> Case:
    """A ``!!python/...`` tag (would run a shell command under yaml.load) at any value."""
    data = draw(bases)
    tag = draw(st.sampled_from(EVIL_TAGS))
    if draw(st.booleans()):
        return Case("YAML tag", {"bad.yaml": (tag + "\n").encode()}, names=("YAML",))
    path = draw(st.sampled_from(LEAVES))
    put(data, path, "__TAG__")
    return Case("YAML tag", {"bad.yaml": dump(data).replace(b"__TAG__", tag.encode())},
                names=(shown(path),))


@st.composite
def broken_file(draw) -> Case:
    """Empty, not UTF-8, not a mapping, bad syntax, too deep, an alias bomb."""
    valid = dump(draw(bases))
    which = draw(st.sampled_from(["empty", "not utf-8", "list", "scalar", "syntax", "deep",
                                  "alias bomb", "huge integer", "nul byte"]))
    if which == "empty":
        content = draw(st.sampled_from([b"", b"\n", b"   \n\n", b"# only a comment\n", b"---\n",
                                        b"~\n", b"null\n"]))
        names = ("file is empty",)
    elif which == "not utf-8":
        at = draw(st.integers(0, len(valid)))
        junk = draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3\x28", b"\x80", b"\xe9",
                                     "caf\u00e9".encode("latin-1"), b"\xed\xa0\x80"]))
        content = valid[:at] + junk + valid[at:]
        names = ("not UTF-8",)
    elif which == "list":
        content = dump(draw(st.lists(plain_scalars | st.just(SPARSE), max_size=3)))
        names = ("top level must be a mapping",)
    elif which == "scalar":
        scalar = draw(st.one_of(st.integers(), finite, text.filter(lambda s: s.strip()),
                                st.booleans()))
        content = dump(scalar)
        names = ("top level must be a mapping",)
    elif which == "syntax":
        lines = valid.decode().splitlines()
        at = draw(st.integers(0, len(lines) - 1))
        broken = draw(st.sampled_from(["tumor: [unclosed", "  - {a: 1", "\tname: tab",
                                       "key: 'unterminated", "]", "a: b: c", "- x\ny: 1",
                                       "@reserved", "%directive"]))
        content = ("\n".join([*lines[:at], broken, *lines[at:]]) + "\n").encode()
        names = ("YAML error",)
    elif which == "deep":
        depth = draw(st.integers(200, 5000))
        content = (b"name: x\ndescription: " + b"[" * depth + b"]" * depth + b"\n")
        names = ("description", "YAML error")
    elif which == "alias bomb":
        levels = draw(st.integers(6, 12))
        lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        for i in range(1, levels):
            lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
        target = draw(st.sampled_from(["description", "name", "tumor", "normal"]))
        lines.append(f"{target}: *l{levels - 1}")
        content = ("\n".join(lines) + "\n").encode()
        names = (target,)
    elif which == "huge integer":
        path = draw(st.sampled_from(LEAVES))
        data = copy.deepcopy(FULL)
        put(data, path, "__BIG__")
        digits = draw(st.integers(400, 6000))
        content = dump(data).replace(b"'__BIG__'", b"__BIG__").replace(b"__BIG__",
                                                                       b"9" * digits)
        names = (shown(path), "YAML error")
    else:  # a NUL byte: valid UTF-8, but not allowed in YAML
        at = draw(st.integers(0, len(valid)))
        content = valid[:at] + b"\x00" + valid[at:]
        names = ("YAML error",)
    return Case(f"file: {which}", {"bad.yaml": content}, names=names)


@st.composite
def inconsistent(draw) -> Case:
    """Values each valid alone, impossible together (checked up front, not mid-run)."""
    data = copy.deepcopy(FULL)
    which = draw(st.sampled_from(["dose after end", "timer too long", "too fast",
                                  "tumour too large", "lattice too large"]))
    if which == "dose after end":
        duration = data["time"]["duration_days"]
        day = draw(st.floats(duration, 1e6))
        data["dosing"]["doses"].append({"day": day, "cells": 5})
        names = ("dosing.doses[1].day",)
    elif which == "timer too long":
        key = draw(st.sampled_from(["activation_duration_h", "exhaustion_after_engaged_h"]))
        data["time"]["dt_min"] = draw(st.floats(0.001, 0.02))
        data["car_t"][key] = draw(st.floats(24.0, 1e4))
        names = (f"car_t.{key}",)
    elif which == "too fast":
        key = draw(st.sampled_from([("car_t", "speed_um_per_min"),
                                    ("tumor", "speed_um_per_min"),
                                    ("normal", 0, "speed_um_per_min")]))
        put(data, key, draw(st.floats(1e5, 1e300)))
        names = (shown(key),)
    elif which == "tumour too large":
        sites = data["lattice"]["width"] * data["lattice"]["height"]
        data["tumor"]["initial_cells"] = draw(st.integers(sites // 2 + 1, 10**30))
        names = ("tumor.initial_cells",)
    else:
        data["lattice"]["width"] = draw(st.integers(300_000, 1_000_000))
        data["lattice"]["height"] = draw(st.integers(300_000, 1_000_000))
        names = ("lattice.width",)
    return Case(which, {"bad.yaml": dump(data)}, names=names)


@st.composite
def bad_study(draw) -> Case:
    """A study whose own keys are wrong, or whose scenario file is."""
    scenario = copy.deepcopy(SPARSE)
    study = {"name": "st", "scenarios": ["good.yaml"], "seed": 3, "replicates": 2}
    which = draw(st.sampled_from(["study key", "missing scenario", "bad scenario"]))
    files = {"good.yaml": dump(scenario)}
    error_files: tuple[str, ...] = ("study.yaml",)
    if which == "study key":
        key, bad_values = draw(st.sampled_from([
            ("name", ["", "has space", 3, None, ["x"]]),
            ("scenarios", [[], "good.yaml", [3], None, {"a": "good.yaml"}]),
            ("seed", [-1, 2.5, "3", None, 2**64]),
            ("replicates", [0, -2, 1.5, "2", 10**6]),
            ("descripton", ["a typo'd key"]),
        ]))
        study[key] = draw(st.sampled_from(bad_values))
        names = (key,)
    elif which == "missing scenario":
        study["scenarios"].append("nowhere.yaml")
        names = ("nowhere.yaml",)
        error_files = ("study.yaml", "nowhere.yaml")
    else:
        bad = copy.deepcopy(scenario)
        bad["car_t"]["kill_rate_per_h"] = draw(st.sampled_from([0, -1, math.nan, "x"]))
        files["scenario2.yaml"] = dump(bad | {"name": "two"})
        study["scenarios"].append("scenario2.yaml")
        names = ("car_t.kill_rate_per_h",)
        error_files = ("scenario2.yaml",)
    files["study.yaml"] = dump(study)
    return Case(f"study: {which}", files, main="study.yaml", names=names,
                error_files=error_files)


malformed = st.one_of(wrong_value(), unknown_key(), wrong_unit_suffix(), missing_key(),
                      non_text_key(), duplicate_key(), evil_tag(), broken_file(),
                      inconsistent(), bad_study())


# ---------------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------------
class ConfigAccepted(BaseException):
    """Raised instead of building a model: the bad config got past validation."""


def refuse_to_run(*args, **kwargs):
    raise ConfigAccepted("the simulation was started")


@pytest.fixture(scope="module", autouse=True)
def report_count():
    yield
    total = sum(TRIED.values())
    print(f"\ntest_bad_configs: {total} malformed inputs tried: "
          + ", ".join(f"{kind} {n}" for kind, n in sorted(TRIED.items())))


@settings(settings.get_profile("bad_configs"))
@given(case=malformed)
def test_bad_config_is_refused_cleanly(case, tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise ConfigAccepted(f"{case.kind}: the simulation was started")

    monkeypatch.setattr(model.CarTModel, "__init__", refuse)
    monkeypatch.chdir(tmp_path)
    TRIED[case.kind] += 1
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    for name, content in case.files.items():
        (folder / name).write_bytes(content)
    out = folder / "out"
    capsys.readouterr()
    code = cli.main(["run", str(folder / case.main), "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, (case.kind, err)
    assert "Traceback" not in err + captured.out
    assert not out.exists(), "a refused config must not create the output folder"
    assert not list(folder.glob("*out*")), "nor any staging folder"
    for place in (tmp_path, folder, REPO_ROOT, Path.cwd()):
        assert not (place / "PWNED").exists(), place
    lines = err.splitlines()
    assert lines, "no error message"
    for line in lines:
        match = LINE.match(line)
        assert match, f"not a 'cartsim: error: FILE: ...' line: {line!r}"
        assert Path(match["file"]).name in case.error_files, line
        assert len(line) < 400, f"error line too long: {line[:200]}..."
    assert any(name in line for line in lines for name in case.names), (case.names, err)


# three subprocess checks of the same contract: the console entry point, stderr as a user sees it
@pytest.mark.parametrize("content, expected", [
    (f"name: x\ntumor: {PWNED_TAG}\n".encode(), "tumor: YAML error at line 2"),
    (b"name: caf\xe9\n", "not UTF-8"),
    (dump(SPARSE | {"dosing": {"route": "anywhere", "doses": [{"day": 30, "cells": 8}]}}),
     "dosing.doses[0].day"),
])
def test_bad_config_in_a_subprocess_exits_2_without_traceback(tmp_path, content, expected):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "simulation", "run", "bad.yaml", "--out", "out",
                             "--quiet"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "NUMBA_NUM_THREADS": "1"})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("cartsim: error: bad.yaml: "), result.stderr
    assert expected in result.stderr, result.stderr
    assert not out.exists()
    assert not (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------------------------------------
# lattices larger than memory: refused up front, with the estimate (machine-independent here)
# ---------------------------------------------------------------------------------------------
def test_memory_estimate_refuses_what_does_not_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(checks, "physical_memory_bytes", lambda: 8 * 2**30)
    monkeypatch.setattr(model.CarTModel, "__init__", refuse_to_run)
    data = copy.deepcopy(FULL) | {"replicates": 4}
    data["lattice"].update(width=6_000, height=6_000)  # dispersed: state + 16 bytes/site
    cfg = ScenarioConfig.model_validate(data)
    per_site = checks.STATE_BYTES_PER_SITE + checks.SETUP_BYTES_PER_SITE_DISPERSED
    per_run = 6_000**2 * per_site + 256 * 2**20
    assert checks.estimate_memory_bytes(cfg) == per_run  # ~3.2 GB: one run fits in 8 GB
    assert checks.estimate_memory_bytes(cfg, 3) == 3 * per_run + 256 * 2**20
    path = tmp_path / "big.yaml"
    path.write_bytes(dump(data))
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out), "--workers", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    three = (3 * per_run + 256 * 2**20) / 2**30
    assert err == (f"cartsim: error: {path}: lattice.width: 3 parallel runs of a 6000x6000 "
                   f"lattice need ~{three:.1f} GB, more than this machine's 8.0 GB; use "
                   "--workers 2\n")
    assert not out.exists()
    data["lattice"].update(width=18_000)
    path.write_bytes(dump(data))
    assert cli.main(["validate", str(path)]) == 2
    wide = (18_000 * 6_000 * per_site + 256 * 2**20) / 2**30
    assert capsys.readouterr().err == (f"cartsim: error: {path}: lattice.width: a 18000x6000 "
                                       f"lattice needs ~{wide:.1f} GB, more than this "
                                       "machine's 8.0 GB\n")
    # the Python API refuses before allocating anything, too
    monkeypatch.setattr(checks, "physical_memory_bytes", lambda: 2**30)
    with pytest.raises(ConfigError, match=rf"^lattice\.width: a 18000x6000 lattice needs "
                       rf"~{wide:.1f} GB, more than this machine's 1\.0 GB$"):
        build_lattice(ScenarioConfig.model_validate(data), seed=0)
