"""Measurements to fit against: a tidy data table, matched to the simulated outputs.

``cartsim fit`` (``simulation.study.fit``) compares a user's measurements with the same quantity
simulated. The data are a CSV file with one row per observation:

* a time column, ``time_h`` or ``time_days`` (for a killing assay: since the CAR-T were added,
  as ``assay.csv`` counts it; otherwise since the start of the run). A quantity of
  ``summary.csv`` (one value per run) needs none;
* the observed column, named as the simulated one (``OUTPUTS``): an ``assay.csv`` column such
  as ``percent_of_control``, a ``timeseries.csv`` column such as ``car_t_blood_per_ul`` or
  ``tumor_cells``, or a numeric ``summary.csv`` column such as ``car_t_blood_peak_day`` or
  ``cleared`` (the fraction of runs that cleared);
* optionally ``sd``, the measurement's standard deviation (same units; > 0);
* optionally condition columns (``CONDITIONS``) that select the simulated well or scenario a
  row belongs to: ``scenario``, ``effector_to_target``, ``antigen_molecules_per_cell``.

``read_observations`` checks the table against the simulated conditions before anything runs
(every problem one line naming the file, the column and the CSV line); ``simulated_values``
reads, from one simulated study, the value at every observation: linear in time between
censuses, averaged over the replicates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import ConfigError, ScenarioConfig
from ..model import REPORTED_COLUMNS
from .assay import TABLE_COLUMNS, well_condition
from .trial import READOUT_NAMES, Readout

HOURS_PER_DAY = 24.0
#: time columns and their factor to hours
TIME_COLUMNS = {"time_h": 1.0, "time_days": HOURS_PER_DAY}
#: columns that select the simulated scenario (well) of an observation
CONDITIONS = ("scenario", "effector_to_target", "antigen_molecules_per_cell")
SD_COLUMN = "sd"
#: optional columns: the interval a source reports around the value (an IQR, a range), shown
#: in the fit's figure beside the posterior predictive; the distance uses the value (and sd)
INTERVAL_COLUMNS = ("low", "high")
#: where a simulated quantity is read: a killing assay's table (``assay.csv``), the time series
#: (``timeseries.csv``) or one value per run (``summary.csv``)
ASSAY, TIMESERIES, SUMMARY = "assay", "timeseries", "summary"
#: where a cohort's readout is read (a trial model: ``analysis.trial.trial_readouts``), and the
#: two columns of its data table: the readout's name and its observed value
READOUT, READOUT_COLUMN, VALUE_COLUMN = "readout", "readout", "value"
_ASSAY_OUTPUTS = tuple(c for c in TABLE_COLUMNS if c not in
                       ("scenario", "antigen_molecules_per_cell", "effector_to_target",
                        "replicate", "seed", "time_h"))
#: numeric ``summary.csv`` columns (``cleared`` is read as the fraction of runs)
SUMMARY_OUTPUTS = ("cleared", "relapse", "baseline_tumor_cells", "nadir_tumor_cells",
                   "nadir_day", "final_tumor_cells", "final_day", "clearance_day",
                   "final_antigen_negative_fraction", "car_t_peak", "car_t_peak_day",
                   "car_t_final", "cancer_killed", "normal_killed", "car_t_blood_peak_per_ul",
                   "car_t_blood_peak_day", "car_t_blood_final_per_ul", "crs_index_peak",
                   "crs_peak_day")
#: relative tolerance of a numeric condition: 2 %, so the nominal E:T of the data matches a
#: well whose CAR-T count was rounded (1:20 of 625 targets is 31 CAR-T, E:T 0.0496)
CONDITION_RTOL = 0.02


def outputs(is_assay: bool) -> dict[str, str]:
    """Observable column -> where it is read (``ASSAY``, ``TIMESERIES``, ``SUMMARY``); an
    assay's own table wins over the time series for the columns both have."""
    found = {column: SUMMARY for column in SUMMARY_OUTPUTS}
    found.update({column: TIMESERIES for column in REPORTED_COLUMNS if column != "time_days"})
    if is_assay:
        found.update({column: ASSAY for column in _ASSAY_OUTPUTS})
    return found


@dataclass(frozen=True)
class Observations:
    """A checked data table.

    ``table``: one row per observation with ``line`` (its line in the CSV file), ``scenario``
    (the simulated scenario it matched), ``time_h`` (NaN for a summary quantity), ``value``
    and ``sd`` (NaN if not given); ``column`` the observed quantity; ``source`` where it is
    read (``ASSAY``, ``TIMESERIES``, ``SUMMARY``); ``conditions`` the condition columns given;
    ``time_column`` the data's time column (``time_h``, ``time_days``; None for a summary).
    """

    table: pd.DataFrame
    column: str
    source: str
    conditions: tuple[str, ...]
    time_column: str | None = None

    @property
    def has_sd(self) -> bool:
        return bool(self.table["sd"].notna().all())


