"""A finished output folder: its tables and figures, assembled from the stored runs.

``finish`` reads every run's files back from ``runs/`` (``simulation.io.rundir``), writes the
tables and the figures (``simulation.viz``) atomically, rewrites the manifest and then removes
the work files, so a complete folder holds exactly the output contract. Tables always come
from the per-run files, so a resumed study gives the same bytes as one that ran straight
through.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pandas as pd

from ..analysis.assay import assay_endpoints, assay_table, is_assay
from ..config import ScenarioConfig
from ..config.schema import MAIN_PRODUCT, SINGLE_ANTIGEN, CarTConfig
from ..io.files import atomic_write, write_text
from ..io.rundir import MANIFEST_FILE, RunDir, read_tables, remove_leftovers, run_name
from ..io.snapshots import load_snapshot
from ..io.volume import write_vti
from ..viz.antigen_plots import has_antigen_composition, plot_antigen_composition
from ..viz.lattice_plots import plot_max_projection, plot_orthogonal_slices
from ..viz.product_plots import has_product_series, plot_car_t_products
from ..viz.style import write_figure
from ..viz.time_courses import (plot_assay_wells, plot_blood_kinetics, plot_burden,
                                plot_killing_assay)
from .runner import RunSpec


def infusion_days(scenarios: list[ScenarioConfig]) -> dict[str, list[float]]:
    """Scenario name -> its configured infusion days, as the figures mark them."""
    return {s.name: [dose.day for dose in s.dosing.doses] for s in scenarios}


#: how a figure legend names each route of a dose
ROUTE_WORDS = {"intravenous": "intravenous", "intratumoral": "intratumoral",
               "anywhere": "into the dish"}


def _product_words(product: CarTConfig, first_antigen: str) -> str:
    """"CD19/CD22 OR CAR-T", "EGFRvIII-primed EphA2 CAR-T, HER2-vetoed, IL-12 armoured": the
    antigens a product kills, primes on and spares, and its armour ("CAR-T" where the scenario
    names no antigen)."""
    receptors = product.receptor_list(first_antigen)
    kills = [r.antigen for r in receptors if r.role == "kill" and r.antigen != SINGLE_ANTIGEN]
    words = f"{'/'.join(kills)} {'OR ' if len(kills) > 1 else ''}CAR-T" if kills else "CAR-T"
    words = "".join(f"{r.antigen}-primed " for r in receptors if r.role == "prime") + words
    words += "".join(f", {r.antigen}-vetoed" for r in receptors if r.role == "veto")
    armour = product.armour
    for present, name in ((armour.tgf_beta_resistance > 0, "dnTGFbR"),
                          (armour.pd1_knockout, "PD-1 KO"), (armour.il12 is not None, "IL-12")):
        words += f", {name}" if present else ""
    return words


def treatment_labels(scenarios: list[ScenarioConfig]) -> dict[str, str]:
    """Scenario name -> what its figures' legends say it was given: the products its doses
    infuse (``_product_words``; by name where it has several), their routes and the
    conditioning, e.g. "CD19 CAR-T, intravenous after lymphodepletion" or "CAR-T,
    intratumoral"; "untreated" without doses."""
    labels = {}
    for s in scenarios:
        doses = s.dosing.doses
        if not doses:
            labels[s.name] = "untreated"
            continue
        first_antigen = next(iter(s.tumor.antigen_distributions))
        names = list(dict.fromkeys(dose.product for dose in doses))
        products = [(f"{name}: " if name != MAIN_PRODUCT else "")
                    + _product_words(s.product_configs[name], first_antigen) for name in names]
        routes = dict.fromkeys(ROUTE_WORDS[dose.route or s.dosing.route] for dose in doses)
        text = f"{' + '.join(products)}, {'/'.join(routes)}"
        labels[s.name] = text + (" after lymphodepletion" if s.dosing.lymphodepletion else "")
    return labels


