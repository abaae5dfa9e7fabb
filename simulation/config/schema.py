"""The pydantic schema of scenario and study files, and its limits.

Every physical quantity carries its unit in its key (``cycle_time_h``, ``speed_um_per_min``,
``death_rate_per_day``); ``simulation.biology.scenario`` converts them once into per-step numbers.
Unknown keys, wrong types and out-of-range values are errors (``StrictModel``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import Problems
from .mappings import merge_mappings

SEED_MAX = 2**63 - 1
#: largest lattice side the schema accepts; what fits in memory is checked separately
LATTICE_SIDE_MAX = 1_000_000


class StrictModel(BaseModel):
    """Base: unknown keys are errors, NaN/inf are rejected, no type coercion.

    Strict mode: ``true`` or ``"30"`` where a number belongs is an error, not 1.0 or 30.0
    (integers are still accepted where a float is expected).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True,
                              strict=True)


PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class AntigenDistribution(StrictModel):
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


#: the most antigens a scenario can name (``engine.constants.MAX_ANTIGENS``, checked in tests)
MAX_ANTIGENS = 3
#: the name of the one antigen of a scenario that gives ``tumor.antigen`` (not ``antigens``)
SINGLE_ANTIGEN = "antigen"
AntigenName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
NamedAntigens = Annotated[dict[AntigenName, AntigenDistribution],
                          Field(min_length=1, max_length=MAX_ANTIGENS)]


class LatticeConfig(StrictModel):
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


class TimeConfig(StrictModel):
    """Clock of a run."""

    dt_min: Annotated[float, Field(gt=0, le=60)] = Field(6.0, description="Time step (min).")
    duration_days: Annotated[float, Field(gt=0, le=3650)] = Field(
        42.0, description="Simulated time after t = 0 (days)."
    )
    record_every_h: PositiveFloat = Field(12.0, description="Census interval (h).")
    snapshot_every_h: PositiveFloat | None = Field(
        None, description="Keep a picture of the lattice of every run every this many hours, "
        "and at t = 0 and at the end (cartsim run: DIR/snapshots/<run>/, ~50 kB each for 200 "
        "x 200 sites, fields quantised to 256 levels; Python: Result.snapshots). Off if "
        "omitted.")
    stop_when_cleared: bool = Field(
        True, description="End a run as soon as no cancer cell is left."
    )


class TumorConfig(StrictModel):
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
    antigen: AntigenDistribution | None = Field(
        None, description="The target antigen, for a scenario with one antigen (give this or "
        "'antigens').")
    antigens: NamedAntigens | None = Field(
        None, description="Up to 3 named antigens, each its own distribution, e.g. {CD19: "
        "{...}, CD22: {...}}; independent draws, so antigen-negative fractions combine into "
        "subclones (instead of 'antigen').")
    linked_antigen_loss_per_division: Fraction = Field(
        0.0, description="Probability that a daughter is born without any antigen at once "
        "(linked escape, e.g. lineage switch), on top of each antigen's own "
        "loss_per_division (independent escape).")

    @model_validator(mode="after")
    def _antigen_or_antigens(self) -> TumorConfig:
        if (self.antigen is None) == (self.antigens is None):
            raise Problems([(("antigen",), "give either 'antigen' (one antigen) or 'antigens' "
                             "(named antigens), not both or neither", None)])
        return self

    @property
    def antigen_distributions(self) -> dict[str, AntigenDistribution]:
        """The tumour's antigens by name, in slot order (one antigen: named ``antigen``)."""
        return self.antigens if self.antigens is not None else {SINGLE_ANTIGEN: self.antigen}

    @property
    def first_antigen(self) -> AntigenDistribution:
        """The distribution of the tumour's first antigen (slot 0)."""
        return next(iter(self.antigen_distributions.values()))


