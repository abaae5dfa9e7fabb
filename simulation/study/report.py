"""``cartsim report DIR``: response probabilities, heatmaps and sensitivity indices of a sweep.

Writes into ``DIR/report/`` (or ``--out``):

* ``response_probability.csv``: per design point and base scenario, runs, complete responses
  (CR) and the CR fraction with its Wilson 95 % confidence interval;
* ``response_probability.png``: for one- and two-parameter grid/zip designs, CR probability vs
  the parameter (with CI), or a heatmap over the two parameters, one panel per base scenario;
* ``sobol_indices.csv`` / ``sobol_indices.png`` (sobol designs): first-order and total indices
  with 95 % confidence intervals (SALib ``sobol.analyze``) per base scenario and output; an
  output that never varies gets empty indices and a ``note`` saying so;
* ``morris_indices.csv`` / ``morris_indices.png`` (morris designs): mu* and sigma per parameter.

Sensitivity outputs are per design point, averaged over replicates: ``cr_probability`` (CR
fraction) and ``final_tumor_fraction`` (final / baseline cancer cells).
"""

from __future__ import annotations

import math
import textwrap
import warnings
from pathlib import Path

from ..viz.style import PALETTE  # first: it picks matplotlib's backend (Agg outside Jupyter)

import matplotlib.pyplot as plt  # noqa: I001
import numpy as np
import pandas as pd
import yaml

from ..analysis.outcomes import wilson_interval
from ..config import ConfigError
from ..execution.extras import require
from .sweep import SweepFile, design_matrix, load_sweep_table, salib_problem
from .trial_sweep import PATIENT_COLUMN, READOUTS_FILE

try:  # the sweep extra; write_report calls require("sweep", ...) first
    from SALib.analyze import morris as morris_analyze
    from SALib.analyze import sobol as sobol_analyze
except ImportError:
    morris_analyze = sobol_analyze = None

#: two-sided confidence level of every interval in the report
CONFIDENCE = 0.95
SENSITIVITY_OUTPUTS = ("cr_probability", "final_tumor_fraction")
#: fewest Saltelli base samples N for which Sobol indices are shown without a warning. The
#: estimators are Monte-Carlo averages over N; below ~100 their bootstrap intervals are wider
#: than the [0, 1] range of the indices and estimates outside it are common (Saltelli et al.
#: 2010, Comput Phys Commun 181:259; Sarrazin et al. 2016, Environ Model Softw 79:135 find
#: first-order and total indices converge only for N of several hundred). SALib's Saltelli
#: sampler wants N a power of 2; 128 is the smallest power of 2 above that range's lower end.
MIN_SOBOL_BASE_SAMPLES = 128
#: ``note`` of the Sobol indices of an output with the same value at every design point
CONSTANT_OUTPUT_NOTE = ("the same value ({value:g}) at every design point: no variance to "
                        "attribute, so no index")


class SmallSampleWarning(UserWarning):
    """Sensitivity indices from fewer base samples than ``MIN_SOBOL_BASE_SAMPLES``."""


def sobol_sample_warning(base_samples: int) -> str | None:
    """The warning for Sobol indices from ``base_samples`` (N) Saltelli base samples, or None
    if N >= ``MIN_SOBOL_BASE_SAMPLES``."""
    if base_samples >= MIN_SOBOL_BASE_SAMPLES:
        return None
    return (f"Sobol indices from N = {base_samples} base samples (< {MIN_SOBOL_BASE_SAMPLES}) "
            "are unreliable: wide CIs, values outside [0, 1] are sampling error")

