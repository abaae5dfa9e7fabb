"""Scenario builder: a validated config -> initial lattice, kernel parameters and dosing plan.

This is the one place where physical units become per-step numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from ..config import AntigenDistribution, CarTConfig, ConfigError, ScenarioConfig, check_scenario
from ..engine import kernel
from ..engine.constants import (
    CANCER,
    CAR_T,
    CELL_EXTRA_DTYPE,
    COUNTER_MAX,
    EMPTY,
    N_CELL_TYPES,
    N_SUBSETS,
    NO_RECEPTOR,
    NORMAL,
    SUBSET_CD4,
    SUBSET_MEMORY_LIKE,
    TIMER_MAX,
    TISSUE_OPEN,
    TISSUE_STROMA,
    TISSUE_VESSEL,
    mean_step_length,
    neutral_kernel_parameters,
)
from ..engine.lattice import Lattice
from ..engine.units import (
    MIN_PER_DAY,
    MIN_PER_H,
    lognormal_sigma,
    minutes_to_steps,
    probability_per_step,
    rate_from_half_life,
)

# purposes of the numpy generators used outside the kernel (initial layout, infusions, the
# blood pool; the model draws from the last two each step)
LAYOUT_STREAM = 1
INFUSION_STREAM = 2
BLOOD_STREAM = 3


def setup_rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    """An independent numpy generator for one set-up purpose of one run."""
    return np.random.default_rng([seed, stream, index])


# ---------------------------------------------------------------------------------------------
# kernel parameters
# ---------------------------------------------------------------------------------------------
def _timer_steps(hours: float, dt_min: float, key: str) -> int:
    steps = minutes_to_steps(hours * MIN_PER_H, dt_min)
    if steps > TIMER_MAX:
        raise ConfigError(
            f"{key}: {hours:g} h is {steps} time steps, more than the {TIMER_MAX} a timer holds; "
            "raise time.dt_min"
        )
    return steps


def kernel_parameters(cfg: ScenarioConfig) -> np.ndarray:
    """The parameters the kernels read: an array of ``constants.KERNEL_PARAMS_DTYPE`` records
    (per-step probabilities, rates per minute, time steps; units in the dtype's comments), one
    per CAR-T class: ``constants.N_SUBSETS`` per product, products in
    ``cfg.product_configs`` order. A CAR-T reads the record of its class; cancer, normal and
    necrotic cells read record 0 (the main product's), whose CAR-T fields are the main
    product's CD8 effector-derived cells (or all its cells, without a composition).

    Python code reads and sets the fields as ``params[0]["dt_min"]``.
    """
    records = [_class_parameters(cfg, car_t, subset)
               for car_t in cfg.product_configs.values() for subset in range(N_SUBSETS)]
    params = np.concatenate(records)
    set_division_probabilities(params, cfg)
    return params


def receptor_logic(cfg: ScenarioConfig) -> bool | None:
    """The kernel the scenario runs (``engine.kernel.receptor_logic``: None for plain CARs),
    without building its lattice."""
    extra = np.empty(1 if cfg.needs_extra_records else 0, dtype=CELL_EXTRA_DTYPE)
    return kernel.receptor_logic(kernel_parameters(cfg), extra)


def receptor_logics(scenarios: Iterable[ScenarioConfig]) -> set[bool | None]:
    """The kernels runs of ``scenarios`` call (``receptor_logic`` of each, ~1 ms), looking no
    further once both kinds were found."""
    found: set[bool | None] = set()
    for cfg in scenarios:
        found.add(receptor_logic(cfg))
        if len(found) == 2:
            break
    return found


def _class_parameters(cfg: ScenarioConfig, car_t: CarTConfig, subset: int) -> np.ndarray:
    """The one-element parameter array of the CAR-T of product ``car_t`` and ``subset``
    (subset bits ``constants.SUBSET_*``; a product without a composition has one kind of
    cell, so its four subsets get the same record)."""
    dt = cfg.time.dt_min
    tumor = cfg.tumor
    params = neutral_kernel_parameters()
    p = params[0]  # a view: setting its fields fills ``params``
    traits = _subset_traits(car_t, subset)
    p["car_t_kill_rate_per_min"] = car_t.kill_rate_per_h / MIN_PER_H * traits.kill_rate_factor
    p["exhausted_kill_factor"] = car_t.exhausted_kill_factor
    p["resting_kill_factor"] = car_t.resting_kill_factor
    p["hill_coefficient"] = car_t.hill_coefficient
    p["max_kills"] = car_t.max_kills
    p["max_divisions"] = min(COUNTER_MAX, car_t.max_divisions + traits.extra_divisions)
    p["exhaustion_engaged_steps"] = _timer_steps(
        car_t.exhaustion_after_engaged_h, dt, "car_t.exhaustion_after_engaged_h")
    p["activation_steps"] = _timer_steps(
        car_t.activation_duration_h, dt, "car_t.activation_duration_h")
    # 0 h: armed from the first contact (a timer would round up to one step)
    p["arming_steps"] = (_timer_steps(car_t.arming_time_h, dt, "car_t.arming_time_h")
                         if car_t.arming_time_h > 0 else 0)
    p["dt_min"] = dt
    p["needs_help"] = traits.needs_help
    p["car_t_effector_death_p"] = _half_life_p(
        car_t.effector_half_life_days * traits.half_life_factor, dt)
    p["car_t_exhausted_death_p"] = _half_life_p(car_t.exhausted_half_life_days, dt)
    p["car_t_memory_death_p"] = _half_life_p(car_t.memory_half_life_days, dt)
    p["car_t_memory_p"] = probability_per_step(
        car_t.memory_conversion_rate_per_day / MIN_PER_DAY, dt)
    # competing hazards: P(any event in dt) = 1 - exp(-(birth + death) dt), split by rate
    birth = rate_from_half_life(tumor.cycle_time_h * MIN_PER_H)
    death = tumor.death_rate_per_day / MIN_PER_DAY
    any_event = probability_per_step(birth + death, dt)
    p["cancer_divide_p"] = any_event * birth / (birth + death)
    p["cancer_death_p"] = any_event * death / (birth + death)
    _antigen_parameters(p, cfg)
    _receptor_parameters(p, cfg, car_t)
    env = cfg.microenvironment
    oxygen = env.oxygen
    p["proliferation_o2_mmhg"] = oxygen.proliferation_threshold_mmhg
    p["necrosis_o2_mmhg"] = oxygen.necrosis_threshold_mmhg
    p["necrosis_max_o2_mmhg"] = oxygen.necrosis_max_mmhg
    p["necrosis_max_rate_per_min"] = oxygen.necrosis_max_rate_per_h / MIN_PER_H
    p["necrotic_clearance_p"] = _half_life_p(oxygen.necrotic_clearance_half_life_days, dt)
    p["car_t_hypoxic_kill_factor"] = oxygen.car_t_hypoxic_kill_factor
    p["suppression_half_effect"] = env.suppression.half_effect
    p["chemotaxis_bias"] = env.chemokine.chemotaxis_bias if env.chemokine.enabled else 0.0
    p["stroma_crossing_p"] = cfg.tissue.stroma.crossing_probability
    # without vessels no CAR-T can re-enter the blood: 0 spares the kernel the neighbour scan
    # for a vessel (same outcome: the draw happens only next to a vessel)
    p["intravasation_p"] = probability_per_step(
        cfg.blood.intravasation_rate_per_h / MIN_PER_H, dt) if cfg.tissue.has_vessels else 0.0
    return params


def _antigen_parameters(p: np.void, cfg: ScenarioConfig) -> None:
    """How daughters inherit each antigen slot (a tumour's antigens come first, so slots the
    tumour lacks have nothing to inherit)."""
    tumor = cfg.tumor
    p["n_antigens"] = len(cfg.antigen_names)
    p["linked_antigen_loss_p"] = tumor.linked_antigen_loss_per_division
    prefixes = ("antigen", "antigen_b", "antigen_c")
    for prefix, antigen in zip(prefixes, tumor.antigen_distributions.values()):
        p[f"{prefix}_inheritance_sigma"] = lognormal_sigma(antigen.inheritance_cv)
        p[f"{prefix}_loss_p"] = antigen.loss_per_division


@dataclass(frozen=True)
class SubsetTraits:
    """How a subset of a product differs from the product's parameters (``car_t``)."""

    kill_rate_factor: float = 1.0
    half_life_factor: float = 1.0  # on the effector half-life
    extra_divisions: int = 0
    needs_help: int = 0  # 1: a CD8 cell of a composed product (divides slower without CD4 help)


def _subset_traits(car_t: CarTConfig, subset: int) -> SubsetTraits:
    """The traits of ``subset`` (bits ``constants.SUBSET_*``) of product ``car_t``: CD4 cells
    kill slower and persist longer, CD8 cells divide slower without CD4 help, memory-like
    cells divide more and persist longer (``car_t.composition``)."""
    mix = car_t.composition
    if mix is None:
        return SubsetTraits()
    cd4 = bool(subset & SUBSET_CD4)
    memory_like = bool(subset & SUBSET_MEMORY_LIKE)
    return SubsetTraits(
        kill_rate_factor=mix.cd4_kill_rate_factor if cd4 else 1.0,
        half_life_factor=((mix.cd4_half_life_factor if cd4 else 1.0)
                          * (mix.memory_like_half_life_factor if memory_like else 1.0)),
        extra_divisions=mix.memory_like_extra_divisions if memory_like else 0,
        needs_help=0 if cd4 else 1)


def set_division_probabilities(params: np.ndarray, cfg: ScenarioConfig,
                               time_min: float = math.inf) -> None:
    """Set every class's CAR-T division probabilities per step (helped and unhelped) for
    ``time_min`` (``car_t_division_rate``: the lymphodepletion boost fades). Runs every time
    step of a conditioned scenario: two probabilities per product, copied to its classes; a
    class that needs no help (``needs_help`` 0) divides at the helped rate either way."""
    dt = cfg.time.dt_min
    for product, car_t in enumerate(cfg.product_configs.values()):
        rate = car_t_division_rate(cfg, time_min, car_t)
        helped = probability_per_step(rate, dt)
        mix = car_t.composition
        unhelped = (helped if mix is None
                    else probability_per_step(rate * mix.unhelped_cd8_division_factor, dt))
        for p in params[product * N_SUBSETS:(product + 1) * N_SUBSETS]:
            p["car_t_divide_p"] = helped
            p["unhelped_divide_p"] = unhelped if p["needs_help"] else helped


def _receptor_parameters(p: np.void, cfg: ScenarioConfig, car_t: CarTConfig) -> None:
    """The receptors of product ``car_t`` as antigen slots and half-max densities
    (``NO_RECEPTOR`` for the unused ones), and its armour as a suppression sensitivity and a
    kill-rate factor."""
    slot_of = {name: slot for slot, name in enumerate(cfg.antigen_names)}
    receptors = car_t.receptor_list(cfg.antigen_names[0])
    kills = [r for r in receptors if r.role == "kill"]
    slots = ("kill_slot", "second_kill_slot", "third_kill_slot")
    half_maxes = ("antigen_half_max", "second_half_max", "third_half_max")
    for i, (slot, half_max) in enumerate(zip(slots, half_maxes)):
        p[slot] = slot_of[kills[i].antigen] if i < len(kills) else NO_RECEPTOR
        p[half_max] = kills[i].half_max_molecules_per_cell if i < len(kills) else 0.0
    for role in ("prime", "veto"):
        receptor = next((r for r in receptors if r.role == role), None)
        p[f"{role}_slot"] = NO_RECEPTOR if receptor is None else slot_of[receptor.antigen]
        p[f"{role}_half_max"] = 0.0 if receptor is None else receptor.half_max_molecules_per_cell
    p["priming_steps"] = _timer_steps(car_t.priming_duration_h, cfg.time.dt_min,
                                      "car_t.priming_duration_h")
    armour = car_t.armour
    share = cfg.microenvironment.suppression.checkpoint_share
    sensitivity = 1.0
    if armour.tgf_beta_resistance > 0 or armour.pd1_knockout:
        sensitivity -= armour.tgf_beta_resistance * (1.0 - share) + armour.pd1_knockout * share
    p["armoured_kill_factor"] = 1.0
    if armour.il12 is not None:
        sensitivity *= 1.0 - armour.il12.suppression_resistance
        p["armoured_kill_factor"] = armour.il12.kill_rate_factor
    p["suppression_sensitivity"] = sensitivity


def _half_life_p(half_life_days: float, dt_min: float) -> float:
    """Probability per step of a first-order loss with the given half-life (days)."""
    return probability_per_step(rate_from_half_life(half_life_days * MIN_PER_DAY), dt_min)


def car_t_division_rate(cfg: ScenarioConfig, time_min: float = math.inf,
                        car_t: CarTConfig | None = None) -> float:
    """Division rate of an activated CAR-T of product ``car_t`` (default ``cfg.car_t``; 1/min)
    at ``time_min``.

    ``ln2 / division_time``, raised after lymphodepletion by ``car_t_expansion_boost`` times a
    factor that halves every ``recovery_half_life_days`` (homeostatic cytokines fade as
    lymphocytes recover).
    """
    rate = rate_from_half_life((car_t or cfg.car_t).division_time_h * MIN_PER_H)
    conditioning = cfg.dosing.lymphodepletion
    if conditioning is None or not math.isfinite(time_min):
        return rate
    fading = 0.5 ** (time_min / (conditioning.recovery_half_life_days * MIN_PER_DAY))
    return rate * (1.0 + conditioning.car_t_expansion_boost * fading)


@dataclass(frozen=True)
class Motility:
    """Per-cell-type move and persistence probabilities per migration sweep."""

    move_p: np.ndarray  # (N_CELL_TYPES,) probability of a move attempt per migration sweep
    persist_p: np.ndarray  # (N_CELL_TYPES,) probability of keeping the heading at a move
    n_substeps: int  # migration sweeps per time step


def motility(cfg: ScenarioConfig, lattice: Lattice) -> Motility:
    """Map speeds (um/min) to moves per migration sweep so the mean speed is exact at any dt.

    A move covers ``mean_step_length`` spacings on average (diagonals are longer), so a cell of
    speed v makes ``v / (spacing * mean_step_length)`` moves per minute. A time step holds enough
    migration sweeps that each needs at most one move: the move probability per sweep is then
    the expected number of moves, which keeps the mean speed independent of ``dt``.
    Persistence: the heading survives a move with probability ``exp(-t_move / tau)``.
    """
    dt = cfg.time.dt_min
    step_um = lattice.spacing_um * mean_step_length(lattice.offsets)
    speeds = np.zeros(N_CELL_TYPES)
    persistence = np.zeros(N_CELL_TYPES)
    speeds[CAR_T] = cfg.car_t.speed_um_per_min
    persistence[CAR_T] = cfg.car_t.persistence_time_min
    speeds[CANCER] = cfg.tumor.speed_um_per_min
    # one speed for all normal populations: the fastest (they share one cell-type code)
    speeds[NORMAL] = max((p.speed_um_per_min for p in cfg.normal if p.density > 0), default=0.0)
    moves_per_step = speeds * dt / step_um
    n_substeps = max(1, math.ceil(moves_per_step.max() - 1e-12))
    move_p = moves_per_step / n_substeps
    persist_p = np.zeros(N_CELL_TYPES)
    moving = (speeds > 0) & (persistence > 0)
    with np.errstate(over="ignore"):  # a vanishing speed: infinite interval, no persistence
        move_interval_min = step_um / np.where(speeds > 0, speeds, 1.0)
        persist_p[moving] = np.exp(-move_interval_min[moving] / persistence[moving])
    return Motility(move_p=move_p, persist_p=persist_p, n_substeps=n_substeps)


# ---------------------------------------------------------------------------------------------
# initial lattice
# ---------------------------------------------------------------------------------------------
def draw_antigen(dist: AntigenDistribution, n: int, rng: np.random.Generator) -> np.ndarray:
    """Antigen densities (molecules/cell) for ``n`` cells from a log-normal + negative fraction."""
    if n == 0 or dist.mean_molecules_per_cell <= 0:
        return np.zeros(n, dtype=np.float32)
    sigma = lognormal_sigma(dist.cv)
    mu = math.log(dist.mean_molecules_per_cell) - 0.5 * sigma * sigma
    values = rng.lognormal(mu, sigma, size=n)
    values[rng.random(n) < dist.negative_fraction] = 0.0
    return values.astype(np.float32)


def _compact_sites(lattice: Lattice, n: int, excluded: np.ndarray | None = None) -> np.ndarray:
    """The ``n`` sites closest to the lattice centre (a disc in 2D, a ball in 3D), ties in site
    order, skipping ``excluded`` sites (a boolean mask, e.g. vessels)."""
    sites = np.arange(lattice.n_sites)
    if excluded is not None:
        sites = sites[~excluded]
    coordinates = lattice.site_coordinates(sites).astype(np.float64)
    centre = (np.array(lattice.shape[::-1][:coordinates.shape[1]]) - 1) / 2.0
    d2 = ((coordinates - centre) ** 2).sum(axis=1)
    return np.sort(sites[np.argsort(d2, kind="stable")[:n]])


def build_lattice(cfg: ScenarioConfig, seed: int) -> Lattice:
    """The lattice at t = 0: vessels, the tumour (dispersed or compact), stroma, then the
    normal populations in the open sites left (minus those lymphodepletion removed).

    A scenario that cannot run (e.g. a lattice larger than this machine's memory) is refused
    with a ConfigError before anything is allocated.
    """
    check_scenario(cfg)
    lat = cfg.lattice
    lattice = Lattice.empty(lat.width, lat.height, lat.spacing_um, lat.neighbourhood,
                            depth=lat.shape[0] if lat.dimensions == 3 else None,
                            extra=cfg.needs_extra_records)
    rng = setup_rng(seed, LAYOUT_STREAM)
    tissue = lattice.tissue
    n_tumor = cfg.tumor.initial_cells
    if cfg.tumor.layout == "compact":
        planned = np.zeros(lattice.n_sites, dtype=bool)
        planned[_compact_sites(lattice, n_tumor)] = True
        density = np.where(planned, cfg.tissue.tumor_vessel_density, cfg.tissue.vessel_density)
        _lay_vessels(tissue, density, rng)
        tumor_sites = _compact_sites(lattice, n_tumor, excluded=tissue == TISSUE_VESSEL)
    else:
        _lay_vessels(tissue, np.full(lattice.n_sites, cfg.tissue.vessel_density), rng)
        tumor_sites = rng.choice(np.flatnonzero(tissue == TISSUE_OPEN), size=n_tumor,
                                 replace=False)
    lattice.cells["cell_type"][tumor_sites] = CANCER
    names = cfg.antigen_names
    for name, dist in cfg.tumor.antigen_distributions.items():
        lattice.antigen(names.index(name))[tumor_sites] = draw_antigen(
            dist, n_tumor, rng)
    _lay_stroma(lattice, cfg, rng)

    free = np.flatnonzero((lattice.cells["cell_type"] == EMPTY) & (tissue == TISSUE_OPEN))
    rng.shuffle(free)
    conditioning = cfg.dosing.lymphodepletion
    start = 0
    for population in cfg.normal:
        n = int(round(population.density * free.size))
        sites = free[start:start + n]
        start += n
        distributions = population.antigens or {names[0]: population.antigen}
        antigens = {name: draw_antigen(dist, n, rng) for name, dist in distributions.items()}
        if conditioning is not None and population.name in conditioning.populations:
            kept = int(round(n * (1.0 - conditioning.fraction_removed)))
            sites = sites[:kept]
        lattice.cells["cell_type"][sites] = NORMAL
        for name, antigen in antigens.items():
            lattice.antigen(names.index(name))[sites] = antigen[:sites.size]
    return lattice


def _lay_vessels(tissue: np.ndarray, density: np.ndarray, rng: np.random.Generator) -> None:
    """Make each site a vessel with probability ``density[site]`` (no draws if all are 0)."""
    if np.any(density > 0):
        tissue[rng.random(tissue.size) < density] = TISSUE_VESSEL


def _lay_stroma(lattice: Lattice, cfg: ScenarioConfig, rng: np.random.Generator) -> None:
    """Mark stroma sites: a capsule band around the tumour and straight fibres in the tissue.

    Stroma goes on open sites without cancer cells; fibres start at random sites, point in a
    random direction and run ``fibre_length_um`` until ``fibre_density`` of the non-tumour
    sites is covered.
    """
    stroma = cfg.tissue.stroma
    tissue = lattice.tissue
    cell_type = lattice.cells["cell_type"]
    open_site = (tissue == TISSUE_OPEN) & (cell_type != CANCER)
    if stroma.capsule_width_um > 0:
        distance_um = (distance_transform_edt(lattice.grid("cell_type") != CANCER).ravel()
                       * lattice.spacing_um)
        tissue[open_site & (distance_um <= stroma.capsule_width_um)] = TISSUE_STROMA
    if stroma.fibre_density <= 0:
        return
    target = int(round(stroma.fibre_density * np.count_nonzero(cell_type != CANCER)))
    length = max(1, int(round(stroma.fibre_length_um / lattice.spacing_um)))
    for _ in range(100 * max(1, target // length)):  # bounded: fibres may overlap
        if target <= 0:
            break
        sites = _fibre_sites(lattice.shape, length, rng)
        sites = sites[(tissue[sites] == TISSUE_OPEN) & (cell_type[sites] != CANCER)]
        tissue[sites] = TISSUE_STROMA
        target -= np.unique(sites).size


def _fibre_sites(shape: tuple[int, int, int], length: int, rng: np.random.Generator
                 ) -> np.ndarray:
    """Sites of one straight fibre of ``length`` sites from a random start in a random
    direction (uniform in the plane in 2D, on the sphere in 3D), clipped to the lattice."""
    nz, ny, nx = shape
    steps = np.arange(length)
    if nz == 1:
        x0, y0 = rng.random(2) * (nx, ny)
        angle = rng.random() * math.pi
        start, direction = (x0, y0, 0.0), (math.cos(angle), math.sin(angle), 0.0)
    else:
        start = tuple(rng.random(3) * (nx, ny, nz))
        cos_polar, azimuth = 2.0 * rng.random() - 1.0, rng.random() * math.pi
        sin_polar = math.sqrt(1.0 - cos_polar * cos_polar)
        direction = (sin_polar * math.cos(azimuth), sin_polar * math.sin(azimuth), cos_polar)
    xs, ys, zs = (np.round(a + steps * d).astype(np.int64) for a, d in zip(start, direction))
    inside = (xs >= 0) & (xs < nx) & (ys >= 0) & (ys < ny) & (zs >= 0) & (zs < nz)
    return xs[inside] + nx * (ys[inside] + ny * zs[inside])


# ---------------------------------------------------------------------------------------------
# dosing
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Infusion:
    """One scheduled infusion, in model time."""

    time_min: float
    cells: int | None
    effector_to_target: float | None
    route: str  # "intravenous", "intratumoral" or "anywhere"
    product: int = 0  # index in ``ScenarioConfig.product_configs``
    #: share of the infused cells per subset (``constants.SUBSET_*`` bits; sums to 1)
    subset_shares: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)

    def n_cells(self, tumor_cells: int) -> int:
        """CAR-T to infuse given the cancer cells present now."""
        if self.cells is not None:
            return self.cells
        return max(1, round(self.effector_to_target * tumor_cells))

    def class_counts(self, n_cells: int) -> np.ndarray:
        """How many of ``n_cells`` infused cells fall in each CAR-T class of this product
        (``constants.N_SUBSETS`` counts, largest remainders: no random draws)."""
        shares = np.asarray(self.subset_shares)
        counts = np.floor(shares * n_cells).astype(np.int64)
        short = n_cells - int(counts.sum())
        counts[np.argsort(-(shares * n_cells - counts), kind="stable")[:short]] += 1
        return counts

    def car_classes(self) -> np.ndarray:
        """The CAR-T classes of this product (``product * N_SUBSETS + subset``)."""
        return self.product * N_SUBSETS + np.arange(N_SUBSETS)


def subset_shares(car_t: CarTConfig) -> tuple[float, ...]:
    """Share of a product's infused cells per subset (index = ``constants.SUBSET_*`` bits):
    all in subset 0 without a composition."""
    mix = car_t.composition
    if mix is None:
        return (1.0, 0.0, 0.0, 0.0)
    shares = [0.0] * N_SUBSETS
    for subset in range(N_SUBSETS):
        cd4 = mix.cd4_fraction if subset & SUBSET_CD4 else 1.0 - mix.cd4_fraction
        memory = (mix.memory_like_fraction if subset & SUBSET_MEMORY_LIKE
                  else 1.0 - mix.memory_like_fraction)
        shares[subset] = cd4 * memory
    return tuple(shares)


def dosing_plan(cfg: ScenarioConfig) -> list[Infusion]:
    """The infusions of a scenario, sorted by time."""
    products = list(cfg.product_configs)
    plan = [Infusion(d.day * MIN_PER_DAY, d.cells, d.effector_to_target,
                     d.route or cfg.dosing.route, products.index(d.product),
                     subset_shares(cfg.product_configs[d.product])) for d in cfg.dosing.doses]
    return sorted(plan, key=lambda inf: inf.time_min)


def arrival_sites(lattice: Lattice, cfg: ScenarioConfig, route: str) -> np.ndarray:
    """Free sites where CAR-T placed directly may land: anywhere, or (``intratumoral``) within
    ``dosing.margin_width_um`` of a cancer cell. Free: empty and not a vessel."""
    free = (lattice.cells["cell_type"] == EMPTY) & (lattice.tissue != TISSUE_VESSEL)
    if route == "anywhere":
        return np.flatnonzero(free)
    not_tumor = lattice.grid("cell_type") != CANCER
    if not_tumor.all():
        return np.flatnonzero(free)  # no tumour left: nothing to aim at
    distance_um = distance_transform_edt(not_tumor).ravel() * lattice.spacing_um
    return np.flatnonzero(free & (distance_um <= cfg.dosing.margin_width_um))


def infuse(lattice: Lattice, sites: np.ndarray, class_counts: np.ndarray,
           car_classes: np.ndarray, rng: np.random.Generator, stamp: int) -> int:
    """Place fresh effector CAR-T on distinct ``sites``: ``class_counts[i]`` of class
    ``car_classes[i]``; returns how many fit. When not all fit, the placed cells keep the
    classes' shares (the class order is shuffled)."""
    n_cells = int(class_counts.sum())
    n_placed = min(n_cells, sites.size)
    chosen = rng.choice(sites, size=n_placed, replace=False)
    lattice.cells["cell_type"][chosen] = CAR_T
    lattice.cells["stamp"][chosen] = stamp
    classes = np.repeat(car_classes, class_counts).astype(np.uint8)
    if np.count_nonzero(class_counts) > 1:
        classes = rng.permutation(classes)
    lattice.cells["car_class"][chosen] = classes[:n_placed]
    return n_placed