class NormalPopulation(StrictModel):
    """A healthy cell population filling part of the space the tumour leaves."""

    name: str = Field(description="Label, e.g. 'normal B cells'.")
    density: Fraction = Field(description="Fraction of non-tumour sites this population occupies.")
    speed_um_per_min: NonNegativeFloat = Field(0.0, description="Random-walk speed (um/min).")
    antigen: AntigenDistribution = Field(
        default_factory=lambda: AntigenDistribution(mean_molecules_per_cell=0.0),
        description="Antigen on these healthy cells (on-target, off-tumour toxicity if > 0), "
        "in a scenario with one antigen.",
    )
    antigens: NamedAntigens | None = Field(
        None, description="Named antigens on these cells, in a scenario whose tumour names its "
        "antigens (tumor.antigens); names the tumour lacks are added as slots (at most 3 in "
        "all).")

    @model_validator(mode="after")
    def _antigen_or_antigens(self) -> NormalPopulation:
        if self.antigens is not None and self.antigen.mean_molecules_per_cell > 0:
            raise Problems([(("antigen",), "give either 'antigen' or 'antigens', not both",
                             self.antigen.mean_molecules_per_cell)])
        return self


Role = Literal["kill", "prime", "veto"]


class Receptor(StrictModel):
    """One antigen receptor of the CAR-T product."""

    antigen: AntigenName = Field(description="Name of the antigen it binds (tumor.antigens).")
    role: Role = Field(
        "kill", description="kill: a CAR (several: OR logic, a tandem or bicistronic CAR); "
        "prime: a SynNotch receptor whose engagement induces the CARs for "
        "car_t.priming_duration_h (AND logic); veto: an inhibitory CAR, a target carrying its "
        "antigen is spared (NOT logic).")
    half_max_molecules_per_cell: PositiveFloat | None = Field(
        None, description="Antigen density of half-maximal signal (molecules/cell); kill: of "
        "the kill rate, prime / veto: the density at which it engages. Default: "
        "car_t.antigen_half_max_molecules_per_cell.")


class IL12Armour(StrictModel):
    """A CAR-T that secretes IL-12 when activated (an armoured CAR, 'TRUCK')."""

    kill_rate_factor: Annotated[float, Field(ge=1, le=10)] = Field(
        1.5, description="Kill rate relative to the unarmoured product (autocrine IL-12 raises "
        "cytotoxicity and IFN-gamma; Pegram 2012 Blood).")
    suppression_resistance: Fraction = Field(
        0.5, description="Share of the suppressive field's effect IL-12 cancels (resistance to "
        "Treg / TGF-beta suppression; Pegram 2012, Yeku 2017 Sci Rep).")
    cytokine_secretion_factor: Annotated[float, Field(ge=1, le=100)] = Field(
        3.0, description="Cytokine secretion per activated CAR-T relative to the unarmoured "
        "product: raises the CRS index (IL-12 drives IFN-gamma; systemic IL-12 toxicity, "
        "Zhang 2015 Clin Cancer Res).")


class ArmourConfig(StrictModel):
    """Engineering that makes the product resist suppression or remodel its surroundings."""

    tgf_beta_resistance: Fraction = Field(
        0.0, description="Share of the TGF-beta part of suppression the CAR-T ignore "
        "(dominant-negative TGF-beta receptor II: 1 = fully; Kloss 2018 Mol Ther).")
    pd1_knockout: bool = Field(
        False, description="PD-1 knocked out: the CAR-T ignore the checkpoint (PD-1/PD-L1) "
        "part of suppression (Rupp 2017 Sci Rep).")
    il12: IL12Armour | None = Field(None, description="IL-12 secretion; none if omitted.")