#: key suffix -> unit shown on axes (longest suffix first)
UNITS = (
    ("_molecules_per_cell", "molecules/cell"),
    ("_um_per_min", "µm/min"),
    ("_per_day", "1/day"),
    ("_per_h", "1/h"),
    ("_days", "days"),
    ("_min", "min"),
    ("_um", "µm"),
    ("_h", "h"),
)
SPECIAL_LABELS = {
    "effector_to_target": "E:T ratio (CAR-T per cancer cell)",
    "max_kills": "kills per CAR-T before exhaustion (count)",
    "max_divisions": "CAR-T divisions (count)",
    "initial_cells": "initial cancer cells (count)",
    "negative_fraction": "antigen-negative fraction",
    "cv": "antigen CV",
    "hill_coefficient": "Hill coefficient",
    "exhausted_kill_factor": "exhausted kill factor",
    "resting_kill_factor": "resting kill factor",
}


#: config sections as axis labels read them
SECTION_LABELS = {"car_t": "CAR-T", "tumor": "tumour"}


def axis_label(key: str) -> str:
    """``tumor.antigen.mean_molecules_per_cell`` -> ``tumour antigen mean (molecules/cell)``."""
    parts = [p for p in key.split(".") if not p.isdigit()]
    if parts[:2] == ["dosing", "doses"]:
        parts = ["dose", *parts[2:]]
    last = parts[-1]
    context = " ".join(SECTION_LABELS.get(part, part.replace("_", " ")) for part in parts[:-1])
    if last in SPECIAL_LABELS:
        return f"{context}: {SPECIAL_LABELS[last]}" if context else SPECIAL_LABELS[last]
    for suffix, unit in UNITS:
        if last.endswith(suffix):
            name = last[: -len(suffix)].replace("_", " ")
            return f"{context} {name} ({unit})".strip()
    return f"{context} {last.replace('_', ' ')}".strip()


def _sweep_spec(folder: Path) -> SweepFile:
    resolved = yaml.safe_load((folder / "sweep.resolved.yaml").read_text(encoding="utf-8"))
    return SweepFile.model_validate(resolved["sweep"])


def response_probability(table: pd.DataFrame, parameters: list[str]) -> pd.DataFrame:
    """Per (point, base): runs, failed, CR count, CR fraction, Wilson 95 % CI."""
    data = table.assign(
        _done=table["status"] == "done",
        _failed=table["status"] == "failed",
        _cr=(table["response"] == "CR") if "response" in table else False,
    )
    grouped = data.groupby(["point_id", "base"], sort=False)
    result = grouped[parameters].first()
    if "tumor_type" in data:
        result["tumor_type"] = grouped["tumor_type"].first()
    result["runs"] = grouped["_done"].sum().astype(int)
    result["failed"] = grouped["_failed"].sum().astype(int)
    result["complete_responses"] = grouped["_cr"].sum().astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        result["cr_probability"] = result["complete_responses"] / result["runs"].where(
            result["runs"] > 0)
    lo, hi = wilson_interval(result["complete_responses"], result["runs"])
    result["cr_ci95_low"], result["cr_ci95_high"] = lo, hi
    return result.reset_index()


def _point_outputs(table: pd.DataFrame) -> pd.DataFrame:
    """Per (base, point): mean over replicates of the sensitivity outputs."""
    done = table[table["status"] == "done"]
    data = pd.DataFrame({
        "base": done["base"], "point_id": done["point_id"],
        "cr_probability": (done["response"] == "CR").astype(float),
        "final_tumor_fraction": done["final_tumor_cells"] / done["baseline_tumor_cells"],
    })
    return data.groupby(["base", "point_id"]).mean().reset_index()


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return path