def finish(rundir: RunDir, specs: list[RunSpec], manifest: dict[str, Any]
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the result files, then remove the marker, ``runs/`` and ``checkpoints/``.

    Every folder gets ``timeseries.csv``, ``summary.csv`` and ``burden.png`` (infusions marked at
    their configured days; for a killing assay the wells' target counts); runs whose CAR-T
    went through the blood also ``blood_kinetics.png`` (CAR-T per uL); scenarios naming several
    antigens ``antigen_composition.png`` (the tumour by the antigens its cells carry);
    scenarios with several products or a product composition ``car_t_products.png`` (CAR-T
    per product and subset). A 3D scenario run into
    the folder also gets its first replicate's final lattice (``volume_outputs``; runs kept only
    in memory, as ``run_study`` makes them, have none). A killing assay (in-vitro wells
    beside untreated controls, ``simulation.analysis.assay``) also gets ``assay.csv`` (% of
    control and kills per CAR-T over time), ``assay_endpoints.csv`` (median and IQR at 48 h,
    72 h and the end) and ``assay.png``.
    """
    timeseries, summary = read_tables(rundir, [spec.name for spec in specs])
    atomic_write(rundir.path / "timeseries.csv", lambda tmp: timeseries.to_csv(tmp, index=False))
    atomic_write(rundir.path / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    scenarios = list({spec.scenario.name: spec.scenario for spec in specs}.values())
    infusions = infusion_days(scenarios)
    treatments = treatment_labels(scenarios)
    if is_assay(scenarios):  # in-vitro wells beside their untreated controls
        table = assay_table(scenarios, timeseries)
        atomic_write(rundir.path / "assay.csv", lambda tmp: table.to_csv(tmp, index=False))
        atomic_write(rundir.path / "assay_endpoints.csv",
                     lambda tmp: assay_endpoints(table).to_csv(tmp, index=False))
        write_figure(rundir.path / "assay.png", lambda tmp: plot_killing_assay(table, tmp))
        # the wells' counts, labelled by antigen and E:T: no clinical response in a dish
        write_figure(rundir.path / "burden.png", lambda tmp: plot_assay_wells(table, tmp))
    else:
        write_figure(rundir.path / "burden.png", lambda tmp: plot_burden(
            timeseries, summary, tmp, infusions=infusions, treatments=treatments))
    if has_antigen_composition(timeseries):  # a scenario names several antigens
        write_figure(rundir.path / "antigen_composition.png", lambda tmp:
                     plot_antigen_composition(timeseries, tmp, infusions=infusions,
                                              treatments=treatments))
    if has_product_series(timeseries):  # several products, or a CD4:CD8 / memory-like mix
        write_figure(rundir.path / "car_t_products.png", lambda tmp: plot_car_t_products(
            timeseries, tmp, infusions=infusions, treatments=treatments))
    if timeseries["car_t_blood_per_ul"].max() > 0:  # some CAR-T went through the blood
        write_figure(rundir.path / "blood_kinetics.png", lambda tmp: plot_blood_kinetics(
            timeseries, summary, tmp, infusions=infusions, treatments=treatments))
    for spec in specs:
        if rundir.final_snapshot(spec.name).exists():  # 3D, replicate 0, run into the folder
            volume_outputs(rundir, spec.scenario.name, spec.seed)
    write_text(rundir.path / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    marker = rundir.read_marker()
    rundir.marker.unlink()  # the folder is complete from here on
    if marker.get("replaces"):
        shutil.rmtree(marker["replaces"], ignore_errors=True)
    remove_leftovers(rundir)
    return timeseries, summary


def volume_outputs(rundir: RunDir, scenario: str, seed: int | None = None) -> None:
    """The final lattice of a 3D scenario's replicate 0 as ``<scenario>_final.npz`` (a
    snapshot), ``_final.vti`` (ParaView), ``_final_slices.png`` (orthogonal slices through the
    tumour) and ``_final_projection.png`` (maximum-intensity projection), the figures titled
    "replicate 0 (seed N)" (``seed``: replicate 0's)."""
    stored = rundir.final_snapshot(run_name(scenario, 0))
    snapshot = {**load_snapshot(stored), "replicate": 0}
    if seed is not None:
        snapshot["seed"] = seed
    stem = rundir.path / f"{scenario}_final"
    atomic_write(stem.with_suffix(".vti"), lambda tmp: write_vti(snapshot, tmp))
    write_figure(stem.with_name(stem.name + "_slices.png"),
                 lambda tmp: plot_orthogonal_slices(snapshot, tmp))
    write_figure(stem.with_name(stem.name + "_projection.png"),
                 lambda tmp: plot_max_projection(snapshot, tmp))
    atomic_write(stem.with_suffix(".npz"), lambda tmp: shutil.copyfile(stored, tmp))
