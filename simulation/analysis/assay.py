"""The in-vitro killing assay: its readout.

A killing assay plates target cells in wells, adds CAR-T at several effector-to-target (E:T)
ratios and follows the targets beside untreated control wells, as impedance (xCELLigence) or
flow-cytometry assays do. Here the wells are runs of one ``in_vitro`` scenario (the dish, e.g.
``configs/killing_assay.yaml``):

* **design** (``simulation.config.assay_design.expand_assay``): a study file's ``assay:`` block
  (``config.AssayConfig``) becomes ordinary scenarios, one per (antigen level, E:T) and one
  untreated control per antigen level, all run with the study's replicate seeds (replicate r of
  every well uses the same seed, so a treated well and its control start from the same plating);
* **readout** (this module: ``assay_table``, ``assay_endpoints``): target cells as % of the
  untreated control of the same seed over time, and targets killed per CAR-T added.

The readout reads each condition from the scenario configs (``tumor.antigen``, ``dosing``),
never from scenario names, so a study that lists hand-written well scenarios works too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..config import WELL_KEYS, ScenarioConfig

#: ``assay_table`` columns, in order
TABLE_COLUMNS = ("scenario", "antigen_molecules_per_cell", "effector_to_target", "replicate",
                 "seed", "time_h", "tumor_cells", "control_tumor_cells", "percent_of_control",
                 "cancer_killed", "car_t_added", "kills_per_car_t")
#: ``assay_endpoints`` statistics over replicates, as column suffixes
STATISTICS = {"median": 0.5, "q25": 0.25, "q75": 0.75}
HOURS_PER_DAY = 24.0


def well_condition(scenario: ScenarioConfig) -> dict[str, float | None]:
    """The condition of one well, from its config.

    ``antigen_molecules_per_cell`` (mean target antigen), ``effector_to_target`` (CAR-T added
    per target plated, summed over doses; 0 for an untreated control) and ``add_day`` (first
    dose, days after plating; None for a control).
    """
    doses = scenario.dosing.doses
    targets = scenario.tumor.initial_cells
    ratio = sum(d.effector_to_target if d.cells is None else d.cells / targets for d in doses)
    return {"antigen_molecules_per_cell": scenario.tumor.first_antigen.mean_molecules_per_cell,
            "effector_to_target": float(ratio),
            "add_day": min(d.day for d in doses) if doses else None}


def _well_key(scenario: ScenarioConfig) -> str:
    """Everything about a well but its name and dosing: equal for a well and its control."""
    return json.dumps(scenario.model_dump(mode="json", exclude=set(WELL_KEYS)), sort_keys=True)


def controls(scenarios: Iterable[ScenarioConfig]) -> dict[str, str]:
    """Treated scenario name -> name of its untreated control.

    A well's control is a scenario without doses that is identical in everything else (lattice,
    targets, antigen, CAR-T product, clock); treated wells without one are left out.
    """
    scenarios = list(scenarios)
    untreated = {}
    for scenario in scenarios:
        if not scenario.dosing.doses:
            untreated.setdefault(_well_key(scenario), scenario.name)
    return {s.name: untreated[_well_key(s)] for s in scenarios
            if s.dosing.doses and _well_key(s) in untreated}


def is_assay(scenarios: Sequence[ScenarioConfig]) -> bool:
    """True for a study of in-vitro wells with at least one treated well beside its control."""
    return (len(scenarios) > 0 and all(s.tumor_type == "in_vitro" for s in scenarios)
            and bool(controls(scenarios)))


def assay_table(scenarios: Sequence[ScenarioConfig], timeseries: pd.DataFrame) -> pd.DataFrame:
    """The killing-assay readout: one row per well (antigen, E:T), replicate and census.

    ``timeseries`` is the table ``cartsim run`` writes. Columns (``TABLE_COLUMNS``):
    ``time_h`` hours since the CAR-T were added (negative before; a control takes the time of
    the wells it controls); ``tumor_cells`` and ``control_tumor_cells`` targets in the well and
    in the untreated control of the same seed at that time; ``percent_of_control`` 100 x their
    ratio (NaN where the control has none; exactly 100 in a control's own rows);
    ``cancer_killed`` targets killed so far; ``car_t_added`` CAR-T placed so far;
    ``kills_per_car_t`` their ratio (NaN before any CAR-T). A run that stopped early (a cleared
    well) keeps its last census afterwards. Wells without a control are left out.
    """
    pairs = controls(scenarios)
    add_day = {s.name: well_condition(s)["add_day"] for s in scenarios if s.name in pairs}
    for treated, control in pairs.items():  # a control keeps the clock of its wells
        add_day[control] = min(add_day[treated], add_day.get(control, math.inf))
    frames = [_well_rows(s, _runs(timeseries, s.name),
                         _runs(timeseries, pairs.get(s.name, s.name)), add_day[s.name])
              for s in scenarios if s.name in add_day]
    if not frames:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(TABLE_COLUMNS)]


def _runs(timeseries: pd.DataFrame, scenario: str) -> pd.DataFrame:
    rows = timeseries[timeseries["scenario"] == scenario]
    return rows.sort_values(["time_days", "seed"], kind="stable").reset_index(drop=True)


def _well_rows(scenario: ScenarioConfig, runs: pd.DataFrame, control_runs: pd.DataFrame,
               add_day: float) -> pd.DataFrame:
    """Rows of one well: each census of its control matched with the well's last census at or
    before that time, in the run of the same seed."""
    treated = runs[["seed", "time_days", "tumor_cells", "cumulative_cancer_killed",
                    "cumulative_car_t_infused"]]
    control = control_runs[["seed", "replicate", "time_days", "tumor_cells"]].rename(
        columns={"tumor_cells": "control_tumor_cells"})
    rows = pd.merge_asof(control, treated, on="time_days", by="seed", direction="backward")
    rows = rows.dropna(subset=["tumor_cells"]).sort_values(["replicate", "time_days"],
                                                           kind="stable")
    condition = well_condition(scenario)
    tumor = rows["tumor_cells"].to_numpy(np.int64)
    control_cells = rows["control_tumor_cells"].to_numpy(np.int64)
    killed = rows["cumulative_cancer_killed"].to_numpy(np.int64)
    added = rows["cumulative_car_t_infused"].to_numpy(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        percent = np.where(control_cells > 0, 100.0 * tumor / control_cells, np.nan)
        per_car_t = np.where(added > 0, killed / added, np.nan)
    return pd.DataFrame({
        "scenario": scenario.name,
        "antigen_molecules_per_cell": condition["antigen_molecules_per_cell"],
        "effector_to_target": condition["effector_to_target"],
        "replicate": rows["replicate"].astype(np.int64).to_numpy(),
        "seed": rows["seed"].astype(np.int64).to_numpy(),
        "time_h": (rows["time_days"].to_numpy() - add_day) * HOURS_PER_DAY,
        "tumor_cells": tumor,
        "control_tumor_cells": control_cells,
        "percent_of_control": percent,
        "cancer_killed": killed,
        "car_t_added": added,
        "kills_per_car_t": per_car_t,
    })


def assay_endpoints(table: pd.DataFrame, hours: Sequence[float] = (48.0, 72.0)) -> pd.DataFrame:
    """Per well (antigen, E:T): median and IQR over replicates of the assay's endpoints.

    ``percent_of_control_<h>h_{median,q25,q75}``: % of control ``h`` hours after the CAR-T were
    added (linear between censuses; NaN for a replicate whose run does not reach ``h``);
    ``kills_per_car_t_end_{median,q25,q75}``: targets killed per CAR-T added at the end of the
    run (``end_h``, hours after addition); ``replicates``: runs per well.
    """
    rows = []
    for (scenario, antigen, ratio), well in table.groupby(
            ["scenario", "antigen_molecules_per_cell", "effector_to_target"], sort=False):
        row: dict[str, Any] = {"scenario": scenario, "antigen_molecules_per_cell": antigen,
                               "effector_to_target": ratio,
                               "replicates": int(well["replicate"].nunique())}
        runs = [run.sort_values("time_h") for _, run in well.groupby("replicate")]
        for h in hours:
            values = [_value_at(run["time_h"].to_numpy(), run["percent_of_control"].to_numpy(),
                                float(h)) for run in runs]
            row.update(_statistics(f"percent_of_control_{h:g}h", values))
        row["end_h"] = float(min(run["time_h"].iloc[-1] for run in runs))
        row.update(_statistics("kills_per_car_t_end",
                               [float(run["kills_per_car_t"].iloc[-1]) for run in runs]))
        rows.append(row)
    return pd.DataFrame(rows)


def _value_at(times: np.ndarray, values: np.ndarray, time: float) -> float:
    """``values`` at ``time`` by linear interpolation; NaN outside the censuses."""
    if times.size == 0 or time < times[0] - 1e-9 or time > times[-1] + 1e-9:
        return math.nan
    return float(np.interp(time, times, values))


def _statistics(prefix: str, values: list[float]) -> dict[str, float]:
    """``prefix_median``, ``prefix_q25``, ``prefix_q75`` of ``values`` (NaNs ignored)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[~np.isnan(finite)]
    return {f"{prefix}_{name}": (float(np.quantile(finite, q)) if finite.size else math.nan)
            for name, q in STATISTICS.items()}