class Composition(StrictModel):
    """The product's T-cell subsets at infusion and how they differ, CD8 effector-derived cells
    being the reference (the rest of ``car_t``). Daughters keep their mother's subset."""

    cd4_fraction: Fraction = Field(
        0.5, description="Share of CD4 cells among the infused CAR-T (0.5: the defined 1:1 "
        "CD4:CD8 product of Turtle 2016 J Clin Invest).")
    memory_like_fraction: Fraction = Field(
        0.0, description="Share of memory-like (stem-cell / central-memory-derived, Tscm/Tcm) "
        "cells among the infused CAR-T, in CD4 and CD8 alike.")
    cd4_kill_rate_factor: Annotated[float, Field(gt=0, le=1)] = Field(
        0.5, description="Kill rate of a CD4 CAR-T relative to a CD8 one (CD4 CAR-T kill, but "
        "later and slower: Liadi 2015 Cancer Immunol Res; Boulch 2021 Sci Immunol).")
    cd4_half_life_factor: Annotated[float, Field(ge=1, le=10)] = Field(
        2.0, description="Effector half-life of a CD4 CAR-T relative to a CD8 one (CD4 CAR-T "
        "persist longer and dominate years after infusion: Melenhorst 2022 Nature).")
    unhelped_cd8_division_factor: Fraction = Field(
        0.5, description="Division rate of an activated CD8 CAR-T with no CD4 CAR-T next to it, "
        "relative to a helped one (CD4 help drives CD8 CAR-T expansion: Sommermeyer 2016 "
        "Leukemia).")
    memory_like_extra_divisions: Annotated[int, Field(ge=0, le=20)] = Field(
        3, description="Divisions a memory-like lineage can make beyond car_t.max_divisions "
        "(Tscm/Tcm-derived CAR-T expand more: Xu 2014 Blood; Sommermeyer 2016; Fraietta 2018 "
        "Nat Med).")
    memory_like_half_life_factor: Annotated[float, Field(ge=1, le=10)] = Field(
        2.0, description="Effector half-life of a memory-like CAR-T relative to an "
        "effector-derived one (Tcm-derived CAR-T persist longer: Sommermeyer 2016; Biasco 2021 "
        "Nat Cancer).")


class CarTConfig(StrictModel):
    """The CAR-T product: how its cells move, recognise, kill, divide, exhaust and die."""

    speed_um_per_min: NonNegativeFloat = Field(5.0, description="Migration speed (um/min).")
    persistence_time_min: NonNegativeFloat = Field(
        10.0, description="Time over which a CAR-T keeps its direction (min)."
    )
    kill_rate_per_h: PositiveFloat = Field(
        0.05, description="Kill rate of an effector bound to a target at saturating antigen (1/h; "
        "the in-vivo population killing rate 1.15/day of Kimmel et al. 2021 Proc R Soc B, "
        "docs/parameters.md calibration note 1)."
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
        240.0, description="Cumulative time in synapses after which a CAR-T is exhausted (h; "
        "chronic stimulation in vivo, a model assumption: docs/parameters.md calibration note 2; "
        "~20 h in vitro, Davenport et al. 2015)."
    )
    exhausted_kill_factor: Fraction = Field(
        0.2, description="Kill rate of an exhausted CAR-T relative to an effector."
    )
    arming_time_h: NonNegativeFloat = Field(
        0.0, description="Time a CAR-T must spend bound to targets (antigen at or above the "
        "CAR's half-max) before it kills at its full rate (h); its time to exhaustion counts "
        "from then, and daughters inherit it. 0: armed from the first contact, as the in-vivo "
        "population kill rate already averages over arming (docs/parameters.md calibration "
        "note 4).")
    resting_kill_factor: Fraction = Field(
        0.0, description="Kill rate of a CAR-T not yet armed, relative to an armed one (only "
        "with arming_time_h > 0).")
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
    receptors: Annotated[list[Receptor], Field(min_length=1, max_length=5)] | None = Field(
        None, description="The product's antigen receptors and their logic (1-3 kill, at most "
        "one prime and one veto). Default: one CAR against the tumour's first antigen.")
    priming_duration_h: PositiveFloat = Field(
        12.0, description="AND logic: how long a SynNotch-primed CAR-T keeps expressing its CAR "
        "after its last contact with the priming antigen (h; induced CAR decays within about "
        "a day, Roybal 2016 Cell; Choe 2021 Sci Transl Med).")
    armour: ArmourConfig = Field(default_factory=ArmourConfig)
    composition: Composition | None = Field(
        None, description="CD4:CD8 and memory-like shares at infusion; none: a product of "
        "one kind of cell with the parameters above (the calibrated default).")

    @field_validator("receptors")
    @classmethod
    def _receptor_logic(cls, receptors: list[Receptor] | None) -> list[Receptor] | None:
        if receptors is None:
            return None
        kills = [r.antigen for r in receptors if r.role == "kill"]
        if not 1 <= len(kills) <= MAX_ANTIGENS:
            raise ValueError(f"needs 1 to {MAX_ANTIGENS} receptors with role kill, got "
                             f"{len(kills)}")
        if len(set(kills)) < len(kills):
            raise ValueError("two kill receptors bind the same antigen")
        for role in ("prime", "veto"):
            if sum(r.role == role for r in receptors) > 1:
                raise ValueError(f"at most one receptor with role {role}")
        return receptors

    def receptor_list(self, first_antigen: str) -> list[Receptor]:
        """The receptors with every half-max filled in (default: one CAR on
        ``first_antigen``)."""
        receptors = self.receptors or [Receptor(antigen=first_antigen)]
        default = self.antigen_half_max_molecules_per_cell
        return [r.model_copy(update={"half_max_molecules_per_cell":
                                     r.half_max_molecules_per_cell or default})
                for r in receptors]


