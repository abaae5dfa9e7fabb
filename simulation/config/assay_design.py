"""The design of an in-vitro killing assay: a study's ``assay:`` block as ordinary scenarios.

A killing assay plates target cells in wells and adds CAR-T at several effector-to-target (E:T)
ratios beside untreated control wells. ``expand_assay`` turns an ``AssayConfig`` and the dish
scenario (e.g. ``configs/killing_assay.yaml``) into one scenario per (antigen level, E:T) and one
untreated control per antigen level, all run with the study's replicate seeds (replicate r of
every well uses the same seed, so a treated well and its control start from the same plating).
The readout is ``simulation.analysis.assay``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from .checks import validate
from .errors import ConfigError
from .schema import AssayConfig, ScenarioConfig

#: keys that may differ between a treated well and its control (everything else must match:
#: ``simulation.analysis.assay.controls`` pairs each well with its control by the rest)
WELL_KEYS = ("name", "description", "seed", "replicates", "dosing")


def et_label(effector_to_target: float, separator: str = ":") -> str:
    """An E:T ratio as assays write it: 1.0 -> '1:1', 0.25 -> '1:4', 2.0 -> '2:1'.

    A ratio within 1 % of 1:n (e.g. 113 CAR-T on 900 targets, 1:7.96) is written 1:n.
    """
    if effector_to_target <= 0:
        return "0"
    if effector_to_target >= 1:
        return f"{_ratio_text(effector_to_target)}{separator}1"
    return f"1{separator}{_ratio_text(1.0 / effector_to_target)}"


def _ratio_text(value: float) -> str:
    """One side of a ratio: the nearest whole number if within 1 %, else 3 digits."""
    nearest = round(value)
    return str(nearest) if abs(value - nearest) <= 0.01 * value else f"{value:.3g}"


def _number_text(value: float) -> str:
    """A number for a scenario name: 10000.0 -> '10000', 2.5 -> '2.5' (no '+' or spaces)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}".replace("+", "")


def cells_for(effector_to_target: float, targets: int) -> int:
    """CAR-T added at ``effector_to_target`` to ``targets`` plated cells (rounded half up)."""
    return math.floor(effector_to_target * targets + 0.5)


def expand_assay(assay: AssayConfig, dish: dict[str, Any], dish_source: str,
                 study_source: str) -> list[ScenarioConfig]:
    """The wells of a killing assay as scenarios, validated.

    ``dish`` is the scenario mapping of the dish (``extends`` and overrides applied) read from
    ``dish_source``; its doses are replaced. Per antigen level (``assay.antigen_molecules_per_
    cell``, default the dish's own): an untreated control ``<dish>_ag<antigen>_control`` (no
    doses) and one well ``<dish>_ag<antigen>_et1-4`` per E:T ratio, which gets
    ``round(E:T x tumor.initial_cells)`` CAR-T on day ``assay.add_day``, placed on random free
    sites (route ``anywhere``). Errors name ``study_source`` and the ``assay`` key.
    """
    base = validate(dish, ScenarioConfig, dish_source)
    problems = _design_problems(assay, base, dish_source)
    if problems:
        raise ConfigError("\n".join(f"{study_source}: {problem}" for problem in problems))
    levels = assay.antigen_molecules_per_cell or [base.tumor.first_antigen.mean_molecules_per_cell]
    scenarios = []
    for antigen in levels:
        stem = f"{base.name}_ag{_number_text(antigen)}"
        condition = f"antigen {antigen:g} molecules/cell"
        wells = [(f"{stem}_control", f"untreated control, {condition}", [])]
        for ratio in assay.effector_to_target:
            dose = {"day": assay.add_day, "cells": cells_for(ratio, base.tumor.initial_cells)}
            wells.append((f"{stem}_et{et_label(ratio, '-')}",
                          f"E:T {et_label(ratio)} on day {assay.add_day:g}, {condition}", [dose]))
        for name, text, doses in wells:
            data = copy.deepcopy(dish)
            data["name"] = name
            data["description"] = "; ".join(t for t in (base.description, text) if t)
            data["tumor"]["antigen"]["mean_molecules_per_cell"] = antigen
            data["dosing"] = {**data["dosing"], "route": "anywhere", "doses": doses}
            scenarios.append(validate(data, ScenarioConfig, f"{study_source}: assay ({name})"))
    return scenarios


def _design_problems(assay: AssayConfig, base: ScenarioConfig, dish_source: str) -> list[str]:
    """What makes ``assay`` impossible in the dish ``base`` (message lines, key path first)."""
    problems = []
    end_days = base.time.duration_days
    if assay.add_day >= end_days:
        problems.append(f"assay.add_day: must be before the end of the run ({dish_source}: "
                        f"time.duration_days: {end_days:g}) (got {assay.add_day:g})")
    if base.tumor.antigens is not None:
        problems.append(f"assay: needs a dish with one antigen ({dish_source}: tumor.antigen); "
                        f"this one names {len(base.tumor.antigens)} (tumor.antigens)")
    targets = base.tumor.initial_cells
    free_sites = base.lattice.n_sites - targets
    for i, ratio in enumerate(assay.effector_to_target):
        cells = cells_for(ratio, targets)
        if cells < 1:
            problems.append(f"assay.effector_to_target[{i}]: {ratio:g} x {targets} targets "
                            f"plated is less than one CAR-T (got {ratio:g})")
        elif cells > free_sites:
            problems.append(f"assay.effector_to_target[{i}]: {cells} CAR-T do not fit on the "
                            f"{free_sites} sites the {targets} targets leave free in "
                            f"{dish_source} (got {ratio:g})")
    return problems
