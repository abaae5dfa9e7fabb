"""YAML scenarios -> validated, typed config objects.

Every physical quantity carries its unit in its key (``cycle_time_h``, ``speed_um_per_min``,
``death_rate_per_day``); ``simulation.biology.scenario`` converts them once into per-step numbers.
Unknown keys, wrong types and out-of-range values are errors that name the file and the key path.

Two kinds of file:

* a **scenario** (one tumour, one CAR-T product, one dosing plan), and
* a **study**: ``scenarios: [a.yaml, b.yaml]`` run side by side with shared seeds and replicates.

Both may say ``extends: other.yaml``; mappings merge key by key, anything else is replaced.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..engine.constants import CELL_DTYPE, N_FIELDS, TIMER_MAX, mean_step_length, neighbour_offsets
from ..engine.units import MIN_PER_H, minutes_to_steps

SEED_MAX = 2**63 - 1
#: largest lattice side the schema accepts; what fits in memory is checked separately
LATTICE_SIDE_MAX = 1_000_000
#: more migration sweeps per time step than this means a speed in the wrong unit
MAX_MOVES_PER_STEP = 1000
#: config files are hand-written and small; anything larger is the wrong file
MAX_CONFIG_BYTES = 10 * 2**20
#: mappings and lists nested deeper than this are not a config (configs nest 4 levels)
MAX_NESTING = 32


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
        super().__init__("; ".join(f"{_format_location(loc)}: {message}"
                                   for loc, message, _ in problems))


class _Strict(BaseModel):
    """Base: unknown keys are errors, NaN/inf are rejected, no type coercion.

    Strict mode: ``true`` or ``"30"`` where a number belongs is an error, not 1.0 or 30.0
    (integers are still accepted where a float is expected).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True,
                              strict=True)


PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class AntigenDistribution(_Strict):
    """Target antigen per cell: log-normal among antigen-positive cells plus a negative fraction."""

    mean_molecules_per_cell: Annotated[float, Field(ge=0, le=1e9)] = Field(
        description="Mean antigen density of antigen-positive cells (molecules/cell); 0 = none. "
        "At most 1e9 (measured densities are below 1e6), so densities stay finite in float32."
    )
    cv: Annotated[float, Field(ge=0, le=10)] = Field(
        0.5, description="Coefficient of variation of the log-normal density (dimensionless)."
    )
    negative_fraction: Fraction = Field(
        0.0, description="Fraction of cells with no antigen at all."
    )
    inheritance_cv: Annotated[float, Field(ge=0, le=2)] = Field(
        0.1, description="CV of the log-normal factor a daughter's density differs by from its "
        "mother's (dimensionless); antigen-negative mothers have negative daughters."
    )
    loss_per_division: Fraction = Field(
        0.0, description="Probability that a daughter of an antigen-positive cell is born "
        "antigen-negative (antigen loss, e.g. CD19 splicing/mutation; per division)."
    )


class LatticeConfig(_Strict):
    """The simulated tissue: a 2D section or a 3D block of a square lattice, one cell per site."""

    dimensions: Literal[2, 3] = Field(
        2, description="2: a tissue section (width x height sites); 3: a block of width x "
        "height x depth sites (spheroids, organoids, whole nodes).")
    width: Annotated[int, Field(ge=3, le=LATTICE_SIDE_MAX)] = Field(
        200, description="Sites along x (a lattice must also fit in memory, see "
        "estimate_memory_bytes).")
    height: Annotated[int, Field(ge=3, le=LATTICE_SIDE_MAX)] = Field(
        200, description="Sites along y.")
    depth: Annotated[int, Field(ge=3, le=LATTICE_SIDE_MAX)] | None = Field(
        None, description="Sites along z (dimensions: 3 only; default: the height).")
    spacing_um: PositiveFloat = Field(15.0, description="Site spacing = cell diameter (um).")
    neighbourhood: Literal["moore", "von_neumann"] = Field(
        "moore", description="moore: 8 neighbours in 2D, 26 in 3D; von_neumann: 4 in 2D, 6 "
        "in 3D."
    )

    @model_validator(mode="after")
    def _depth_only_in_3d(self) -> LatticeConfig:
        if self.dimensions == 2 and self.depth is not None:
            raise Problems([(("depth",), "is only for a 3D lattice (dimensions: 3)",
                             self.depth)])
        return self

    @property
    def shape(self) -> tuple[int, int, int]:
        """(nz, ny, nx) sites; nz = 1 in 2D."""
        if self.dimensions == 2:
            return (1, self.height, self.width)
        return (self.depth or self.height, self.height, self.width)

    @property
    def n_sites(self) -> int:
        """Number of lattice sites."""
        nz, ny, nx = self.shape
        return nz * ny * nx

    @property
    def label(self) -> str:
        """``width x height`` (2D) or ``width x height x depth`` (3D) sites, for messages."""
        nz, ny, nx = self.shape
        return f"{nx}x{ny}" if self.dimensions == 2 else f"{nx}x{ny}x{nz}"