ProductName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
#: the name doses give the product described by ``car_t``
MAIN_PRODUCT = "main"
#: most CAR-T products one scenario can infuse (``engine.constants.MAX_PRODUCTS``, checked in
#: tests): ``car_t`` and up to three in ``products``
MAX_PRODUCTS = 4


class Dose(StrictModel):
    """One infusion: a number of CAR-T, or an effector-to-target ratio at infusion time."""

    day: NonNegativeFloat = Field(description="Infusion time (days after t = 0).")
    cells: Annotated[int, Field(ge=1, le=10**12)] | None = Field(
        None, description="CAR-T infused (those that find no free site are counted as not "
        "placed).")
    effector_to_target: PositiveFloat | None = Field(
        None, description="CAR-T per cancer cell present at infusion (dimensionless)."
    )
    route: Route | None = Field(None, description="Route of this dose; default dosing.route.")
    product: ProductName = Field(
        MAIN_PRODUCT, description="Which CAR-T product this dose infuses: 'main' (car_t) or "
        "a name in products.")

    @model_validator(mode="after")
    def _one_amount(self) -> Dose:
        if (self.cells is None) == (self.effector_to_target is None):
            raise ValueError("give exactly one of 'cells' or 'effector_to_target'")
        return self


Route = Literal["intravenous", "intratumoral", "anywhere"]


class Lymphodepletion(StrictModel):
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


class DosingConfig(StrictModel):
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


class FieldConfig(StrictModel):
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
    checkpoint_share: Fraction = Field(
        0.5, description="Share of the suppressive effect that acts through PD-1/PD-L1 (the "
        "rest: TGF-beta); only splits what car_t.armour resists.")


class CytokineConfig(FieldConfig):
    """An IL-6 / IFN-gamma-like cytokine released by activated CAR-T (CRS index)."""

    diffusion_um2_per_min: PositiveFloat = 600.0
    decay_per_min: NonNegativeFloat = 0.05
    secretion_per_activated_car_t_per_min: NonNegativeFloat = Field(
        1.0, description="Secretion per activated CAR-T (a.u./min).")


class MicroenvironmentConfig(StrictModel):
    """Diffusing fields the cells sense; each off unless enabled."""

    update_interval_min: PositiveFloat = Field(
        60.0, description="Fields are re-solved every this many minutes (backward Euler over "
        "the interval; oxygen quasi-steady).")
    oxygen: OxygenConfig = Field(default_factory=OxygenConfig)
    chemokine: ChemokineConfig = Field(default_factory=ChemokineConfig)
    suppression: SuppressionConfig = Field(default_factory=SuppressionConfig)
    cytokine: CytokineConfig = Field(default_factory=CytokineConfig)