def scenario_conditions(scenarios: Sequence[ScenarioConfig]) -> pd.DataFrame:
    """One row per scenario: ``scenario``, ``effector_to_target``, ``antigen_molecules_per_cell``
    (from its config, as ``analysis.assay.well_condition`` reads a well) and the simulated time
    range ``start_h``, ``end_h`` in the clock of the data (an assay: hours since the CAR-T were
    added)."""
    rows = []
    for scenario in scenarios:
        condition = well_condition(scenario)
        add_h = (condition["add_day"] or 0.0) * HOURS_PER_DAY if scenario.tumor_type == \
            "in_vitro" else 0.0
        rows.append({"scenario": scenario.name,
                     "effector_to_target": condition["effector_to_target"],
                     "antigen_molecules_per_cell": condition["antigen_molecules_per_cell"],
                     "start_h": -add_h,
                     "end_h": scenario.time.duration_days * HOURS_PER_DAY - add_h})
    return pd.DataFrame(rows)


def read_observations(path: Path, shown: str, scenarios: Sequence[ScenarioConfig],
                      is_assay: bool) -> Observations:
    """The data file ``path`` (shown as ``shown`` in messages) checked against the simulated
    ``scenarios``; ConfigError with one line per problem otherwise."""
    data = _read_table(path, shown)
    known = outputs(is_assay)
    observed = [c for c in data.columns if c in known]
    problems = _column_problems(data, observed, known)
    if problems:
        raise ConfigError("\n".join(f"{shown}: {p}" for p in problems))
    column = observed[0]
    source = known[column]
    lines = np.arange(len(data)) + 2  # the header is line 1
    conditions = tuple(c for c in CONDITIONS if c in data.columns)
    bounds = [c for c in INTERVAL_COLUMNS if c in data.columns]
    numbers = [column, *([SD_COLUMN] if SD_COLUMN in data.columns else []), *bounds,
               *[c for c in conditions if c != "scenario"]]
    time_column = next((c for c in TIME_COLUMNS if c in data.columns), None)
    if time_column:
        numbers.append(time_column)
    _numbers(data, numbers, lines, shown)
    time_h = (data[time_column] * TIME_COLUMNS[time_column] if time_column
              else pd.Series(math.nan, index=data.index))
    for name, bad in ((time_column, time_h < 0),
                      (SD_COLUMN, data.get(SD_COLUMN, pd.Series(1.0, index=data.index)) <= 0)):
        if name and bad.any():
            problems.append(f"column {name}: must be {'>= 0' if name != SD_COLUMN else '> 0'} "
                            f"(line(s) {_lines(lines[bad.to_numpy()])})")
    if len(bounds) == 1:
        problems.append(f"column {bounds[0]}: give both {' and '.join(INTERVAL_COLUMNS)} "
                        "(the reported interval), or neither")
    elif bounds:
        outside = ((data["low"] > data[column]) | (data[column] > data["high"])).to_numpy()
        if outside.any():
            problems.append(f"columns low, high: the value must lie inside [low, high] "
                            f"(line(s) {_lines(lines[outside])})")
    simulated = scenario_conditions(scenarios)
    matched, match_problems = _match(data, lines, conditions, simulated)
    problems += match_problems
    if not problems and time_column:
        problems += _time_problems(time_h.to_numpy(), matched, lines, simulated, time_column)
    if problems:
        raise ConfigError("\n".join(f"{shown}: {p}" for p in problems))
    table = pd.DataFrame({"line": lines, "scenario": matched, "time_h": time_h.to_numpy(float),
                          "value": data[column].to_numpy(float),
                          "sd": (data[SD_COLUMN].to_numpy(float) if SD_COLUMN in data.columns
                                 else np.full(len(data), math.nan))})
    for name in INTERVAL_COLUMNS:  # the reported interval (e.g. an IQR), drawn, not fitted
        table[name] = (data[name].to_numpy(float) if len(bounds) == 2
                       else np.full(len(data), math.nan))
    for name in conditions:
        if name != "scenario":
            table[name] = data[name].to_numpy(float)
    return Observations(table=table, column=column, source=source, conditions=conditions,
                        time_column=time_column)


def _read_table(path: Path, shown: str) -> pd.DataFrame:
    """The CSV file ``path``; ConfigError if it is missing or no table."""
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ConfigError(f"{shown}: not a CSV table ({str(err).splitlines()[0]})") from None