class TimeConfig(_Strict):
    """Clock of a run."""

    dt_min: Annotated[float, Field(gt=0, le=60)] = Field(6.0, description="Time step (min).")
    duration_days: Annotated[float, Field(gt=0, le=3650)] = Field(
        42.0, description="Simulated time after t = 0 (days)."
    )
    record_every_h: PositiveFloat = Field(12.0, description="Census interval (h).")
    stop_when_cleared: bool = Field(
        True, description="End a run as soon as no cancer cell is left."
    )


class TumorConfig(_Strict):
    """Cancer cells."""

    layout: Literal["dispersed", "compact"] = Field(
        description="dispersed: scattered at random (blood cancers); compact: one contiguous "
        "mass in the lattice centre (solid tumours)."
    )
    initial_cells: Annotated[int, Field(ge=1)] = Field(description="Cancer cells at t = 0.")
    cycle_time_h: PositiveFloat = Field(
        description="Doubling time of a cell with a free neighbour (h): it divides at rate "
        "ln2 / cycle_time_h."
    )
    death_rate_per_day: NonNegativeFloat = Field(0.0, description="Apoptosis rate (1/day).")
    speed_um_per_min: NonNegativeFloat = Field(
        0.0, description="Random-walk speed (um/min); 0 = sessile."
    )
    antigen: AntigenDistribution


class NormalPopulation(_Strict):
    """A healthy cell population filling part of the space the tumour leaves."""

    name: str = Field(description="Label, e.g. 'normal B cells'.")
    density: Fraction = Field(description="Fraction of non-tumour sites this population occupies.")
    speed_um_per_min: NonNegativeFloat = Field(0.0, description="Random-walk speed (um/min).")
    antigen: AntigenDistribution = Field(
        default_factory=lambda: AntigenDistribution(mean_molecules_per_cell=0.0),
        description="Antigen on these healthy cells (on-target, off-tumour toxicity if > 0).",
    )


class CarTConfig(_Strict):
    """The CAR-T product: how its cells move, recognise, kill, divide, exhaust and die."""

    speed_um_per_min: NonNegativeFloat = Field(5.0, description="Migration speed (um/min).")
    persistence_time_min: NonNegativeFloat = Field(
        10.0, description="Time over which a CAR-T keeps its direction (min)."
    )
    kill_rate_per_h: PositiveFloat = Field(
        4.0, description="Kill rate of an effector bound to a target at saturating antigen (1/h)."
    )
    antigen_half_max_molecules_per_cell: PositiveFloat = Field(
        2000.0, description="Antigen density giving half the maximal kill rate (molecules/cell); "
        "lower CAR affinity raises it. Targets at or above it hold the CAR-T in a synapse.",
    )
    hill_coefficient: Annotated[float, Field(ge=0.5, le=10)] = Field(
        2.0, description="Steepness of kill probability vs antigen density (dimensionless)."
    )
    max_kills: Annotated[int, Field(ge=1, le=255)] = Field(
        10, description="Kills after which an effector becomes exhausted."
    )
    max_divisions: Annotated[int, Field(ge=0, le=255)] = Field(
        10, description="Divisions a CAR-T lineage can make."
    )
    division_time_h: PositiveFloat = Field(
        12.0, description="Doubling time while activated (h): division rate ln2 / division_time_h."
    )
    activation_duration_h: PositiveFloat = Field(
        24.0, description="How long a kill keeps a CAR-T activated (proliferating) (h)."
    )
    exhaustion_after_engaged_h: PositiveFloat = Field(
        20.0, description="Cumulative time in synapses after which a CAR-T is exhausted (h)."
    )
    exhausted_kill_factor: Fraction = Field(
        0.2, description="Kill rate of an exhausted CAR-T relative to an effector."
    )
    effector_half_life_days: PositiveFloat = Field(
        4.5, description="Half-life of an effector CAR-T (days)."
    )
    exhausted_half_life_days: PositiveFloat = Field(
        1.0, description="Half-life of an exhausted CAR-T (days)."
    )
    memory_conversion_rate_per_day: NonNegativeFloat = Field(
        0.0016, description="Rate at which an idle (unbound, not activated) effector becomes a "
        "long-lived memory cell (1/day); with the 4.5-day effector half-life ~1 % of cells "
        "enter the memory pool (Stein 2019).")
    memory_half_life_days: PositiveFloat = Field(
        250.0, description="Half-life of a memory CAR-T (days; 200-350, Stein 2019).")


class Dose(_Strict):
    """One infusion: a number of CAR-T, or an effector-to-target ratio at infusion time."""

    day: NonNegativeFloat = Field(description="Infusion time (days after t = 0).")
    cells: Annotated[int, Field(ge=1, le=10**12)] | None = Field(
        None, description="CAR-T infused (those that find no free site are counted as not "
        "placed).")
    effector_to_target: PositiveFloat | None = Field(
        None, description="CAR-T per cancer cell present at infusion (dimensionless)."
    )
    route: Route | None = Field(None, description="Route of this dose; default dosing.route.")

    @model_validator(mode="after")
    def _one_amount(self) -> Dose:
        if (self.cells is None) == (self.effector_to_target is None):
            raise ValueError("give exactly one of 'cells' or 'effector_to_target'")
        return self


Route = Literal["intravenous", "intratumoral", "anywhere"]