class StromaConfig(StrictModel):
    """Dense extracellular matrix: a capsule around the tumour and fibres in the tissue."""

    capsule_width_um: NonNegativeFloat = Field(
        0.0, description="Width of a stroma band around the initial tumour (um).")
    fibre_density: Fraction = Field(
        0.0, description="Fraction of non-tumour sites on stroma fibres.")
    fibre_length_um: PositiveFloat = Field(150.0, description="Length of one fibre (um).")
    crossing_probability: Fraction = Field(
        0.1, description="Probability that a move into a stroma site succeeds (0 = a wall; "
        "aligned collagen keeps T cells out, Salmon 2012).")


class TissueConfig(StrictModel):
    """Fixed structure: blood vessels and stroma."""

    vessel_density: Fraction = Field(
        0.0, description="Fraction of non-tumour sites that are vessels.")
    tumor_vessel_density: Fraction = Field(
        0.0, description="Fraction of tumour sites that are vessels (sparser in solid "
        "tumours).")
    stroma: StromaConfig = Field(default_factory=StromaConfig)

    @property
    def has_vessels(self) -> bool:
        """False if neither normal tissue nor tumour holds vessel sites (an in-vitro dish)."""
        return self.vessel_density > 0 or self.tumor_vessel_density > 0


class BloodConfig(StrictModel):
    """The well-mixed blood pool that intravenous doses enter."""

    extravasation_rate_per_h: NonNegativeFloat = Field(
        1.0, description="Rate at which a blood CAR-T enters the tissue at a vessel (1/h).")
    intravasation_rate_per_h: NonNegativeFloat = Field(
        0.1, description="Rate at which an unbound CAR-T next to a vessel re-enters the blood "
        "(1/h).")
    volume_ul: PositiveFloat = Field(
        10.0, description="Blood volume the model's pool stands for (uL): CAR-T per uL = "
        "pool / volume_ul. A scaling assumption, not a measurement.")


class ClinicalEndpoints(StrictModel):
    """How a patient's tumour burden (fraction of baseline, whole body) is read as a trial
    reads it (``analysis/clinical.py``)."""

    complete_response_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.05, description="Burden at or below which a response is complete (B-ALL: < 5 % "
        "marrow blasts, CR/CRi; LBCL: no PET-visible disease).")
    mrd_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        1e-4, description="Burden below which disease is undetectable: MRD-negative (flow "
        "cytometry, < 1 cell in 10^4).")
    partial_response_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.5, description="Burden at or below which a response is partial (Lugano: >= 50 % "
        "decrease).")
    response_window_days: PositiveFloat = Field(
        90.0, description="Best response is read up to this day (ELIANA: CR/CRi within 3 "
        "months).")
    relapse_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        0.05, description="Relapse/progression: burden back at or above this fraction of "
        "baseline (B-ALL: >= 5 % marrow blasts) ...")
    progression_from_nadir: Annotated[float, Field(gt=1)] = Field(
        1.5, description="... and at least this multiple of its nadir so far (Lugano: >= 50 % "
        "increase from nadir).")
    b_cell_recovery_fraction: Fraction = Field(
        0.1, description="B-cell aplasia ends when normal B cells are back above this fraction "
        "of their number before treatment.")