def plot_response(prob: pd.DataFrame, parameters: list[str], path: Path) -> Path | None:
    """CR probability vs one parameter (with CI), or a heatmap over two; a panel per base."""
    bases = list(dict.fromkeys(prob["base"]))
    if len(parameters) == 1:
        key = parameters[0]
        fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
        for i, base in enumerate(bases):
            rows = prob[prob["base"] == base].sort_values(key)
            x = rows[key].to_numpy(dtype=float)
            y = rows["cr_probability"].to_numpy(dtype=float)
            err = np.vstack([y - rows["cr_ci95_low"], rows["cr_ci95_high"] - y])
            runs = rows["runs"][rows["runs"] > 0]
            n_note = (f"n = {runs.min()}" if runs.nunique() <= 1
                      else f"n = {runs.min()}-{runs.max()}")
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=PALETTE[i % len(PALETTE)],
                        label=f"{base} ({n_note} runs per point)")
        if (prob[key] > 0).all() and prob[key].max() / prob[key].min() >= 10:
            ax.set_xscale("log")
        ax.set_xlabel(axis_label(key))
        ax.set_ylabel("complete response probability (fraction of runs)")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"CR probability with Wilson {CONFIDENCE:.0%} CI")
        ax.grid(alpha=0.3)
        ax.legend()
        return _save(fig, path)
    if len(parameters) != 2:
        return None
    x_key, y_key = parameters
    fig, axes = plt.subplots(1, len(bases), figsize=(6.0 * len(bases) + 1.2, 5.2),
                             constrained_layout=True, squeeze=False)
    image = None
    n_runs = prob.loc[prob["runs"] > 0, "runs"]
    for ax, base in zip(axes[0], bases):
        rows = prob[prob["base"] == base]
        grids = {column: rows.pivot_table(index=y_key, columns=x_key, values=column,
                                          aggfunc="first", dropna=False)
                 for column in ("cr_probability", "complete_responses", "runs", "cr_ci95_low",
                                "cr_ci95_high")}
        grid = grids["cr_probability"]
        image = ax.imshow(grid.to_numpy(dtype=float), origin="lower", cmap="viridis",
                          vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
        ax.grid(False)
        for (iy, ix), value in np.ndenumerate(grid.to_numpy(dtype=float)):
            ax.text(ix, iy, _cell_text(value, *(grids[c].iat[iy, ix] for c in (
                "complete_responses", "runs", "cr_ci95_low", "cr_ci95_high"))),
                ha="center", va="center", fontsize=8, linespacing=1.15,
                color="white" if math.isnan(value) or value < 0.6 else "black")
        tumor_type = ""
        if "tumor_type" in rows and rows["tumor_type"].notna().any():
            tumor_type = f" ({rows['tumor_type'].dropna().iloc[0]})"
        ax.set_title(f"{base}{tumor_type}")
        ax.set_xlabel(axis_label(x_key))
        ax.set_ylabel(axis_label(y_key))
    runs_note = (f"n = {n_runs.min()} runs per cell" if n_runs.nunique() == 1
                 else f"n = {n_runs.min()}-{n_runs.max()} runs per cell")
    fig.suptitle(f"Complete response probability: CR/n, [Wilson {CONFIDENCE:.0%} CI]; "
                 f"{runs_note}")
    fig.colorbar(image, ax=list(axes[0]), label="complete response probability (CR/n)")
    return _save(fig, path)


def _cell_text(probability: float, responses: float, runs: float, low: float, high: float
               ) -> str:
    """A heatmap cell: "CR/n", the fraction and its CI ("no runs" where none finished)."""
    if math.isnan(probability) or not runs:
        return "no runs"
    return f"{int(responses)}/{int(runs)} = {probability:.2f}\n[{low:.2f}, {high:.2f}]"


def sobol_indices(table: pd.DataFrame, sweep: SweepFile) -> pd.DataFrame:
    """First-order and total Sobol indices (95 % CI) per base scenario and output. An output
    that never varies over the design has no variance to share out: its indices are NaN (an
    empty cell in sobol_indices.csv) and ``note`` says why (``CONSTANT_OUTPUT_NOTE``)."""
    problem = salib_problem(sweep)
    outputs = _point_outputs(table)
    rows = []
    for base, group in outputs.groupby("base", sort=False):
        group = group.sort_values("point_id")
        if len(group) != table["point_id"].nunique():
            continue  # missing points (failed or pending runs): indices undefined
        for output in SENSITIVITY_OUTPUTS:
            y = group[output].to_numpy(dtype=float)
            if np.ptp(y) == 0:  # a share of zero variance: no index is defined, not 0
                undefined = np.full(len(problem["names"]), np.nan)
                indices = dict.fromkeys(("S1", "S1_conf", "ST", "ST_conf"), undefined)
                note = CONSTANT_OUTPUT_NOTE.format(value=y[0])
            else:
                with np.errstate(all="ignore"):
                    indices = sobol_analyze.analyze(
                        problem, y, calc_second_order=sweep.design.second_order,
                        seed=sweep.seed)
                note = ""
            for i, name in enumerate(problem["names"]):
                rows.append({"base": base, "output": output, "parameter": name,
                             "S1": indices["S1"][i], "S1_conf": indices["S1_conf"][i],
                             "ST": indices["ST"][i], "ST_conf": indices["ST_conf"][i],
                             "note": note})
    return pd.DataFrame(rows)


def morris_indices(table: pd.DataFrame, sweep: SweepFile) -> pd.DataFrame:
    """Morris mu*, its 95 % CI, and sigma per base scenario and output."""
    problem = salib_problem(sweep)
    points = table.drop_duplicates("point_id").sort_values("point_id")
    x = design_matrix(sweep, points)
    outputs = _point_outputs(table)
    rows = []
    for base, group in outputs.groupby("base", sort=False):
        group = group.sort_values("point_id")
        if len(group) != len(points):
            continue
        for output in SENSITIVITY_OUTPUTS:
            y = group[output].to_numpy(dtype=float)
            with np.errstate(all="ignore"):
                indices = morris_analyze.analyze(problem, x, y, num_levels=sweep.design.levels,
                                                 seed=sweep.seed)
            for i, name in enumerate(problem["names"]):
                rows.append({"base": base, "output": output, "parameter": name,
                             "mu_star": indices["mu_star"][i],
                             "mu_star_conf": indices["mu_star_conf"][i],
                             "sigma": indices["sigma"][i], "mu": indices["mu"][i]})
    return pd.DataFrame(rows)


def plot_sobol(indices: pd.DataFrame, path: Path, base_samples: int | None = None) -> Path:
    """Bars of S1 and ST with their 95 % CI (SALib's bootstrap ``S1_conf``, ``ST_conf``); a row
    per output, a column per base scenario. With ``base_samples`` (the design's N) the title
    gives N, and below ``MIN_SOBOL_BASE_SAMPLES`` the figure carries a warning (also issued as
    a ``SmallSampleWarning``)."""
    bases = list(dict.fromkeys(indices["base"]))
    outputs = list(dict.fromkeys(indices["output"]))
    names = list(dict.fromkeys(indices["parameter"]))
    fig, axes = plt.subplots(len(outputs), len(bases), squeeze=False, constrained_layout=True,
                             figsize=(max(5.0, 1.1 * len(names) + 2) * len(bases),
                                      3.6 * len(outputs) + 0.8))
    width = 0.38
    for row, output in enumerate(outputs):
        for col, base in enumerate(bases):
            ax = axes[row][col]
            data = indices[(indices["base"] == base) & (indices["output"] == output)]
            data = data.set_index("parameter").loc[names]
            pos = np.arange(len(names))
            ax.axhspan(0.0, 1.0, color="0.92", zorder=0, lw=0)
            if data["S1"].isna().all():  # the output never varied (sobol_indices' note)
                ax.text(0.5, 0.5, "the same at every point: no index", transform=ax.transAxes,
                        ha="center", va="center", color="0.3")
            ax.bar(pos - width / 2, data["S1"], width, yerr=data["S1_conf"], capsize=3,
                   color=PALETTE[0], label=f"first order S1 ± {CONFIDENCE:.0%} CI")
            ax.bar(pos + width / 2, data["ST"], width, yerr=data["ST_conf"], capsize=3,
                   color=PALETTE[1], label=f"total ST ± {CONFIDENCE:.0%} CI")
            ax.set_xticks(pos, [axis_label(n) for n in names], rotation=30, ha="right",
                          fontsize=8)
            ax.set_ylabel("Sobol index (fraction of variance)")
            ax.set_title(f"{base}: {output.replace('_', ' ')}")
            ax.axhline(0, color="0.5", lw=0.8)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            if not data[["S1", "S1_conf", "ST", "ST_conf"]].to_numpy().any():
                ax.text(0.5, 0.5, "output identical at every design point:\n"
                        "no variance to apportion (indices undefined, shown as 0)",
                        transform=ax.transAxes, ha="center", va="center", color="0.25")
    title = "Sobol indices (grey band: the valid range 0-1)"
    if base_samples is not None:
        title += f"; N = {base_samples} Saltelli base samples"
        warning = sobol_sample_warning(base_samples)
        if warning:
            warnings.warn(warning, SmallSampleWarning, stacklevel=2)
            title += "\n" + textwrap.fill(f"WARNING: {warning}", 80)
    fig.suptitle(title, color="#B00000" if "WARNING" in title else "black")
    return _save(fig, path)


def plot_morris(indices: pd.DataFrame, path: Path) -> Path:
    """mu* vs sigma per parameter; a row per output, a column per base scenario."""
    bases = list(dict.fromkeys(indices["base"]))
    outputs = list(dict.fromkeys(indices["output"]))
    fig, axes = plt.subplots(len(outputs), len(bases), squeeze=False, constrained_layout=True,
                             figsize=(5.5 * len(bases), 4.2 * len(outputs)))
    for row, output in enumerate(outputs):
        for col, base in enumerate(bases):
            ax = axes[row][col]
            data = indices[(indices["base"] == base) & (indices["output"] == output)]
            for i, (_, r) in enumerate(data.iterrows()):
                ax.errorbar(r["mu_star"], r["sigma"], xerr=r["mu_star_conf"], fmt="o",
                            color=PALETTE[i % len(PALETTE)], capsize=3,
                            label=axis_label(r["parameter"]))
            ax.set_xlabel(f"mu* (mean |elementary effect| on {output.replace('_', ' ')} "
                          "per unit of parameter, log10 units for log ranges)", fontsize=8)
            ax.set_ylabel("sigma (std of elementary effects)", fontsize=8)
            ax.set_title(f"{base}: {output.replace('_', ' ')}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return _save(fig, path)


def write_report(folder: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write the report files of a sweep folder; return their paths."""
    require("sweep", "cartsim report")
    folder = Path(folder)
    if not (folder / "index.parquet").exists() or not (folder / "sweep.resolved.yaml").exists():
        raise ConfigError(f"{folder}: not a sweep folder (no index.parquet / "
                          "sweep.resolved.yaml); run cartsim sweep first")
    out = Path(out) if out is not None else folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    sweep = _sweep_spec(folder)
    parameters = list(sweep.parameters)
    table = load_sweep_table(folder)
    if PATIENT_COLUMN in table.columns:
        raise ConfigError(f"{folder}: a sweep over a trial: its readouts per design point are "
                          f"in {folder / READOUTS_FILE} (written by cartsim sweep); cartsim "
                          "report reads sweeps over scenarios")
    written = []
    prob = response_probability(table, parameters)
    prob.to_csv(out / "response_probability.csv", index=False)
    written.append(out / "response_probability.csv")
    if sweep.design.method in ("grid", "zip") and prob["runs"].sum() > 0:
        plotted = plot_response(prob, parameters, out / "response_probability.png")
        if plotted:
            written.append(plotted)
    if sweep.design.method == "sobol" and (table["status"] == "done").any():
        indices = sobol_indices(table, sweep)
        if len(indices):
            indices.to_csv(out / "sobol_indices.csv", index=False)
            written += [out / "sobol_indices.csv",
                        plot_sobol(indices, out / "sobol_indices.png", sweep.design.n)]
    if sweep.design.method == "morris" and (table["status"] == "done").any():
        indices = morris_indices(table, sweep)
        if len(indices):
            indices.to_csv(out / "morris_indices.csv", index=False)
            written += [out / "morris_indices.csv",
                        plot_morris(indices, out / "morris_indices.png")]
    return written