class Lymphodepletion(_Strict):
    """Conditioning chemotherapy (e.g. fludarabine/cyclophosphamide) finished at t = 0."""

    populations: list[str] = Field(
        description="Names of the normal populations (lymphocytes) it depletes.")
    fraction_removed: Fraction = Field(
        0.9, description="Fraction of those cells removed at t = 0 (frees their sites).")
    car_t_expansion_boost: NonNegativeFloat = Field(
        1.0, description="Extra CAR-T division rate right after conditioning, relative to the "
        "normal rate (1 = doubled); homeostatic cytokines (IL-7, IL-15) then fade.")
    recovery_half_life_days: PositiveFloat = Field(
        7.0, description="Half-life of the boost as lymphocytes recover (days).")


class DosingConfig(_Strict):
    """Where and when CAR-T enter the patient or the dish."""

    route: Route = Field(
        "intravenous", description="Default route of the doses. intravenous: into the blood "
        "pool, then into the tissue next to vessel sites; intratumoral: free sites within "
        "margin_width_um of a cancer cell (local injection); anywhere: free sites at random "
        "(a dish, or a well-mixed compartment).")
    margin_width_um: PositiveFloat = Field(
        60.0, description="Intratumoral injections land within this distance of a cancer "
        "cell (um).")
    lymphodepletion: Lymphodepletion | None = Field(
        None, description="Conditioning before the first infusion; none if omitted.")
    doses: list[Dose] = Field(description="Infusions, in any order (none: an untreated "
                              "control).")


class FieldConfig(_Strict):
    """A diffusing substance on the lattice (backward-Euler reaction-diffusion)."""

    enabled: bool = Field(False, description="Solve this field; if false it stays at its "
                          "neutral value (oxygen: normoxia, others: 0).")
    diffusion_um2_per_min: PositiveFloat = Field(description="Diffusion coefficient (um^2/min).")
    decay_per_min: NonNegativeFloat = Field(description="First-order decay rate (1/min).")


class OxygenConfig(FieldConfig):
    """Oxygen from vessels and the far field, consumed by cells (PhysiCell defaults)."""

    diffusion_um2_per_min: PositiveFloat = 1.0e5
    decay_per_min: NonNegativeFloat = 0.1
    vessel_mmhg: PositiveFloat = Field(38.0, description="Oxygen at vessel sites (mmHg).")
    edge_mmhg: NonNegativeFloat | None = Field(
        38.0, description="Oxygen beyond the lattice edge (mmHg); null = closed edge.")
    cancer_uptake_per_min: NonNegativeFloat = Field(10.0, description="Uptake by a cancer cell "
                                                    "(1/min).")
    normal_uptake_per_min: NonNegativeFloat = Field(1.0, description="Uptake by a normal cell "
                                                    "(1/min).")
    car_t_uptake_per_min: NonNegativeFloat = Field(1.0, description="Uptake by a CAR-T (1/min).")
    proliferation_threshold_mmhg: PositiveFloat = Field(
        10.0, description="Below it cancer division slows, linearly to 0 at the necrosis "
        "threshold (mmHg).")
    necrosis_threshold_mmhg: PositiveFloat = Field(
        5.0, description="Below it cancer cells become necrotic (mmHg).")
    necrosis_max_mmhg: NonNegativeFloat = Field(
        2.5, description="At or below it necrosis runs at its maximal rate (mmHg).")
    necrosis_max_rate_per_h: NonNegativeFloat = Field(
        1.0 / 6.0, description="Maximal necrosis rate (1/h; ~1 per 6 h).")
    necrotic_clearance_half_life_days: PositiveFloat = Field(
        60.0, description="Half-life of necrotic debris before its site is free (days).")
    car_t_hypoxic_kill_factor: Fraction = Field(
        0.5, description="CAR-T kill rate at or below the necrosis threshold, relative to "
        "normoxia (rises linearly to 1 at the proliferation threshold).")

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> OxygenConfig:
        if not (self.necrosis_max_mmhg < self.necrosis_threshold_mmhg
                < self.proliferation_threshold_mmhg):
            raise Problems([(("necrosis_threshold_mmhg",), "must lie strictly between "
                             "necrosis_max_mmhg and proliferation_threshold_mmhg",
                             self.necrosis_threshold_mmhg)])
        return self


class ChemokineConfig(FieldConfig):
    """A T-cell attractant secreted by cancer cells (Luque 2024 model defaults)."""

    diffusion_um2_per_min: PositiveFloat = 1000.0
    decay_per_min: NonNegativeFloat = 0.016
    secretion_per_cancer_cell_per_min: NonNegativeFloat = Field(
        1.0, description="Secretion per cancer cell (a.u./min).")
    chemotaxis_bias: Fraction = Field(
        0.5, description="Probability a CAR-T's new heading points up the gradient.")