class ClinicalConfig(StrictModel):
    """A patient's clinical course: the lattice for the first weeks, then a systemic
    (pool-level ODE) follow-up of the whole body (``biology/systemic.py``), graded CRS and
    trial endpoints. Off if omitted: a run is the lattice alone."""

    lattice_days: PositiveFloat = Field(
        28.0, description="Longest the lattice runs (days); then the systemic model runs to "
        "time.duration_days.")
    switch_when_cleared: bool = Field(
        True, description="Hand over to the systemic model as soon as the lattice holds no "
        "cancer cell (after the last dose): the rest is CAR-T contraction, cheaper as an ODE.")
    record_every_days: PositiveFloat = Field(
        1.0, description="Census interval of the systemic follow-up (days).")
    body_tumor_cells: Annotated[float, Field(ge=1, le=1e14)] = Field(
        1e11, description="Cancer cells in the whole body at baseline; disease below one cell "
        "is extinct (cured).")
    residual_fraction: Annotated[float, Field(ge=0, le=1)] = Field(
        1e-6, description="Antigen-positive disease outside the simulated compartment (CNS, "
        "extramedullary sites), as a fraction of baseline, added at hand-over.")
    antigen_negative_fraction: Annotated[float, Field(ge=0, le=1)] = Field(
        1e-9, description="Antigen-negative subclone at baseline (fraction of baseline), below "
        "the lattice's resolution; it grows unchecked by CAR-T.")
    max_burden_fraction: PositiveFloat = Field(
        2.0, description="Burden (fraction of baseline) at which growth stops (logistic).")
    car_t_kill_rate_per_day: NonNegativeFloat = Field(
        1.0, description="Largest rate at which CAR-T clear antigen-positive cells, tumour or "
        "normal B cells, in the systemic model (1/day).")
    car_t_half_max_ratio: PositiveFloat = Field(
        0.01, description="CAR-T per baseline cancer cell at which that rate is half its "
        "largest.")
    car_t_functional_days: PositiveFloat | None = Field(
        None, description="Day after infusion on which the patient's CAR-T stop working "
        "(rejection, exhaustion): from then on they die at car_t.exhausted_half_life_days. "
        "None: they fade only at their half-lives.")
    b_cell_recovery_rate_per_day: NonNegativeFloat = Field(
        0.03, description="Rate at which marrow output refills normal B cells (1/day).")
    crs_susceptibility: PositiveFloat = Field(
        1.0, description="Patient's factor on the CRS index before grading (dimensionless).")
    crs_grade_thresholds: Annotated[list[PositiveFloat], Field(min_length=4, max_length=4)] = (
        Field([0.05, 0.2, 0.4, 0.8], description="Peak CRS index per baseline cancer cell "
              "(times crs_susceptibility) at which CRS grades 1, 2, 3 and 4 begin."))
    endpoints: ClinicalEndpoints = Field(default_factory=ClinicalEndpoints)

    @field_validator("crs_grade_thresholds")
    @classmethod
    def _ascending(cls, thresholds: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(thresholds, thresholds[1:])):
            raise ValueError("must be ascending")
        return thresholds


