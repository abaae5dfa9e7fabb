"""The Mesa model: clock, dosing events and data collection around the numba kernels.

The lattice lives in plain contiguous numpy arrays (``simulation.engine.lattice.Lattice``), not in
Mesa agents or PropertyLayers: the kernels need flat arrays, and per-cell Python objects would cost
~500x in speed (see docs/architecture.md). Mesa supplies the model object, ``running``, the
``DataCollector`` and the interactive view.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mesa
import numba
import numpy as np

from .engine import kernel
from .engine.jit import announce_compilation, compile_in_background
from .biology.blood import BloodPool
from .config import (ConfigError, ScenarioConfig, apply_overrides, load_scenario,
                     validate, yaml_value)
from .engine.constants import (
    CANCER,
    CENSUS_NAMES,
    E_CANCER_BORN,
    E_CANCER_DIED,
    E_CANCER_KILLED,
    E_CANCER_NECROSED,
    E_CLASS_TO_BLOOD,
    E_NORMAL_KILLED,
    EVENT_NAMES,
    N_EVENT_SLOTS,
)
from .biology.microenvironment import Microenvironment
from .biology.observables import (
    antigen_columns,
    antigen_counts,
    hypoxic_fraction,
    infiltration,
    product_columns,
    product_counts,
)
from .biology.systemic import SystemicRates, SystemicState, advance
from .biology.scenario import (
    BLOOD_STREAM,
    INFUSION_STREAM,
    arrival_sites,
    build_lattice,
    dosing_plan,
    infuse,
    kernel_parameters,
    motility,
    set_division_probabilities,
    setup_rng,
)
from .engine.units import MIN_PER_DAY, MIN_PER_H, minutes_to_steps

#: version of ``CarTModel.checkpoint_state()``; bump when its content changes
CHECKPOINT_FORMAT = 5  # 5: blood counts per CAR-T class; 4: the ``extra`` cell records
#: formats ``from_checkpoint`` reads: 3 lacks ``extra``, which its scenarios never needed; 3
#: and 4 have one blood count per state and 13 event counters (their runs had one class)
READABLE_CHECKPOINT_FORMATS = (3, 4, 5)

#: lattice sites per kernel thread in the default thread count (``default_threads``): a
#: sweep opens a parallel region per row class (3 in 2D) at ~2 us each (OpenMP), so a second
#: thread pays from ~10^3 sites (a 32^2 blood lattice: 0.167 -> 0.127 ms per step; the 200^2
#: killing-assay dish 3.1 -> 1.7 s per run; 2 cores, 2026-12-07)
SITES_PER_THREAD = 1_000
#: lattice sites per thread solving the fields side by side (``field_threads``): below
#: ~10^5 sites the four solves are too short for a thread pool to pay (solid 200^2, kernel on 2
#: threads: 0.84 ms per step with the fields solved one after the other, 1.24 ms side by side;
#: solid 512^2: 5.5 and 4.9 ms)
FIELD_SITES_PER_THREAD = 100_000

#: scalar columns the DataCollector records at every census
REPORTED_COLUMNS = (
    "time_days",
    *CENSUS_NAMES,
    "cumulative_cancer_killed",
    "cumulative_normal_killed",
    "cumulative_car_t_infused",
    "car_t_blood",
    "car_t_blood_per_ul",
    "crs_index",
    "car_t_infiltration_depth_um",
    "car_t_in_tumor_fraction",
    "tumor_hypoxic_fraction",
)


class CarTModel(mesa.Model):
    """CAR-T cells, cancer cells and normal cells on a lattice, stepped by numba kernels.

    Build it from a scenario (a ``ScenarioConfig``, a mapping, or a YAML path) plus keyword
    overrides with ``__`` for nesting, so Mesa tools can build it from keywords alone::

        CarTModel("configs/b_all_cd19.yaml", seed=3, car_t__max_kills=5)

    ``seed`` defaults to the scenario's ``seed``; ``threads`` (kernel threads, results do not
    depend on it) defaults to ``default_threads``. One ``step()`` advances ``time.dt_min`` minutes; a census is collected every
    ``time.record_every_h`` hours (a census at an infusion time is taken before the infusion).
    ``running`` turns false when the end time is reached, or when
    the last cancer cell dies if ``time.stop_when_cleared``.
    """

    def __init__(self, scenario: ScenarioConfig | dict | str | Path, seed: int | None = None,
                 threads: int | None = None, **overrides: Any) -> None:
        config = _resolve_scenario(scenario, overrides)
        self.seed = int(config.seed if seed is None else seed)
        super().__init__(rng=self.seed)
        self.config = config
        cfg = self.config
        self.dt_min = cfg.time.dt_min
        self.lattice = build_lattice(cfg, self.seed)
        self.params = kernel_parameters(cfg)
        self.motility = motility(cfg, self.lattice)
        # rows that may hold a motile cell: migration sweeps skip the rest (kernel.sweep_lattice)
        self.motile_rows = np.zeros(self.lattice.shape[0] * self.lattice.shape[1], dtype=np.uint8)
        self.sweep = 0
        # the named events, then CAR-T entering the blood per class (constants.E_CLASS_TO_BLOOD)
        self.events = np.zeros(N_EVENT_SLOTS, dtype=np.int64)
        # which kernel this scenario runs; its first call on a machine compiles: say so first
        self.receptor_logic = kernel.receptor_logic(self.params, self.lattice.extra)
        announce_compilation(self.receptor_logic)
        self._compile_kernel_beside_the_rest()
        self.threads = default_threads(self.lattice.n_sites) if threads is None else threads
        self.microenvironment = Microenvironment(cfg, self.lattice)
        self.field_threads = field_threads(self.lattice.n_sites, self.threads)
        self.microenvironment.initialise(self.lattice, self.field_threads)
        self.blood = BloodPool(cfg, self.lattice, self.params)
        self.initial_tumor_cells = int(np.count_nonzero(self.lattice.cells["cell_type"] == CANCER))
        self.plan = dosing_plan(cfg)
        self.next_infusion = 0
        self.time_min = 0.0
        self.step_index = 0
        self.car_t_infused = 0
        self.car_t_not_placed = 0
        self.end_min = cfg.time.duration_days * MIN_PER_DAY
        # with a clinical course the lattice hands over to the systemic model (_follow_up)
        self.lattice_end_min = (self.end_min if cfg.clinical is None
                                else min(self.end_min, cfg.clinical.lattice_days * MIN_PER_DAY))
        self.record_every_steps = minutes_to_steps(cfg.time.record_every_h * MIN_PER_H,
                                                   self.dt_min)
        self.counts: dict[str, float] = {}
        #: what each census records: REPORTED_COLUMNS, then per-antigen counts (several
        #: antigens) and per-product and per-subset CAR-T (several products, a composition)
        self.columns = (*REPORTED_COLUMNS, *antigen_columns(cfg.antigen_names),
                        *product_columns(cfg))
        self.datacollector = mesa.DataCollector(
            model_reporters={name: _reporter(name) for name in self.columns}
        )
        self._infuse_due()
        self._mark_motile_rows()
        self._census()
        self.datacollector.collect(self)

    # ---- stepping -----------------------------------------------------------------------
    def step(self) -> None:
        """Advance one time step of ``dt_min`` minutes (infusions due now happen first)."""
        if not self.running:
            return
        self._infuse_due()
        lat = self.lattice
        numba.set_num_threads(self.threads)
        self.blood.step(lat, setup_rng(self.seed, BLOOD_STREAM, self.step_index), self.seed,
                        self.sweep, self.motile_rows)
        if self.config.dosing.lymphodepletion is not None:
            set_division_probabilities(self.params, self.config, self.time_min)
        returned = self.events[E_CLASS_TO_BLOOD:].copy()
        self.sweep = kernel.advance(lat, self.params, self.motility.move_p,
                                    self.motility.persist_p, self.seed, self.sweep, 1,
                                    self.motility.n_substeps, self.events, self.motile_rows,
                                    self.receptor_logic)
        returned = (self.events[E_CLASS_TO_BLOOD:] - returned).reshape(-1, 2)
        n_classes = self.params.shape[0]
        self.blood.effector += returned[:n_classes, 0]
        self.blood.memory += returned[:n_classes, 1]
        self.step_index += 1
        self.time_min = self.step_index * self.dt_min
        self.microenvironment.update_due(lat, self.time_min, self.field_threads)
        finished = self.time_min >= self.lattice_end_min - 1e-9
        clinical = self.config.clinical
        stop_when_cleared = self.config.time.stop_when_cleared or (
            clinical is not None and clinical.switch_when_cleared)
        cleared = (stop_when_cleared and self.tumor_cells == 0
                   and self.next_infusion >= len(self.plan))
        if finished or cleared or self.step_index % self.record_every_steps == 0:
            self._census()
            self.datacollector.collect(self)
        if finished or cleared:
            if clinical is not None:
                self._follow_up()
            self.running = False

    def _compile_kernel_beside_the_rest(self) -> None:
        """On a machine's first run, compile the lattice kernel of this scenario
        (``kernel.receptor_logic``) here while a second process compiles the field solver and
        the kernel's other entry points (``compile_in_background``); a kernel call of zero
        steps changes nothing."""
        rest = compile_in_background(self.receptor_logic)
        if rest is None:
            return
        kernel.advance(self.lattice, self.params, self.motility.move_p, self.motility.persist_p,
                       self.seed, self.sweep, 0, self.motility.n_substeps, self.events,
                       self.motile_rows, self.receptor_logic)
        rest.wait()

    def run(self) -> None:
        """Step until ``running`` turns false."""
        while self.running:
            self.step()

    # ---- events ---------------------------------------------------------------------------
    def _infuse_due(self) -> None:
        """Place every infusion whose time has come."""
        while (self.next_infusion < len(self.plan)
               and self.plan[self.next_infusion].time_min <= self.time_min + 1e-9):
            infusion = self.plan[self.next_infusion]
            wanted = infusion.n_cells(self.tumor_cells)
            counts = infusion.class_counts(wanted)
            if infusion.route == "intravenous":
                self.blood.effector[infusion.car_classes()] += counts
                placed = wanted
            else:
                sites = arrival_sites(self.lattice, self.config, infusion.route)
                rng = setup_rng(self.seed, INFUSION_STREAM, self.next_infusion)
                placed = infuse(self.lattice, sites, counts, infusion.car_classes(), rng,
                                stamp=(self.sweep - 1) & 0xFFFF)
                self._mark_motile_rows()
            self.car_t_infused += placed
            self.car_t_not_placed += wanted - placed
            self.next_infusion += 1

    def _mark_motile_rows(self) -> None:
        """Re-mark the rows holding motile cells after cells were placed outside the kernel."""
        kernel.mark_motile_rows(self.lattice.cells, self.lattice.shape, self.motility.move_p,
                                self.motile_rows)

    def _census(self) -> None:
        lat = self.lattice
        values = kernel.census_kernel(lat.cells, lat.extra, self.params, self.receptor_logic)
        self.counts = dict(zip(CENSUS_NAMES, (int(v) for v in values)))
        self.counts.update(antigen_counts(lat, self.config.antigen_names))
        self.counts.update(product_counts(lat, self.config,
                                          self.blood.effector + self.blood.memory))
        self.counts["time_days"] = self.time_min / MIN_PER_DAY
        self.counts["cumulative_cancer_killed"] = int(self.events[E_CANCER_KILLED])
        self.counts["cumulative_normal_killed"] = int(self.events[E_NORMAL_KILLED])
        self.counts["cumulative_car_t_infused"] = self.car_t_infused
        self.counts["car_t_blood"] = self.blood.cells
        self.counts["car_t_blood_per_ul"] = self.blood.per_ul
        self.counts["crs_index"] = self.microenvironment.crs_index(lat)
        depth_um, inside = infiltration(lat)
        self.counts["car_t_infiltration_depth_um"] = depth_um
        self.counts["car_t_in_tumor_fraction"] = inside
        self.counts["tumor_hypoxic_fraction"] = hypoxic_fraction(
            lat, self.config.microenvironment.oxygen.proliferation_threshold_mmhg)

    def _follow_up(self) -> None:
        """The rest of the follow-up as the systemic model (``biology.systemic``), one census
        every ``clinical.record_every_days``, counts in lattice-equivalent cells (floats).

        Hand-over: antigen-positive and -negative cancer cells and effector and memory CAR-T
        (lattice + blood) relative to the baseline tumour, plus the disease the lattice cannot
        hold (``clinical.residual_fraction``; the ``antigen_negative_fraction`` subclone grown
        since t = 0); normal B cells relative to their first census.
        """
        clinical = self.config.clinical
        counts = self.counts
        baseline = max(1, self.initial_tumor_cells)
        rates = SystemicRates.from_config(self.config)
        days = self.time_min / MIN_PER_DAY
        negative = counts["tumor_antigen_negative"]
        b_cells_before = self.datacollector.model_vars["normal_antigen_positive"][0]
        state = SystemicState(
            day=days,
            positive=(counts["tumor_cells"] - negative) / baseline + clinical.residual_fraction,
            negative=negative / baseline + min(
                rates.capacity, clinical.antigen_negative_fraction
                * math.exp(rates.growth_per_day * days)),
            effector=(counts["car_t_effector"] + int(self.blood.effector.sum())) / baseline,
            memory=(counts["car_t_memory"] + int(self.blood.memory.sum())) / baseline,
            b_cells=counts["normal_antigen_positive"] / b_cells_before if b_cells_before else 1.0)
        car_t_total = counts["car_t_cells"] + self.blood.cells
        blood_share = self.blood.cells / car_t_total if car_t_total else 0.0
        tissue_share = 1.0 - blood_share
        other_normal = counts["normal_cells"] - counts["normal_antigen_positive"]
        end_days = self.end_min / MIN_PER_DAY
        while days < end_days - 1e-9:
            step = min(clinical.record_every_days, end_days - days)
            state = advance(state, rates, step)
            days += step
            car_t = (state.effector + state.memory) * baseline
            counts.update({
                "time_days": days,
                "tumor_cells": (state.positive + state.negative) * baseline,
                "tumor_antigen_high": state.positive * baseline, "tumor_antigen_low": 0,
                "tumor_antigen_negative": state.negative * baseline,
                "normal_cells": other_normal + state.b_cells * b_cells_before,
                "normal_antigen_positive": state.b_cells * b_cells_before,
                # the tissue's share (car_t_blood holds the rest), as on the lattice
                "car_t_cells": tissue_share * car_t,
                "car_t_effector": tissue_share * state.effector * baseline,
                "car_t_exhausted": 0, "car_t_memory": tissue_share * state.memory * baseline,
                "car_t_blood": blood_share * car_t,
                "car_t_blood_per_ul": blood_share * car_t / self.blood.volume_ul,
                "crs_index": 0.0, "car_t_infiltration_depth_um": math.nan,
                "car_t_in_tumor_fraction": math.nan, "tumor_hypoxic_fraction": math.nan,
                **dict.fromkeys(self.columns[len(REPORTED_COLUMNS):], math.nan),
            })
            self.datacollector.collect(self)
        self.time_min = days * MIN_PER_DAY

    @property
    def tumor_cells(self) -> int:
        """Cancer cells on the lattice now, from the event counters (no lattice scan)."""
        e = self.events
        return self.initial_tumor_cells + int(e[E_CANCER_BORN] - e[E_CANCER_DIED]
                                              - e[E_CANCER_KILLED] - e[E_CANCER_NECROSED])

    @property
    def event_totals(self) -> dict[str, int]:
        """Cumulative kernel events of this run, by name."""
        return dict(zip(EVENT_NAMES, (int(v) for v in self.events)))

    # ---- checkpoints ----------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to continue this run bit-identically, as arrays and plain data.

        The lattice records, event counters, clock (``step_index``, ``time_min``, ``sweep``),
        dosing progress, the DataCollector rows so far and Mesa's step counter, plus the
        resolved config and seed that rebuild the rest (kernel parameters, motility, dosing
        plan). Mesa's generators (``random``, ``rng``) are not saved: no rule draws from them
        (every random number is ``engine.rng`` or a set-up generator seeded from ``seed``).
        Arrays are copies; ``simulation.io.checkpoints`` writes this to disk.
        """
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "seed": self.seed,
            "cells": self.lattice.cells.copy(),
            "extra": self.lattice.extra.copy(),
            "fields": self.lattice.fields.copy(),
            "blood": self.blood.state(),
            "next_field_update_min": self.microenvironment.next_update_min,
            "events": self.events.copy(),
            "step_index": self.step_index,
            "time_min": self.time_min,
            "sweep": self.sweep,
            "next_infusion": self.next_infusion,
            "car_t_infused": self.car_t_infused,
            "car_t_not_placed": self.car_t_not_placed,
            "initial_tumor_cells": self.initial_tumor_cells,
            "running": self.running,
            "steps": self.steps,
            "counts": dict(self.counts),
            "model_vars": {name: list(values)
                           for name, values in self.datacollector.model_vars.items()},
        }

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], **kwargs: Any) -> CarTModel:
        """A model that continues exactly where ``checkpoint_state()`` was taken.

        ``state`` may come from ``checkpoint_state()`` or from a file (lists for tuples);
        ``kwargs`` (e.g. ``threads``) go to the constructor and do not affect results.
        """
        if state.get("format") not in READABLE_CHECKPOINT_FORMATS:
            raise ValueError(f"checkpoint format {state.get('format')!r}, expected one of "
                             f"{READABLE_CHECKPOINT_FORMATS}")
        model = cls(ScenarioConfig.model_validate(state["config"]), seed=int(state["seed"]),
                    **kwargs)
        cells = np.asarray(state["cells"])
        if "spare" in (cells.dtype.names or ()):  # formats 3-4: car_class was "spare" (all 0)
            cells = cells.view(model.lattice.cells.dtype)
        if cells.dtype != model.lattice.cells.dtype or cells.shape != model.lattice.cells.shape:
            raise ValueError("checkpoint lattice does not match its config")
        model.lattice.cells[:] = cells
        extra = np.asarray(state.get("extra", model.lattice.extra[:0]))
        if extra.dtype != model.lattice.extra.dtype or extra.shape != model.lattice.extra.shape:
            raise ValueError("checkpoint lattice does not match its config")
        model.lattice.extra[:] = extra
        model._mark_motile_rows()
        model.lattice.fields[:] = np.asarray(state["fields"], dtype=np.float64)
        model.blood.restore(state["blood"])
        model.microenvironment.next_update_min = float(state["next_field_update_min"])
        events = np.asarray(state["events"], dtype=np.int64)  # formats 3-4: 13 counters
        model.events[:] = 0
        model.events[:events.size] = events
        for name in ("step_index", "sweep", "next_infusion", "car_t_infused", "car_t_not_placed",
                     "initial_tumor_cells", "steps"):
            setattr(model, name, int(state[name]))
        model.time_min = float(state["time_min"])
        model.running = bool(state["running"])
        model.counts = dict(state["counts"])
        model.datacollector.model_vars = {name: list(state["model_vars"][name])
                                          for name in model.columns}
        return model