class SuppressionConfig(FieldConfig):
    """A TGF-beta / PD-L1-like suppressive factor from solid-tumour cells."""

    diffusion_um2_per_min: PositiveFloat = 600.0
    decay_per_min: NonNegativeFloat = 0.05
    secretion_per_cancer_cell_per_min: NonNegativeFloat = Field(
        1.0, description="Baseline secretion per cancer cell (a.u./min).")
    cytokine_induction: NonNegativeFloat = Field(
        1.0, description="Extra secretion per unit of local cytokine (1/a.u.): secretion x "
        "(1 + cytokine_induction x cytokine) (IFN-gamma induces PD-L1; O'Rourke 2017).")
    half_effect: PositiveFloat = Field(
        20.0, description="Level that halves CAR-T kill rate and time to exhaustion (a.u.).")


class CytokineConfig(FieldConfig):
    """An IL-6 / IFN-gamma-like cytokine released by activated CAR-T (CRS index)."""

    diffusion_um2_per_min: PositiveFloat = 600.0
    decay_per_min: NonNegativeFloat = 0.05
    secretion_per_activated_car_t_per_min: NonNegativeFloat = Field(
        1.0, description="Secretion per activated CAR-T (a.u./min).")


class MicroenvironmentConfig(_Strict):
    """Diffusing fields the cells sense; each off unless enabled."""

    update_interval_min: PositiveFloat = Field(
        60.0, description="Fields are re-solved every this many minutes (backward Euler over "
        "the interval; oxygen quasi-steady).")
    oxygen: OxygenConfig = Field(default_factory=OxygenConfig)
    chemokine: ChemokineConfig = Field(default_factory=ChemokineConfig)
    suppression: SuppressionConfig = Field(default_factory=SuppressionConfig)
    cytokine: CytokineConfig = Field(default_factory=CytokineConfig)


class StromaConfig(_Strict):
    """Dense extracellular matrix: a capsule around the tumour and fibres in the tissue."""

    capsule_width_um: NonNegativeFloat = Field(
        0.0, description="Width of a stroma band around the initial tumour (um).")
    fibre_density: Fraction = Field(
        0.0, description="Fraction of non-tumour sites on stroma fibres.")
    fibre_length_um: PositiveFloat = Field(150.0, description="Length of one fibre (um).")
    crossing_probability: Fraction = Field(
        0.1, description="Probability that a move into a stroma site succeeds (0 = a wall; "
        "aligned collagen keeps T cells out, Salmon 2012).")


class TissueConfig(_Strict):
    """Fixed structure: blood vessels and stroma."""

    vessel_density: Fraction = Field(
        0.0, description="Fraction of non-tumour sites that are vessels.")
    tumor_vessel_density: Fraction = Field(
        0.0, description="Fraction of tumour sites that are vessels (sparser in solid "
        "tumours).")
    stroma: StromaConfig = Field(default_factory=StromaConfig)


class BloodConfig(_Strict):
    """The well-mixed blood pool that intravenous doses enter."""

    extravasation_rate_per_h: NonNegativeFloat = Field(
        1.0, description="Rate at which a blood CAR-T enters the tissue at a vessel (1/h).")
    intravasation_rate_per_h: NonNegativeFloat = Field(
        0.1, description="Rate at which an unbound CAR-T next to a vessel re-enters the blood "
        "(1/h).")
    volume_ul: PositiveFloat = Field(
        10.0, description="Blood volume the model's pool stands for (uL): CAR-T per uL = "
        "pool / volume_ul. A scaling assumption, not a measurement.")


