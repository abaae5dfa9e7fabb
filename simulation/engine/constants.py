"""Cell-type codes, CAR-T states, dtypes and neighbour offset tables: the one place for them.

Kernels and wrappers import these names; no module writes a bare ``1`` for "cancer cell".
"""

import numpy as np

# ---- site contents (``cell_type`` array, uint8) -------------------------------------------
EMPTY = 0
CANCER = 1
NORMAL = 2
CAR_T = 3
NECROTIC = 4  # debris of a cancer cell killed by severe hypoxia; occupies its site until cleared
N_CELL_TYPES = 5

# ---- fixed tissue structure under the cells (``Lattice.tissue`` array, uint8) ---------------
TISSUE_OPEN = 0  # ordinary interstitial space
TISSUE_STROMA = 1  # dense extracellular matrix / fibres: cells enter it slowly (or never)
TISSUE_VESSEL = 2  # a blood vessel: no cell sits on it; oxygen source and CAR-T entry/exit point

# ---- CAR-T states (``car_t_state`` array, uint8) -----------------------------------------
EFFECTOR = 0
EXHAUSTED = 1
MEMORY = 2  # long-lived, does not kill; becomes an activated effector on meeting antigen

# ---- one 16-byte record per lattice site ---------------------------------------------------
CELL_DTYPE = np.dtype(
    [
        ("cell_type", np.uint8),  # EMPTY / CANCER / NORMAL / CAR_T
        ("car_t_state", np.uint8),  # EFFECTOR / EXHAUSTED / MEMORY
        ("kills", np.uint8),  # targets this CAR-T has killed
        ("divisions", np.uint8),  # divisions in this CAR-T's lineage
        ("heading", np.uint8),  # index into the neighbour offsets, or NO_HEADING
        ("car_class", np.uint8),  # CAR-T: its product and subset (``car_class``), else 0
        ("stamp", np.uint16),  # sweep number (mod 2**16) in which the cell last acted
        ("engaged", np.uint16),  # time steps this CAR-T spent in synapses
        ("activation", np.uint16),  # time steps of activation left (CAR-T)
        ("antigen", np.float32),  # first antigen (slot 0), molecules per cell
    ],
    align=True,
)
assert CELL_DTYPE.itemsize == 16
#: most antigens a scenario can name; a cell carries one density per antigen slot
MAX_ANTIGENS = 3
#: a second, 12-byte record per site for what only some scenarios use: the densities of
#: antigen slots 1 and 2 and the AND-gate priming timer. Scenarios with one antigen and no
#: priming receptor keep an empty array, so the sweeps read 16 bytes per site, not 28
#: (the interaction sweep of a large lattice is bound by memory bandwidth)
CELL_EXTRA_DTYPE = np.dtype(
    [
        ("antigen_b", np.float32),  # second antigen (slot 1), molecules per cell
        ("antigen_c", np.float32),  # third antigen (slot 2), molecules per cell
        ("primed", np.uint16),  # time steps a primed (AND-gate) CAR-T still expresses its CAR
    ],
    align=True,
)
assert CELL_EXTRA_DTYPE.itemsize == 12
COUNTER_MAX = 255  # largest uint8 counter value

# ---- CAR-T classes: product and subset of a CAR-T (``car_class`` field, uint8) ---------------
# A CAR-T's class indexes the kernel-parameter records (``params[car_class]``): class
# ``product * N_SUBSETS + subset``, where the subset bits say CD4 (else CD8) and memory-like
# (Tscm/Tcm-derived, else effector-derived). Daughters inherit their mother's class. A product
# without a composition is all subset 0, and a scenario with one product has classes 0-3 only.
SUBSET_CD4 = 1
SUBSET_MEMORY_LIKE = 2
N_SUBSETS = 4
MAX_PRODUCTS = 4  # CAR-T products one scenario can infuse
MAX_CAR_CLASSES = MAX_PRODUCTS * N_SUBSETS
TIMER_MAX = 65535  # largest uint16 timer value

