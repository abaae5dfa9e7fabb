"""Reading YAML: safe tags only, text keys, no duplicates, bounded size and depth; ``extends``.

A file may say ``extends: other.yaml`` (relative to itself); mappings merge key by key, anything
else is replaced. Paths in messages are shown as the user would type them (``display_path``).
"""

from __future__ import annotations

import difflib
import itertools
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, format_location, printable, short_repr
from .mappings import merge_mappings

#: config files are hand-written and small; anything larger is the wrong file
MAX_CONFIG_BYTES = 10 * 2**20
#: mappings and lists nested deeper than this are not a config (configs nest 4 levels)
MAX_NESTING = 32
#: files under ./configs a missing path is compared with ("did you mean ...?")
NEAR_MISS_FILES = 500

_YAML_PREFIX = "tag:yaml.org,2002:"
_SAFE_TAGS = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag is not None)
_STR_TAG = _YAML_PREFIX + "str"
_MERGE_TAG = _YAML_PREFIX + "merge"
_MAX_PROBLEMS = 20
#: libyaml's parser where PyYAML was built with it (~10x faster), else the pure-Python one
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path, shown: str) -> dict[str, Any]:
    """Parse one YAML file safely into a mapping, or raise a ConfigError naming the file."""
    try:
        if path.is_dir():
            raise ConfigError(f"{shown}: is a directory, not a YAML file")
        with open(path, "rb") as stream:  # bounded: /dev/zero or a huge file is refused below
            raw = stream.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: file not found{near_miss(path, shown)}") from None
    except OSError as err:
        raise ConfigError(f"{shown}: cannot read ({err.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{shown}: larger than {MAX_CONFIG_BYTES // 2**20} MB; "
                          "not a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ConfigError(f"{shown}: not UTF-8 text (byte {err.start}, line {line})") from None
    data = parse_yaml(text, shown)
    if data is None:
        raise ConfigError(f"{shown}: file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}: top level must be a mapping of keys, got "
                          f"{type(data).__name__}")
    return data


def near_miss(path: Path, shown: str) -> str:
    """"; did you mean X?" naming the YAML file spelled most like ``shown`` among the files
    next to ``path`` and under ``./configs`` (at most ``NEAR_MISS_FILES`` of them), or ""."""
    found = [*path.parent.glob("*.y*ml")] if path.parent.is_dir() else []
    if Path("configs").is_dir():
        found += itertools.islice(Path("configs").rglob("*.y*ml"), NEAR_MISS_FILES)
    close = difflib.get_close_matches(shown, sorted({str(file) for file in found}), n=1,
                                      cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def parse_yaml(text: str, shown: str) -> Any:
    """The one document in ``text``, built only after every node passed ``_node_problems``."""
    try:
        loader = _LOADER(text)  # checks the characters: NUL and the like are refused
    except yaml.YAMLError as err:
        raise ConfigError(f"{shown}: {_yaml_error(err, text)}") from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as err:
            raise ConfigError(f"{shown}: {_yaml_error(err, text)}") from None
        except RecursionError:
            raise ConfigError(f"{shown}: YAML error: nested too deeply") from None
        if node is None:
            return None
        problems = _node_problems(node, loader)
        if problems:
            raise ConfigError("\n".join(f"{shown}: {problem}" for problem in problems))
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as err:
            raise ConfigError(f"{shown}: {_yaml_error(err, text)}") from None
        except (ValueError, OverflowError, RecursionError) as err:
            raise ConfigError(f"{shown}: YAML error: {printable(str(err))}") from None
    finally:
        loader.dispose()


def _node_problems(root: yaml.Node, loader: Any) -> list[str]:
    """Problems of a composed YAML document, each at its key path (before anything is built).

    Refused: tags other than plain YAML's (``!!python/object/apply:...`` would run code under
    an unsafe loader), keys that are not text, a key given twice in one mapping (YAML keeps the
    last one silently), nesting deeper than ``MAX_NESTING``, and scalars that cannot be read
    (a 5000-digit integer, the date 2024-13-45). Each node is visited once, so aliases
    (``*name``) cost nothing however often they are repeated.
    """
    problems: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple]] = [(root, ())]
    while stack and len(problems) < _MAX_PROBLEMS:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        where = format_location(path)
        if len(path) > MAX_NESTING:
            problems.append(f"{where}: nested more than {MAX_NESTING} levels deep")
        elif node.tag not in _SAFE_TAGS:
            problems.append(f"{where}: YAML error at {_mark(node.start_mark)}: tag "
                            f"{_tag_text(node.tag)} is not allowed (plain YAML values only)")
        elif isinstance(node, yaml.ScalarNode):
            try:
                loader.construct_object(node)
            except (yaml.YAMLError, ValueError, OverflowError) as err:
                reason = getattr(err, "problem", None) or str(err).split(":")[0]
                problems.append(f"{where}: YAML error at {_mark(node.start_mark)}: cannot read "
                                f"{short_repr(node.value)} as {_tag_text(node.tag)} "
                                f"({printable(reason)})")
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, (*path, i)) for i, child in reversed(list(enumerate(node.value))))
        elif isinstance(node, yaml.MappingNode):
            first_at: dict[str, yaml.Mark] = {}
            children = []
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:  # "<<: *base" merges another mapping in
                    children.append((value_node, path))
                    continue
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                    key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "[...]"
                    kind = _tag_text(key_node.tag).removeprefix("!!")
                    problems.append(f"{format_location((*path, key))}: keys must be text "
                                    f"(got {kind} {short_repr(key)} at "
                                    f"{_mark(key_node.start_mark)}; quote it)")
                    continue
                key = key_node.value
                if key in first_at:
                    problems.append(f"{format_location((*path, key))}: duplicate key at "
                                    f"{_mark(key_node.start_mark)} (first at line "
                                    f"{first_at[key].line + 1}); give each key once")
                    continue
                first_at[key] = key_node.start_mark
                children.append((value_node, (*path, key)))
            stack.extend(reversed(children))
    if stack and len(problems) >= _MAX_PROBLEMS:
        problems.append("(more problems not shown)")
    return problems