class ScenarioConfig(_Strict):
    """One tumour treated with one CAR-T product."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")] = Field(
        description="Scenario label used in tables and file names."
    )
    description: str = ""
    tumor_type: Literal["blood", "solid", "in_vitro"] = Field(
        description="blood or solid cancer in a patient, or in_vitro: a killing assay in a dish.")
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = Field(
        0, description="Seed of replicate 0; replicate r uses seed + r."
    )
    replicates: Annotated[int, Field(ge=1, le=100000)] = 3
    lattice: LatticeConfig = Field(default_factory=LatticeConfig)
    time: TimeConfig = Field(default_factory=TimeConfig)
    tumor: TumorConfig
    normal: list[NormalPopulation] = Field(default_factory=list)
    car_t: CarTConfig = Field(default_factory=CarTConfig)
    microenvironment: MicroenvironmentConfig = Field(default_factory=MicroenvironmentConfig)
    tissue: TissueConfig = Field(default_factory=TissueConfig)
    blood: BloodConfig = Field(default_factory=BloodConfig)
    dosing: DosingConfig

    @field_validator("normal")
    @classmethod
    def _densities_fit(cls, populations: list[NormalPopulation]) -> list[NormalPopulation]:
        total = sum(p.density for p in populations)
        if total > 1.0 + 1e-12:
            raise ValueError(f"densities add up to {total:g}, more than 1")
        return populations

    @model_validator(mode="after")
    def _tumour_fits(self) -> ScenarioConfig:
        sites = self.lattice.n_sites
        if self.tumor.initial_cells > sites // 2:
            raise Problems([(("tumor", "initial_cells"),
                             f"must be at most half of the {sites} sites of the "
                             f"{self.lattice.label} lattice",
                             self.tumor.initial_cells)])
        return self


#: largest E:T ratio an assay accepts (CAR-T per target plated); co-cultures stop near 10:1
ASSAY_MAX_EFFECTOR_TO_TARGET = 100.0


class AssayConfig(_Strict):
    """An in-vitro killing assay: one dish scenario at several E:T ratios and antigen levels,
    each level beside an untreated control of the same wells (``simulation.analysis.assay``)."""

    scenario: Annotated[str, Field(min_length=1)] = Field(
        description="Scenario file of the dish (targets, CAR-T product), relative to this file; "
        "its own doses are replaced by the assay's.")
    effector_to_target: Annotated[
        list[Annotated[float, Field(gt=0, le=ASSAY_MAX_EFFECTOR_TO_TARGET)]],
        Field(min_length=1)] = Field(
        description="E:T ratios: CAR-T added per target plated (dimensionless; 0.25 = 1:4). "
        "Each well gets round(E:T x tumor.initial_cells) CAR-T.")
    antigen_molecules_per_cell: Annotated[
        list[Annotated[float, Field(ge=0, le=1e9)]], Field(min_length=1)] | None = Field(
        None, description="Mean antigen densities of the targets to test (molecules/cell); "
        "default: the scenario's own tumor.antigen.mean_molecules_per_cell.")
    add_day: NonNegativeFloat = Field(
        0.0, description="When the CAR-T are added (days after the targets are plated).")

    @field_validator("effector_to_target", "antigen_molecules_per_cell")
    @classmethod
    def _distinct(cls, values: list[float] | None) -> list[float] | None:
        repeated = sorted({v for v in values or [] if values.count(v) > 1})
        if repeated:
            raise ValueError(f"values must differ ({', '.join(f'{v:g}' for v in repeated)} "
                             "given more than once)")
        return values


class StudyConfig(_Strict):
    """Several scenarios run side by side with the same replicate seeds: listed as files
    (``scenarios``) or generated by a killing-assay design (``assay``)."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    scenarios: Annotated[list[str], Field(min_length=1)] | None = Field(
        None, description="Scenario files, relative to this file.")
    assay: AssayConfig | None = Field(
        None, description="A killing-assay design expanded into scenarios (instead of "
        "'scenarios').")
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = 0
    replicates: Annotated[int, Field(ge=1, le=100000)] = 3

    @model_validator(mode="after")
    def _scenarios_or_assay(self) -> StudyConfig:
        if self.scenarios is not None and self.assay is not None:
            raise Problems([(("assay",), "give either 'scenarios' (scenario files) or 'assay' "
                             "(a killing-assay design), not both", None)])
        if self.scenarios is None and self.assay is None:
            raise Problems([(("scenarios",), "required key is missing (or give 'assay': a "
                             "killing-assay design)", None)])
        return self


class Study(BaseModel):
    """A resolved study: validated scenarios plus the shared seed and replicate count."""

    name: str
    description: str = ""
    seed: int
    replicates: int
    scenarios: list[ScenarioConfig]
    #: the file each scenario was read from, as error messages show it (empty if not from files)
    sources: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# reading YAML: safe tags only, text keys, no duplicates, bounded size and depth