class ScenarioConfig(StrictModel):
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
    products: dict[ProductName, CarTConfig] = Field(
        default_factory=dict, description="Further CAR-T products by name, for pooled "
        "(co-infused) or sequential products; each starts from car_t and changes what it "
        "gives (e.g. its receptors). Doses pick one with 'product'.")
    microenvironment: MicroenvironmentConfig = Field(default_factory=MicroenvironmentConfig)
    tissue: TissueConfig = Field(default_factory=TissueConfig)
    blood: BloodConfig = Field(default_factory=BloodConfig)
    dosing: DosingConfig
    clinical: ClinicalConfig | None = Field(
        None, description="Clinical course after the lattice (systemic follow-up, CRS grade, "
        "trial endpoints); off if omitted.")

    @model_validator(mode="before")
    @classmethod
    def _products_start_from_car_t(cls, data: object) -> object:
        """Each further product is car_t with the product's keys merged over it."""
        if not isinstance(data, dict) or not isinstance(data.get("products"), dict):
            return data
        base = data.get("car_t", {})
        base = base.model_dump() if isinstance(base, BaseModel) else base
        if not isinstance(base, dict):
            return data
        products = {name: merge_mappings(base, product) if isinstance(product, dict) else product
                    for name, product in data["products"].items()}
        return {**data, "products": products}

    @field_validator("normal")
    @classmethod
    def _densities_fit(cls, populations: list[NormalPopulation]) -> list[NormalPopulation]:
        total = sum(p.density for p in populations)
        if total > 1.0 + 1e-12:
            raise ValueError(f"densities add up to {total:g}, more than 1")
        return populations

    @property
    def antigen_names(self) -> list[str]:
        """The scenario's antigens in slot order: the tumour's, then those only healthy cells
        carry."""
        names = list(self.tumor.antigen_distributions)
        for population in self.normal:
            names += [name for name in population.antigens or {} if name not in names]
        return names

    @property
    def product_configs(self) -> dict[str, CarTConfig]:
        """Every CAR-T product by name, ``MAIN_PRODUCT`` (car_t) first: product ``i`` of this
        order is product index ``i`` of the kernel's CAR-T classes."""
        return {MAIN_PRODUCT: self.car_t, **self.products}

    @property
    def needs_extra_records(self) -> bool:
        """True if cells need ``engine.constants.CELL_EXTRA_DTYPE`` records: several antigens,
        or a priming receptor (AND logic) in any product."""
        return len(self.antigen_names) > 1 or any(
            r.role == "prime" for product in self.product_configs.values()
            for r in product.receptors or [])

    @model_validator(mode="after")
    def _antigens_named(self) -> ScenarioConfig:
        problems = []
        named = self.tumor.antigens is not None
        for i, population in enumerate(self.normal):
            if population.antigens is not None and not named:
                problems.append((("normal", i, "antigens"), "needs named tumour antigens "
                                 "(tumor.antigens instead of tumor.antigen)", None))
            if named and population.antigen.mean_molecules_per_cell > 0:
                problems.append((("normal", i, "antigen"), "the tumour names its antigens: "
                                 "give this population 'antigens' with names", None))
        names = self.antigen_names
        if len(names) > MAX_ANTIGENS:
            problems.append((("normal",), f"the scenario names {len(names)} antigens "
                             f"({', '.join(names)}); at most {MAX_ANTIGENS}", None))
        for product_name, product in self.product_configs.items():
            where = ("car_t",) if product_name == MAIN_PRODUCT else ("products", product_name)
            for i, receptor in enumerate(product.receptors or []):
                if receptor.antigen not in names:
                    problems.append(((*where, "receptors", i, "antigen"),
                                     f"unknown antigen; the scenario has {', '.join(names)}",
                                     receptor.antigen))
        if problems:
            raise Problems(problems)
        return self

    @model_validator(mode="after")
    def _products_known(self) -> ScenarioConfig:
        problems = []
        if MAIN_PRODUCT in self.products:
            problems.append((("products", MAIN_PRODUCT), f"'{MAIN_PRODUCT}' names car_t; give "
                             "this product another name", None))
        if len(self.product_configs) > MAX_PRODUCTS:
            problems.append((("products",), f"at most {MAX_PRODUCTS - 1} products besides "
                             f"car_t, got {len(self.products)}", None))
        for name, product in self.products.items():
            for key in ("speed_um_per_min", "persistence_time_min"):
                if getattr(product, key) != getattr(self.car_t, key):
                    problems.append((("products", name, key), "all products move alike (the "
                                     f"lattice has one CAR-T cell type): give car_t's value, "
                                     f"{getattr(self.car_t, key):g}", getattr(product, key)))
            if product.armour.il12 != self.car_t.armour.il12:
                problems.append((("products", name, "armour", "il12"), "all products secrete "
                                 "cytokine alike: give car_t's il12 block", None))
        for i, dose in enumerate(self.dosing.doses):
            if dose.product not in self.product_configs:
                known = ", ".join(self.product_configs)
                problems.append((("dosing", "doses", i, "product"),
                                 f"unknown product; the scenario has {known}", dose.product))
        if problems:
            raise Problems(problems)
        return self

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


class AssayConfig(StrictModel):
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


class StudyConfig(StrictModel):
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
