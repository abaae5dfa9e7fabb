"""Config errors and their messages: one line ``file: key.path: problem (got value)`` each.

``describe_error`` turns a pydantic error into such lines (unknown keys with a spelling
suggestion or the allowed keys, missing keys, bounds, YAML's numbers-read-as-text); the YAML
reader and the checks across keys use the same location and value formatting.
"""

from __future__ import annotations

import difflib
import math
import reprlib
from typing import Any

from pydantic import BaseModel


class ConfigError(Exception):
    """A problem with a config file; ``str()`` is the message shown to the user, one line per
    problem."""


class Problems(ValueError):
    """Problems a validator found, each at its own key path (relative to the validated model).

    ``problems`` holds ``(location, message, value)``; the messages name the location, so a
    cross-field check (e.g. the tumour must fit the lattice) points at the key to change.
    """

    def __init__(self, problems: list[tuple[tuple, str, Any]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{format_location(loc)}: {message}"
                                   for loc, message, _ in problems))


def format_location(loc: tuple) -> str:
    """A key path as messages show it: ``("dosing", "doses", 0)`` -> ``dosing.doses[0]``."""
    path = ""
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
        else:
            path += ("." if path else "") + _key_text(item)
    return path or "(top level)"


def _key_text(key: Any) -> str:
    """A key as messages show it: plain, or quoted and escaped if it has odd characters."""
    text = str(key)
    if text and text.isprintable() and text == text.strip() and len(text) <= 60:
        return text
    return short_repr(text)


_CONSTRAINT_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "too_short": "must have at least {min_length} item(s)",
    "string_too_short": "must not be empty",
    "finite_number": "must be a finite number",
}


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that holds the key at ``loc`` (to suggest spellings)."""
    current: Any = model
    for item in loc:
        if isinstance(item, int):
            continue
        field = getattr(current, "model_fields", {}).get(item)
        if field is None:
            return None
        annotation = field.annotation
        current = _unwrap_model(annotation)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


#: an "allowed:" list longer than this is cut short (error lines stay readable)
MAX_ALLOWED_TEXT = 200


def _allowed_keys(known: list[str]) -> str:
    """``; allowed: a, b, ...`` for an unknown-key message, cut to ``MAX_ALLOWED_TEXT``."""
    shown: list[str] = []
    for key in known:
        if sum(len(k) + 2 for k in shown) + len(key) > MAX_ALLOWED_TEXT:
            return (f"; allowed: {', '.join(shown)} and {len(known) - len(shown)} more "
                    "(cartsim schema lists them)")
        shown.append(key)
    return f"; allowed: {', '.join(shown)}"


def describe_error(error: dict, model: type[BaseModel]) -> list[str]:
    """One pydantic error as message lines ``key.path: problem (got value)``."""
    loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    located = error.get("ctx", {}).get("error")
    if isinstance(located, Problems):
        return [problem_line((*loc, *where), message, got)
                for where, message, got in located.problems]
    if kind == "extra_forbidden":
        holder = _model_at(model, loc[:-1])
        known = list(holder.model_fields) if holder else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        allowed = _allowed_keys(known) if known and not close else ""
        return [f"{format_location(loc)}: unknown key{hint}{allowed}"]
    if kind == "missing":
        return [f"{format_location(loc)}: required key is missing"]
    if kind in _CONSTRAINT_MESSAGES:
        bounds = {k: (f"{v:g}" if isinstance(v, float) else v)
                  for k, v in error.get("ctx", {}).items()}
        message = _CONSTRAINT_MESSAGES[kind].format(**bounds)
    elif kind == "literal_error":
        message = f"must be one of {error['ctx']['expected']}"
    else:
        message = error["msg"].removeprefix("Value error, ")
        message = message[0].lower() + message[1:] if message else message
    if kind in ("float_type", "int_type") and isinstance(value, str) and _is_number(value):
        hint = " like 5.0e+6" if "e" in value.lower() else ""
        message += f"; YAML read it as text: write a plain number{hint}"
    return [problem_line(loc, message, value)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def problem_line(loc: tuple, message: str, value: Any = None) -> str:
    """One message line ``key.path: message (got value)``; no ``(got ...)`` if ``value`` is None."""
    got = "" if value is None else f" (got {short_repr(value)})"
    return f"{format_location(loc)}: {printable(message)}{got}"


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4
_REPR.maxlevel = 3


def short_repr(value: Any) -> str:
    """At most 60 printable characters, whatever ``value`` is (alias bombs, 4000-digit ints)."""
    try:
        if isinstance(value, bool) or value is None or isinstance(value, float):
            text = str(value)
        elif isinstance(value, int):
            if value.bit_length() > 4000:
                return f"an integer of about {int(value.bit_length() * math.log10(2))} digits"
            text = str(value)
        elif isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
            text = _REPR.repr(value)
        else:
            text = str(value)  # dates, times: as written in YAML
    except Exception:  # noqa: BLE001 - a message must never fail
        text = f"a {type(value).__name__}"
    text = printable(text)
    return text if len(text) <= 60 else text[:57] + "..."


def printable(text: str) -> str:
    """``text`` with control characters (newlines, ...) escaped: messages stay one line each."""
    return text if text.isprintable() else repr(text)[1:-1]