# ---------------------------------------------------------------------------------------------
_YAML_PREFIX = "tag:yaml.org,2002:"
_SAFE_TAGS = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag is not None)
_STR_TAG = _YAML_PREFIX + "str"
_MERGE_TAG = _YAML_PREFIX + "merge"
_MAX_PROBLEMS = 20
#: libyaml's parser where PyYAML was built with it (~10x faster), else the pure-Python one
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path, shown: str) -> dict[str, Any]:
    """Parse one YAML file safely into a mapping, or raise a ConfigError naming the file."""
    try:
        if path.is_dir():
            raise ConfigError(f"{shown}: is a directory, not a YAML file")
        with open(path, "rb") as stream:  # bounded: /dev/zero or a huge file is refused below
            raw = stream.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: file not found") from None
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
    data = _parse_yaml(text, shown)
    if data is None:
        raise ConfigError(f"{shown}: file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _parse_yaml(text: str, shown: str) -> Any:
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
            raise ConfigError(f"{shown}: YAML error: {_printable(str(err))}") from None
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
        where = _format_location(path)
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
                                f"{_short_repr(node.value)} as {_tag_text(node.tag)} "
                                f"({_printable(reason)})")
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
                    problems.append(f"{_format_location((*path, key))}: keys must be text "
                                    f"(got {kind} {_short_repr(key)} at "
                                    f"{_mark(key_node.start_mark)}; quote it)")
                    continue
                key = key_node.value
                if key in first_at:
                    problems.append(f"{_format_location((*path, key))}: duplicate key at "
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
        return f"YAML error at line {line}: {_printable(str(err).splitlines()[0])}"
    where = f" at {_mark(mark)}" if mark else ""
    return f"YAML error{where}: {_printable(problem or 'invalid YAML')}"


def _mark(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _tag_text(tag: str) -> str:
    """``tag:yaml.org,2002:python/name:os.system`` -> ``!!python/name:os.system``."""
    text = "!!" + tag.removeprefix(_YAML_PREFIX) if tag.startswith(_YAML_PREFIX) else tag
    return _short_repr(text) if not text.isprintable() or len(text) > 60 else text


def _printable(text: str) -> str:
    """``text`` with control characters (newlines, ...) escaped: messages stay one line each."""
    return text if text.isprintable() else repr(text)[1:-1]


def _merge(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` onto ``base``: mappings merge, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _load_with_extends(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A file's mapping with its ``extends:`` chain merged in (base first)."""
    shown = _display(path)
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(_display(p) for p in (*chain, resolved))
        raise ConfigError(f"{shown}: extends: cycle ({cycle})")
    data = _read_yaml(path, shown)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{shown}: extends: must be a file name (got {_short_repr(parent)})")
    parent_path = path.parent / parent
    if not parent_path.exists():
        raise ConfigError(f"{shown}: extends: file not found: {_display(parent_path)}")
    if not parent_path.is_file():
        raise ConfigError(f"{shown}: extends: not a file: {_display(parent_path)}")
    return _merge(_load_with_extends(parent_path, (*chain, resolved)), data)


def _display(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when possible."""
    try:
        text = str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        text = str(path)
    return _printable(text)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'tumor.cycle_time_h=30'`` -> (['tumor', 'cycle_time_h'], 30); the value is YAML."""
    shown = _set_text(text)
    if "=" not in text:
        raise ConfigError(f"--set {shown}: expected key.path=value")
    key, _, raw = text.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"--set {shown}: empty key path")
    value = _parse_yaml(raw, f"--set {shown}") if raw.strip() else ""
    return parts, value


def _set_text(text: str) -> str:
    return _printable(text if len(text) <= 80 else text[:77] + "...")


def yaml_value(value: Any) -> str:
    """A value as YAML text that reads back exactly (JSON's ``1e-05`` would read back as text).

    Used to turn Python keyword overrides and sweep values into ``key.path=value`` strings.
    """
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return ``data`` with each ``key.path=value`` set (list items by index: ``doses.0.day``)."""
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = data
        for part in parts[:-1]:
            node = _child(node, part, text, create=True)
        last = parts[-1]
        if isinstance(node, list):
            node[_index(node, last, text)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {_set_text(text)}: {'.'.join(parts[:-1])} is not a mapping")
    return data


def _index(node: list, part: str, text: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {_set_text(text)}: {part!r} is not an index of a list of "
                          f"{len(node)}")
    return int(part)


def _child(node: Any, part: str, text: str, create: bool) -> Any:
    if isinstance(node, list):
        node = node[_index(node, part, text)]
        return node
    if not isinstance(node, dict):
        raise ConfigError(f"--set {_set_text(text)}: cannot descend into {part!r}")
    if part not in node and create:
        node[part] = {}
    return node[part]


def _format_location(loc: tuple) -> str:
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
    return _short_repr(text)


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


def _describe(error: dict, model: type[BaseModel]) -> list[str]:
    """One pydantic error as message lines ``key.path: problem (got value)``."""
    loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    located = error.get("ctx", {}).get("error")
    if isinstance(located, Problems):
        return [_problem_line((*loc, *where), message, got)
                for where, message, got in located.problems]
    if kind == "extra_forbidden":
        holder = _model_at(model, loc[:-1])
        known = list(holder.model_fields) if holder else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        allowed = _allowed_keys(known) if known and not close else ""
        return [f"{_format_location(loc)}: unknown key{hint}{allowed}"]
    if kind == "missing":
        return [f"{_format_location(loc)}: required key is missing"]
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
    return [_problem_line(loc, message, value)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _problem_line(loc: tuple, message: str, value: Any = None) -> str:
    got = "" if value is None else f" (got {_short_repr(value)})"
    return f"{_format_location(loc)}: {_printable(message)}{got}"


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4
_REPR.maxlevel = 3


def _short_repr(value: Any) -> str:
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
    text = _printable(text)
    return text if len(text) <= 60 else text[:57] + "..."


def validate(data: dict[str, Any], model: type[BaseModel], source: str) -> Any:
    """Validate a mapping against ``model``; errors become one ConfigError naming ``source``.

    A scenario is also checked for what the schema cannot see key by key
    (``scenario_problems``: timers, speeds, doses after the end, memory).
    """
    try:
        validated = model.model_validate(data)
    except ValidationError as err:
        lines = [f"{source}: {line}" for e in err.errors(include_url=False)
                 for line in _describe(e, model)]
        raise ConfigError("\n".join(lines)) from None
    if isinstance(validated, ScenarioConfig):
        check_scenario(validated, source)
    return validated


# ---------------------------------------------------------------------------------------------
# checks across keys: can this scenario run at all, on this machine?
# ---------------------------------------------------------------------------------------------
#: interpreter, numpy/numba/pandas/matplotlib and the compiled kernels: ~210 MB measured
RUN_OVERHEAD_BYTES = 256 * 2**20
#: set-up temporaries per site at the peak of building a run, on top of the 16-byte record:
#: a compact tumour sorts every site by its distance from the centre, margin arrival runs a
#: distance transform (measured on 3000x3000 lattices: 60 bytes/site in all for gbm_solid,
#: 25 for b_all_cd19, records included)
SETUP_BYTES_PER_SITE_COMPACT = 48
SETUP_BYTES_PER_SITE_DISPERSED = 16
#: per-site state of a run: the cell record, the tissue code, the fields (float64 each) and
#: the field solver's work arrays (uptake and source, float64, plus the fixed-site mask)
STATE_BYTES_PER_SITE = CELL_DTYPE.itemsize + 1 + 8 * N_FIELDS + 17


def estimate_memory_bytes(cfg: ScenarioConfig, parallel_runs: int = 1) -> int:
    """Peak memory of ``parallel_runs`` simultaneous runs of ``cfg`` (bytes).

    Per run: ``sites * (STATE_BYTES_PER_SITE + set-up temporaries) + RUN_OVERHEAD_BYTES``; worker
    processes each hold a run, and the parent process holds one more overhead.
    """
    sites = cfg.lattice.n_sites
    compact = cfg.tumor.layout == "compact" or any(
        (d.route or cfg.dosing.route) == "intratumoral" for d in cfg.dosing.doses)
    setup = SETUP_BYTES_PER_SITE_COMPACT if compact else SETUP_BYTES_PER_SITE_DISPERSED
    per_run = sites * (STATE_BYTES_PER_SITE + setup) + RUN_OVERHEAD_BYTES
    return parallel_runs * per_run + (RUN_OVERHEAD_BYTES if parallel_runs > 1 else 0)


def physical_memory_bytes() -> int | None:
    """This machine's physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _gb(n_bytes: float) -> str:
    gib = n_bytes / 2**30
    return f"{gib:.0f} GB" if gib >= 100 else f"{gib:.1f} GB"


def memory_problem(cfg: ScenarioConfig, parallel_runs: int = 1) -> str | None:
    """Why ``parallel_runs`` runs of ``cfg`` cannot fit in this machine's memory, or None."""
    have = physical_memory_bytes()
    need = estimate_memory_bytes(cfg, parallel_runs)
    if have is None or need <= have:
        return None
    lattice = f"{cfg.lattice.label} lattice"
    if parallel_runs == 1:
        return f"a {lattice} needs ~{_gb(need)}, more than this machine's {_gb(have)}"
    fit = max(n for n in range(1, parallel_runs + 1)
              if n == 1 or estimate_memory_bytes(cfg, n) <= have)
    return (f"{parallel_runs} parallel runs of a {lattice} need ~{_gb(need)}, more than this "
            f"machine's {_gb(have)}; use --workers {fit}")


def scenario_problems(cfg: ScenarioConfig) -> list[tuple[tuple, str, Any]]:
    """``(location, message, value)`` for every reason a valid-looking scenario cannot run."""
    problems: list[tuple[tuple, str, Any]] = []
    dt = cfg.time.dt_min
    for key in ("activation_duration_h", "exhaustion_after_engaged_h"):
        hours = getattr(cfg.car_t, key)
        steps = minutes_to_steps(hours * MIN_PER_H, dt)
        if steps > TIMER_MAX:
            problems.append((("car_t", key), f"{hours:g} h is {steps} time steps of {dt:g} min, "
                             f"more than the {TIMER_MAX} a timer holds; raise time.dt_min", None))
    offsets = neighbour_offsets(cfg.lattice.dimensions, cfg.lattice.neighbourhood)
    move_um = cfg.lattice.spacing_um * mean_step_length(offsets)
    speeds = [(("car_t", "speed_um_per_min"), cfg.car_t.speed_um_per_min),
              (("tumor", "speed_um_per_min"), cfg.tumor.speed_um_per_min)]
    speeds += [(("normal", i, "speed_um_per_min"), p.speed_um_per_min)
               for i, p in enumerate(cfg.normal) if p.density > 0]
    for loc, speed in speeds:
        moves = speed * dt / move_um
        if moves > MAX_MOVES_PER_STEP:
            problems.append((loc, f"{speed:g} um/min is {moves:.3g} moves per {dt:g}-min time "
                             f"step on a {cfg.lattice.spacing_um:g}-um lattice, more than "
                             f"{MAX_MOVES_PER_STEP}; check the unit (um per minute)", None))
    no_vessels = cfg.tissue.vessel_density == 0 and cfg.tissue.tumor_vessel_density == 0
    for i, dose in enumerate(cfg.dosing.doses):
        route = dose.route or cfg.dosing.route
        if route == "intravenous" and no_vessels:
            loc = ("dosing", "doses", i, "route") if dose.route else ("dosing", "route")
            problems.append((loc, "intravenous doses enter the tissue at vessels, and "
                             "tissue.vessel_density is 0; add vessels or choose 'intratumoral' "
                             "or 'anywhere'", route))
            break
    if cfg.dosing.lymphodepletion is not None:
        names = [p.name for p in cfg.normal]
        for i, name in enumerate(cfg.dosing.lymphodepletion.populations):
            if name not in names:
                problems.append((("dosing", "lymphodepletion", "populations", i),
                                 f"no normal population is called {name!r} (have {names})",
                                 None))
    end_days = cfg.time.duration_days
    for i, dose in enumerate(cfg.dosing.doses):
        if dose.day >= end_days:
            problems.append((("dosing", "doses", i, "day"), "must be before the end of the run "
                             f"(time.duration_days: {end_days:g})", dose.day))
    memory = memory_problem(cfg)
    if memory:
        problems.append((("lattice", "width"), memory, None))
    return problems


def check_scenario(cfg: ScenarioConfig, source: str | None = None) -> None:
    """Raise a ConfigError (one line per problem) if ``scenario_problems`` finds any."""
    problems = scenario_problems(cfg)
    if problems:
        prefix = f"{source}: " if source else ""
        raise ConfigError("\n".join(prefix + _problem_line(*p) for p in problems))


def check_memory(cfg: ScenarioConfig, source: str | None, parallel_runs: int) -> None:
    """Raise a ConfigError if ``parallel_runs`` simultaneous runs of ``cfg`` do not fit."""
    memory = memory_problem(cfg, parallel_runs)
    if memory:
        prefix = f"{source}: " if source else ""
        raise ConfigError(prefix + _problem_line(("lattice", "width"), memory))


def is_study(data: dict[str, Any]) -> bool:
    """A mapping with a ``scenarios`` or ``assay`` key is a study; anything else is a scenario."""
    return "scenarios" in data or "assay" in data


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> ScenarioConfig:
    """Load, merge ``extends``, apply ``--set`` overrides and validate one scenario file."""
    path = Path(path)
    data = apply_overrides(_load_with_extends(path), overrides or [])
    if is_study(data):
        raise ConfigError(f"{_display(path)}: is a study (has 'scenarios' or 'assay'), not a "
                          "scenario")
    return validate(data, ScenarioConfig, _display(path))


#: keys a study shares with a scenario: a file with nothing else is taken for a study
_STUDY_ONLY_KEYS = frozenset({"name", "description", "seed", "replicates"})


def load_study(path: str | Path, overrides: list[str] | None = None) -> Study:
    """Load a study or a single scenario file as a Study (a lone scenario is a study of one).

    ``overrides`` apply to every scenario; a scenario's own ``seed``/``replicates`` give way to
    the study's.
    """
    path = Path(path)
    data = _load_with_extends(path)
    if not is_study(data) and set(data) <= _STUDY_ONLY_KEYS:
        validate(data, StudyConfig, _display(path))  # a study missing 'scenarios' or 'assay'
    if not is_study(data):
        scenario = load_scenario(path, overrides)
        return Study(
            name=scenario.name,
            description=scenario.description,
            seed=scenario.seed,
            replicates=scenario.replicates,
            scenarios=[scenario],
            sources=[_display(path)],
        )
    shown = _display(path)
    study = validate(data, StudyConfig, shown)
    if study.assay is not None:
        scenarios, sources = _assay_scenarios(study.assay, path, overrides or [])
        key = "assay"
    else:
        scenarios, sources = _listed_scenarios(study.scenarios, path, overrides)
        key = "scenarios"
    scenarios = [s.model_copy(update={"seed": study.seed, "replicates": study.replicates})
                 for s in scenarios]
    names = [s.name for s in scenarios]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{shown}: {key}: duplicate scenario names {duplicated}")
    return Study(name=study.name, description=study.description, seed=study.seed,
                 replicates=study.replicates, scenarios=scenarios, sources=sources)


def _listed_scenarios(entries: list[str], path: Path, overrides: list[str] | None
                      ) -> tuple[list[ScenarioConfig], list[str]]:
    """The scenario files a study lists (relative to the study file ``path``), and their
    sources."""
    shown = _display(path)
    scenarios = []
    for i, entry in enumerate(entries):
        entry_path = path.parent / entry
        if not entry_path.exists():
            raise ConfigError(f"{shown}: scenarios[{i}]: file not found: {_display(entry_path)}")
        scenarios.append(load_scenario(entry_path, overrides))
    return scenarios, [_display(path.parent / entry) for entry in entries]


def _assay_scenarios(assay: AssayConfig, path: Path, overrides: list[str]
                     ) -> tuple[list[ScenarioConfig], list[str]]:
    """The scenarios of a killing-assay design (``simulation.analysis.assay.expand_assay``): the dish
    file with ``extends`` and the ``--set`` overrides applied, then one scenario per condition."""
    from ..analysis.assay import expand_assay  # assay builds on this module, so it is imported here

    shown = _display(path)
    dish_path = path.parent / assay.scenario
    dish_shown = _display(dish_path)
    if not dish_path.exists():
        raise ConfigError(f"{shown}: assay.scenario: file not found: {dish_shown}")
    dish = apply_overrides(_load_with_extends(dish_path), overrides)
    if is_study(dish):
        raise ConfigError(f"{shown}: assay.scenario: {dish_shown} is a study; give a scenario "
                          "file")
    scenarios = expand_assay(assay, dish, dish_shown, shown)
    return scenarios, [dish_shown] * len(scenarios)


def json_schema(kind: Literal["scenario", "study"] = "scenario") -> dict[str, Any]:
    """JSON Schema of a scenario or study file, for editor autocompletion of YAML."""
    model = ScenarioConfig if kind == "scenario" else StudyConfig
    schema = model.model_json_schema()
    schema["properties"]["extends"] = {
        "type": "string",
        "description": "Another config file (relative path) whose keys this one overrides.",
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"cartsim {kind}"
    return schema