#: environment variable: the most kernel threads ``default_threads`` gives, for processes that
#: run models side by side without knowing of each other (pytest-xdist workers, a shell loop):
#: each would take all cores, and OpenMP threads that spin-wait for a core slow everyone down
THREADS_VARIABLE = "CARTSIM_THREADS"
#: the most kernel threads ``default_threads`` gives a model built in this thread (its
#: ``limit``; unset: all cores), set by ``kernel_threads_at_most``
_thread_limit = threading.local()


@contextlib.contextmanager
def kernel_threads_at_most(threads: int) -> Iterator[None]:
    """Within the block, models built in this thread take at most ``threads`` kernel threads
    by default: for a process that runs several models at once (a Dask worker's tasks)."""
    before = getattr(_thread_limit, "limit", None)
    _thread_limit.limit = max(1, threads)
    try:
        yield
    finally:
        _thread_limit.limit = before


def default_threads(n_sites: int) -> int:
    """Kernel threads for a lattice: one per ``SITES_PER_THREAD`` sites, at most all cores
    (``NUMBA_NUM_THREADS``; a worker process of a local pool gets its share of the cores), at
    most ``$CARTSIM_THREADS`` (``THREADS_VARIABLE``) and at most the limit of
    ``kernel_threads_at_most``."""
    cores = numba.config.NUMBA_NUM_THREADS
    limit = getattr(_thread_limit, "limit", None) or cores
    cap = threads_cap()
    if cap is not None:
        limit = min(limit, cap)
    return max(1, min(cores, limit, n_sites // SITES_PER_THREAD))


def threads_cap() -> int | None:
    """``$CARTSIM_THREADS`` (``THREADS_VARIABLE``) as a number of threads, None if unset or
    empty; anything but a whole number >= 1 is a ConfigError that names the variable."""
    variable = os.environ.get(THREADS_VARIABLE, "").strip()
    if not variable:
        return None
    if not variable.isdecimal() or int(variable) < 1:  # isdigit passes "²", int() does not
        raise ConfigError(f"environment variable {THREADS_VARIABLE}: expected a whole number "
                          f"of kernel threads >= 1 (got {variable!r}); unset it to use every "
                          "core")
    return int(variable)


def field_threads(n_sites: int, threads: int) -> int:
    """Threads solving the fields side by side: one per ``FIELD_SITES_PER_THREAD`` sites, at
    most the model's ``threads``. The fields do not depend on it either."""
    return max(1, min(threads, n_sites // FIELD_SITES_PER_THREAD))


def _reporter(name: str):
    def report(model: CarTModel) -> float:
        return model.counts[name]

    report.__name__ = name
    return report


def _resolve_scenario(scenario: ScenarioConfig | dict | str | Path,
                      overrides: dict[str, Any]) -> ScenarioConfig:
    """A validated ScenarioConfig from any accepted form plus ``a__b=value`` overrides."""
    dotted = [f"{key.replace('__', '.')}={yaml_value(v)}" for key, v in overrides.items()]
    if isinstance(scenario, (str, Path)):
        return load_scenario(scenario, dotted)
    data = scenario.model_dump() if isinstance(scenario, ScenarioConfig) else scenario
    if not dotted and isinstance(scenario, ScenarioConfig):
        return scenario
    return validate(apply_overrides(data, dotted), ScenarioConfig, "model arguments")
