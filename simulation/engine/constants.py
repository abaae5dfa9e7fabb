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
CELL_TYPE_NAMES = ("empty", "cancer", "normal", "car_t", "necrotic")

# ---- fixed tissue structure under the cells (``Lattice.tissue`` array, uint8) ---------------
TISSUE_OPEN = 0  # ordinary interstitial space
TISSUE_STROMA = 1  # dense extracellular matrix / fibres: cells enter it slowly (or never)
TISSUE_VESSEL = 2  # a blood vessel: no cell sits on it; oxygen source and CAR-T entry/exit point
TISSUE_NAMES = ("open", "stroma", "vessel")

# ---- CAR-T states (``car_t_state`` array, uint8) -----------------------------------------
EFFECTOR = 0
EXHAUSTED = 1
MEMORY = 2  # long-lived, does not kill; becomes an activated effector on meeting antigen
CAR_T_STATE_NAMES = ("effector", "exhausted", "memory")

# ---- one 16-byte record per lattice site ---------------------------------------------------
CELL_DTYPE = np.dtype(
    [
        ("cell_type", np.uint8),  # EMPTY / CANCER / NORMAL / CAR_T
        ("car_t_state", np.uint8),  # EFFECTOR / EXHAUSTED / MEMORY
        ("kills", np.uint8),  # targets this CAR-T has killed
        ("divisions", np.uint8),  # divisions in this CAR-T's lineage
        ("heading", np.uint8),  # index into the neighbour offsets, or NO_HEADING
        ("spare", np.uint8),  # padding, free for a future per-cell flag
        ("stamp", np.uint16),  # sweep number (mod 2**16) in which the cell last acted
        ("engaged", np.uint16),  # time steps this CAR-T spent in synapses
        ("activation", np.uint16),  # time steps of activation left (CAR-T)
        ("antigen", np.float32),  # target antigen, molecules per cell
    ],
    align=True,
)
assert CELL_DTYPE.itemsize == 16
COUNTER_MAX = 255  # largest uint8 counter value
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

# ---- kernel parameter vector: physical rates converted once to per-step numbers ------------
# (built by simulation.biology.scenario.kernel_parameters; kernels index it with these names)
K_CAR_T_KILL_RATE_PER_MIN = 0
K_EXHAUSTED_KILL_FACTOR = 1
K_ANTIGEN_HALF_MAX = 2
K_HILL_COEFFICIENT = 3
K_MAX_KILLS = 4
K_MAX_DIVISIONS = 5
K_EXHAUSTION_ENGAGED_STEPS = 6
K_ACTIVATION_STEPS = 7
K_DT_MIN = 8
K_CAR_T_DIVIDE_P = 9
K_CAR_T_EFFECTOR_DEATH_P = 10
K_CAR_T_EXHAUSTED_DEATH_P = 11
K_CANCER_DIVIDE_P = 12
K_CANCER_DEATH_P = 13
K_ANTIGEN_INHERITANCE_SIGMA = 14
K_ANTIGEN_LOSS_P = 15  # probability a daughter cell is born antigen-negative
K_PROLIFERATION_O2_MMHG = 16  # below it, cancer division slows (linearly to 0 at necrosis O2)
K_NECROSIS_O2_MMHG = 17  # below it, cancer cells become necrotic
K_NECROSIS_MAX_O2_MMHG = 18  # at or below it, necrosis runs at its maximal rate
K_NECROSIS_MAX_RATE_PER_MIN = 19  # necrosis rate at or below K_NECROSIS_MAX_O2_MMHG
K_NECROTIC_CLEARANCE_P = 20  # probability per step that necrotic debris is cleared
K_CAR_T_HYPOXIC_KILL_FACTOR = 21  # CAR-T kill rate at/below necrosis O2, relative to normoxia
K_SUPPRESSION_HALF_EFFECT = 22  # suppressive factor that halves kill rate / exhaustion time
K_CAR_T_MEMORY_P = 23  # probability per step an idle effector becomes memory
K_CAR_T_MEMORY_DEATH_P = 24
K_CHEMOTAXIS_BIAS = 25  # probability a new heading points up the chemokine gradient
K_STROMA_CROSSING_P = 26  # probability a move into a stroma site succeeds
K_INTRAVASATION_P = 27  # probability per step a CAR-T next to a vessel enters the blood
N_KERNEL_PARAMS = 28

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