# ---- random-number purposes: one stream per decision, keyed with (seed, sweep, site) ---------
RNG_DEATH = 0
RNG_TARGET = 1
RNG_KILL = 2
RNG_DIVIDE = 3
RNG_DIVIDE_SITE = 4
RNG_MOVE = 5
RNG_HEADING = 6
RNG_ANTIGEN_NOISE = 7
RNG_SWEEP_ORDER = 8
RNG_ANTIGEN_NOISE_2 = 9
RNG_HEADING_PICK = 10
RNG_ROW_DIRECTION = 11
RNG_ANTIGEN_LOSS = 12
RNG_NECROSIS = 13
RNG_MEMORY = 14
RNG_STROMA = 15
RNG_CHEMOTAXIS = 16
RNG_INTRAVASATION = 17
RNG_EXTRAVASATION = 18
RNG_EXTRAVASATION_SITE = 19
# a daughter's second and third antigens (loss, then the two uniforms of the noise), and the
# linked loss of every antigen at once
RNG_ANTIGEN_B_LOSS = 20
RNG_ANTIGEN_B_NOISE = 21
RNG_ANTIGEN_B_NOISE_2 = 22
RNG_ANTIGEN_C_LOSS = 23
RNG_ANTIGEN_C_NOISE = 24
RNG_ANTIGEN_C_NOISE_2 = 25
RNG_LINKED_ANTIGEN_LOSS = 26

# ---- diffusing fields (``FieldSet.values`` rows, float64, one value per site) ----------------
F_OXYGEN = 0  # mmHg
F_CHEMOKINE = 1  # CAR-T attractant secreted by cancer cells (arbitrary concentration units)
F_SUPPRESSION = 2  # TGF-beta / PD-L1-like suppressive factor from solid-tumour cells (a.u.)
F_CYTOKINE = 3  # IL-6 / IFN-gamma-like cytokine from activated CAR-T (a.u.)
N_FIELDS = 4
FIELD_NAMES = ("oxygen", "chemokine", "suppression", "cytokine")

# ---- neighbourhoods ---------------------------------------------------------------------------
NEIGHBOURHOODS = ("moore", "von_neumann")


def neighbour_offsets(dimensions: int, neighbourhood: str) -> np.ndarray:
    """Integer offsets (n_neighbours, dimensions) of the neighbourhood of a lattice site.

    ``moore`` is every site within Chebyshev distance 1 (8 in 2D, 26 in 3D);
    ``von_neumann`` the sites at Manhattan distance 1 (4 in 2D, 6 in 3D). Kernels walk these
    tables, so a 3D lattice is a different table, not different code.
    """
    if neighbourhood not in NEIGHBOURHOODS:
        raise ValueError(f"unknown neighbourhood {neighbourhood!r}; use one of {NEIGHBOURHOODS}")
    grids = np.meshgrid(*([np.array([-1, 0, 1])] * dimensions), indexing="ij")
    offsets = np.stack([g.ravel() for g in grids], axis=1)
    offsets = offsets[np.any(offsets != 0, axis=1)]
    if neighbourhood == "von_neumann":
        offsets = offsets[np.abs(offsets).sum(axis=1) == 1]
    return offsets.astype(np.int64)


def mean_step_length(offsets: np.ndarray) -> float:
    """Mean Euclidean length of one move to a uniformly chosen neighbour, in lattice spacings."""
    return float(np.mean(np.sqrt((offsets.astype(np.float64) ** 2).sum(axis=1))))

