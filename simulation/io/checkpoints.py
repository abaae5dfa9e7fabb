"""Checkpoints of a running simulation: ``.npz`` + JSON, never a pickle (loading one cannot
run code). What goes in is ``CarTModel.checkpoint_state()``; ``CarTModel.from_checkpoint``
continues from it bit for bit."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write

#: checkpoint entries stored as arrays in the .npz (the rest goes to its JSON ``meta``);
#: ``extra`` is absent from checkpoints written before it existed (format 3)
CHECKPOINT_ARRAYS = ("cells", "events", "fields", "extra")


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``CarTModel.checkpoint_state()`` to ``path`` (.npz, atomically)."""
    meta = {k: v for k, v in state.items() if k not in CHECKPOINT_ARRAYS}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as stream:
            np.savez(stream, **{name: state[name] for name in CHECKPOINT_ARRAYS if name in state},
                     meta=np.array(json.dumps(meta)))

    atomic_write(path, write)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state saved by ``save_checkpoint`` (ValueError if the file is not one)."""
    try:
        with open(path, "rb") as stream, np.load(stream, allow_pickle=False) as data:
            state = json.loads(str(data["meta"][()]))
            for name in CHECKPOINT_ARRAYS:
                if name in data.files:
                    state[name] = data[name].copy()
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable checkpoint ({err})") from None
    return state