def _numbers(data: pd.DataFrame, names: Sequence[str], lines: np.ndarray, shown: str) -> None:
    """Columns ``names`` of ``data`` as numbers (in place); ConfigError listing the lines that
    hold no finite number."""
    problems = []
    for name in names:
        values = pd.to_numeric(data[name], errors="coerce")
        bad = lines[~np.isfinite(values.to_numpy(float))]
        if bad.size:
            problems.append(f"column {name}: not a finite number on line(s) {_lines(bad)}")
        data[name] = values
    if problems:
        raise ConfigError("\n".join(f"{shown}: {p}" for p in problems))


def _column_problems(data: pd.DataFrame, observed: list[str], known: dict[str, str]
                     ) -> list[str]:
    """Problems with the columns of the table (which are missing, which are too many)."""
    if data.empty:
        return ["no observations (the table has no rows)"]
    if len(observed) != 1:
        got = ", ".join(observed) if observed else "none"
        hint = "" if observed else (" (e.g. percent_of_control, car_t_blood_per_ul, "
                                    "tumor_cells, car_t_blood_peak_day; columns given: "
                                    f"{', '.join(map(str, data.columns))})")
        return [f"needs exactly one observed column named as a simulated output (got {got})"
                f"{hint}"]
    column = observed[0]
    times = [c for c in TIME_COLUMNS if c in data.columns]
    if len(times) > 1:
        return ["give one time column, time_h or time_days, not both"]
    if known[column] != SUMMARY and not times:
        return [f"column {column} is a time course: a time column (time_h or time_days) is "
                "missing"]
    if known[column] == SUMMARY and times:
        return [f"column {column} is one value per run (summary.csv): drop the time column "
                f"{times[0]}"]
    return []