def _yaml_error(err: yaml.YAMLError, text: str) -> str:
    """'YAML error at line L, column C: problem' from a PyYAML exception."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    if isinstance(err, yaml.reader.ReaderError):  # a control character such as NUL
        line = text[:err.position].count("\n") + 1
        return f"YAML error at line {line}: {printable(str(err).splitlines()[0])}"
    where = f" at {_mark(mark)}" if mark else ""
    return f"YAML error{where}: {printable(problem or 'invalid YAML')}"


def _mark(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _tag_text(tag: str) -> str:
    """``tag:yaml.org,2002:python/name:os.system`` -> ``!!python/name:os.system``."""
    text = "!!" + tag.removeprefix(_YAML_PREFIX) if tag.startswith(_YAML_PREFIX) else tag
    return short_repr(text) if not text.isprintable() or len(text) > 60 else text


def load_with_extends(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A file's mapping with its ``extends:`` chain merged in (base first)."""
    shown = display_path(path)
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(display_path(p) for p in (*chain, resolved))
        raise ConfigError(f"{shown}: extends: cycle ({cycle})")
    data = read_yaml(path, shown)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{shown}: extends: must be a file name (got {short_repr(parent)})")
    parent_path = path.parent / parent
    if not parent_path.exists():
        raise ConfigError(f"{shown}: extends: file not found: {display_path(parent_path)}")
    if not parent_path.is_file():
        raise ConfigError(f"{shown}: extends: not a file: {display_path(parent_path)}")
    return merge_mappings(load_with_extends(parent_path, (*chain, resolved)), data)


def display_path(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when possible."""
    try:
        text = str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        text = str(path)
    return printable(text)