# ---- kernel parameters: physical rates converted once to per-step numbers -------------------
# (built by simulation.biology.scenario.kernel_parameters as an array of this dtype, one record
# per CAR-T class; the kernels read a CAR-T's fields from ``params[car_class]``, every other
# cell's from ``params[0]``, by name)
KERNEL_PARAMS_DTYPE = np.dtype(
    [
        ("car_t_kill_rate_per_min", np.float64),  # maximal kill rate of an effector (1/min)
        ("exhausted_kill_factor", np.float64),  # kill rate of an exhausted CAR-T / an effector's
        # kill rate of a CAR-T not yet armed (``engaged`` below ``arming_steps``) / an armed one's
        ("resting_kill_factor", np.float64),
        ("antigen_half_max", np.float64),  # antigen of half-maximal killing (molecules/cell)
        # the CAR's antigen slot, and up to two more killing receptors (slot or NO_RECEPTOR,
        # half-max density in molecules/cell): OR logic (tandem / bicistronic CAR)
        ("kill_slot", np.int64),
        ("second_kill_slot", np.int64),
        ("second_half_max", np.float64),
        ("third_kill_slot", np.int64),
        ("third_half_max", np.float64),
        # AND logic: a priming receptor (SynNotch) on antigen ``prime_slot`` at or above
        # ``prime_half_max`` makes the CAR expressed for ``priming_steps`` time steps
        ("prime_slot", np.int64),
        ("prime_half_max", np.float64),
        ("priming_steps", np.int64),
        # NOT logic: an inhibitory CAR; a target with antigen ``veto_slot`` at or above
        # ``veto_half_max`` is not attacked
        ("veto_slot", np.int64),
        ("veto_half_max", np.float64),
        # share of the suppressive field's effect a CAR-T still feels (1 = all; dnTGFbR and
        # PD-1 knockout lower it) and the kill-rate factor of an IL-12-armoured effector
        ("suppression_sensitivity", np.float64),
        ("armoured_kill_factor", np.float64),
        ("hill_coefficient", np.float64),  # steepness of the antigen response
        ("max_kills", np.int64),  # kills after which an effector becomes exhausted
        ("max_divisions", np.int64),  # divisions a CAR-T lineage can make
        ("exhaustion_engaged_steps", np.int64),  # time steps in synapses until exhaustion
        ("activation_steps", np.int64),  # time steps an effector stays activated after a kill
        ("arming_steps", np.int64),  # time steps in synapses before a CAR-T kills at full rate
        ("dt_min", np.float64),  # length of a time step (min)
        ("car_t_divide_p", np.float64),  # probability per step an activated CAR-T divides
        # a CD8 CAR-T of a product with a composition needs CD4 help: with no CD4 CAR-T next
        # to it, it divides with ``unhelped_divide_p`` instead (``needs_help`` 0: no such rule)
        ("needs_help", np.int64),
        ("unhelped_divide_p", np.float64),
        ("car_t_effector_death_p", np.float64),  # probability per step an effector dies
        ("car_t_exhausted_death_p", np.float64),  # probability per step an exhausted CAR-T dies
        ("cancer_divide_p", np.float64),  # probability per step a cancer cell divides
        ("cancer_death_p", np.float64),  # probability per step a cancer cell dies
        ("antigen_inheritance_sigma", np.float64),  # log-normal sigma of a daughter's antigen
        ("antigen_loss_p", np.float64),  # probability a daughter cell is born antigen-negative
        ("n_antigens", np.int64),  # antigen slots in use (1-3)
        ("antigen_b_inheritance_sigma", np.float64),  # the same two numbers for slot 1 ...
        ("antigen_b_loss_p", np.float64),
        ("antigen_c_inheritance_sigma", np.float64),  # ... and for slot 2
        ("antigen_c_loss_p", np.float64),
        # probability a daughter is born without any antigen (one event for all slots)
        ("linked_antigen_loss_p", np.float64),
        # below it (mmHg), cancer division slows (linearly to 0 at necrosis O2)
        ("proliferation_o2_mmhg", np.float64),
        ("necrosis_o2_mmhg", np.float64),  # below it, cancer cells become necrotic
        ("necrosis_max_o2_mmhg", np.float64),  # at or below it, necrosis runs at its maximal rate
        ("necrosis_max_rate_per_min", np.float64),  # necrosis rate at/below necrosis_max_o2_mmhg
        ("necrotic_clearance_p", np.float64),  # probability per step necrotic debris is cleared
        # CAR-T kill rate at/below necrosis O2, relative to normoxia
        ("car_t_hypoxic_kill_factor", np.float64),
        # suppressive factor (a.u.) that halves kill rate / exhaustion time
        ("suppression_half_effect", np.float64),
        ("car_t_memory_p", np.float64),  # probability per step an idle effector becomes memory
        ("car_t_memory_death_p", np.float64),  # probability per step a memory CAR-T dies
        # probability a new heading points up the chemokine gradient
        ("chemotaxis_bias", np.float64),
        ("stroma_crossing_p", np.float64),  # probability a move into a stroma site succeeds
        # probability per step a CAR-T next to a vessel enters the blood
        ("intravasation_p", np.float64),
    ],
    align=True,
)