def _match(data: pd.DataFrame, lines: np.ndarray, conditions: tuple[str, ...],
           simulated: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The scenario of every row, and the rows that match none or more than one."""
    matched, unmatched, ambiguous = [], [], []
    for i in range(len(data)):
        hit = np.ones(len(simulated), dtype=bool)
        for name in conditions:
            value = data[name].iloc[i]
            if name == "scenario":
                hit &= simulated["scenario"].to_numpy() == str(value)
            else:
                hit &= np.isclose(simulated[name].to_numpy(float), float(value),
                                  rtol=CONDITION_RTOL, atol=0.0)
        names = simulated["scenario"][hit].tolist()
        matched.append(names[0] if len(names) == 1 else "")
        if not names:
            unmatched.append(i)
        elif len(names) > 1:
            ambiguous.append(i)
    problems = []
    if unmatched:
        shown = "; ".join(f"line {lines[i]}: " + ", ".join(
            f"{name}={data[name].iloc[i]}" for name in conditions) for i in unmatched[:5])
        more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        problems.append(f"{len(unmatched)} row(s) match no simulated condition ({shown}{more});"
                        f" simulated: {_conditions_text(simulated)}")
    if ambiguous:
        problems.append(f"line(s) {_lines(lines[ambiguous])}: match several simulated scenarios "
                        f"({_conditions_text(simulated)}); add a condition column "
                        f"({', '.join(CONDITIONS)})")
    return matched, problems


def _conditions_text(simulated: pd.DataFrame, limit: int = 6) -> str:
    rows = [f"{r.scenario} (E:T {r.effector_to_target:g}, antigen "
            f"{r.antigen_molecules_per_cell:g})" for r in simulated.itertuples()]
    return ", ".join(rows[:limit]) + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _time_problems(time_h: np.ndarray, matched: list[str], lines: np.ndarray,
                   simulated: pd.DataFrame, column: str) -> list[str]:
    ranges = simulated.set_index("scenario")
    factor = TIME_COLUMNS[column]
    outside = [i for i, name in enumerate(matched)
               if not ranges.at[name, "start_h"] - 1e-9 <= time_h[i]
               <= ranges.at[name, "end_h"] + 1e-9]
    if not outside:
        return []
    first = outside[0]
    name = matched[first]
    return [f"column {column}: line(s) {_lines(lines[outside])} lie outside the simulated time "
            f"(scenario {name}: {ranges.at[name, 'start_h'] / factor:g} to "
            f"{ranges.at[name, 'end_h'] / factor:g}); lengthen time.duration_days"]


def _lines(lines: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(x)) for x in lines[:limit])
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def simulated_values(observations: Observations, timeseries: pd.DataFrame,
                     summary: pd.DataFrame, assay: pd.DataFrame | None) -> np.ndarray:
    """The simulated value at every observation (in table order): linear in time between the
    censuses of each replicate, then the mean over replicates; a summary quantity is the mean
    over the scenario's runs (``cleared``: the fraction that cleared)."""
    table = observations.table
    column = observations.column
    values = np.empty(len(table))
    if observations.source == SUMMARY:
        for name, rows in table.groupby("scenario", sort=False):
            runs = summary.loc[summary["scenario"] == name, column]
            values[rows.index] = float(pd.to_numeric(runs, errors="coerce").astype(float).mean())
        return values
    curves = time_courses(observations, timeseries, assay)
    for name, rows in table.groupby("scenario", sort=False):
        per_run = curves[curves["scenario"] == name]
        at = [np.interp(rows["time_h"], run["time_h"], run["value"])
              for _, run in per_run.groupby("replicate")]
        values[rows.index] = np.mean(at, axis=0)
    return values


def time_courses(observations: Observations, timeseries: pd.DataFrame,
                 assay: pd.DataFrame | None) -> pd.DataFrame:
    """The observed quantity over time in every matched scenario and replicate: columns
    ``scenario``, ``replicate``, ``time_h`` (the data's clock), ``value``."""
    names = observations.table["scenario"].unique()
    if observations.source == ASSAY:
        rows = assay[assay["scenario"].isin(names)]
        time_h = rows["time_h"]
    else:
        rows = timeseries[timeseries["scenario"].isin(names)]
        time_h = rows["time_days"] * HOURS_PER_DAY
    return pd.DataFrame({"scenario": rows["scenario"].to_numpy(),
                         "replicate": rows["replicate"].to_numpy(),
                         "time_h": time_h.to_numpy(float),
                         "value": rows[observations.column].to_numpy(float)})


def weighted_quantiles(values: Sequence[float], weights: Sequence[float], qs: Sequence[float]
                       ) -> list[float]:
    """Quantiles ``qs`` of weighted samples (ABC particles): the weighted empirical
    distribution, each sample at the middle of its weight, interpolated linearly."""
    x = np.asarray(values, dtype=float)
    w = np.asarray(weights, dtype=float)
    x, w = x[w > 0], w[w > 0]
    order = np.argsort(x, kind="stable")
    cumulative = (np.cumsum(w[order]) - 0.5 * w[order]) / w.sum()
    return [float(np.interp(q, cumulative, x[order])) for q in qs]


def read_readouts(path: Path, shown: str) -> Observations:
    """A table of observed cohort readouts (a trial model), checked: one row per observation
    with the ``readout`` (a name of ``analysis.trial.READOUT_NAMES``: ``cr_rate``, ``orr``,
    ``pfs``, ...), its ``value`` (a fraction for rates, months for durations) and optionally its
    ``sd``; other columns (a ``source``) are for the reader. In the ``Observations`` the
    readout's name stands in the ``scenario`` column."""
    data = _read_table(path, shown)
    problems = [] if not data.empty else ["no observations (the table has no rows)"]
    problems += [f"needs a column {name} (columns given: {', '.join(map(str, data.columns))})"
                 for name in (READOUT_COLUMN, VALUE_COLUMN) if name not in data.columns]
    if problems:
        raise ConfigError("\n".join(f"{shown}: {p}" for p in problems))
    lines = np.arange(len(data)) + 2  # the header is line 1
    _numbers(data, [VALUE_COLUMN, *([SD_COLUMN] if SD_COLUMN in data.columns else [])], lines,
             shown)
    names = data[READOUT_COLUMN].astype(str).str.strip()
    unknown = ~names.isin(READOUT_NAMES)
    if unknown.any():
        problems.append(f"column {READOUT_COLUMN}: unknown readout(s) "
                        f"{', '.join(dict.fromkeys(names[unknown]))} on line(s) "
                        f"{_lines(lines[unknown.to_numpy()])}; known: {', '.join(READOUT_NAMES)}")
    if SD_COLUMN in data.columns and (data[SD_COLUMN] <= 0).any():
        problems.append(f"column {SD_COLUMN}: must be > 0 (line(s) "
                        f"{_lines(lines[(data[SD_COLUMN] <= 0).to_numpy()])})")
    if problems:
        raise ConfigError("\n".join(f"{shown}: {p}" for p in problems))
    table = pd.DataFrame({"line": lines, "scenario": names.to_numpy(),
                          "time_h": np.full(len(data), math.nan),
                          "value": data[VALUE_COLUMN].to_numpy(float),
                          "sd": (data[SD_COLUMN].to_numpy(float) if SD_COLUMN in data.columns
                                 else np.full(len(data), math.nan))})
    return Observations(table=table, column=READOUT_COLUMN, source=READOUT, conditions=())


def readout_values(observations: Observations, readouts: Sequence[Readout]) -> np.ndarray:
    """The simulated cohort's value of the readout of every observation (in table order)."""
    by_name = {r.name: r.value for r in readouts}
    return np.array([by_name[name] for name in observations.table["scenario"]], dtype=float)