def neutral_kernel_parameters() -> np.ndarray:
    """A one-element ``KERNEL_PARAMS_DTYPE`` array with nothing switched on: every rate,
    probability and timer 0, one antigen, a single CAR on it, no other receptor, no armour."""
    params = np.zeros(1, dtype=KERNEL_PARAMS_DTYPE)
    for name in ("second_kill_slot", "third_kill_slot", "prime_slot", "veto_slot"):
        params[0][name] = NO_RECEPTOR
    params[0]["n_antigens"] = 1
    params[0]["suppression_sensitivity"] = 1.0
    params[0]["armoured_kill_factor"] = 1.0
    params[0]["resting_kill_factor"] = 1.0
    return params


# ---- event counters returned by the interaction sweep (``events`` array, int64) ------------
E_CANCER_KILLED = 0
E_NORMAL_KILLED = 1
E_CANCER_BORN = 2
E_CANCER_DIED = 3
E_CAR_T_BORN = 4
E_CAR_T_DIED = 5
E_CAR_T_EXHAUSTED = 6
E_CANCER_NECROSED = 7
E_NECROTIC_CLEARED = 8
E_CAR_T_BECAME_MEMORY = 9
E_MEMORY_REACTIVATED = 10
E_EFFECTOR_TO_BLOOD = 11
E_MEMORY_TO_BLOOD = 12
N_EVENTS = 13
#: slots after the named events: CAR-T entering the blood per class, effector at
#: ``E_CLASS_TO_BLOOD + 2 * car_class``, memory one after (kept if the events array has them)
E_CLASS_TO_BLOOD = N_EVENTS
N_EVENT_SLOTS = N_EVENTS + 2 * MAX_CAR_CLASSES
EVENT_NAMES = (
    "cancer_killed",
    "normal_killed",
    "cancer_born",
    "cancer_died",
    "car_t_born",
    "car_t_died",
    "car_t_became_exhausted",
    "cancer_necrosed",
    "necrotic_cleared",
    "car_t_became_memory",
    "memory_reactivated",
    "effector_to_blood",
    "memory_to_blood",
)

NO_HEADING = COUNTER_MAX  # a cell that has not picked a direction yet
NO_RECEPTOR = -1  # a receptor slot of the kernel parameters that is not used

# ---- a target's antigen as the products' CARs see it (``kernel.products_antigen_class``) -----
# ordered: a cell is what the product that sees it best makes of it (the largest code)
ANTIGEN_NEGATIVE = 0  # none of the antigens its killing receptors bind
ANTIGEN_LOW = 1  # some of them, but not ``recognised`` (below every half-max, or vetoed)
ANTIGEN_HIGH = 2  # recognised: a synapse forms

# ---- lattice census (``kernel.census`` output order) -----------------------------------------
CENSUS_NAMES = (
    "tumor_cells",
    "tumor_antigen_high",  # antigen >= CAR half-max density
    "tumor_antigen_low",  # 0 < antigen < half-max
    "tumor_antigen_negative",  # antigen == 0
    "normal_cells",
    "normal_antigen_positive",
    "car_t_cells",
    "car_t_effector",
    "car_t_exhausted",
    "car_t_memory",
    "necrotic_cells",
)
N_CENSUS = len(CENSUS_NAMES)
# slots of the census vector, by name
CENSUS_TUMOR_CELLS = CENSUS_NAMES.index("tumor_cells")
CENSUS_TUMOR_ANTIGEN_HIGH = CENSUS_NAMES.index("tumor_antigen_high")
CENSUS_TUMOR_ANTIGEN_LOW = CENSUS_NAMES.index("tumor_antigen_low")
CENSUS_TUMOR_ANTIGEN_NEGATIVE = CENSUS_NAMES.index("tumor_antigen_negative")
CENSUS_NORMAL_CELLS = CENSUS_NAMES.index("normal_cells")
CENSUS_NORMAL_ANTIGEN_POSITIVE = CENSUS_NAMES.index("normal_antigen_positive")
CENSUS_CAR_T_CELLS = CENSUS_NAMES.index("car_t_cells")
CENSUS_CAR_T_EFFECTOR = CENSUS_NAMES.index("car_t_effector")
CENSUS_CAR_T_EXHAUSTED = CENSUS_NAMES.index("car_t_exhausted")
CENSUS_CAR_T_MEMORY = CENSUS_NAMES.index("car_t_memory")
CENSUS_NECROTIC_CELLS = CENSUS_NAMES.index("necrotic_cells")
